/**
 * Kiln's training loss and parameter gradients for a Hugging Face checkpoint,
 * against transformers' (tools/transformers_grads.py).
 *
 * Usage:
 *   deno run -A tools/transformers_grads.ts MODEL_DIR GRADS.json [FULL.safetensors] [--cpu]
 *
 * GRADS.json is what transformers_grads.py wrote for MODEL_DIR (its token
 * batch, loss and gradient summaries; FULL.safetensors its full float32
 * gradients). The batch [B, T+1] goes through `buildTrainingLM` (ids: the
 * first T tokens of each row, targets: the last T) with `g.grad` of its loss
 * for every parameter, the lowest public level of the trainer's step (no
 * optimizer, no clipping), on the device (default) or float64 on the CPU
 * interpreter (`--cpu`). For MoE models each layer's load-balancing loss is
 * also compared (Kiln's `"hf"` convention: k × its default), and the gradient
 * of coef · Σ_l aux_l. One line per check on stdout, worst figures last; the
 * exit status is 1 when a check fails.
 *
 * @module
 */

import { TrainableBuilder } from "../compiler/train/trainable.ts";
import { withFloat64Host } from "../core/dtype.ts";
import type { HostArray } from "../core/dtype.ts";
import { fusedTensors, joinParts, parseConfig } from "../models/architectures/mod.ts";
import { buildTrainingLM } from "../models/causal_lm_train.ts";
import type { ModelConfig } from "../models/config.ts";
import { runCpu } from "../runtime/cpu_backend.ts";
import { compile } from "../runtime/executable.ts";
import { defaultDevice, type KilnDevice } from "../runtime/device.ts";
import { fromCheckpointTensors, hfNames } from "../app/train/checkpoint.ts";
import { readSafetensors } from "../app/train/safetensors_write.ts";

/**
 * A gradient summary as transformers_grads.py writes it: element count, L2
 * norm, sum and the values at {@linkcode sampleIndices} (absent for the aux
 * gradients).
 *
 * @example
 * ```ts
 * import type { GradSummary } from "./transformers_grads.ts";
 * const s: GradSummary = { n: 4, norm: 2, sum: 0, val: [1, -1, 1, -1] };
 * ```
 */
export interface GradSummary {
  /** Element count. */
  n: number;
  /** L2 norm. */
  norm: number;
  /** Sum of all elements (catches a sign or an offset the norm misses). */
  sum: number;
  /** Values at `sampleIndices(n)`. */
  val?: number[];
}

/**
 * The reference file transformers_grads.py writes.
 *
 * @example
 * ```ts
 * import type { GradReference } from "./transformers_grads.ts";
 * const r: GradReference = { tokens: [[1, 2, 3]], loss: 4.2, grads: {} };
 * ```
 */
export interface GradReference {
  /** The token batch [B, T+1]. */
  tokens: number[][];
  /** Mean next-token cross-entropy (float64). */
  loss: number;
  /** Its gradient per checkpoint tensor name. */
  grads: Record<string, GradSummary>;
  /** MoE models: the load-balancing term, per layer and pooled, and its gradient. */
  aux?: {
    coef: number;
    top_k: number;
    experts: number;
    pooled: number;
    per_layer: number[];
    grads: Record<string, GradSummary>;
  };
}

/**
 * Flat indices spread over [0, n): the first, the last and evenly between
 * (the formula of transformers_grads.py's `sample_indices`).
 *
 * @example
 * ```ts
 * import { sampleIndices } from "./transformers_grads.ts";
 * sampleIndices(10); // [0, 3, 6, 9]
 * ```
 */
export function sampleIndices(n: number, count = 4): number[] {
  if (n <= count) return Array.from({ length: n }, (_, i) => i);
  return Array.from({ length: count }, (_, k) => Math.floor((k * (n - 1)) / (count - 1)));
}

/**
 * What {@linkcode kilnGrads} computed.
 *
 * @example
 * ```ts ignore
 * const k = await kilnGrads("tests/fixtures/hf/olmoe", ref.tokens);
 * k.grads.get("lm_head.weight");
 * ```
 */
export interface KilnGrads {
  /** Mean next-token cross-entropy. */
  loss: number;
  /** Its gradient by checkpoint tensor name (per-expert tensors split out). */
  grads: Map<string, Float64Array>;
  /** MoE layers' load-balancing losses in Hugging Face's convention (k × Kiln's default). */
  auxPerLayer: number[];
  /** Gradient of coef · Σ_l aux_l (HF convention), by checkpoint name; with `auxCoef`. */
  auxGrads?: Map<string, Float64Array>;
}

