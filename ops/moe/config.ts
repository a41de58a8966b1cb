/**
 * The shape of one MoE layer as its kernels see it: sizes, router semantics,
 * the GEMM register tile, expert capacity, the kernel sequences (paths), the
 * roles of their kernels and the scratch buffers each path needs.
 *
 * @module
 */

import { GGML_TYPES, isQuantFormat, type QuantFormat } from "../../core/quant/formats.ts";

/**
 * Router variants.
 *
 * @example
 * ```ts
 * import { GraphBuilder, moe, type MoeRouterKind } from "@kiln/kiln";
 * const router: MoeRouterKind = "sigmoid_bias"; // DeepSeek-V3
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 64]);
 * g.output("y", moe(g, x, { name: "moe", experts: 8, topK: 2, ff: 128, router }).y);
 * ```
 */
export type MoeRouterKind = "softmax_topk" | "sigmoid_bias" | "softmax_bias" | "switch";

/**
 * Whether a router kind chooses experts by its scores plus a selection bias
 * `[E]` (an extra input): `sigmoid_bias` (DeepSeek-V3: sigmoid affinities)
 * and `softmax_bias` (ERNIE 4.5: softmax probabilities). The weights come
 * from the unbiased scores either way.
 *
 * @example
 * ```ts
 * import { routerHasBias } from "./config.ts";
 * routerHasBias("softmax_bias"); // true
 * routerHasBias("softmax_topk"); // false
 * ```
 */
export function routerHasBias(router: string): boolean {
  return router === "sigmoid_bias" || router === "softmax_bias";
}

/**
 * The experts' gated activation `act(a, b)` of the gate projection `a` and the
 * up projection `b`: `"swiglu"` (Mixtral and most MoEs) is `silu(a) · b`;
 * `"geglu"` is `gelu(a) · b` with the exact (erf) GELU, `"geglu_tanh"` with
 * its tanh approximation, `"reglu"` is `relu(a) · b` (what a Hugging Face
 * config's `hidden_act` of `gelu`, `gelu_pytorch_tanh` / `gelu_new` and
 * `relu` make of its experts), `"quick_geglu"` is `a·σ(1.702·a) · b` (HF
 * `quick_gelu`); `"swiglu_oai"` (OpenAI's GPT-OSS) clamps
 * first, `g = min(a, limit)`, `u = clamp(b, −limit, limit)`, then
 * `(u + 1) · g · σ(alpha · g)`. `"relu2"` (Nemotron-H's experts) is not gated:
 * `relu(a)²` of the up projection alone, held in W1; W3 is never read (pass
 * W1 again), see {@linkcode moeGated}.
 *
 * @example
 * ```ts
 * import { GraphBuilder, moe, type MoeActivation } from "@kiln/kiln";
 * const activation: MoeActivation = "swiglu_oai"; // GPT-OSS
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 64]);
 * g.output("y", moe(g, x, { name: "moe", experts: 8, topK: 2, ff: 128, activation }).y);
 * ```
 */
export type MoeActivation =
  | "swiglu"
  | "swiglu_oai"
  | "geglu"
  | "geglu_tanh"
  | "reglu"
  | "quick_geglu"
  | "relu2";

/**
 * Register tile of the expert GEMMs.
 *
 * @example
 * ```ts
 * import type { MoeTile } from "./config.ts";
 * const tile: MoeTile = { rows: 4, cols1: 4, cols2: 8, wgSize: 64, vecAccum: false };
 * ```
 */
export interface MoeTile {
  /** Rows per invocation, which is also the row-tile height experts are padded to. */
  readonly rows: number;
  /** Output columns (of ff) per invocation in GEMM 1 (each computes W1 and W3 columns). */
  readonly cols1: number;
  /** Output columns (of d) per invocation in GEMM 2. */
  readonly cols2: number;
  /** Invocations per workgroup of the GEMMs. */
  readonly wgSize: number;
  /** Accumulate in vec4 registers and reduce once after the K loop (vs. `dot` per step). */
  readonly vecAccum: boolean;
}

/**
 * Shape and semantics of one MoE layer.
 *
 * @example
 * ```ts
 * import type { MoeConfig } from "./config.ts";
 * const mixtral: MoeConfig = { T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" };
 * ```
 */
