/**
 * `moe`: a routed Mixture-of-Experts FFN layer (router → top-k → gated experts →
 * weighted combine) as one graph op.
 *
 * Inputs, in order:
 * 0. `x [..., d]` f32 tokens (leading dims flattened to T, which may be symbolic);
 * 1. router weight `[E, d]` f32 (or, with `logitsIn`, given router logits `[..., E]`);
 * 2. `w1 [E, ff, d]`, 3. `w3 [E, ff, d]`, 4. `w2 [E, d, ff]`: the experts' gate,
 *    up and down projections stacked per expert in PyTorch Linear layout, f32 or
 *    f16 (all three alike);
 * 5. `sigmoid_bias` and `softmax_bias` only: the selection bias `[E]` f32;
 * then, with `expertBias`, the experts' biases `b1 [E, ff]` (gate), `b3 [E, ff]`
 *    (up), `b2 [E, d]` (down), f32, indexed by expert even with a slot table;
 * then optionally the padding mask `x.shape[:-1]` f32 (0 excludes a token from
 *    the aux and z losses; it is still routed, as in HF);
 * last, when `slots > 0`: the slot table `[E]` u32. The experts' weights are then
 *    slot buffers `[slots, ff, d]` / `[slots, d, ff]` and expert e's weights are
 *    slab `table[e]` (the expert scheduler's indirection). Same kernels, same
 *    arithmetic order, so results are bit-identical to the stacked layout when
 *    every chosen expert is resident.
 *
 * Outputs: `y` (shape of x), router `logits [..., E]`, `counts [E]` u32 (routed
 * (token, slot) pairs per expert, before any capacity drop; kept pairs are
 * `min(count, capacity)`), `aux [2]` f32 = (load-balancing loss `E·Σfᵢ·Pᵢ`,
 * router z-loss); with `routing: true` also the chosen experts `[..., k]` u32,
 * their weights `[..., k]` f32 and the kept pairs per expert `[E]` u32.
 *
 * Each expert computes `a = x·W1ᵀ + b1`, `b = x·W3ᵀ + b3`, `h = act(a, b)`,
 * `y += w · (h·W2ᵀ + b2)` (no biases by default), `act` being the `activation`
 * attribute's: `silu(a) · b` (`"swiglu"`, the default) or GPT-OSS's clamped
 * `"swiglu_oai"` (see {@linkcode MoeActivation}). Every kernel adds the biases
 * in its epilogues and calls one WGSL `moe_act`.
 *
 * Lowering (shapes are concrete by then; see `lower.ts`):
 * - prefill: router, sort, grouped GEMM 1 (w1 & w3, silu·mul), grouped GEMM 2
 *   (routing weight in the epilogue), combine, aux: 6 launches whatever E is;
 * - decode (T ≤ 4 tokens, dropless): router, GEMV 1, GEMV 2 indexed by the
 *   chosen experts (no sort, unchosen experts' weights are never read), aux;
 * - `dense: true` (a benchmark baseline): every token through every expert.
 * Each kernel carries its step as `role` (see {@linkcode MOE_ROLES}).
 * Intermediates live in scratch buffers; `y` can take a fused elementwise
 * epilogue (e.g. a residual add) through `out0_store`.
 *
 * @module
 */

import { allocHost, type HostArray } from "../../core/dtype.ts";
import type { QuantFormat } from "../../core/quant/formats.ts";
import { dequantize } from "../../core/quant/mod.ts";
import { quantRowBytes } from "../quant/mod.ts";
import type { HostTensor, OpDef } from "../types.ts";
import {
  configOf,
  MOE_SHARED_ATTRS,
  type MoeAttrs,
  moePath,
  optionalInputs,
  routingOf,
} from "./attrs.ts";
import type { MoePath } from "./config.ts";
import { emitMoe } from "./lower.ts";
import { moeReference } from "./reference.ts";
import { inferMoe } from "./shape_rule.ts";

export {
  MOE_DECODE_MAX_TOKENS,
  MOE_MAX_EXPERTS,
  MOE_ROUTERS,
  type MoeAttrs,
  moePath,
} from "./attrs.ts";
export {
  MOE_ACTIVATIONS,
  MOE_NONE,
  MOE_OAI_DEFAULTS,
  MOE_ROLES,
  type MoeActivation,
  moeCapacity,
  type MoeConfig,
  moeGated,
  type MoePath,
  type MoeRole,
  type MoeRouterKind,
  type MoeScratchBuffer,
  moeScratchLayout,
  type MoeTile,
  type ResolvedMoeConfig,
  resolveMoeConfig,
  routerHasBias,
} from "./config.ts";
export {
  moeReference,
  type MoeReferenceConfig,
  type MoeReferenceResult,
  type MoeWeights,
} from "./reference.ts";

