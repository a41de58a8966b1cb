/**
 * The attributes of `moe`, their checks, where the optional inputs sit, and
 * which kernel sequence (path) a token count takes.
 *
 * @module
 */

import { numel } from "../../core/shape.ts";
import { isQuantFormat, QUANT_FORMATS, type QuantFormat } from "../../core/quant/formats.ts";
import {
  checkGroups,
  MOE_ACTIVATIONS,
  type MoeActivation,
  type MoeConfig,
  type MoePath,
  type MoeRouterKind,
  routerHasBias,
} from "./config.ts";

/**
 * Attributes of `moe`.
 *
 * @example
 * ```ts
 * import type { MoeAttrs } from "@kiln/kiln";
 * const mixtral: MoeAttrs = {
 *   experts: 8,
 *   topK: 2,
 *   router: "softmax_topk",
 *   normTopk: true,
 *   routedScaling: 1,
 *   capacityFactor: 0,
 *   dense: false,
 * };
 * ```
 */
export interface MoeAttrs {
  /** Number of routed experts E (1..1024, `MOE_MAX_EXPERTS`). */
  readonly experts: number;
  /** Experts per token k (1..E; 1 for `switch`). */
  readonly topK: number;
  /**
   * `softmax_topk` (Mixtral / Qwen2-MoE), `sigmoid_bias` (DeepSeek-V3: selection
   * by sigmoid + bias, weights from the unbiased scores), `softmax_bias` (ERNIE
   * 4.5: selection by softmax probability + bias, weights the unbiased
   * probabilities), `switch` (top-1, output scaled by p).
   */
  readonly router: MoeRouterKind;
  /**
   * `softmax_topk` and `sigmoid_bias`: renormalise the k weights to sum 1
   * (Mixtral and GLM-4.5 true, Qwen2-MoE false).
   */
  readonly normTopk: boolean;
  /** `sigmoid_bias`: factor on the (renormalised) weights (DeepSeek `routed_scaling_factor`). */
  readonly routedScaling: number;
  /** Switch capacity factor; 0 means dropless. Capacity `min(T, ⌊cf·T·k/E⌋)` per expert. */
  readonly capacityFactor: number;
  /** Compute every expert for every token (benchmark baseline; same results, dropless only). */
  readonly dense: boolean;
  /**
   * Attributes are plain records, so graphs stay serialisable. Optional:
   * `slots` (number; 0 or absent: weights stacked `[E, …]`) — when > 0 the
   * weights hold this many slabs and a slot table input maps experts to slabs
   * (a slot ≥ `slots` means the expert is on another device and adds 0);
   * `logitsIn` (boolean) — input 1 holds router logits `[..., E]` computed
   * elsewhere instead of the router weight (a device holding a share of the
   * experts routes exactly as the home device did);
   * `routing` (boolean) — three more outputs report the routing: the chosen
   * experts `[..., k]` u32 (best first), their weights `[..., k]` f32 and the
   * pairs each expert kept after the capacity `[E]` u32 (routing analysis;
   * off by default, so inference graphs are unchanged);
   * `name` (string) — the layer this op is (its parameter prefix), carried to
   * the planned kernels as `PlannedKernel.name` so schedulers find a layer's
   * kernels by it;
   * `weightFormat` (string) with `ff` (number) — the expert weights are
   * llama.cpp blocks of that format (`"q4_k"`…): w1 and w3 `u32[slabs,
   * quantWords(format, ff, d)]`, w2 `u32[slabs, quantWords(format, d,
   * ff)]`, one word-padded slab per expert, dequantized as they are read;
   * `w2Format` (string) — w2's format when it differs;
   * `activation` (string, {@linkcode MoeActivation}) — the experts' gated
   * activation, `"swiglu"` when absent, with `alpha` and `limit` (numbers,
   * `"swiglu_oai"` only; defaults 1.702 and 7);
   * `expertBias` (boolean) — three more inputs `b1`, `b3 [E, ff]` and
   * `b2 [E, d]` f32 (after the `sigmoid_bias` bias, before the mask) add
   * expert e's biases to its gate, up and down projections (GPT-OSS); they are
   * indexed by expert, never through the slot table;
   * `groups` and `groupsKept` (numbers, `sigmoid_bias` only; default 1 and
   * all) — group-limited routing, DeepSeek-V3's `n_group` and `topk_group`:
   * only experts of the `groupsKept` groups with the best two-expert scores
   * are chosen.
   */
  [key: string]: number | string | boolean;
}

/**
 * The router kinds `moe` accepts.
 *
 * @example
 * ```ts
 * import { MOE_ROUTERS } from "./attrs.ts";
 * MOE_ROUTERS.includes("switch"); // true
 * ```
 */