/** The model's config and its Kiln-named weights, from a checkpoint folder. */
async function loadCheckpoint(dir: string): Promise<{
  cfg: ModelConfig;
  weights: Map<string, Float32Array>;
}> {
  const cfg = parseConfig(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)));
  const weights = fromCheckpointTensors(cfg, await readSafetensors(`${dir}/model.safetensors`));
  return { cfg, weights };
}

/**
 * Kiln's loss and parameter gradients for the batch `tokens` [B, T+1] on the
 * checkpoint in `dir`: the training graph of `buildTrainingLM` and `g.grad`,
 * before any optimizer. `auxCoef` (MoE models) also differentiates
 * auxCoef · Σ_l aux_l with aux_l in Hugging Face's convention. `cpu`: the
 * float64 CPU interpreter instead of the device.
 *
 * @example
 * ```ts ignore
 * const k = await kilnGrads("tests/fixtures/hf/mamba_bias", [[1, 2, 3], [4, 5, 6]]);
 * console.log(k.loss);
 * ```
 */
export async function kilnGrads(
  dir: string,
  tokens: readonly (readonly number[])[],
  options: { auxCoef?: number; cpu?: boolean; device?: KilnDevice } = {},
): Promise<KilnGrads> {
  const { cfg, weights } = await loadCheckpoint(dir);
  const B = tokens.length, T = tokens[0].length - 1;
  const g = new TrainableBuilder();
  const lm = buildTrainingLM(g, cfg, { batch: B, seq: T });
  const names = [...g.trainables.keys()];
  const wrt = names.map((n) => g.trainables.get(n)!);
  g.output("loss", lm.crossEntropy);
  g.grad(lm.crossEntropy, wrt).forEach((d, i) => g.output(`d:${names[i]}`, d));
  const k = cfg.moe?.topK ?? 1;
  // Kiln's default counts (token, slot) picks; HF's function divides by tokens: × k.
  lm.moe.forEach((m, l) => g.output(`aux:${l}`, m.auxLoss.mul(k)));
  const withAux = options.auxCoef !== undefined && lm.moe.length > 0;
  if (withAux) {
    const aux = lm.moe.map((m) => m.auxLoss).reduce((a, b) => a.add(b)).mul(options.auxCoef! * k);
    g.grad(aux, wrt).forEach((d, i) => g.output(`da:${names[i]}`, d));
  }
  const graph = g.build();
  const ids = Uint32Array.from(tokens.flatMap((r) => r.slice(0, T)));
  const targets = Uint32Array.from(tokens.flatMap((r) => r.slice(1)));
  let out: Record<string, { data: ArrayLike<number> }>;
  if (options.cpu) {
    const states = new Map<string, HostArray>(
      names.map((n) => [n, Float64Array.from(weights.get(n)!) as unknown as Float32Array]),
    );
    const inputs = new Map<string, HostArray>([["ids", ids], ["targets", targets]]);
    out = withFloat64Host(() => runCpu(graph, {}, inputs, new Map(), states));
  } else {
    const exe = compile(graph, options.device ?? await defaultDevice());
    try {
      for (const n of names) exe.writeState(n, weights.get(n)!);
      out = await exe.run({ ids, targets });
    } finally {
      exe.dispose();
    }
  }
  const split = (prefix: string) => {
    const m = new Map<string, Float64Array>();
    for (const [name, tensors] of hfNames(cfg)) {
      const all = Float64Array.from(out[`${prefix}${name}`].data);
      const per = all.length / tensors.length;
      tensors.forEach((t, e) => m.set(t, all.subarray(e * per, (e + 1) * per)));
    }
    // Fused checkpoint tensors (Granite's input_linear) are compared whole, as stored.
    for (const f of fusedTensors(cfg)) {
      const parts = f.parts.map((p) => m.get(p)!);
      const whole = joinParts(f, parts, new Float64Array(parts.reduce((a, p) => a + p.length, 0)));
      for (const p of f.parts) m.delete(p);
      m.set(f.name, whole);
    }
    return m;
  };
  return {
    loss: out.loss.data[0],
    grads: split("d:"),
    auxPerLayer: lm.moe.map((_, l) => out[`aux:${l}`].data[0]),
    auxGrads: withAux ? split("da:") : undefined,
  };
}

/**
 * One tensor's agreement: errors relative to the reference's RMS
 * (`norm / √n`).
 *
 * @example
 * ```ts
 * import type { TensorAgreement } from "./transformers_grads.ts";
 * const a: TensorAgreement = { name: "w", rms: 1, norm: 0, sum: 0, values: 0 };
 * ```
 */