/**
 * Quantized expert weights as f32: each u32 slab's blocks dequantized to
 * `rows · cols` values (the reference only; kernels never make this copy).
 */
function dequantSlabs(w: HostTensor, format: QuantFormat, rows: number, cols: number): HostTensor {
  const S = w.shape[0], words = w.shape[1] as number;
  const out = new Float32Array(S * rows * cols);
  const bytes = quantRowBytes(format, cols) * rows;
  for (let s = 0; s < S; s++) {
    const slab = new Uint8Array(w.data.buffer, w.data.byteOffset + s * words * 4, bytes);
    out.set(dequantize(format, slab, rows * cols), s * rows * cols);
  }
  return { shape: [S, rows, cols], dtype: "f32", data: out };
}

/**
 * Expert biases, with the rows of experts on another device (slot out of range)
 * zeroed: with zero weights too such an expert adds exactly 0 (act(0, 0) = 0
 * for both activations), as the kernels skip it.
 */
function presentBias(
  b: HostTensor,
  table: ArrayLike<number> | undefined,
  slots: number,
): ArrayLike<number> {
  if (table === undefined) return b.data;
  const E = b.shape[0] as number, n = b.data.length / E;
  const out = Float64Array.from(b.data as ArrayLike<number>);
  for (let e = 0; e < E; e++) if (table[e] >= slots) out.fill(0, e * n, (e + 1) * n);
  return out;
}

/** Expert e's slab is `table[e]`; a slot out of range (another device's expert) is zeros. */
function gatherSlabs(w: HostTensor, table: ArrayLike<number>, E: number): Float32Array {
  const S = w.shape[0];
  const n = w.data.length / S;
  const out = new Float32Array(E * n);
  for (let e = 0; e < E; e++) {
    const s = table[e];
    if (s >= S) continue; // contributes silu(0)·0 = 0, as the kernels skip it
    for (let i = 0; i < n; i++) out[e * n + i] = Number(w.data[s * n + i]);
  }
  return out;
}

/** The reference's operands: dequantized, unslotted weights and the config. */
function referenceOperands(inputs: readonly HostTensor[], attrs: MoeAttrs) {
  const [x, wg] = inputs;
  let [, , w1, w3, w2] = inputs;
  if (typeof attrs.weightFormat === "string") {
    const f = attrs.weightFormat as QuantFormat, ff = attrs.ff as number;
    const f2 = (attrs.w2Format ?? f) as QuantFormat;
    const d = x.shape[x.shape.length - 1];
    w1 = dequantSlabs(w1, f, ff, d);
    w3 = dequantSlabs(w3, f, ff, d);
    w2 = dequantSlabs(w2, f2, d, ff);
  }
  const opt = optionalInputs(attrs, inputs.length);
  const cfg = configOf(attrs, x.shape, w1.shape, "f32");
  const unslot = (w: HostTensor) =>
    opt.table === undefined ? w.data : gatherSlabs(w, inputs[opt.table].data, attrs.experts);
  const table = opt.table === undefined ? undefined : inputs[opt.table].data;
  const expertBias = (j: number | undefined) =>
    j === undefined ? undefined : presentBias(inputs[j], table, w1.shape[0] as number);
  const weights = {
    wg: attrs.logitsIn === true ? new Float32Array(cfg.E * cfg.d) : wg.data,
    logits: attrs.logitsIn === true ? wg.data : undefined,
    w1: unslot(w1),
    w3: unslot(w3),
    w2: unslot(w2),
    bias: opt.bias === undefined ? undefined : inputs[opt.bias].data,
    b1: expertBias(opt.b1),
    b3: expertBias(opt.b3),
    b2: expertBias(opt.b2),
  };
  const mask = opt.mask === undefined ? undefined : inputs[opt.mask].data;
  return { cfg, weights, x: x.data, mask };
}

/**
 * Runs a `moe` node's reference on its input tensors and attributes, telling
 * `visit` each routed (token, expert) pair with the expert's gated
 * activations for it (the input of the expert's down projection; the gate
 * and up projections' input is token `t`'s row of the node's first input).
 * What an importance-matrix collector needs of an MoE layer.
 *
 * @example
 * ```ts ignore
 * import { moeVisit } from "./mod.ts";
 * moeVisit(inputs, node.attrs as MoeAttrs, (e, t, hidden) => counts[e]++);
 * ```
 */
export function moeVisit(
  inputs: readonly HostTensor[],
  attrs: MoeAttrs,
  visit: (expert: number, t: number, hidden: Float64Array) => void,
): void {
  const { cfg, weights, x, mask } = referenceOperands(inputs, attrs);
  moeReference(cfg, weights, x, mask, visit);
}

