/**
 * Checkpoint tensors into graph parameters: uploading every parameter (MoE
 * experts stacked), refusing non-finite weights by name as they are uploaded,
 * and refusing a checkpoint with tensors the model does not read.
 *
 * @module
 */

import { formatShape } from "../../core/shape.ts";
import { specOf } from "../../models/architectures/mod.ts";
import { buildCausalLM, checkpointSources } from "../../models/causal_lm.ts";
import { expertWeights, moePrefix } from "../../models/architectures/mod.ts";
import type { ModelConfig } from "../../models/config.ts";
import type { Executable } from "../../runtime/executable.ts";
import type { ReadDType } from "../safetensors/mod.ts";
import {
  choiceFormat,
  fitFormat,
  isQuantizeFormat,
  type QuantFormat,
  type QuantizeChoice,
} from "../../core/quant/formats.ts";
import { quantWords } from "../../ops/quant/mod.ts";
import type { WeightFormats } from "../../models/weights.ts";
import { overlay, readWeightBytes, type WeightSource } from "./source.ts";
import { type GgufMix, isGgufMix, mixFormatsByTensor } from "../gguf/quant_mix.ts";

/**
 * Options of {@linkcode loadWeights}.
 *
 * @example
 * ```ts
 * import type { LoadWeightsOptions } from "./weights.ts";
 * const fast: LoadWeightsOptions = { checkFinite: false }; // trusted weights: no scan
 * ```
 */
export interface LoadWeightsOptions {
  /**
   * Refuse a tensor holding NaN or ±Inf (after conversion to the compute
   * dtype) with a RangeError naming it, its count and the first index
   * (default true). The scan runs over each tensor in memory as it is uploaded.
   */
  checkFinite?: boolean;
  /**
   * The graph's quantized parameters and their formats (what it was built
   * with): their tensors are uploaded as blocks — stored blocks as they are,
   * other tensors quantized on the way. Stored blocks are not scanned for
   * non-finite values (their f16 scales are; see `loadQuantized`).
   */
  formats?: WeightFormats;
}

/**
 * Uploads a quantized parameter: each source tensor's blocks (one per stacked
 * expert, in a word-padded slab) into a u32 array of the parameter's shape.
 */
async function loadQuantized(
  exe: Pick<Executable, "setParams">,
  ckpt: WeightSource,
  name: string,
  tensors: readonly string[],
  shape: readonly number[],
  format: QuantFormat,
): Promise<void> {
  const words = new Uint32Array(shape.reduce((a, b) => a * b, 1));
  const bytes = new Uint8Array(words.buffer);
  const slab = words.byteLength / tensors.length;
  for (const [j, t] of tensors.entries()) {
    if (!ckpt.has(t)) throw new TypeError(`${ckpt.path}: missing tensor "${t}"`);
    const info = ckpt.info(t);
    const rows = info.shape.length > 1 ? info.shape.slice(0, -1).reduce((a, b) => a * b, 1) : 1;
    const cols = info.shape[info.shape.length - 1];
    const want = quantWords(format, rows, cols) * 4;
    if (want !== slab) {
      throw new RangeError(
        `${info.file}: tensor "${t}" has shape [${
          info.shape.join(", ")
        }], which is not what "${name}" holds`,
      );
    }
    const b = await readWeightBytes(ckpt, t, format);
    bytes.set(b, j * slab);
  }
  exe.setParams({ [name]: words });
}

/**
 * Which parameters of `cfg`'s model to store quantized: with `quantize`, every
 * Linear weight and embedding in that format (or its fallback for rows that
 * are not whole blocks, see `fitFormat`; `mxfp4_moe`: the experts' w1, w2, w3 in
 * MXFP4, the rest in Q8_0; a llama-quantize mix such as `q4_k_m`: each weight in
 * the type llama-quantize gives its GGUF tensor); else those whose checkpoint tensors
 * are stored in one block format (a GGUF file). MoE experts are quantized all
 * three (w1, w3 alike) or not at all, as the expert kernels read them.
 * `ckpt` may be absent with `quantize` (planning without weights).
 *
 * @example
 * ```ts ignore
 * import { weightFormatsFor } from "./weights.ts";
 * const formats = weightFormatsFor(cfg, await openWeights("mixtral.Q4_K_M.gguf"));
 * ```
 */
