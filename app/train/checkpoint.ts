/**
 * Training checkpoints in the Hugging Face layout: `config.json`,
 * `model.safetensors` under the checkpoint's own tensor names (Kiln's stacked
 * MoE experts split back into one tensor per expert), `tokenizer.json` when
 * given — a folder `loadModel` (and `transformers`) loads — plus
 * `optimizer.safetensors` (every optimizer, accumulator and counter state, by
 * state name) and `trainer_state.json`, which let a run resume bit for bit.
 *
 * @module
 */

import { buildCausalLM, checkpointSources, type ParamSource } from "../../models/causal_lm.ts";
import type { ModelConfig } from "../../models/config.ts";
import { fusedTensors, joinParts, readPart } from "../../models/architectures/mod.ts";
import type { Executable } from "../../runtime/executable.ts";
import { loadWeights } from "../model/weights.ts";
import { openWeights } from "../model/source.ts";
import { configJson } from "../config_file.ts";
import { type NamedTensor, readSafetensors, writeSafetensors } from "./safetensors_write.ts";

/** File names inside a checkpoint folder. */
export const CHECKPOINT_FILES = {
  config: "config.json",
  model: "model.safetensors",
  tokenizer: "tokenizer.json",
  optimizer: "optimizer.safetensors",
  state: "trainer_state.json",
} as const;

/**
 * Kiln parameter name → the checkpoint tensors it is stored as (several for
 * stacked experts), from the inference graph the loader maps with.
 *
 * @example
 * ```ts ignore
 * hfNames(cfg).get("model.layers.0.block_sparse_moe.w1"); // [..experts.0.w1.weight, ...]
 * ```
 */
export function hfNames(cfg: ModelConfig): Map<string, readonly string[]> {
  return new Map([...paramSources(cfg)].map(([k, v]) => [k, v.tensors]));
}

/** Each parameter's checkpoint sources, from the inference graph the loader maps with. */
function paramSources(cfg: ModelConfig): Map<string, ParamSource> {
  return checkpointSources(cfg, buildCausalLM(cfg, { mode: "prefill", maxSeq: 1, maxNew: 1 }));
}

/**
 * The model's tensors under their checkpoint names: each Kiln parameter
 * (`weights`, shapes in `shapes`) as is, or split along its first axis into
 * one tensor per expert.
 *
 * @example
 * ```ts ignore
 * const tensors = toCheckpointTensors(cfg, weights, shapes);
 * ```
 */
export function toCheckpointTensors(
  cfg: ModelConfig,
  weights: ReadonlyMap<string, Float32Array>,
  shapes: ReadonlyMap<string, readonly number[]>,
): NamedTensor[] {
  const out: NamedTensor[] = [];
  for (const [name, { tensors, stacked, shape: stored }] of paramSources(cfg)) {
    const data = weights.get(name);
    const shape = shapes.get(name);
    if (!data || !shape) throw new TypeError(`checkpoint: no value for parameter "${name}"`);
    // Experts lose the stacking axis even when there is one expert (transformers' layout).
    if (!stacked) {
      out.push({ name: tensors[0], shape: stored ?? shape, data });
      continue;
    }
    const per = data.length / tensors.length;
    tensors.forEach((t, e) =>
      out.push({ name: t, shape: shape.slice(1), data: data.subarray(e * per, (e + 1) * per) })
    );
  }
  return joinFused(cfg, out);
}

/** The tensors the family stores fused (Granite's `input_linear`) joined from their parts. */
function joinFused(cfg: ModelConfig, tensors: NamedTensor[]): NamedTensor[] {
  const fused = fusedTensors(cfg);
  if (fused.length === 0) return tensors;
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const joined = new Map(fused.map((f) => {
    const data = joinParts(f, f.parts.map((p) => byName.get(p)!.data as Float32Array));
    return [f.parts[0], { name: f.name, shape: f.shape, data }];
  }));
  const inFused = new Set(fused.flatMap((f) => f.parts));
  return tensors.flatMap((t) => {
    const j = joined.get(t.name);
    return j ? [j] : inFused.has(t.name) ? [] : [t];
  });
}

/** `tensors` with each fused tensor of the family also present as its parts. */
function splitFused(
  cfg: ModelConfig,
  tensors: ReadonlyMap<string, NamedTensor>,
): ReadonlyMap<string, NamedTensor> {
  const fused = fusedTensors(cfg).filter((f) => tensors.has(f.name));
  if (fused.length === 0) return tensors;
  const out = new Map(tensors);
  for (const f of fused) {
    const all = tensors.get(f.name)!.data;
    const per = all.length / f.parts.length;
    f.parts.forEach((p, k) =>
      out.set(p, {
        name: p,
        shape: f.partShape,
        data: f.packing
          ? readPart(f, all, k, new Float32Array(per))
          : all.subarray(k * per, (k + 1) * per),
      })
    );
  }
  return out;
}

/**
 * The model's parameters by Kiln name from checkpoint tensors (experts stacked).
 *
 * @example
 * ```ts ignore
 * const weights = fromCheckpointTensors(cfg, await readSafetensors("model.safetensors"));
 * ```
 */