function referenceMoe(inputs: readonly HostTensor[], attrs: MoeAttrs): HostArray[] {
  const { cfg, weights, x, mask } = referenceOperands(inputs, attrs);
  const r = moeReference(cfg, weights, x, mask);
  const u32s = (a: ArrayLike<number>) => {
    const out = allocHost("u32", a.length);
    out.set(a);
    return out;
  };
  // allocHost: float64 under `withFloat64Host`, so finite differences see no f32 rounding.
  const f32s = (a: ArrayLike<number>) => {
    const out = allocHost("f32", a.length);
    out.set(a);
    return out;
  };
  const outs: HostArray[] = [
    f32s(r.y),
    f32s(r.logits),
    u32s(r.counts),
    f32s([r.auxLoss, r.zLoss]),
  ];
  if (routingOf(attrs)) outs.push(u32s(r.topkIdx), f32s(r.topkW), u32s(r.keptCounts));
  return outs;
}

/**
 * Bytes of expert weights one layer binds and reads, for a given number of
 * distinct chosen experts.
 *
 * @example
 * ```ts
 * import { type MoeWeightTraffic, moeWeightTraffic } from "./mod.ts";
 * const t: MoeWeightTraffic = moeWeightTraffic({ T: 1, d: 64, ff: 128, E: 8, k: 2, weightBytes: 4 }, 2);
 * ```
 */
export interface MoeWeightTraffic {
  /** Kernel sequence. */
  readonly path: MoePath;
  /** Bytes of w1, w3 and w2 bound (the whole stacked tensors). */
  readonly bound: number;
  /** Bytes of them the kernels index: only the chosen experts' slabs on the routed paths. */
  readonly read: number;
}

/**
 * Expert-weight traffic of one `moe` layer: what is bound per dispatch versus
 * what the kernels actually index. Routed kernels index weights by
 * `topk_idx` / `tile_expert`, so only the slabs of the `chosen` distinct
 * experts are read (all E for the dense baseline).
 *
 * @example
 * ```ts
 * import { moeWeightTraffic } from "./mod.ts";
 * const t = moeWeightTraffic({ T: 1, d: 4096, ff: 14336, E: 8, k: 2, weightBytes: 2 }, 2);
 * console.log(t.path, t.read / t.bound); // "decode" 0.25
 * ```
 */
export function moeWeightTraffic(
  layer: {
    T: number;
    d: number;
    ff: number;
    E: number;
    k: number;
    weightBytes: number;
    capacityFactor?: number;
    dense?: boolean;
  },
  chosen: number,
): MoeWeightTraffic {
  const slab = 3 * layer.ff * layer.d * layer.weightBytes;
  const path = moePath(
    {
      experts: layer.E,
      topK: layer.k,
      router: "softmax_topk",
      normTopk: true,
      routedScaling: 1,
      capacityFactor: layer.capacityFactor ?? 0,
      dense: layer.dense ?? false,
    },
    layer.T,
  );
  const used = path === "dense" ? layer.E : Math.min(chosen, layer.E, layer.T * layer.k);
  return { path, bound: layer.E * slab, read: used * slab };
}

/**
 * The routed Mixture-of-Experts FFN layer.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "../../compiler/builder.ts";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 16]);
 * const [y, logits, counts, losses, topkIdx] = g.apply("moe", [
 *   x,
 *   g.param("router", [4, 16]),
 *   g.param("w1", [4, 32, 16]),
 *   g.param("w3", [4, 32, 16]),
 *   g.param("w2", [4, 16, 32]),
 * ], {
 *   experts: 4,
 *   topK: 2,
 *   router: "softmax_topk",
 *   normTopk: true,
 *   routedScaling: 1,
 *   capacityFactor: 0,
 *   dense: false,
 *   routing: true,
 * });
 * g.output("y", y);
 * g.output("experts", topkIdx); // u32 [T, 2]
 * ```
 */
export const moe: OpDef<MoeAttrs> = {
  // x, router, w1, w3, w2; then bias, b1, b3, b2, mask, slot table, each optional.
  arity: [5, 11],
  attrNames: [
    ...MOE_SHARED_ATTRS.ROUTING,
    "dense",
    "slots",
    "logitsIn",
    "routing",
    "name",
    "weightFormat",
    "w2Format",
    "ff",
    ...MOE_SHARED_ATTRS.EXPERTS,
  ],
  infer: inferMoe,
  reference: (inputs, attrs) => referenceMoe(inputs, attrs),
  lower: { kind: "kernel", prologue: false, epilogue: true, emit: emitMoe },
  // Per token only k of the E stacked experts run (and read k rows of their biases).
  activeFraction: (attrs, j) => {
    const o = optionalInputs(attrs, 11);
    const perExpert = (j >= 2 && j <= 4) || j === o.b1 || j === o.b3 || j === o.b2;
    return perExpert ? Math.min(1, attrs.topK / attrs.experts) : 1;
  },
};
