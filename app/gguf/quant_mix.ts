/**
 * llama-quantize's mixed file types (`Q4_K_M`, `Q3_K_S`, `IQ3_M`…): a base
 * block format, with some tensors in more bits as `llama_tensor_get_type`
 * (llama.cpp `src/llama-quant.cpp`) picks them without an importance matrix —
 * the output head in Q6_K, `attn_v` and `ffn_down` of the first, last and
 * every third layer in Q6_K for `_M`, Q8_0 `attn_v`/`attn_k` and Q5_K
 * `attn_output` for eight-expert models, and so on. The plain `--type q4_k`
 * stays one format throughout (llama-quantize's `--pure`).
 *
 * Only the mixes whose every tensor type Kiln writes are offered. `IQ2_XXS`,
 * `IQ2_XS`, `IQ2_S` and `IQ2_M` (Q2_K — `_S`/`_M`: IQ3_S — embeddings and early
 * `ffn_down`, Q5_K output, Q4_K `attn_v` with experts or grouped attention;
 * llama.cpp's IQ2_S mix is mostly IQ2_XS tensors, its IQ2_M mostly IQ2_S) and
 * `IQ1_S`/`IQ1_M` (IQ2_XXS `attn_output`), and `Q2_K_S` (Q2_K with Q4_K early
 * `ffn_down` and grouped-attention `attn_v`) need an importance matrix, as in
 * llama-quantize; `IQ3_XXS`'s `IQ2_S` attention is not offered. Checked
 * against llama-quantize itself on tiny checkpoints of every architecture
 * (`tests/quant_mix_test.ts`; the IQ2 mixes with a matrix,
 * `tests/quant_imatrix_test.ts`).
 *
 * @module
 */

import type { QuantFormat } from "../../core/quant/formats.ts";
import { fitFormat, GGML_TYPES, IMATRIX_ONLY_FORMATS } from "../../core/quant/formats.ts";
import type { ModelConfig } from "../../models/config.ts";
import type { GgufTensorPlan } from "./arch_names.ts";
import { ggufArchOf, ggufWrittenPlans } from "./arch_names.ts";

/**
 * llama-quantize's mixed types Kiln writes, by their llama.cpp names in lower case.
 *
 * @example
 * ```ts
 * import { GGUF_MIXES } from "./quant_mix.ts";
 * GGUF_MIXES.includes("q4_k_m"); // true
 * ```
 */
export const GGUF_MIXES = [
  "q3_k_s",
  "q3_k_m",
  "q3_k_l",
  "q4_k_s",
  "q4_k_m",
  "q5_k_s",
  "q5_k_m",
  "iq3_xs",
  "iq3_m",
  "iq2_xxs",
  "iq2_xs",
  "iq2_s",
  "iq2_m",
  "iq1_s",
  "iq1_m",
  "q2_k_s",
] as const;

/**
 * One of {@linkcode GGUF_MIXES}.
 *
 * @example
 * ```ts
 * import type { GgufMix } from "./quant_mix.ts";
 * const m: GgufMix = "q4_k_m";
 * ```
 */
export type GgufMix = typeof GGUF_MIXES[number];

/**
 * Each mix's base format (llama-quantize's `default_type`).
 *
 * @example
 * ```ts
 * import { MIX_BASE } from "./quant_mix.ts";
 * MIX_BASE.iq3_m; // "iq3_s"
 * ```
 */
export const MIX_BASE: Readonly<Record<GgufMix, QuantFormat>> = {
  q3_k_s: "q3_k",
  q3_k_m: "q3_k",
  q3_k_l: "q3_k",
  q4_k_s: "q4_k",
  q4_k_m: "q4_k",
  q5_k_s: "q5_k",
  q5_k_m: "q5_k",
  iq3_xs: "iq3_s",
  iq3_m: "iq3_s",
  iq2_xxs: "iq2_xxs",
  iq2_xs: "iq2_xs",
  // llama.cpp's names: the IQ2_S mix is mostly IQ2_XS, the IQ2_M mix IQ2_S.
  iq2_s: "iq2_xs",
  iq2_m: "iq2_s",
  iq1_s: "iq1_s",
  iq1_m: "iq1_m",
  q2_k_s: "q2_k",
};

/**
 * The mixes written only with an importance matrix (as llama-quantize writes them).
 *
 * @example
 * ```ts
 * import { IMATRIX_MIXES } from "./quant_mix.ts";
 * IMATRIX_MIXES.includes("iq2_m"); // true
 * ```
 */
export const IMATRIX_MIXES: readonly GgufMix[] = [
  "iq2_xxs",
  "iq2_xs",
  "iq2_s",
  "iq2_m",
  "iq1_s",
  "iq1_m",
  "q2_k_s",
];