export interface MoeConfig {
  /** Tokens (baked in). */
  readonly T: number;
  /** Model width. */
  readonly d: number;
  /** Expert hidden width (intermediate size). */
  readonly ff: number;
  /** Number of routed experts. */
  readonly E: number;
  /** Experts per token. */
  readonly k: number;
  /** Router kind. */
  readonly router: MoeRouterKind;
  /**
   * `softmax_topk`, `softmax_bias` and `sigmoid_bias`: renormalise the k
   * weights to sum 1 (Mixtral, DeepSeek-V3, GLM-4.5, ERNIE 4.5: true;
   * Qwen2-MoE: false). Default true.
   */
  readonly normTopk?: boolean;
  /** Every router but `switch`: factor on the (renormalised) weights (DeepSeek's `routed_scaling_factor`). Default 1. */
  readonly routedScaling?: number;
  /**
   * Group-limited routing (DeepSeek's `n_group`). The E experts form this many
   * equal groups of consecutive indices, each scored by the sum of its two best
   * selection scores (`sigmoid_bias`, DeepSeek-V3) or its best probability
   * (`softmax_topk`, DeepSeek-V2's `group_limited_greedy`); only the experts of
   * the best {@linkcode MoeConfig.groupsKept} groups can be chosen. Default 1.
   */
  readonly groups?: number;
  /** Groups kept (DeepSeek-V3's `topk_group`), 1..groups. Default: all of them. */
  readonly groupsKept?: number;
  /** Capacity factor; undefined (default) means dropless. See {@linkcode moeCapacity}. */
  readonly capacityFactor?: number;
  /** Storage type of W1, W3, W2 (router and activations stay f32). Default "f32". */
  readonly weightDtype?: "f32" | "f16";
  /**
   * W1, W3 and W2 hold llama.cpp blocks of this format (u32 words, one padded
   * slab per expert) and are dequantized as they are read; `weightDtype` is
   * then ignored.
   */
  readonly weightFormat?: QuantFormat;
  /**
   * W2's block format when it differs from W1/W3's (llama.cpp's Q4_K_M keeps
   * some `ffn_down` in Q6_K). Default: `weightFormat`.
   */
  readonly w2Format?: QuantFormat;
  /** Override of the GEMM register tile. */
  readonly tile?: Partial<MoeTile>;
  /** The experts' activation (default `"swiglu"`). */
  readonly activation?: MoeActivation;
  /** `swiglu_oai`: scale inside the sigmoid (default 1.702, GPT-OSS's). */
  readonly alpha?: number;
  /** `swiglu_oai`: clamp of the gate (above) and the up projection (both sides); default 7. */
  readonly limit?: number;
  /**
   * Per-expert f32 biases on the three projections, `b1`, `b3 [E, ff]` and
   * `b2 [E, d]`, indexed by expert (never by slot: they are always resident).
   * Default false.
   */
  readonly expertBias?: boolean;
}

/**
 * {@linkcode MoeConfig} with every default filled in and checked.
 *
 * @example
 * ```ts
 * import { resolveMoeConfig, type ResolvedMoeConfig } from "./config.ts";
 * const c: ResolvedMoeConfig = resolveMoeConfig({ T: 8, d: 16, ff: 32, E: 4, k: 1, router: "switch" });
 * ```
 */
export interface ResolvedMoeConfig
  extends Required<Omit<MoeConfig, "capacityFactor" | "tile" | "weightFormat" | "w2Format">> {
  /** Block format of W1 and W3, or undefined for f32/f16 weights. */
  readonly weightFormat: QuantFormat | undefined;
  /** Block format of W2 (set exactly when `weightFormat` is). */
  readonly w2Format: QuantFormat | undefined;
  /** Capacity factor or undefined for dropless. */
  readonly capacityFactor: number | undefined;
  /** GEMM register tile. */
  readonly tile: MoeTile;
  /** Per-expert capacity (`MOE_NONE` when dropless). */
  readonly capacity: number;
  /** Upper bound on the number of row tiles after padding. */
  readonly tilesMax: number;
  /** `tilesMax · tile.rows`: rows of the expert-sorted buffers. */
  readonly rowsMax: number;
}

