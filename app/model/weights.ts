/**
 * Checkpoint tensors into graph parameters: uploading every parameter (MoE
 * experts stacked), and refusing a checkpoint with tensors the model does not
 * read.
 *
 * @module
 */

import { formatShape } from "../../core/shape.ts";
import { specOf } from "../../models/architectures/mod.ts";
import { buildCausalLM, checkpointSources } from "../../models/causal_lm.ts";
import type { ModelConfig } from "../../models/config.ts";
import type { Executable } from "../../runtime/executable.ts";
import type { Checkpoint } from "../safetensors/mod.ts";

/**
 * Uploads every graph parameter from the checkpoint, stacking MoE experts.
 *
 * @example
 * ```ts ignore
 * import { buildCausalLM, Checkpoint, compile, loadWeights, readConfig, requestDevice } from "@kiln/kiln";
 * const cfg = await readConfig("./mamba-130m-hf");
 * const exe = compile(buildCausalLM(cfg, { mode: "prefill", maxSeq: 256, maxNew: 32 }), await requestDevice());
 * const ckpt = await Checkpoint.open("./mamba-130m-hf");
 * await loadWeights(exe, cfg, ckpt);
 * ckpt.close();
 * ```
 */
export async function loadWeights(
  exe: Executable,
  cfg: ModelConfig,
  ckpt: Checkpoint,
  skip?: (param: string) => boolean,
): Promise<void> {
  const graph = exe.graph;
  const sources = checkpointSources(cfg, graph);
  for (const [name, src] of sources) {
    if (skip?.(name)) continue;
    const v = graph.values[graph.params.get(name)!];
    const want = v.shape as number[];
    const n = want.reduce((a, b) => a * b, 1);
    const per = n / src.tensors.length;
    const out = v.dtype === "f16" ? new Float16Array(n) : new Float32Array(n);
    for (const [j, t] of src.tensors.entries()) {
      if (!ckpt.has(t)) {
        throw new TypeError(
          `${ckpt.path}: missing tensor "${t}" (expected shape ${
            formatShape(src.tensors.length > 1 ? want.slice(1) : want)
          })`,
        );
      }
      const info = ckpt.info(t);
      const found = info.shape.reduce((a, b) => a * b, 1);
      const squeeze = (s: readonly number[]) => s.filter((x) => x !== 1).join(",");
      const expect = src.tensors.length > 1 ? want.slice(1) : want;
      if (found !== per || squeeze(info.shape) !== squeeze(expect)) {
        throw new RangeError(
          `${info.file}: tensor "${t}" has shape ${formatShape(info.shape)}, expected ${
            formatShape(expect)
          }`,
        );
      }
      out.set(await ckpt.readAs(t, v.dtype === "f16" ? "f16" : "f32"), j * per);
    }
    exe.setParams({ [name]: out });
  }
}

/**
 * Refuses a checkpoint holding tensors the config's model does not read: they
 * mean config.json describes another model (a bias, a norm or a layer it does
 * not declare), and ignoring them would give wrong logits without a word.
 * Rotary caches (`rotary_emb.inv_freq`) and a stored copy of a tied LM head are
 * buffers, not parameters, and are skipped as transformers skips them.
 *
 * @example
 * ```ts ignore
 * import { checkUnusedTensors } from "./weights.ts";
 * const ckpt = await Checkpoint.open("./Mixtral-8x7B-v0.1");
 * checkUnusedTensors(await readConfig("./Mixtral-8x7B-v0.1"), ckpt); // TypeError naming strays
 * ```
 */
export function checkUnusedTensors(cfg: ModelConfig, ckpt: Checkpoint): void {
  const read = new Set<string>();
  const graph = buildCausalLM(cfg, { mode: "decode", maxSeq: 1, maxNew: 1 });
  for (const src of checkpointSources(cfg, graph).values()) {
    for (const t of src.tensors) read.add(t);
  }
  const head = `${specOf(cfg).layout.lmHead}.weight`;
  const unused = [...ckpt.tensors.keys()].filter((n) =>
    !read.has(n) && !n.endsWith(".rotary_emb.inv_freq") && !(cfg.tieEmbeddings && n === head)
  );
  if (unused.length > 0) {
    const shown = unused.slice(0, 3).map((n) => JSON.stringify(n)).join(", ");
    throw new TypeError(
      `${ckpt.path}: ${unused.length} tensor(s) that ${cfg.architecture} as configured does not use ` +
        `(${shown}${
          unused.length > 3 ? ", …" : ""
        }); config.json does not describe this checkpoint`,
    );
  }
}
