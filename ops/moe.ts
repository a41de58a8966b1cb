/**
 * `moe`: a routed Mixture-of-Experts FFN layer (router → top-k → SwiGLU experts →
 * weighted combine) as one graph op, lowered onto the kernel library of
 * `moe_kernels.ts`.
 *
 * Inputs, in order:
 * 0. `x [..., d]` f32 tokens (leading dims flattened to T, which may be symbolic);
 * 1. router weight `[E, d]` f32;
 * 2. `w1 [E, ff, d]`, 3. `w3 [E, ff, d]`, 4. `w2 [E, d, ff]`: the experts' gate,
 *    up and down projections stacked per expert in PyTorch Linear layout, f32 or
 *    f16 (all three alike);
 * 5. `sigmoid_bias` only: the selection bias `[E]` f32;
 * then optionally the padding mask `x.shape[:-1]` f32 (0 excludes a token from
 *    the aux and z losses; it is still routed, as in HF);
 * last, when `slots > 0`: the slot table `[E]` u32. The experts' weights are then
 *    slot buffers `[slots, ff, d]` / `[slots, d, ff]` and expert e's weights are
 *    slab `table[e]` (the expert scheduler's indirection; see
 *    `runtime/expert_scheduler.ts`). Same kernels, same arithmetic order, so
 *    results are bit-identical to the stacked layout when every chosen expert is
 *    resident.
 *
 * Outputs: `y` (shape of x), router `logits [..., E]`, `counts [E]` u32 (routed
 * (token, slot) pairs per expert, before any capacity drop; kept pairs are
 * `min(count, capacity)`), `aux [2]` f32 = (load-balancing loss `E·Σfᵢ·Pᵢ`,
 * router z-loss). See DESIGN.md §2 for the router semantics.
 *
 * Lowering (shapes are concrete by then):
 * - prefill: router, sort, grouped GEMM 1 (w1 & w3, silu·mul), grouped GEMM 2
 *   (routing weight in the epilogue), combine, aux: 6 launches whatever E is;
 * - decode (T ≤ 4 tokens, dropless): router, GEMV 1, GEMV 2 indexed by the
 *   chosen experts (no sort, unchosen experts' weights are never read), aux;
 * - `dense: true` (a benchmark baseline): every token through every expert.
 * Intermediates live in scratch buffers; `y` can take a fused elementwise
 * epilogue (e.g. a residual add) through `out0_store`.
 *
 * @module
 */

import { allocHost } from "../core/dtype.ts";
import type { TensorType } from "../core/graph.ts";
import { type Dim, formatShape, numel } from "../core/shape.ts";
import {
  type MoeBufferName,
  moeBufferSizes,
  type MoeConfig,
  type MoeEmitOptions,
  moeKernels,
  type MoePath,
  type MoeRouterKind,
  resolveMoeConfig,
} from "./moe_kernels.ts";
import { moeReference } from "./moe_reference.ts";
import type {
  HostTensor,
  KernelContext,
  KernelEmission,
  KernelSource,
  OpDef,
  ScratchSpec,
} from "./types.ts";

export type { MoeRouterKind };

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
  /** Number of routed experts E (1..256). */
  readonly experts: number;
  /** Experts per token k (1..E; 1 for `switch`). */
  readonly topK: number;
  /**
   * `softmax_topk` (Mixtral / Qwen2-MoE), `sigmoid_bias` (DeepSeek-V3: selection
   * by sigmoid + bias, weights from the unbiased scores), `switch` (top-1, output
   * scaled by p).
   */
  readonly router: MoeRouterKind;
  /** `softmax_topk`: renormalise the k weights to sum 1 (Mixtral true, Qwen2-MoE false). */
  readonly normTopk: boolean;
  /** `sigmoid_bias`: factor on the renormalised weights (DeepSeek `routed_scaling_factor`). */
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
   * experts routes exactly as the home device did).
   */
  [key: string]: number | string | boolean;
}

const ROUTERS: readonly MoeRouterKind[] = ["softmax_topk", "sigmoid_bias", "switch"];

/** Largest expert count the kernels support (one workgroup sorts all experts). */
export const MOE_MAX_EXPERTS = 256;

/** Largest token count for which the decode (GEMV) path is chosen. */
export const MOE_DECODE_MAX_TOKENS = 4;