/**
 * GPT-OSS's `swiglu_oai` constants (transformers `GptOssExperts`): the
 * defaults of {@linkcode MoeConfig.alpha} and {@linkcode MoeConfig.limit}.
 *
 * @example
 * ```ts
 * import { MOE_OAI_DEFAULTS } from "./config.ts";
 * MOE_OAI_DEFAULTS.limit; // 7
 * ```
 */
export const MOE_OAI_DEFAULTS: { readonly alpha: number; readonly limit: number } = {
  alpha: 1.702,
  limit: 7,
};

/**
 * The activations `moe` accepts.
 *
 * @example
 * ```ts
 * import { MOE_ACTIVATIONS } from "./config.ts";
 * MOE_ACTIVATIONS.includes("swiglu_oai"); // true
 * ```
 */
export const MOE_ACTIVATIONS: readonly MoeActivation[] = [
  "swiglu",
  "swiglu_oai",
  "geglu",
  "geglu_tanh",
  "reglu",
  "quick_geglu",
  "relu2",
];

/**
 * Whether the experts' activation is gated, `act(W1·x, W3·x)` (every kind but
 * `"relu2"`). An ungated layer's kernels read W1 alone: its `w3` operand is
 * never bound, so the caller passes W1 there and nothing is stored twice.
 *
 * @example
 * ```ts
 * import { moeGated } from "./config.ts";
 * [moeGated("swiglu"), moeGated("relu2")]; // [true, false]
 * ```
 */
export function moeGated(activation: MoeActivation): boolean {
  return activation !== "relu2";
}

/**
 * `0xFFFFFFFF`: "no expert / no row" marker in the index buffers.
 *
 * @example
 * ```ts
 * import { MOE_NONE } from "./config.ts";
 * MOE_NONE === 2 ** 32 - 1; // true
 * ```
 */
export const MOE_NONE = 0xffffffff;

/**
 * Which kernel sequence a layer runs: `"prefill"` (router, sort, grouped GEMMs,
 * combine), `"decode"` (router, GEMVs over the chosen experts) or `"dense"`
 * (every token through every expert, a benchmark baseline).
 *
 * @example
 * ```ts
 * import type { MoePath } from "./config.ts";
 * const path: MoePath = "decode";
 * ```
 */
export type MoePath = "prefill" | "decode" | "dense";

/**
 * The steps of the MoE kernel sequences, one per kernel (`KernelSource.role`):
 * tools and schedulers find a step by it (the expert scheduler uploads a
 * layer's experts right before its `"router"` kernel).
 *
 * @example
 * ```ts
 * import { MOE_ROLES } from "./config.ts";
 * MOE_ROLES.includes("router"); // true
 * ```
 */
export const MOE_ROLES = [
  "router",
  "sort",
  "gemm1",
  "gemm2",
  "combine",
  "decode_gemv1",
  "decode_gemv2",
  "dense_gemm1",
  "dense_gemm2",
  "aux",
  "empty",
] as const;

/**
 * One step of a MoE kernel sequence (see {@linkcode MOE_ROLES}).
 *
 * @example
 * ```ts
 * import type { MoeRole } from "./config.ts";
 * const role: MoeRole = "router";
 * ```
 */
export type MoeRole = typeof MOE_ROLES[number];

/**
 * Expert capacity for a capacity factor, or `undefined` when dropless.
 *
 * `C = min(T, floor(capacityFactor · T · k / E))`. This follows Mesh-TensorFlow's
 * `transformer_moe_layer_v1` (`min(group_size, int(group_size · cf / E))`, i.e.
 * truncation, as used by Switch Transformer), with `T · k` in place of the group
 * size so that `cf = 1` means "exactly balanced" for every k (identical to
 * Mesh-TF for k = 1). An expert gets at most one slot per token, hence `min(T, ·)`.
 *
 * @example
 * ```ts
 * import { moeCapacity } from "./config.ts";
 * moeCapacity(512, 2, 8, 1.25); // 160
 * ```
 */