/**
 * Whether llama-quantize refuses to write the GGUF tensor `name` in `format`
 * (file type `type`) without an importance matrix entry for it: the IQ2
 * formats and IQ1_S always, IQ1_M but for the embeddings and output, and Q2_K
 * in the `Q2_K_S` mix but for the embeddings ("the result will be garbage").
 *
 * @example
 * ```ts
 * import { needsImportance } from "./quant_mix.ts";
 * needsImportance("iq1_m", "blk.0.ffn_up.weight", "iq1_m"); // true
 * needsImportance("q2_k", "token_embd.weight", "q2_k_s"); // false
 * ```
 */
export function needsImportance(format: string, name: string, type: string): boolean {
  if ((IMATRIX_ONLY_FORMATS as readonly string[]).includes(format)) return true;
  if (format === "iq1_m") return name !== "token_embd.weight" && name !== "output.weight";
  return format === "q2_k" && type === "q2_k_s" && name !== "token_embd.weight";
}

/**
 * Whether `type` names a mix.
 *
 * @example
 * ```ts
 * import { isGgufMix } from "./quant_mix.ts";
 * isGgufMix("q4_k_m"); // true
 * isGgufMix("q4_k"); // false
 * ```
 */
export function isGgufMix(type: string): type is GgufMix {
  return (GGUF_MIXES as readonly string[]).includes(type);
}

/** llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third between. */
const moreBits = (i: number, n: number) =>
  i < Math.trunc(n / 8) || i >= Math.trunc((7 * n) / 8) ||
  (i - Math.trunc(n / 8)) % 3 === 2;

/**
 * llama-quantize's `--output-tensor-type` and `--token-embedding-type`: the
 * type of `output.weight` and of `token_embd.weight`, in place of the one the
 * file type picks.
 *
 * @example
 * ```ts
 * import type { TensorTypeOverrides } from "./quant_mix.ts";
 * const bartowskiL: TensorTypeOverrides = { output: "q8_0", embedding: "q8_0" };
 * ```
 */
export interface TensorTypeOverrides {
  /** `output.weight`'s type (in a mix, a tied model's `token_embd.weight` too). */
  readonly output?: QuantFormat | "f32" | "f16";
  /** `token_embd.weight`'s type. */
  readonly embedding?: QuantFormat | "f32" | "f16";
}

/**
 * The type of each of `plans` after llama-quantize's last step: `output.weight`
 * and `token_embd.weight` take the types `overrides` names, with no fallback
 * (a row that is not whole blocks of it is a RangeError naming the tensor, where
 * ggml would abort).
 *
 * @example
 * ```ts ignore
 * import { applyTypeOverrides } from "./quant_mix.ts";
 * applyTypeOverrides(plans, types, { output: "q8_0" });
 * ```
 */
export function applyTypeOverrides<T extends string>(
  plans: readonly GgufTensorPlan[],
  types: readonly T[],
  overrides: TensorTypeOverrides,
): (T | QuantFormat | "f32" | "f16")[] {
  return plans.map((p, i) => {
    const t = p.name === "token_embd.weight"
      ? overrides.embedding
      : p.name === "output.weight"
      ? overrides.output
      : undefined;
    if (t === undefined) return types[i];
    const cols = p.shape[p.shape.length - 1];
    if (cols % GGML_TYPES[t].blockElems !== 0) {
      throw new RangeError(
        `quantize: tensor ${p.name} has rows of ${cols} values, not whole ${
          GGML_TYPES[t].blockElems
        }-value blocks of ${t}; choose another ${
          p.name === "output.weight" ? "--output-tensor-type" : "--token-embedding-type"
        }`,
      );
    }
    return t;
  });
}

/**
 * The format of each of `plans` (in file order, as llama-quantize walks them)
 * in the mixed type `mix` for a model of (parsed) config `cfg`; tensors
 * llama.cpp keeps f32 stay f32, and rows that are not whole blocks of the
 * chosen format fall back as llama-quantize falls back (`fitFormat`, f16 last).
 *
 * @example
 * ```ts ignore
 * import { ggufTensorsFromHf } from "./arch_convert.ts";
 * import { mixTensorTypes } from "./quant_mix.ts";
 * const plans = ggufTensorsFromHf(config, ckpt.tensors);
 * mixTensorTypes(plans, "q4_k_m", parseConfig(config)); // ["q4_k", "f32", …, "q6_k"]
 * ```
 */