export function weightFormatsFor(
  cfg: ModelConfig,
  ckpt: WeightSource | undefined,
  quantize?: QuantizeChoice | GgufMix,
): WeightFormats {
  const graph = buildCausalLM(cfg, { mode: "decode", maxSeq: 1, maxNew: 1 });
  const out: Record<string, QuantFormat> = {};
  // A mix: each weight in the type llama-quantize gives the GGUF tensor holding it.
  const mixed = quantize && isGgufMix(quantize) ? mixFormatsByTensor(cfg, quantize) : undefined;
  for (const [name, src] of checkpointSources(cfg, graph)) {
    const shape = graph.values[graph.params.get(name)!].shape as number[];
    if (shape.length < 2 || src.tensors.length === 0) continue;
    // Latent attention splits kv_b_proj into per-head matrices it multiplies as
    // they are (models/mla.ts), not through a dequantizing product: it stays float.
    if (name.endsWith(".kv_b_proj.weight")) continue;
    const cols = shape[shape.length - 1];
    let f: QuantFormat | undefined;
    if (mixed) {
      const each = src.tensors.map((t) => mixed.get(t));
      const first = each[0];
      if (first && first !== "f32" && first !== "f16" && each.every((x) => x === first)) f = first;
    } else if (quantize) {
      f = fitFormat(choiceFormat(quantize as QuantizeChoice, /\.w[123]$/.test(name)), cols);
    } else {
      const stored = src.tensors.map((t) => ckpt?.has(t) ? ckpt.info(t).format : undefined);
      if (stored.every((x) => x !== undefined && x === stored[0])) f = stored[0];
    }
    if (f !== undefined && cols % 32 === 0 && fitFormat(f, cols) === f) out[name] = f;
  }
  // Expert kernels read w1 and w3 in one format and w2 in one: otherwise all dense.
  // (Ungated experts have no w3 param.)
  for (const name of Object.keys(out)) {
    if (!name.endsWith(".w1")) continue;
    const base = name.slice(0, -3);
    const w3 = graph.params.has(`${base}.w3`) ? out[`${base}.w3`] : out[name];
    if (w3 !== out[name] || out[`${base}.w2`] === undefined) {
      for (const w of ["w1", "w3", "w2"]) delete out[`${base}.${w}`];
    }
  }
  for (const name of Object.keys(out)) {
    if (/\.w[23]$/.test(name) && out[name.replace(/\.w[23]$/, ".w1")] === undefined) {
      delete out[name];
    }
  }
  return out;
}

/**
 * Uploads every graph parameter from the checkpoint, stacking MoE experts.
 * Non-finite values are refused by name (see {@linkcode LoadWeightsOptions}).
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
  exe: Pick<Executable, "graph" | "setParams">,
  cfg: ModelConfig,
  ckpt: WeightSource,
  skip?: (param: string) => boolean,
  options: LoadWeightsOptions = {},
): Promise<void> {
  const checkFinite = options.checkFinite ?? true;
  const graph = exe.graph;
  const sources = checkpointSources(cfg, graph);
  for (const [name, src] of sources) {
    if (skip?.(name)) continue;
    const v = graph.values[graph.params.get(name)!];
    const format = options.formats?.[name];
    if (v.dtype === "u32" && format !== undefined) {
      await loadQuantized(exe, ckpt, name, src.tensors, v.shape as number[], format);
      continue;
    }
    const want = v.shape as number[];
    const n = want.reduce((a, b) => a * b, 1);
    const per = n / src.tensors.length;
    // One tensor uploads as read; stacked experts are joined into one array.
    let out: Float32Array | Float16Array | undefined;
    for (const [j, t] of src.tensors.entries()) {
      if (!ckpt.has(t)) {
        throw new TypeError(
          `${ckpt.path}: missing tensor "${t}" (expected shape ${
            formatShape(src.stacked ? want.slice(1) : want)
          })`,
        );
      }
      const info = ckpt.info(t);
      const found = info.shape.reduce((a, b) => a * b, 1);
      const squeeze = (s: readonly number[]) => s.filter((x) => x !== 1).join(",");
      const expect = src.stacked ? want.slice(1) : want;
      if (found !== per || squeeze(info.shape) !== squeeze(expect)) {
        throw new RangeError(
          `${info.file}: tensor "${t}" has shape ${formatShape(info.shape)}, expected ${
            formatShape(expect)
          }`,
        );
      }
      const as = v.dtype === "f16" ? "f16" : "f32";
      const data = await ckpt.readAs(t, as);
      if (checkFinite) assertFinite(data, info.file, t, info.dtype === "F16" || as === "f32");
      if (src.tensors.length === 1) out = data;
      else {
        out ??= v.dtype === "f16" ? new Float16Array(n) : new Float32Array(n);
        out.set(data, j * per);
      }
    }
    exe.setParams({ [name]: out! });
  }
}

/**
 * Throws a RangeError naming `file`, tensor `name`, how many of its values are
 * NaN or ±Inf and the first index, if any. `stored` false means the values were
 * converted to f16 on the way, where a finite f32 beyond ±65504 becomes ±Inf.
 *
 * @example
 * ```ts
 * import { assertFinite } from "./weights.ts";
 * assertFinite(new Float32Array([1, 2]), "model.safetensors", "model.norm.weight"); // fine
 * ```
 */