export const MOE_ROUTERS: readonly MoeRouterKind[] = [
  "softmax_topk",
  "sigmoid_bias",
  "softmax_bias",
  "switch",
];

/**
 * The attributes `moe` and its backward `moe_grad` share, in their order:
 * the routing (`ROUTING`) and the experts' math (`EXPERTS`); `moe` adds its
 * layout and path attributes between them.
 *
 * @example
 * ```ts
 * import { MOE_SHARED_ATTRS } from "./attrs.ts";
 * MOE_SHARED_ATTRS.ROUTING.includes("normTopk"); // true
 * ```
 */
export const MOE_SHARED_ATTRS: {
  readonly ROUTING: readonly string[];
  readonly EXPERTS: readonly string[];
} = {
  ROUTING: ["experts", "topK", "router", "normTopk", "routedScaling", "capacityFactor"],
  EXPERTS: ["activation", "alpha", "limit", "expertBias", "groups", "groupsKept"],
};

/**
 * Largest expert count the kernels support within WebGPU's default limits
 * (256 invocations and 16 KiB of memory per workgroup): up to 256 experts the
 * router, sort and aux kernels give each expert an invocation; above, each
 * invocation takes several experts and the sort places tokens in smaller
 * chunks (64 tokens at 1024) so the one workgroup that sorts every expert's
 * pairs still fits. Qwen3-Next and Qwen3.5 route over 512 experts, Kimi K2 384.
 *
 * @example
 * ```ts
 * import { MOE_MAX_EXPERTS } from "./attrs.ts";
 * MOE_MAX_EXPERTS; // 1024
 * ```
 */
export const MOE_MAX_EXPERTS = 1024;

/**
 * Largest token count for which the decode (GEMV) path is chosen.
 *
 * @example
 * ```ts
 * import { MOE_DECODE_MAX_TOKENS } from "./attrs.ts";
 * MOE_DECODE_MAX_TOKENS; // 4
 * ```
 */
export const MOE_DECODE_MAX_TOKENS = 4;

/**
 * Number of expert slots (0: stacked layout).
 *
 * @example
 * ```ts
 * import { slotsOf } from "./attrs.ts";
 * slotsOf({ experts: 8, topK: 2, router: "switch", normTopk: true, routedScaling: 1, capacityFactor: 0, dense: false }); // 0
 * ```
 */
export function slotsOf(attrs: MoeAttrs): number {
  return typeof attrs.slots === "number" ? attrs.slots : 0;
}

/**
 * Whether the op reports its routing (three more outputs).
 *
 * @example
 * ```ts
 * import { routingOf } from "./attrs.ts";
 * routingOf({ experts: 8, topK: 2, router: "switch", normTopk: true, routedScaling: 1, capacityFactor: 0, dense: false, routing: true }); // true
 * ```
 */
export function routingOf(attrs: MoeAttrs): boolean {
  return attrs.routing === true;
}

/**
 * Whether the experts have biases (three more inputs).
 *
 * @example
 * ```ts
 * import { expertBiasOf } from "./attrs.ts";
 * expertBiasOf({ experts: 8, topK: 2, router: "switch", normTopk: true, routedScaling: 1, capacityFactor: 0, dense: false }); // false
 * ```
 */
export function expertBiasOf(attrs: MoeAttrs): boolean {
  return attrs.expertBias === true;
}

/**
 * The experts' activation (`"swiglu"` when the attribute is absent).
 *
 * @example
 * ```ts
 * import { activationOf } from "./attrs.ts";
 * activationOf({ experts: 8, topK: 2, router: "switch", normTopk: true, routedScaling: 1, capacityFactor: 0, dense: false }); // "swiglu"
 * ```
 */
export function activationOf(attrs: MoeAttrs): MoeActivation {
  return (attrs.activation ?? "swiglu") as MoeActivation;
}

/**
 * Where the optional inputs sit for these attributes and this many inputs:
 * the `sigmoid_bias` bias at 5, then the experts' biases `b1`, `b3`, `b2`
 * (with `expertBias`), then the mask if given, the slot table last.
 *
 * @example
 * ```ts
 * import { optionalInputs } from "./attrs.ts";
 * const attrs = { experts: 8, topK: 2, router: "softmax_topk" as const, normTopk: true, routedScaling: 1, capacityFactor: 0, dense: false };
 * optionalInputs(attrs, 6); // { mask: 5 }
 * optionalInputs({ ...attrs, expertBias: true }, 8); // { b1: 5, b3: 6, b2: 7 }
 * ```
 */