export function fromCheckpointTensors(
  cfg: ModelConfig,
  tensors: ReadonlyMap<string, NamedTensor>,
): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  tensors = splitFused(cfg, tensors);
  for (const [name, names] of hfNames(cfg)) {
    const parts = names.map((t) => {
      const x = tensors.get(t);
      if (!x || !(x.data instanceof Float32Array)) {
        throw new TypeError(`checkpoint: missing F32 tensor "${t}" (parameter "${name}")`);
      }
      return x.data;
    });
    const all = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    out.set(name, all);
  }
  return out;
}

/**
 * What {@linkcode writeCheckpoint} writes.
 *
 * @example
 * ```ts ignore
 * await writeCheckpoint(dir, { config, cfg, weights, shapes, trainerState: { step: 10 } });
 * ```
 */
export interface CheckpointContents {
  /** The config.json object, written as is. */
  readonly config: Record<string, unknown>;
  /** The parsed config. */
  readonly cfg: ModelConfig;
  /** Parameters by Kiln name. */
  readonly weights: ReadonlyMap<string, Float32Array>;
  /** Their shapes. */
  readonly shapes: ReadonlyMap<string, readonly number[]>;
  /** tokenizer.json text, copied when given. */
  readonly tokenizerJson?: string;
  /** Optimizer and counter states by state name (optimizer.safetensors), when given. */
  readonly optimizer?: readonly NamedTensor[];
  /** trainer_state.json contents, when given. */
  readonly trainerState?: Record<string, unknown>;
}

/**
 * Writes a checkpoint folder (created if missing).
 *
 * @example
 * ```ts ignore
 * await writeCheckpoint("out/checkpoint-100", contents);
 * const model = await loadModel("out/checkpoint-100");
 * ```
 */
export async function writeCheckpoint(dir: string, c: CheckpointContents): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/${CHECKPOINT_FILES.config}`,
    configJson(c.config),
  );
  await writeSafetensors(
    `${dir}/${CHECKPOINT_FILES.model}`,
    toCheckpointTensors(c.cfg, c.weights, c.shapes),
  );
  if (c.tokenizerJson !== undefined) {
    await Deno.writeTextFile(`${dir}/${CHECKPOINT_FILES.tokenizer}`, c.tokenizerJson);
  }
  if (c.optimizer) await writeSafetensors(`${dir}/${CHECKPOINT_FILES.optimizer}`, c.optimizer);
  if (c.trainerState) {
    await Deno.writeTextFile(
      `${dir}/${CHECKPOINT_FILES.state}`,
      JSON.stringify(c.trainerState, null, 2) + "\n",
    );
  }
}

/**
 * Reads a checkpoint's model weights (by Kiln name) and, when present, its
 * optimizer states and trainer state.
 *
 * @example
 * ```ts ignore
 * const { weights, optimizer, trainerState } = await readCheckpoint("out/checkpoint-100", cfg);
 * ```
 */
export async function readCheckpoint(dir: string, cfg: ModelConfig): Promise<{
  weights: Map<string, Float32Array>;
  optimizer?: Map<string, NamedTensor>;
  trainerState?: Record<string, unknown>;
}> {
  const weights = fromCheckpointTensors(
    cfg,
    await readSafetensors(`${dir}/${CHECKPOINT_FILES.model}`),
  );
  const exists = async (f: string) => {
    try {
      await Deno.stat(`${dir}/${f}`);
      return true;
    } catch {
      return false;
    }
  };
  const optimizer = await exists(CHECKPOINT_FILES.optimizer)
    ? await readSafetensors(`${dir}/${CHECKPOINT_FILES.optimizer}`)
    : undefined;
  const trainerState = await exists(CHECKPOINT_FILES.state)
    ? JSON.parse(await Deno.readTextFile(`${dir}/${CHECKPOINT_FILES.state}`))
    : undefined;
  return { weights, optimizer, trainerState };
}

/**
 * Loads a Hugging Face model folder's weights (any format `loadModel` reads)
 * into the states of a training-shaped executable: the loader maps checkpoint
 * tensors to the inference graph's parameter names, which are the training
 * graph's state names.
 *
 * @example
 * ```ts ignore
 * await loadWeightsIntoStates(trainer.exe, trainer.cfg, "./tiny-mixtral");
 * ```
 */
export async function loadWeightsIntoStates(
  exe: Pick<Executable, "writeState">,
  cfg: ModelConfig,
  dir: string,
): Promise<void> {
  const ckpt = await openWeights(dir, { config: cfg });
  try {
    const graph = buildCausalLM(cfg, { mode: "prefill", maxSeq: 1, maxNew: 1 });
    await loadWeights(
      {
        graph,
        setParams: (p) => {
          for (const [k, v] of Object.entries(p)) exe.writeState(k, v);
        },
      },
      cfg,
      ckpt,
    );
  } finally {
    (ckpt as { close?: () => void }).close?.();
  }
}