export function moeCapacity(
  T: number,
  k: number,
  E: number,
  capacityFactor: number | undefined,
): number | undefined {
  if (capacityFactor === undefined) return undefined;
  return Math.min(T, Math.floor((capacityFactor * T * k) / E));
}

function posInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) {
    throw new RangeError(`MoE ${name} must be a positive integer: received ${v}`);
  }
}

function largestDivisor(n: number, candidates: readonly number[]): number {
  for (const c of candidates) if (n % c === 0) return c;
  return 1;
}

/**
 * Fills defaults and validates a {@linkcode MoeConfig}.
 *
 * @example
 * ```ts
 * import { resolveMoeConfig } from "./config.ts";
 * const c = resolveMoeConfig({ T: 8, d: 16, ff: 32, E: 4, k: 2, router: "softmax_topk" });
 * console.log(c.tilesMax, c.rowsMax);
 * ```
 */
export function resolveMoeConfig(cfg: MoeConfig): ResolvedMoeConfig {
  for (const key of ["T", "d", "ff", "E", "k"] as const) posInt(key, cfg[key]);
  const { T, d, ff, E, k } = cfg;
  // attrs.ts's MOE_MAX_EXPERTS: the sort's one workgroup holds every expert's rows.
  if (E > 1024) throw new RangeError(`MoE E must be at most 1024: received ${E}`);
  if (k > E) throw new RangeError(`MoE k must be at most E (${E}): received ${k}`);
  if (!["softmax_topk", "sigmoid_bias", "softmax_bias", "switch"].includes(cfg.router)) {
    throw new TypeError(
      `MoE router must be softmax_topk, sigmoid_bias, softmax_bias or switch: received ` +
        `"${cfg.router}"`,
    );
  }
  if (cfg.router === "switch" && k !== 1) {
    throw new RangeError(`MoE switch router is top-1: received k = ${k}`);
  }
  const { groups, groupsKept } = checkGroups(cfg);
  const weightDtype = cfg.weightDtype ?? "f32";
  if (weightDtype !== "f32" && weightDtype !== "f16") {
    throw new TypeError(`MoE weightDtype must be "f32" or "f16": received "${weightDtype}"`);
  }
  const wf = cfg.weightFormat;
  const w2f = wf === undefined ? undefined : cfg.w2Format ?? wf;
  // W1/W3 rows are d long, W2 rows ff long: each a whole number of its format's blocks.
  const rowsOf: [QuantFormat | undefined, number, string][] = [[wf, d, "d"], [w2f, ff, "ff"]];
  for (const [f, len, what] of wf === undefined ? [] : rowsOf) {
    if (!isQuantFormat(f!)) {
      throw new TypeError(`MoE weightFormat must be a block format: received "${f}"`);
    }
    const block = GGML_TYPES[f!].blockElems;
    if (len % block !== 0) {
      throw new RangeError(`MoE ${f} weights need ${what} (${len}) to be a multiple of ${block}`);
    }
  }
  if (cfg.capacityFactor !== undefined && !(cfg.capacityFactor > 0)) {
    throw new RangeError(`MoE capacityFactor must be positive: received ${cfg.capacityFactor}`);
  }
  const activation = cfg.activation ?? "swiglu";
  if (!MOE_ACTIVATIONS.includes(activation)) {
    throw new TypeError(
      `MoE activation must be ${MOE_ACTIVATIONS.join(" or ")}: received "${activation}"`,
    );
  }
  if (!moeGated(activation) && cfg.expertBias) {
    throw new TypeError(`MoE activation "${activation}" takes no expert biases (expertBias)`);
  }
  const alpha = cfg.alpha ?? MOE_OAI_DEFAULTS.alpha;
  const limit = cfg.limit ?? MOE_OAI_DEFAULTS.limit;
  if (!Number.isFinite(alpha)) throw new RangeError(`MoE alpha must be finite: received ${alpha}`);
  if (!Number.isFinite(limit) || !(limit > 0)) {
    throw new RangeError(`MoE limit must be finite and > 0: received ${limit}`);
  }
  const rows = cfg.tile?.rows ?? 4;
  // Columns per invocation must divide the output width (no column bounds checks
  // in the GEMMs); 4 keeps the h / o stores as vec4.
  const cols1 = cfg.tile?.cols1 ?? largestDivisor(ff, [4, 2]);
  const cols2 = cfg.tile?.cols2 ?? largestDivisor(d, [8, 4, 2]);
  const wgSize = cfg.tile?.wgSize ?? 64;
  const vecAccum = cfg.tile?.vecAccum ?? false;
  posInt("tile.rows", rows);
  posInt("tile.cols1", cols1);
  posInt("tile.cols2", cols2);
  posInt("tile.wgSize", wgSize);
  if (ff % cols1 !== 0) throw new RangeError(`MoE tile.cols1 (${cols1}) must divide ff (${ff})`);
  if (d % cols2 !== 0) throw new RangeError(`MoE tile.cols2 (${cols2}) must divide d (${d})`);
  const cap = moeCapacity(T, k, E, cfg.capacityFactor);
  const pairs = T * k;
  // Σₑ ceil(nₑ/rows) ≤ (T·k + E·(rows−1)) / rows, and every tile holds ≥ 1 real row.
  const tilesMax = Math.max(1, Math.min(pairs, Math.floor((pairs + E * (rows - 1)) / rows)));
  return {
    T,
    d,
    ff,
    E,
    k,
    router: cfg.router,
    normTopk: cfg.normTopk ?? true,
    routedScaling: cfg.routedScaling ?? 1,
    groups,
    groupsKept,
    capacityFactor: cfg.capacityFactor,
    weightDtype,
    weightFormat: wf,
    w2Format: w2f,
    tile: { rows, cols1, cols2, wgSize, vecAccum },
    activation,
    alpha,
    limit,
    expertBias: cfg.expertBias ?? false,
    capacity: cap ?? MOE_NONE,
    tilesMax,
    rowsMax: tilesMax * rows,
  };
}