/** Where the optional inputs sit for these attributes and this many inputs. */
function optionalInputs(
  attrs: MoeAttrs,
  count: number,
): { bias?: number; mask?: number; table?: number } {
  const table = slotsOf(attrs) > 0 ? count - 1 : undefined;
  const n = table === undefined ? count : count - 1;
  if (attrs.router === "sigmoid_bias") return { bias: 5, mask: n > 6 ? 6 : undefined, table };
  return { mask: n > 5 ? 5 : undefined, table };
}

/** Number of expert slots (0: stacked layout). */
function slotsOf(attrs: MoeAttrs): number {
  return typeof attrs.slots === "number" ? attrs.slots : 0;
}

const ROLE = ["x", "router", "w1", "w3", "w2"];

function roleOf(attrs: MoeAttrs, count: number, j: number): string {
  const o = optionalInputs(attrs, count);
  return j === o.bias ? "bias" : j === o.mask ? "mask" : j === o.table ? "table" : ROLE[j];
}

function checkAttrs(a: MoeAttrs): void {
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
  if (!ROUTERS.includes(a.router)) {
    throw new TypeError(
      `moe: router must be one of ${ROUTERS.join(", ")}, got ${JSON.stringify(a.router)}`,
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
  if (a.logitsIn !== undefined && typeof a.logitsIn !== "boolean") {
    throw new TypeError(`moe: logitsIn must be a boolean, got ${JSON.stringify(a.logitsIn)}`);
  }
  if (a.dense && a.capacityFactor > 0) {
    throw new RangeError(
      `moe: the dense baseline is dropless, got capacityFactor ${a.capacityFactor}`,
    );
  }
}

function sameShape(a: readonly Dim[], b: readonly Dim[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function inferMoe(inputs: readonly TensorType[], attrs: MoeAttrs): TensorType[] {
  checkAttrs(attrs);
  const E = attrs.experts;
  const sig = attrs.router === "sigmoid_bias";
  const S = slotsOf(attrs);
  const [lo, hi] = (sig ? [6, 7] : [5, 6]).map((n) => n + (S > 0 ? 1 : 0));
  if (inputs.length < lo || inputs.length > hi) {
    throw new RangeError(
      `moe: the ${attrs.router} router takes ${lo}..${hi} inputs (x, router, w1, w3, w2${
        sig ? ", bias" : ""
      }, optional mask${S > 0 ? ", slot table" : ""}), got ${inputs.length}`,
    );
  }
  const [x, router, w1, w3, w2] = inputs;
  const show = (name: string, t: TensorType) => `${name} ${t.dtype}${formatShape(t.shape)}`;
  if (x.shape.length < 2) {
    throw new RangeError(`moe: x must be [..., T, d] or [T, d], got ${formatShape(x.shape)}`);
  }
  if (x.dtype !== "f32") throw new TypeError(`moe: x must be f32, got ${show("x", x)}`);
  const d = x.shape[x.shape.length - 1];
  if (typeof d !== "number") {
    throw new RangeError(`moe: the model width of x must be concrete, got ${formatShape(x.shape)}`);
  }
  if (router.dtype !== "f32") {
    throw new TypeError(`moe: router weight must be f32, got ${show("router", router)}`);
  }
  if (attrs.logitsIn === true) {
    if (!sameShape(router.shape, [...x.shape.slice(0, -1), E])) {
      throw new RangeError(
        `moe: given router logits must be ${formatShape([...x.shape.slice(0, -1), E])}, got ${
          formatShape(router.shape)
        }`,
      );
    }
  } else if (!sameShape(router.shape, [E, d])) {
    throw new RangeError(
      `moe: router weight must be [experts, d] = ${formatShape([E, d])}, got ${
        formatShape(router.shape)
      }`,
    );
  }
  const W = S > 0 ? S : E;
  const lead0 = S > 0 ? "slots" : "experts";
  if (w1.shape.length !== 3 || w1.shape[0] !== W || w1.shape[2] !== d) {
    throw new RangeError(
      `moe: w1 must be [${lead0}, ff, d] = [${W}, ff, ${d}], got ${formatShape(w1.shape)}`,
    );
  }
  const ff = w1.shape[1];
  if (typeof ff !== "number" || ff < 1) {
    throw new RangeError(`moe: w1's expert width must be a positive number, got ${ff}`);
  }
  if (!sameShape(w3.shape, w1.shape)) {
    throw new RangeError(
      `moe: w3 shape ${formatShape(w3.shape)} differs from w1 shape ${formatShape(w1.shape)}`,
    );
  }
  if (!sameShape(w2.shape, [W, d, ff])) {
    throw new RangeError(
      `moe: w2 must be [${lead0}, d, ff] = ${formatShape([W, d, ff])} (from w1 ${
        formatShape(w1.shape)
      }), got ${formatShape(w2.shape)}`,
    );
  }
  if (w1.dtype !== "f32" && w1.dtype !== "f16") {
    throw new TypeError(`moe: expert weights must be f32 or f16, got ${show("w1", w1)}`);
  }
  for (const [name, t] of [["w3", w3], ["w2", w2]] as const) {
    if (t.dtype !== w1.dtype) {
      throw new TypeError(`moe: ${name} is ${t.dtype} but w1 is ${w1.dtype}; use one dtype`);
    }
  }
  const opt = optionalInputs(attrs, inputs.length);
  if (opt.bias !== undefined) {
    const b = inputs[opt.bias];
    if (b.dtype !== "f32" || !sameShape(b.shape, [E])) {
      throw new TypeError(`moe: bias must be f32[${E}], got ${show("bias", b)}`);
    }
  }
  if (opt.table !== undefined) {
    const t = inputs[opt.table];
    if (t.dtype !== "u32" || !sameShape(t.shape, [E])) {
      throw new TypeError(`moe: the slot table must be u32[${E}], got ${show("table", t)}`);
    }
  }
  const lead = x.shape.slice(0, -1);
  if (opt.mask !== undefined) {
    const m = inputs[opt.mask];
    if (m.dtype !== "f32" || !sameShape(m.shape, lead)) {
      throw new TypeError(
        `moe: mask must be f32${formatShape(lead)} (x without its last axis), got ${
          show("mask", m)
        }`,
      );
    }
  }
  return [
    { shape: [...x.shape], dtype: "f32" },
    { shape: [...lead, E], dtype: "f32" },
    { shape: [E], dtype: "u32" },
    { shape: [2], dtype: "f32" },
  ];
}

/** The kernel library's config for concrete operand shapes. */
function configOf(
  attrs: MoeAttrs,
  xShape: readonly number[],
  w1Shape: readonly number[],
  weightDtype: "f32" | "f16",
): MoeConfig {
  const d = xShape[xShape.length - 1];
  return {
    T: numel(xShape) / d,
    d,
    ff: w1Shape[1],
    E: attrs.experts,
    k: attrs.topK,
    router: attrs.router,
    normTopk: attrs.normTopk,
    routedScaling: attrs.routedScaling,
    capacityFactor: attrs.capacityFactor > 0 ? attrs.capacityFactor : undefined,
    weightDtype,
  };
}

function referenceMoe(inputs: readonly HostTensor[], attrs: MoeAttrs) {
  const [x, wg, w1, w3, w2] = inputs;
  const opt = optionalInputs(attrs, inputs.length);
  const cfg = configOf(attrs, x.shape, w1.shape, "f32");
  const unslot = (w: HostTensor) =>
    opt.table === undefined ? w.data : gatherSlabs(w, inputs[opt.table].data, attrs.experts);
  const r = moeReference(
    cfg,
    {
      wg: attrs.logitsIn === true ? new Float32Array(cfg.E * cfg.d) : wg.data,
      logits: attrs.logitsIn === true ? wg.data : undefined,
      w1: unslot(w1),
      w3: unslot(w3),
      w2: unslot(w2),
      bias: opt.bias === undefined ? undefined : inputs[opt.bias].data,
    },
    x.data,
    opt.mask === undefined ? undefined : inputs[opt.mask].data,
  );
  const counts = allocHost("u32", attrs.experts);
  counts.set(r.counts);
  return [
    Float32Array.from(r.y),
    Float32Array.from(r.logits),
    counts,
    Float32Array.of(r.auxLoss, r.zLoss),
  ];
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

/** Which kernel sequence `moe` runs for T tokens. */
export function moePath(attrs: MoeAttrs, T: number): MoePath {
  if (attrs.dense) return "dense";
  return T <= MOE_DECODE_MAX_TOKENS && !(attrs.capacityFactor > 0) ? "decode" : "prefill";
}

/** Scratch buffers of each path, with their element types. */
const SCRATCH: Record<MoePath, readonly [MoeBufferName, ScratchSpec["type"]][]> = {
  prefill: [
    ["probs", "f32"],
    ["topk_idx", "u32"],
    ["topk_w", "f32"],
    ["sorted_token", "u32"],
    ["sorted_w", "f32"],
    ["tile_expert", "u32"],
    ["slot_pos", "u32"],
    ["h", "f32"],
    ["o", "f32"],
  ],
  decode: [["probs", "f32"], ["topk_idx", "u32"], ["topk_w", "f32"], ["hd", "f32"]],
  dense: [["probs", "f32"], ["topk_idx", "u32"], ["topk_w", "f32"], ["hdense", "f32"]],
};

function emitMoe(ctx: KernelContext<MoeAttrs>): KernelEmission {
  const { attrs, inputs, outputs, caps } = ctx;
  const x = inputs[0];
  const d = x.shape[x.shape.length - 1];
  const T = numel(x.shape) / d;
  const E = attrs.experts;
  if (T === 0) {
    // No tokens: counts and losses are zero, y and logits are empty.
    const code = `@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i < ${E}u) { out2[i] = 0u; }
  if (i < 2u) { out3[i] = 0.0; }
}`;
    return { kernels: [{ label: "moe_empty", code, workgroups: [Math.ceil(E / 64), 1, 1] }] };
  }
  const wdt = inputs[2].dtype === "f16" ? "f16" : "f32";
  if (wdt === "f16" && !caps.f16) {
    throw new TypeError('moe: f16 expert weights need a device with the "shader-f16" feature');
  }
  inputs.forEach((op, j) => {
    if (!op.direct) {
      throw new RangeError(
        `moe: ${roleOf(attrs, inputs.length, j)} ${formatShape(op.shape)} exceeds the device's ` +
          `storage binding size (${caps.maxBindingSize} bytes); split the experts over layers`,
      );
    }
  });
  for (const j of [1, 2, 3]) {
    if (!outputs[j].direct) {
      throw new RangeError(
        `moe: output ${j} ${formatShape(outputs[j].shape)} exceeds the device's binding size`,
      );
    }
  }
  const cfg = configOf(attrs, x.shape, inputs[2].shape, wdt);
  const path = moePath(attrs, T);
  const sizes = moeBufferSizes(cfg);
  resolveMoeConfig(cfg); // throws a RangeError naming the bad dimension
  const opt = optionalInputs(attrs, inputs.length);
  const names: Partial<Record<MoeBufferName, string>> = {
    x: "in0",
    wg: "in1",
    w1: "in2",
    w3: "in3",
    w2: "in4",
    y: "out0",
    logits: "out1",
    counts: "out2",
    aux: "out3",
  };
  if (opt.bias !== undefined) names.bias = `in${opt.bias}`;
  if (opt.mask !== undefined) names.mask = `in${opt.mask}`;
  if (opt.table !== undefined) names.table = `in${opt.table}`;
  const scratch: ScratchSpec[] = SCRATCH[path].map(([buf, type], j) => {
    names[buf] = `scratch${j}`;
    return { length: Math.max(1, sizes[buf]), type };
  });
  const opts: MoeEmitOptions = {
    names,
    // A fused epilogue (or a split y) is reached through out0_store, one scalar at a time.
    yStore: outputs[0].direct ? undefined : "out0_store",
    countsLayout: "routed",
    auxLength: 2,
    auxCounts: path !== "prefill",
    mask: opt.mask !== undefined,
    slotTable: opt.table !== undefined ? slotsOf(attrs) : undefined,
    logitsIn: attrs.logitsIn === true,
  };
  // The losses (and, on the decode path, the counts the aux kernel writes) are for
  // training and statistics: inference graphs that read neither skip the kernel.
  const aux = outputs[3].used !== false || (path !== "prefill" && outputs[2].used !== false);
  const kernels = moeKernels(cfg, path, aux, opts).map((k): KernelSource => {
    const arrayTypes: Record<string, string> = {};
    for (const b of k.bindings) if (b.vector === 4) arrayTypes[b.name] = `vec4<${b.type}>`;
    return { label: k.label, code: k.code, workgroups: k.workgroups, arrayTypes };
  });
  return { kernels, scratch };
}

/** Bytes of expert weights one layer binds and reads, for a given number of distinct chosen experts. */
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
 * import { moeWeightTraffic } from "./moe.ts";
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

/** The routed Mixture-of-Experts FFN layer. */
export const moe: OpDef<MoeAttrs> = {
  arity: [5, 8],
  attrNames: [
    "experts",
    "topK",
    "router",
    "normTopk",
    "routedScaling",
    "capacityFactor",
    "dense",
    "slots",
    "logitsIn",
  ],
  infer: inferMoe,
  reference: (inputs, attrs) => referenceMoe(inputs, attrs),
  lower: { kind: "kernel", prologue: false, epilogue: true, emit: emitMoe },
  // Per token only k of the E stacked experts run.
  activeFraction: (attrs, j) => (j >= 2 && j <= 4 ? Math.min(1, attrs.topK / attrs.experts) : 1),
};