export function mixTensorTypes(
  plans: readonly GgufTensorPlan[],
  mix: GgufMix,
  cfg: ModelConfig,
  overrides: TensorTypeOverrides = {},
): (QuantFormat | "f32" | "f16")[] {
  const arch = ggufArchOf(cfg);
  const base = MIX_BASE[mix];
  const nLayer = cfg.layers;
  // hparams.n_expert as the GGUF states it (Jamba's default 16), and n_gqa() of layer 0.
  const nExpertRaw = cfg.moe?.experts ?? (arch === "jamba" ? 16 : 0);
  const nExpert = Math.max(1, nExpertRaw);
  const a = cfg.attention;
  const gqa = a && cfg.pattern[0]?.mixer === "attention" ? Math.trunc(a.heads / a.kvHeads) : 0;
  const is70B = arch === "llama" && nExpertRaw !== 8 && nLayer === 80 && a !== undefined &&
    a.heads !== a.kvHeads;
  const hasOutput = plans.some((p) => p.name === "output.weight");
  const nWv = plans.filter((p) => /attn_v\.weight|attn_qkv\.weight|attn_kv_b\.weight/.test(p.name))
    .length;
  let iWv = 0;
  const counters = { ffn_down: 0, ffn_gate: 0, ffn_up: 0 };
  // llama.cpp's layer_info: with experts the layer is read from the name, else counted.
  const layerOf = (name: string, kind: keyof typeof counters): number => {
    if (nExpert <= 1) return counters[kind];
    const m = /^blk\.(\d+)\./.exec(name);
    if (!m) throw new RangeError(`quantize: cannot tell the layer of tensor "${name}"`);
    return Number(m[1]);
  };
  const is = (...m: GgufMix[]) => m.includes(mix);
  const iq2 = is("iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "iq1_s", "iq1_m");
  // The IQ2_S/IQ2_M mixes keep their more important tensors in IQ3_S, the others in Q2_K.
  const iq2Up: QuantFormat = is("iq2_s", "iq2_m") ? "iq3_s" : "q2_k";

  const types = plans.map((p) => {
    if (p.keepF32) return "f32";
    const name = p.name;
    const nx = p.shape[p.shape.length - 1];
    let t: QuantFormat = base;
    if (name === "output.weight" || (!hasOutput && name === "token_embd.weight")) {
      // llama_tensor_get_type: --output-tensor-type replaces the pick, the fallback stays.
      const o = overrides.output;
      if (o === "f32" || o === "f16") return o;
      t = o ?? (nx % GGML_TYPES[base].blockElems !== 0 ? "q8_0" : iq2 ? "q5_k" : "q6_k");
    } else if (name === "token_embd.weight") {
      const e = overrides.embedding;
      if (e === "f32" || e === "f16") return e;
      if (e) t = e;
      else if (iq2) t = iq2Up;
    } else if (iq2) {
      // The IQ2 mixes' own rules, in place of the others (ffn_down counted, not by layer).
      if (name.includes("attn_v.weight")) {
        t = gqa >= 4 || nExpertRaw >= 4 ? "q4_k" : iq2Up;
        iWv++;
      } else if (nExpertRaw === 8 && name.includes("attn_k.weight")) t = "q4_k";
      else if (name.includes("ffn_down")) {
        if (counters.ffn_down < Math.trunc(nLayer / 8)) t = iq2Up;
        counters.ffn_down++;
      } else if (name.includes("attn_output.weight")) {
        if (nExpertRaw === 8) t = "q5_k";
        else if (is("iq2_s", "iq2_m")) t = "iq3_s";
        else if (is("iq1_s", "iq1_m")) t = "iq2_xxs";
      }
    } else if (name.includes("attn_v.weight")) {
      if (is("q2_k_s", "iq3_xs") && gqa >= 4) t = "q4_k";
      else if (is("iq3_m")) t = "q4_k";
      else if (is("q3_k_m")) t = iWv < 2 ? "q5_k" : "q4_k";
      else if (is("q3_k_l")) t = "q5_k";
      else if (is("q4_k_m", "q5_k_m") && moreBits(iWv, nWv)) t = "q6_k";
      else if (is("q4_k_s") && iWv < 4) t = "q5_k";
      if (is70B && (t === "q3_k" || t === "q4_k")) t = "q5_k";
      if (nExpertRaw === 8) t = "q8_0";
      iWv++;
    } else if (name.includes("attn_k.weight")) {
      if (nExpertRaw === 8) t = "q8_0";
      else if (is("iq3_xs")) t = "iq3_xxs";
    } else if (name.includes("attn_q.weight")) {
      if (is("iq3_xs")) t = "iq3_xxs";
    } else if (name.includes("ffn_down")) {
      const i = layerOf(name, "ffn_down"), n = nLayer;
      if (is("q2_k_s")) {
        if (i < Math.trunc(n / 8)) t = "q4_k";
      } else if (is("q3_k_m")) t = i < Math.trunc(n / 16) ? "q5_k" : "q4_k";
      else if (is("iq3_m") && (i < Math.trunc(n / 8) || (nExpertRaw === 8 && moreBits(i, n)))) {
        t = "q4_k";
      } else if (is("q3_k_l")) t = "q5_k";
      else if (is("q4_k_m")) {
        if (moreBits(i, n)) t = "q6_k";
      } else if (is("q5_k_m") && moreBits(i, n)) t = "q6_k";
      else if (is("q4_k_s") && i < Math.trunc(n / 8)) t = "q5_k";
      counters.ffn_down++;
    } else if (name.includes("attn_output.weight")) {
      if (nExpertRaw === 8) {
        if (is("q3_k_s", "q3_k_m", "q4_k_s", "q4_k_m", "iq3_xs", "iq3_m")) t = "q5_k";
      } else if (is("q3_k_m", "iq3_m")) t = "q4_k";
      else if (is("q3_k_l")) t = "q5_k";
    } else if (name.includes("attn_qkv.weight")) {
      if (is("q3_k_m", "q3_k_l", "iq3_m")) t = "q4_k";
      else if (is("q4_k_m")) t = "q5_k";
      else if (is("q5_k_m")) t = "q6_k";
    } else if (name.includes("ffn_gate") || name.includes("ffn_up")) {
      const kind = name.includes("ffn_gate") ? "ffn_gate" : "ffn_up";
      const i = layerOf(name, kind), n = nLayer;
      if (is("iq3_xs") && i >= Math.trunc(n / 8) && i < Math.trunc((7 * n) / 8)) t = "iq3_xxs";
      counters[kind]++;
    }
    return fitFormat(t, nx) ?? "f16";
  });
  return applyTypeOverrides(plans, types, overrides);
}

/**
 * The format of each Hugging Face tensor of a `cfg` model under the mix `mix`:
 * the type llama-quantize would give the GGUF tensor holding it (stacked
 * experts share their GGUF tensor's); quantize-on-load stores each weight so.
 *
 * @example
 * ```ts ignore
 * import { mixFormatsByTensor } from "./quant_mix.ts";
 * mixFormatsByTensor(cfg, "q4_k_m").get("lm_head.weight"); // "q6_k"
 * ```
 */
export function mixFormatsByTensor(
  cfg: ModelConfig,
  mix: GgufMix,
): Map<string, QuantFormat | "f32" | "f16"> {
  const plans = ggufWrittenPlans(cfg);
  const types = mixTensorTypes(plans, mix, cfg);
  const out = new Map<string, QuantFormat | "f32" | "f16">();
  // A tied Qwen2-MoE/OLMoE's output copy comes last: the embedding keeps token_embd's type.
  plans.forEach((p, i) => {
    for (const src of p.sources) if (!out.has(src)) out.set(src, types[i]);
  });
  return out;
}

/**
 * The first GGUF tensor of a `cfg` model that the mix `mix` stores in a format
 * {@linkcode needsImportance} says needs a matrix entry, and `has` (the
 * matrix's entries) lacks; undefined when the matrix covers them all.
 *
 * @example
 * ```ts ignore
 * import { lackingImportance } from "./quant_mix.ts";
 * lackingImportance(cfg, "iq1_m", (n) => imatrix.entries.has(n)); // "blk.0.ffn_up.weight"?
 * ```
 */
export function lackingImportance(
  cfg: ModelConfig,
  mix: GgufMix,
  has: (tensor: string) => boolean,
): string | undefined {
  const plans = ggufWrittenPlans(cfg);
  const i = firstLacking(plans, mixTensorTypes(plans, mix, cfg), mix, has);
  return i < 0 ? undefined : plans[i].name;
}

/**
 * The index of the first of `plans` (stored in `types`, file type `type`) that
 * {@linkcode needsImportance} says needs a matrix entry and `has` lacks, or −1.
 *
 * @example
 * ```ts ignore
 * import { firstLacking } from "./quant_mix.ts";
 * firstLacking(plans, types, "iq2_xs", (n) => imatrix.entries.has(n)); // -1: all covered
 * ```
 */
export function firstLacking(
  plans: readonly GgufTensorPlan[],
  types: readonly string[],
  type: string,
  has: (tensor: string) => boolean,
): number {
  return plans.findIndex((p, i) => needsImportance(types[i], p.name, type) && !has(p.name));
}