/**
 * Group-limited routing's sizes, checked: not the switch router, whole
 * groups (of at least two experts for `sigmoid_bias`, scored by its two best),
 * `1 ≤ groupsKept ≤ groups`, and enough experts in the kept groups for k
 * choices. Returns them with their defaults.
 *
 * @example
 * ```ts
 * import { checkGroups } from "./config.ts";
 * checkGroups({ E: 16, k: 4, router: "sigmoid_bias", groups: 4, groupsKept: 2 }).groupsKept; // 2
 * ```
 */
export function checkGroups(
  cfg: Pick<MoeConfig, "E" | "k" | "router" | "groups" | "groupsKept">,
): { groups: number; groupsKept: number } {
  const groups = cfg.groups ?? 1;
  const groupsKept = cfg.groupsKept ?? groups;
  posInt("groups", groups);
  posInt("groupsKept", groupsKept);
  if (groups === 1 && groupsKept === 1) return { groups, groupsKept };
  const { E, k } = cfg;
  if (cfg.router === "switch" || cfg.router === "softmax_bias") {
    throw new TypeError(
      `MoE group-limited routing (groups ${groups}) applies to the sigmoid_bias and ` +
        `softmax_topk routers, not ${cfg.router}`,
    );
  }
  // A sigmoid_bias group scores by its two best experts, a softmax one by its best.
  const least = cfg.router === "sigmoid_bias" ? 2 : 1;
  if (E % groups !== 0 || E / groups < least) {
    throw new RangeError(
      `MoE groups (${groups}) must split E (${E}) into equal groups of at least ${least} ` +
        `expert${least > 1 ? "s" : ""}`,
    );
  }
  if (groupsKept > groups) {
    throw new RangeError(`MoE groupsKept (${groupsKept}) exceeds groups (${groups})`);
  }
  if (k > groupsKept * (E / groups)) {
    throw new RangeError(
      `MoE k (${k}) exceeds the ${groupsKept * (E / groups)} experts of the ${groupsKept} ` +
        `kept groups`,
    );
  }
  return { groups, groupsKept };
}

// The scratch buffers' layout lives in scratch.ts; its names stay importable from here.
export {
  moeScratch,
  type MoeScratchBuffer,
  moeScratchLayout,
  moeScratchLength,
} from "./scratch.ts";