export function optionalInputs(
  attrs: MoeAttrs,
  count: number,
): { bias?: number; b1?: number; b3?: number; b2?: number; mask?: number; table?: number } {
  const out: {
    bias?: number;
    b1?: number;
    b3?: number;
    b2?: number;
    mask?: number;
    table?: number;
  } = {};
  const table = slotsOf(attrs) > 0 ? count - 1 : undefined;
  const n = table === undefined ? count : count - 1;
  let at = 5;
  if (routerHasBias(attrs.router as string)) out.bias = at++;
  if (expertBiasOf(attrs)) {
    out.b1 = at++;
    out.b3 = at++;
    out.b2 = at++;
  }
  if (n > at) out.mask = at;
  if (table !== undefined) out.table = table;
  return out;
}

const INPUT_NAMES = ["x", "router", "w1", "w3", "w2"];

/**
 * What input `j` of `count` is, for messages.
 *
 * @example
 * ```ts
 * import { inputName } from "./attrs.ts";
 * const attrs = { experts: 8, topK: 2, router: "softmax_topk" as const, normTopk: true, routedScaling: 1, capacityFactor: 0, dense: false };
 * inputName(attrs, 6, 5); // "mask"
 * ```
 */
export function inputName(attrs: MoeAttrs, count: number, j: number): string {
  const o = optionalInputs(attrs, count);
  for (const name of ["bias", "b1", "b3", "b2", "mask", "table"] as const) {
    if (j === o[name]) return name;
  }
  return INPUT_NAMES[j];
}

/**
 * Checks the attributes, throwing a RangeError or TypeError naming the bad one.
 *
 * @example
 * ```ts
 * import { checkAttrs } from "./attrs.ts";
 * checkAttrs({ experts: 8, topK: 2, router: "softmax_topk", normTopk: true, routedScaling: 1, capacityFactor: 0, dense: false });
 * ```
 */
export function checkAttrs(a: MoeAttrs): void {
  const int = (name: string, v: unknown, lo: number, hi: number) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) {
      throw new RangeError(`moe: ${name} must be an integer in [${lo}, ${hi}], got ${v}`);
    }
  };
  int("experts", a.experts, 1, MOE_MAX_EXPERTS);
  if (typeof a.topK !== "number" || !Number.isInteger(a.topK) || a.topK < 1) {
    throw new RangeError(`moe: topK must be an integer >= 1, got ${a.topK}`);
  }
  if (a.topK > a.experts) {
    throw new RangeError(`moe: topK (${a.topK}) exceeds the number of experts (${a.experts})`);
  }
  if (!MOE_ROUTERS.includes(a.router)) {
    throw new TypeError(
      `moe: router must be one of ${MOE_ROUTERS.join(", ")}, got ${JSON.stringify(a.router)}`,
    );
  }
  if (a.router === "switch" && a.topK !== 1) {
    throw new RangeError(`moe: the switch router is top-1, got topK ${a.topK}`);
  }
  if (typeof a.normTopk !== "boolean") {
    throw new TypeError(`moe: normTopk must be a boolean, got ${JSON.stringify(a.normTopk)}`);
  }
  if (typeof a.routedScaling !== "number" || !Number.isFinite(a.routedScaling)) {
    throw new RangeError(`moe: routedScaling must be a finite number, got ${a.routedScaling}`);
  }
  if (
    typeof a.capacityFactor !== "number" || !Number.isFinite(a.capacityFactor) ||
    a.capacityFactor < 0
  ) {
    throw new RangeError(
      `moe: capacityFactor must be > 0 (or 0 for dropless), got ${a.capacityFactor}`,
    );
  }
  if (typeof a.dense !== "boolean") {
    throw new TypeError(`moe: dense must be a boolean, got ${JSON.stringify(a.dense)}`);
  }
  if (a.slots !== undefined) {
    int("slots", a.slots, 0, 1 << 20);
  }
  for (const name of ["groups", "groupsKept"] as const) {
    if (a[name] !== undefined) int(name, a[name], 1, MOE_MAX_EXPERTS);
  }
  checkGroups({ E: a.experts, k: a.topK, router: a.router, ...groupLimitOf(a) });
  for (const flag of ["logitsIn", "routing", "expertBias"] as const) {
    if (a[flag] !== undefined && typeof a[flag] !== "boolean") {
      throw new TypeError(`moe: ${flag} must be a boolean, got ${JSON.stringify(a[flag])}`);
    }
  }
  if (a.weightFormat !== undefined) {
    if (typeof a.weightFormat !== "string" || !isQuantFormat(a.weightFormat)) {
      throw new TypeError(
        `moe: weightFormat must be one of ${QUANT_FORMATS.join(", ")}, got ${
          JSON.stringify(a.weightFormat)
        }`,
      );
    }
    int("ff", a.ff, 1, 1 << 24);
    if (
      a.w2Format !== undefined && (typeof a.w2Format !== "string" || !isQuantFormat(a.w2Format))
    ) {
      throw new TypeError(
        `moe: w2Format must be one of ${QUANT_FORMATS.join(", ")}, got ${
          JSON.stringify(a.w2Format)
        }`,
      );
    }
  }
  checkActivation(a);
  if (a.dense && a.capacityFactor > 0) {
    throw new RangeError(
      `moe: the dense baseline is dropless, got capacityFactor ${a.capacityFactor}`,
    );
  }
}