export function assertFinite(
  data: Float32Array | Float16Array,
  file: string,
  name: string,
  stored = true,
): void {
  // Exponent bits all ones is NaN or ±Inf. Testing the raw bits measured ~3×
  // faster than a float compare on f32 data (~1.7× on f16): a fraction of a read.
  const f16 = data instanceof Float16Array;
  const bits = f16
    ? new Uint16Array(data.buffer, data.byteOffset, data.length)
    : new Uint32Array(data.buffer, data.byteOffset, data.length);
  const mask = f16 ? 0x7c00 : 0x7f800000;
  let bad = 0, first = -1;
  for (let i = 0; i < bits.length; i++) {
    if ((bits[i] & mask) === mask && bad++ === 0) first = i;
  }
  if (bad > 0) {
    throw new RangeError(
      `${file}: tensor "${name}" has ${bad} non-finite value${bad === 1 ? "" : "s"} ` +
        `(NaN or ±Inf)${stored ? "" : " as f16 (beyond ±65504)"}, first at index ${first}`,
    );
  }
}

/**
 * A view of `ckpt` whose `readAs` refuses non-finite tensors (see
 * {@linkcode assertFinite}): for the expert scheduler and expert parallelism,
 * which read expert weights themselves while they upload them.
 *
 * @example
 * ```ts ignore
 * import { finiteReads } from "./weights.ts";
 * await ExpertScheduler.load(model.prefill, finiteReads(ckpt), plan, prefixes, names, "f32");
 * ```
 */
export function finiteReads<C extends WeightSource>(ckpt: C): C {
  const readAs = async (name: string, dtype: ReadDType) => {
    const data = await ckpt.readAs(name, dtype);
    const info = ckpt.info(name);
    assertFinite(data, info.file, name, info.dtype === "F16" || dtype === "f32");
    return data;
  };
  return overlay(ckpt, { readAs });
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
export function checkUnusedTensors(cfg: ModelConfig, ckpt: WeightSource): void {
  const read = new Set<string>();
  const graph = buildCausalLM(cfg, { mode: "decode", maxSeq: 1, maxNew: 1 });
  for (const src of checkpointSources(cfg, graph).values()) {
    for (const t of src.tensors) read.add(t);
  }
  const head = `${specOf(cfg).layout.lmHead}.weight`;
  // Layers past the last one the model runs (GLM-4.5's multi-token prediction).
  const layers = `${specOf(cfg).layout.layers}.`;
  const extra = (n: string) => {
    const i = n.startsWith(layers) ? Number(n.slice(layers.length).split(".")[0]) : NaN;
    return i >= cfg.layers && i < cfg.layers + (cfg.extraLayers ?? 0);
  };
  const ignored = specOf(cfg).ignoredTensors;
  const unused = [...ckpt.tensors.keys()].filter((n) =>
    !read.has(n) && !n.endsWith(".rotary_emb.inv_freq") && !(cfg.tieEmbeddings && n === head) &&
    !extra(n) && !ignored?.test(n)
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

/**
 * One format for every MoE layer's w1/w3 and one for every w2 (the most
 * common), as a shared expert slot pool holds them: layers stored otherwise
 * (llama.cpp's Q4_K_M keeps some `ffn_down` in Q6_K) are requantized as they
 * load. Layers with dense experts stay dense only if all are. Kiln does not write
 * the IQ2 and IQ1 lattice formats, so when the most common one is such a format
 * and the layers differ, the pool holds Q2_K, of about as many bits, and every
 * layer is requantized to it.
 *
 * @example
 * ```ts ignore
 * const formats = unifyExpertFormats(cfg, weightFormatsFor(cfg, ckpt));
 * ```
 */
export function unifyExpertFormats(cfg: ModelConfig, formats: WeightFormats): WeightFormats {
  const prefixes = cfg.pattern.flatMap((p, i) => (p.ffn === "moe" ? [moePrefix(cfg, i)] : []));
  const out: Record<string, QuantFormat> = { ...formats };
  const common = (w: string) => {
    const count = new Map<QuantFormat | undefined, number>();
    for (const p of prefixes) {
      count.set(formats[`${p}.${w}`], (count.get(formats[`${p}.${w}`]) ?? 0) + 1);
    }
    return [...count].sort((a, b) => b[1] - a[1])[0]?.[0];
  };
  // The pool of w1 holds w3 too: both must be stored in a read-only format to keep it.
  const writable = (ws: string[], f: QuantFormat | undefined) => {
    if (f === undefined || isQuantizeFormat(f)) return f;
    const mixed = prefixes.some((p) => ws.some((w) => formats[`${p}.${w}`] !== f));
    if (!mixed) return f;
    return "q2_k";
  };
  const gated = expertWeights(cfg).includes("w3");
  const f1 = writable(gated ? ["w1", "w3"] : ["w1"], common("w1"));
  const f2 = writable(["w2"], common("w2"));
  for (const p of prefixes) {
    for (const w of ["w1", "w3", "w2"]) delete out[`${p}.${w}`];
    if (f1 !== undefined && f2 !== undefined) {
      Object.assign(out, { [`${p}.w1`]: f1, [`${p}.w2`]: f2 }, gated ? { [`${p}.w3`]: f1 } : {});
    }
  }
  return out;
}