export interface TensorAgreement {
  /** Checkpoint tensor name. */
  name: string;
  /** The reference gradient's RMS. */
  rms: number;
  /** |‖k‖ − ‖ref‖| / ‖ref‖. */
  norm: number;
  /** |Σk − Σref| / (rms·√n): the sum's error in units of its natural scale. */
  sum: number;
  /** Largest sampled (or, with full tensors, any) |k − ref| / rms. */
  values: number;
}

/**
 * Compares Kiln's gradients with the reference summaries (and, where given,
 * the full reference tensors); a reference tensor missing from Kiln's is
 * reported with errors of Infinity.
 *
 * @example
 * ```ts ignore
 * const worst = compareGrads(k.grads, ref.grads).reduce((a, b) => Math.max(a, b.values), 0);
 * ```
 */
export function compareGrads(
  kiln: ReadonlyMap<string, Float64Array>,
  ref: Record<string, GradSummary>,
  full?: ReadonlyMap<string, ArrayLike<number>>,
): TensorAgreement[] {
  return Object.entries(ref).map(([name, s]) => {
    const k = kiln.get(name);
    const rms = s.norm / Math.sqrt(s.n) || 1e-30;
    if (!k || k.length !== s.n) {
      return { name, rms, norm: Infinity, sum: Infinity, values: Infinity };
    }
    let sq = 0, sum = 0;
    for (const v of k) {
      sq += v * v;
      sum += v;
    }
    let values = 0;
    const f = full?.get(name);
    if (f) {
      for (let i = 0; i < k.length; i++) values = Math.max(values, Math.abs(k[i] - f[i]) / rms);
    } else if (s.val) {
      sampleIndices(s.n).forEach((i, j) => {
        values = Math.max(values, Math.abs(k[i] - s.val![j]) / rms);
      });
    }
    return {
      name,
      rms,
      norm: Math.abs(Math.sqrt(sq) - s.norm) / (s.norm || 1e-30),
      sum: Math.abs(sum - s.sum) / (rms * Math.sqrt(s.n)),
      values,
    };
  });
}

async function main(args: string[]): Promise<number> {
  const cpu = args.includes("--cpu");
  const [dir, refPath, fullPath] = args.filter((a) => !a.startsWith("--"));
  if (!dir || !refPath) {
    console.error("usage: transformers_grads.ts MODEL_DIR GRADS.json [FULL.safetensors] [--cpu]");
    return 2;
  }
  const ref: GradReference = JSON.parse(await Deno.readTextFile(refPath));
  const full = fullPath
    ? new Map([...await readSafetensors(fullPath)].map(([n, t]) => [n, t.data as Float32Array]))
    : undefined;
  const k = await kilnGrads(dir, ref.tokens, { auxCoef: ref.aux?.coef, cpu });
  let ok = true;
  const lossRel = Math.abs(k.loss - ref.loss) / Math.abs(ref.loss);
  ok &&= lossRel < 1e-5;
  console.log(`loss kiln ${k.loss} transformers ${ref.loss} rel ${lossRel.toExponential(2)}`);
  const report = (what: string, rows: TensorAgreement[], tol: number) => {
    rows.sort((a, b) => b.values - a.values);
    for (const r of rows.filter((r) => r.values > tol || r.norm > tol)) {
      console.log(
        `  BAD ${what} ${r.name}: values ${r.values.toExponential(2)} norm ${
          r.norm.toExponential(2)
        } sum ${r.sum.toExponential(2)} (rms ${r.rms.toExponential(2)})`,
      );
      ok = false;
    }
    const w = (f: (r: TensorAgreement) => number) => Math.max(...rows.map(f)).toExponential(2);
    console.log(
      `${what}: ${rows.length} tensors, worst values ${w((r) => r.values)} norm ${
        w((r) => r.norm)
      } sum ${w((r) => r.sum)} (of RMS)`,
    );
  };
  report("grad", compareGrads(k.grads, ref.grads, full), 1e-4);
  if (ref.aux) {
    const per = ref.aux.per_layer.map((v, l) => Math.abs(k.auxPerLayer[l] - v) / Math.abs(v));
    const worst = Math.max(...per, k.auxPerLayer.length === per.length ? 0 : Infinity);
    ok &&= worst < 1e-5;
    console.log(
      `aux per layer kiln ${k.auxPerLayer.map((v) => v.toFixed(6))} transformers ${
        ref.aux.per_layer.map((v) => v.toFixed(6))
      } worst rel ${worst.toExponential(2)}; pooled (transformers' loss) ${ref.aux.pooled}`,
    );
    const auxFull = full &&
      new Map([...full].filter(([n]) => n.startsWith("aux:")).map(([n, v]) => [n.slice(4), v]));
    report("aux grad", compareGrads(k.auxGrads!, ref.aux.grads, auxFull), 1e-4);
  }
  console.log(ok ? "OK" : "FAIL");
  return ok ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