/** The activation attributes: a known kind, and finite `alpha` / `limit > 0` for swiglu_oai only. */
function checkActivation(a: MoeAttrs): void {
  if (a.activation !== undefined && !MOE_ACTIVATIONS.includes(a.activation as MoeActivation)) {
    throw new TypeError(
      `moe: activation must be one of ${MOE_ACTIVATIONS.join(", ")}, got ${
        JSON.stringify(a.activation)
      }`,
    );
  }
  for (const name of ["alpha", "limit"] as const) {
    const v = a[name];
    if (v === undefined) continue;
    if (activationOf(a) !== "swiglu_oai") {
      throw new TypeError(
        `moe: ${name} applies to activation "swiglu_oai" only, got it with ${
          JSON.stringify(activationOf(a))
        }`,
      );
    }
    if (typeof v !== "number" || !Number.isFinite(v) || (name === "limit" && !(v > 0))) {
      throw new RangeError(
        `moe: ${name} must be a finite number${name === "limit" ? " > 0" : ""}, got ${v}`,
      );
    }
  }
}

/**
 * Which kernel sequence `moe` runs for T tokens: dense when asked, decode for
 * at most {@linkcode MOE_DECODE_MAX_TOKENS} tokens without a capacity (the
 * GEMVs are dropless), prefill otherwise.
 *
 * @example
 * ```ts
 * import { moePath } from "./attrs.ts";
 * const attrs = { experts: 8, topK: 2, router: "softmax_topk" as const, normTopk: true, routedScaling: 1, capacityFactor: 0, dense: false };
 * moePath(attrs, 1); // "decode"
 * moePath(attrs, 64); // "prefill"
 * ```
 */
export function moePath(attrs: MoeAttrs, T: number): MoePath {
  if (attrs.dense) return "dense";
  return T <= MOE_DECODE_MAX_TOKENS && !(attrs.capacityFactor > 0) ? "decode" : "prefill";
}

/**
 * The kernels' config for concrete operand shapes.
 *
 * @example
 * ```ts
 * import { configOf } from "./attrs.ts";
 * const attrs = { experts: 8, topK: 2, router: "softmax_topk" as const, normTopk: true, routedScaling: 1, capacityFactor: 0, dense: false };
 * configOf(attrs, [16, 64], [8, 128, 64], "f32").ff; // 128
 * ```
 */
export function configOf(
  attrs: MoeAttrs,
  xShape: readonly number[],
  w1Shape: readonly number[],
  weightDtype: "f32" | "f16",
): MoeConfig {
  const d = xShape[xShape.length - 1];
  return {
    T: numel(xShape) / d,
    d,
    ff: typeof attrs.weightFormat === "string" ? attrs.ff as number : w1Shape[1],
    E: attrs.experts,
    k: attrs.topK,
    router: attrs.router,
    normTopk: attrs.normTopk,
    routedScaling: attrs.routedScaling,
    ...groupLimitOf(attrs),
    capacityFactor: attrs.capacityFactor > 0 ? attrs.capacityFactor : undefined,
    weightDtype,
    weightFormat: typeof attrs.weightFormat === "string"
      ? attrs.weightFormat as QuantFormat
      : undefined,
    w2Format: typeof attrs.w2Format === "string" ? attrs.w2Format as QuantFormat : undefined,
    activation: activationOf(attrs),
    alpha: typeof attrs.alpha === "number" ? attrs.alpha : undefined,
    limit: typeof attrs.limit === "number" ? attrs.limit : undefined,
    expertBias: expertBiasOf(attrs),
  };
}

/**
 * The group-limited routing of `moe` / `moe_grad` attributes (`groups`,
 * `groupsKept`; absent means none), as {@linkcode MoeConfig} fields: empty
 * when absent, so configs and graphs without it stay as they were.
 *
 * @example
 * ```ts
 * import { groupLimitOf } from "./attrs.ts";
 * groupLimitOf({ groups: 8, groupsKept: 4 }); // { groups: 8, groupsKept: 4 }
 * groupLimitOf({}); // {}
 * ```
 */
export function groupLimitOf(
  attrs: Readonly<Record<string, unknown>>,
): { groups?: number; groupsKept?: number } {
  return {
    ...(typeof attrs.groups === "number" ? { groups: attrs.groups } : {}),
    ...(typeof attrs.groupsKept === "number" ? { groupsKept: attrs.groupsKept } : {}),
  };
}
