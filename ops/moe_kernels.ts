/**
 * WGSL emitters for the routed-expert FFN (Mixtral / Qwen2-MoE / DeepSeek-V3 /
 * Switch routers, SwiGLU experts), all sizes baked in as constants.
 *
 * Prefill pipeline (5 kernels, 6 with the aux losses, independent of E):
 * 1. {@linkcode emitRouter}: logits, probabilities, top-k → `topk_idx`, `topk_w`.
 * 2. {@linkcode emitSort}: one workgroup: histogram per expert, capacity,
 *    exclusive prefix sum with segments padded to the row-tile height, tile →
 *    expert table, deterministic scatter (rank = number of earlier tokens that
 *    chose the same expert, counted with bit masks, never atomic order).
 * 3. {@linkcode emitGroupedGemm1}: all row tiles of all experts in one launch;
 *    A rows gathered from `x` through `sorted_token`; W1 and W3 in one pass;
 *    writes `h = silu(x·W1ᵀ) ⊙ (x·W3ᵀ)` in sorted order.
 * 4. {@linkcode emitGroupedGemm2}: `o = w · (h·W2ᵀ)` in sorted order.
 * 5. {@linkcode emitCombine}: `y[t] = Σⱼ o[slot_pos[t, j]]` summed in slot
 *    order, so results are bit-reproducible.
 * 6. {@linkcode emitAuxLoss}: load-balancing loss and router z-loss.
 *
 * Decode (few tokens, dropless): router, {@linkcode emitDecodeGemv1},
 * {@linkcode emitDecodeGemv2}: GEMVs indexed by `topk_idx` that read only the
 * chosen experts' weights; no sort.
 *
 * Dense baseline for benchmarks: {@linkcode emitDenseGemm1} and
 * {@linkcode emitDenseGemm2} push every token through every expert.
 *
 * Why the kernels look the way they do (lavapipe runs WGSL on the CPU): fat
 * invocations with register tiles (`rows × cols` accumulators, vec4 loads along
 * K since every weight is stored `[N, K]`) beat workgroup-memory tiling there,
 * and the GEMMs use no barriers at all. Padding rows and empty tiles exit before
 * the K loop.
 *
 * Buffer names are shared by all kernels (`x`, `w1`, `h`, …) so a runner can map
 * a binding name to one buffer; see {@linkcode moeBufferSizes}. Hosts that
 * declare bindings themselves (Kiln's compiler, via `ops/moe.ts`) pass
 * {@linkcode MoeEmitOptions}: the emitters splice the host's names in where
 * they index each buffer, and can store `y` through a host function.
 *
 * @module
 */

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
export type MoeRouterKind = "softmax_topk" | "sigmoid_bias" | "switch";

/** Register tile of the expert GEMMs. */
export interface MoeTile {
  /** Rows per invocation, which is also the row-tile height experts are padded to. */
  rows: number;
  /** Output columns (of ff) per invocation in GEMM 1 (each computes W1 and W3 columns). */
  cols1: number;
  /** Output columns (of d) per invocation in GEMM 2. */
  cols2: number;
  /** Invocations per workgroup of the GEMMs. */
  wgSize: number;
  /** Accumulate in vec4 registers and reduce once after the K loop (vs. `dot` per step). */
  vecAccum: boolean;
}

/** Shape and semantics of one MoE layer. */
export interface MoeConfig {
  /** Tokens (baked in). */
  T: number;
  /** Model width. */
  d: number;
  /** Expert hidden width (intermediate size). */
  ff: number;
  /** Number of routed experts. */
  E: number;
  /** Experts per token. */
  k: number;
  /** Router kind. */
  router: MoeRouterKind;
  /** `softmax_topk` only: renormalise the k weights to sum 1 (Mixtral: true; Qwen2-MoE: false). Default true. */
  normTopk?: boolean;
  /** `sigmoid_bias` only: factor applied to the renormalised weights (DeepSeek-V3 `routed_scaling_factor`). Default 1. */
  routedScaling?: number;
  /** Capacity factor; undefined (default) means dropless. See {@linkcode moeCapacity}. */
  capacityFactor?: number;
  /** Storage type of W1, W3, W2 (router and activations stay f32). Default "f32". */
  weightDtype?: "f32" | "f16";
  /** Override of the GEMM register tile. */
  tile?: Partial<MoeTile>;
}

/** {@linkcode MoeConfig} with every default filled in and checked. */
export interface ResolvedMoeConfig extends Required<Omit<MoeConfig, "capacityFactor" | "tile">> {
  /** Capacity factor or undefined for dropless. */
  capacityFactor: number | undefined;
  /** GEMM register tile. */
  tile: MoeTile;
  /** Per-expert capacity (`0xFFFFFFFF` when dropless). */
  capacity: number;
  /** Upper bound on the number of row tiles after padding. */
  tilesMax: number;
  /** `tilesMax · tile.rows`: rows of the expert-sorted buffers. */
  rowsMax: number;
}

/** Element type of a binding. */
export type MoeBindingType = "f32" | "f16" | "u32" | "i32" | "atomic_u32";

/** The buffers the kernels use, by their library names (see {@linkcode moeBufferSizes}). */
export type MoeBufferName =
  | "x"
  | "wg"
  | "bias"
  | "w1"
  | "w3"
  | "w2"
  | "logits"
  | "probs"
  | "topk_idx"
  | "topk_w"
  | "sorted_token"
  | "sorted_w"
  | "tile_expert"
  | "slot_pos"
  | "counts"
  | "h"
  | "o"
  | "y"
  | "mask"
  | "aux"
  | "hd"
  | "hdense"
  | "table";

const BUFFER_NAMES: readonly MoeBufferName[] = [
  "x",
  "wg",
  "bias",
  "w1",
  "w3",
  "w2",
  "logits",
  "probs",
  "topk_idx",
  "topk_w",
  "sorted_token",
  "sorted_w",
  "tile_expert",
  "slot_pos",
  "counts",
  "h",
  "o",
  "y",
  "mask",
  "aux",
  "hd",
  "hdense",
  "table",
];

/**
 * How the emitted code refers to its buffers, for hosts (like Kiln's compiler)
 * that declare bindings under their own names. Every option defaults to the
 * standalone layout that {@linkcode declareBindings} and `moe_runner.ts` use.
 */
export interface MoeEmitOptions {
  /**
   * WGSL identifier each buffer is declared under (default: its library name).
   * The emitters splice these names in where they index the buffer, so member
   * accesses such as `wid.x` are never touched; names must be plain identifiers,
   * distinct, and must not start with the kernels' own prefixes (`acc_`, `pa`, …).
   */
  names?: Readonly<Partial<Record<MoeBufferName, string>>>;
  /**
   * Name of a WGSL function `fn(i: u32, v: f32)` that stores element `i` of `y`.
   * When set, `y` is written through it one scalar at a time (a fused epilogue,
   * or a split binding) and is not among the kernel's bindings.
   */
  yStore?: string;
  /**
   * Layout of `counts`: `"routed+kept"` (default, `[2E]`: routed pairs per
   * expert, then pairs kept after capacity) or `"routed"` (`[E]` only).
   */
  countsLayout?: "routed+kept" | "routed";
  /** Elements of `aux` written: 4 (default: aux, z, unmasked tokens, 0) or 2 (aux, z). */
  auxLength?: 2 | 4;
  /**
   * The aux kernel also writes the routed pairs per expert (all tokens, mask
   * ignored) to `counts[0..E)`: paths without a sort kernel still report counts.
   */
  auxCounts?: boolean;
  /** A `mask` buffer exists (default true); false treats every token as real. */
  mask?: boolean;
  /**
   * Expert → slot indirection: when set (the number of slots S), `w1`, `w3`, `w2`
   * hold S expert slabs and the kernels read expert e's weights from slab
   * `table[e]` (a `u32 [E]` buffer). A slot ≥ S (`MOE_NONE`: the expert is not
   * on this device) makes the expert contribute exactly 0: its pairs are
   * skipped by the decode GEMVs and its tiles write zero rows on the prefill
   * path (expert parallelism sums the devices' partial outputs; the cache
   * scheduler detects such pairs and re-runs the step). Unset: slab e is expert e.
   */
  slotTable?: number;
  /**
   * The router's first input (`wg`) holds given logits `[T, E]` instead of the
   * router weight: the router kernel only does softmax / top-k. A device that
   * computes a share of the experts receives the routing this way (so every
   * device selects the same experts, bit for bit).
   */
  logitsIn?: boolean;
}

type Names = Readonly<Record<MoeBufferName, string>>;

const IDENT = /^[A-Za-z][A-Za-z0-9_]*$/;

/** Resolves and checks {@linkcode MoeEmitOptions.names}. */
function namesOf(opts: MoeEmitOptions): Names {
  const out = {} as Record<MoeBufferName, string>;
  const seen = new Map<string, MoeBufferName>();
  for (const b of BUFFER_NAMES) {
    const n = opts.names?.[b] ?? b;
    if (!IDENT.test(n)) {
      throw new TypeError(`MoE buffer name for "${b}" must be a WGSL identifier: received "${n}"`);
    }
    const prev = seen.get(n);
    if (prev !== undefined) {
      throw new TypeError(`MoE buffer names of "${prev}" and "${b}" are both "${n}"`);
    }
    seen.set(n, b);
    out[b] = n;
  }
  if (opts.yStore !== undefined && !IDENT.test(opts.yStore)) {
    throw new TypeError(`MoE yStore must be a WGSL function name: received "${opts.yStore}"`);
  }
  return out;
}

/** One storage binding of a kernel, in binding-index order. */
export interface MoeBinding {
  /** Buffer name used in the WGSL code (after {@linkcode MoeEmitOptions.names}). */
  name: string;
  /** The library's name of the buffer. */
  buffer: MoeBufferName;
  /** Element type. */
  type: MoeBindingType;
  /** Access mode. */
  access: "read" | "read_write";
  /**
   * When 4, the code indexes the buffer as `array<vec4<type>>` (a vec4 view of
   * the same bytes); absent means a scalar array.
   */
  vector?: 4;
}

/** An emitted kernel: WGSL without bindings, dispatch size, label and bindings. */
export interface MoeKernel {
  /** WGSL: constants, helpers and one `@compute` entry point named `main`. */
  code: string;
  /** Workgroup counts for `dispatchWorkgroups`. */
  workgroups: [number, number, number];
  /** Short name for plans and profiles. */
  label: string;
  /** Storage bindings in `@binding` order. */
  bindings: MoeBinding[];
}

/** `0xFFFFFFFF`: "no expert / no row" marker in the index buffers. */
export const MOE_NONE = 0xffffffff;

const MAX_WG_PER_DIM = 65535;

function u(n: number): string {
  return `${n >>> 0}u`;
}

function f(n: number): string {
  const s = String(n);
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

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
 * import { moeCapacity } from "./moe_kernels.ts";
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

function largestDivisor(n: number, candidates: number[]): number {
  for (const c of candidates) if (n % c === 0) return c;
  return 1;
}

/**
 * Fills defaults and validates a {@linkcode MoeConfig}.
 *
 * @example
 * ```ts
 * import { resolveMoeConfig } from "./moe_kernels.ts";
 * const c = resolveMoeConfig({ T: 8, d: 16, ff: 32, E: 4, k: 2, router: "softmax_topk" });
 * console.log(c.tilesMax, c.rowsMax);
 * ```
 */
export function resolveMoeConfig(cfg: MoeConfig): ResolvedMoeConfig {
  for (const key of ["T", "d", "ff", "E", "k"] as const) posInt(key, cfg[key]);
  const { T, d, ff, E, k } = cfg;
  if (E > 256) throw new RangeError(`MoE E must be at most 256: received ${E}`);
  if (k > E) throw new RangeError(`MoE k must be at most E (${E}): received ${k}`);
  if (!["softmax_topk", "sigmoid_bias", "switch"].includes(cfg.router)) {
    throw new TypeError(
      `MoE router must be softmax_topk, sigmoid_bias or switch: received "${cfg.router}"`,
    );
  }
  if (cfg.router === "switch" && k !== 1) {
    throw new RangeError(`MoE switch router is top-1: received k = ${k}`);
  }
  const weightDtype = cfg.weightDtype ?? "f32";
  if (weightDtype !== "f32" && weightDtype !== "f16") {
    throw new TypeError(`MoE weightDtype must be "f32" or "f16": received "${weightDtype}"`);
  }
  if (cfg.capacityFactor !== undefined && !(cfg.capacityFactor > 0)) {
    throw new RangeError(`MoE capacityFactor must be positive: received ${cfg.capacityFactor}`);
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
    capacityFactor: cfg.capacityFactor,
    weightDtype,
    tile: { rows, cols1, cols2, wgSize, vecAccum },
    capacity: cap ?? MOE_NONE,
    tilesMax,
    rowsMax: tilesMax * rows,
  };
}

/**
 * Sizes in elements (4-byte for f32/u32, 2-byte for f16 weights) of every named
 * buffer the kernels use.
 *
 * @example
 * ```ts
 * import { moeBufferSizes } from "./moe_kernels.ts";
 * const s = moeBufferSizes({ T: 8, d: 16, ff: 32, E: 4, k: 2, router: "softmax_topk" });
 * console.log(s.h); // rowsMax · ff
 * ```
 */
export function moeBufferSizes(cfg: MoeConfig): Record<string, number> {
  const c = resolveMoeConfig(cfg);
  const { T, d, ff, E, k, rowsMax, tilesMax } = c;
  const tpe = Math.ceil(T / c.tile.rows);
  return {
    x: T * d,
    wg: E * d,
    bias: E,
    w1: E * ff * d,
    w3: E * ff * d,
    w2: E * d * ff,
    logits: T * E,
    probs: T * E,
    topk_idx: T * k,
    topk_w: T * k,
    sorted_token: rowsMax,
    sorted_w: rowsMax,
    tile_expert: tilesMax,
    slot_pos: T * k,
    counts: 2 * E,
    h: rowsMax * ff,
    o: rowsMax * d,
    y: T * d,
    mask: T,
    aux: 4,
    hd: T * k * ff,
    hdense: E * tpe * c.tile.rows * ff,
  };
}

/**
 * Writes `@group(group) @binding(i) var<storage, …>` declarations for a kernel's
 * bindings, in order, so `declareBindings(k) + k.code` is a complete shader
 * (prefix `enable f16;` when a binding is f16).
 *
 * @example
 * ```ts
 * import { declareBindings, emitCombine } from "./moe_kernels.ts";
 * const k = emitCombine({ T: 4, d: 8, ff: 16, E: 4, k: 2, router: "softmax_topk" });
 * const wgsl = declareBindings(k) + k.code;
 * ```
 */
export function declareBindings(kernel: MoeKernel, group = 0): string {
  const lines = kernel.bindings.map((b, i) => {
    const elem = b.type === "atomic_u32"
      ? "atomic<u32>"
      : b.vector === 4
      ? `vec4<${b.type}>`
      : b.type;
    const mode = b.access === "read" ? "read" : "read_write";
    return `@group(${group}) @binding(${i}) var<storage, ${mode}> ${b.name}: array<${elem}>;`;
  });
  return lines.join("\n") + "\n";
}

/**
 * True when any binding of the kernel is f16 (the shader needs `enable f16;`).
 *
 * @example
 * ```ts
 * import { emitGroupedGemm1, kernelNeedsF16 } from "./moe_kernels.ts";
 * const k = emitGroupedGemm1({ T: 8, d: 16, ff: 16, E: 4, k: 2, router: "softmax_topk", weightDtype: "f16" });
 * kernelNeedsF16(k); // true
 * ```
 */
export function kernelNeedsF16(kernel: MoeKernel): boolean {
  return kernel.bindings.some((b) => b.type === "f16");
}

function grid(workgroups: number): [number, number, number] {
  const n = Math.max(1, workgroups);
  if (n <= MAX_WG_PER_DIM) return [n, 1, 1];
  return [MAX_WG_PER_DIM, Math.ceil(n / MAX_WG_PER_DIM), 1];
}

/** Entry point whose invocations are numbered linearly: `g` in `[0, total)`. */
function linearEntry(wgSize: number, workgroups: [number, number, number], total: number): string {
  return [
    `@compute @workgroup_size(${wgSize})`,
    "fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {",
    `  let g = (wid.x + wid.y * ${u(workgroups[0])}) * ${u(wgSize)} + lid;`,
    `  if (g >= ${u(total)}) { return; }`,
  ].join("\n");
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

// ---------------------------------------------------------------- router

/**
 * Fused router: `logits = x·Wgᵀ` (one invocation per (token, expert)), then one
 * invocation per token does softmax / sigmoid, top-k (ties → lower index) and
 * the weights. Writes `logits [T, E]`, `probs [T, E]` (softmax probabilities;
 * for `sigmoid_bias` the normalised affinities s/Σs used by DeepSeek's balance
 * loss), `topk_idx [T, k]`, `topk_w [T, k]`.
 *
 * Selection compares logits for the softmax kinds (same order as the
 * probabilities, but exp/rounding cannot create false ties) and `sigmoid + bias`
 * for `sigmoid_bias`.
 *
 * @example
 * ```ts
 * import { emitRouter } from "./moe_kernels.ts";
 * const k = emitRouter({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" });
 * console.log(k.label, k.workgroups);
 * ```
 */
export function emitRouter(cfg: MoeConfig, opts: MoeEmitOptions = {}): MoeKernel {
  const c = resolveMoeConfig(cfg);
  const nm = namesOf(opts);
  const { T, d, E, k } = c;
  const V = d % 4 === 0 ? 4 : 1;
  const KV = d / V;
  const tpw = Math.max(1, Math.floor(64 / E)); // tokens per workgroup
  const wgSize = tpw * E;
  const workgroups = grid(Math.ceil(T / tpw));
  const given = opts.logitsIn === true;
  const bindings: MoeBinding[] = given
    ? [bnd(nm, "wg", "f32", "read")]
    : [bnd(nm, "x", "f32", "read", V), bnd(nm, "wg", "f32", "read", V)];
  if (c.router === "sigmoid_bias") bindings.push(bnd(nm, "bias", "f32", "read"));
  bindings.push(
    bnd(nm, "logits", "f32", "read_write"),
    bnd(nm, "probs", "f32", "read_write"),
    bnd(nm, "topk_idx", "u32", "read_write"),
    bnd(nm, "topk_w", "f32", "read_write"),
  );
  const dotExpr = V === 4
    ? `dot(${nm.x}[xb + i], ${nm.wg}[wb + i])`
    : `${nm.x}[xb + i] * ${nm.wg}[wb + i]`;
  const sig = c.router === "sigmoid_bias";
  const score = sig ? `(1.0 / (1.0 + exp(-lg[b + i])) + ${nm.bias}[i])` : "lg[b + i]";
  const weightLines = c.router === "sigmoid_bias"
    ? [
      `  let scale = ${f(c.routedScaling)} / wsum;`,
      `  for (var j = 0u; j < ${u(k)}; j++) { ${nm.topk_w}[t * ${u(k)} + j] = wsel[j] * scale; }`,
    ]
    : c.router === "softmax_topk" && c.normTopk
    ? [`  for (var j = 0u; j < ${u(k)}; j++) { ${nm.topk_w}[t * ${u(k)} + j] = wsel[j] / wsum; }`]
    : [`  for (var j = 0u; j < ${u(k)}; j++) { ${nm.topk_w}[t * ${u(k)} + j] = wsel[j]; }`];
  const code = `
const NONE: u32 = 0xFFFFFFFFu;
var<workgroup> lg: array<f32, ${wgSize}>;

@compute @workgroup_size(${wgSize})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tl = lid / ${u(E)};
  let e = lid % ${u(E)};
  let t = (wid.x + wid.y * ${u(workgroups[0])}) * ${u(tpw)} + tl;
  if (t < ${u(T)}) {
${
    given ? `    let acc = ${nm.wg}[t * ${u(E)} + e];` : `    let xb = t * ${u(KV)};
    let wb = e * ${u(KV)};
    var acc = 0.0;
    for (var i = 0u; i < ${u(KV)}; i++) { acc += ${dotExpr}; }`
  }
    lg[lid] = acc;
    ${nm.logits}[t * ${u(E)} + e] = acc;
  }
  workgroupBarrier();
  if (e != 0u || t >= ${u(T)}) { return; }
  let b = tl * ${u(E)};
  var m = lg[b];
  for (var i = 1u; i < ${u(E)}; i++) { m = max(m, lg[b + i]); }
  var s = 0.0;
  for (var i = 0u; i < ${u(E)}; i++) { s += ${
    sig ? "1.0 / (1.0 + exp(-lg[b + i]))" : "exp(lg[b + i] - m)"
  }; }
  for (var i = 0u; i < ${u(E)}; i++) {
    ${nm.probs}[t * ${u(E)} + i] = ${
    sig ? "(1.0 / (1.0 + exp(-lg[b + i]))) / s" : "exp(lg[b + i] - m) / s"
  };
  }
  // top-k by repeated argmax; strict '>' scanning upwards gives ties to the lower index.
  var taken: array<u32, ${Math.ceil(E / 32)}>;
  var wsel: array<f32, ${k}>;
  var wsum = 0.0;
  for (var j = 0u; j < ${u(k)}; j++) {
    var best = NONE;
    var bv = 0.0;
    for (var i = 0u; i < ${u(E)}; i++) {
      if ((taken[i / 32u] & (1u << (i % 32u))) != 0u) { continue; }
      let v = ${score};
      if (best == NONE || v > bv) { best = i; bv = v; }
    }
    taken[best / 32u] |= 1u << (best % 32u);
    ${nm.topk_idx}[t * ${u(k)} + j] = best;
    let raw = ${sig ? "1.0 / (1.0 + exp(-lg[b + best]))" : "exp(lg[b + best] - m) / s"};
    wsel[j] = raw;
    wsum += raw;
  }
${weightLines.join("\n")}
}
`;
  const label = `moe_router_${c.router}_e${E}k${k}${given ? "_given" : ""}`;
  return { code, workgroups, label, bindings };
}

// ---------------------------------------------------------------- sort

/**
 * On-GPU sort of the (token, slot) pairs by expert, in a single workgroup of 256
 * invocations (the work is O(T·k), tiny next to the GEMMs, and one workgroup
 * makes the whole thing barrier-synchronised without extra launches):
 * histogram (workgroup atomics) → capacity → exclusive prefix sum with each
 * segment padded up to `tile.rows` → tile→expert table and padding rows →
 * scatter, where a pair's rank inside its expert is the number of earlier tokens
 * that chose the same expert (bit masks + popcount per chunk of 256 tokens), so
 * the order is token order regardless of scheduling. Pairs with rank ≥ capacity
 * are dropped (`slot_pos = NONE`).
 *
 * Outputs: `sorted_token [rowsMax]` (NONE on padding rows), `sorted_w [rowsMax]`,
 * `tile_expert [tilesMax]` (NONE past the last tile), `slot_pos [T, k]` (row of
 * each pair, NONE when dropped), `counts [2E]` (routed pairs per expert, then
 * kept pairs per expert).
 *
 * @example
 * ```ts
 * import { emitSort } from "./moe_kernels.ts";
 * const k = emitSort({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" });
 * console.log(k.workgroups); // [1, 1, 1]
 * ```
 */
export function emitSort(cfg: MoeConfig, opts: MoeEmitOptions = {}): MoeKernel {
  const c = resolveMoeConfig(cfg);
  const nm = namesOf(opts);
  const keptCounts = (opts.countsLayout ?? "routed+kept") === "routed+kept";
  const { T, E, k, rowsMax } = c;
  const TM = c.tile.rows;
  const W = 256;
  const nChunks = Math.ceil(T / W);
  const code = `
const NONE: u32 = 0xFFFFFFFFu;
var<workgroup> cnt: array<atomic<u32>, ${E}>;
var<workgroup> kept: array<u32, ${E}>;
var<workgroup> seg: array<u32, ${E + 1}>;
var<workgroup> base: array<u32, ${E}>;
var<workgroup> bits: array<atomic<u32>, ${E * 8}>;

@compute @workgroup_size(${W})
fn main(@builtin(local_invocation_index) li: u32) {
  if (li < ${u(E)}) { atomicStore(&cnt[li], 0u); base[li] = 0u; }
  workgroupBarrier();
  for (var ch = 0u; ch < ${u(nChunks)}; ch++) {
    let t = ch * ${u(W)} + li;
    if (t < ${u(T)}) {
      for (var j = 0u; j < ${u(k)}; j++) { atomicAdd(&cnt[min(${nm.topk_idx}[t * ${u(k)} + j], ${
    u(E - 1)
  })], 1u); }
    }
  }
  workgroupBarrier();
  if (li == 0u) {
    var s = 0u;
    for (var e = 0u; e < ${u(E)}; e++) {
      let n = atomicLoad(&cnt[e]);
      let kp = min(n, ${u(c.capacity)});
      ${nm.counts}[e] = n;
${keptCounts ? `      ${nm.counts}[${u(E)} + e] = kp;\n` : ""}      kept[e] = kp;
      seg[e] = s;
      s += (kp + ${u(TM - 1)}) / ${u(TM)} * ${u(TM)};
    }
    seg[${u(E)}] = s;
  }
  workgroupBarrier();
  // Tile table and padding rows (disjoint from the rows the scatter writes).
  for (var r = li; r < ${u(rowsMax)}; r += ${u(W)}) {
    var owner = NONE;
    for (var e = 0u; e < ${u(E)}; e++) {
      if (r >= seg[e] && r < seg[e + 1u]) { owner = e; }
    }
    if (owner == NONE || r - seg[owner] >= kept[owner]) {
      ${nm.sorted_token}[r] = NONE;
      ${nm.sorted_w}[r] = 0.0;
    }
    if (r % ${u(TM)} == 0u) { ${nm.tile_expert}[r / ${u(TM)}] = owner; }
  }
  for (var ch = 0u; ch < ${u(nChunks)}; ch++) {
    for (var i = li; i < ${u(E * 8)}; i += ${u(W)}) { atomicStore(&bits[i], 0u); }
    workgroupBarrier();
    let t = ch * ${u(W)} + li;
    let word = li / 32u;
    let bit = 1u << (li % 32u);
    if (t < ${u(T)}) {
      for (var j = 0u; j < ${u(k)}; j++) {
        let e = min(${nm.topk_idx}[t * ${u(k)} + j], ${u(E - 1)});
        atomicOr(&bits[e * 8u + word], bit);
      }
    }
    workgroupBarrier();
    if (t < ${u(T)}) {
      for (var j = 0u; j < ${u(k)}; j++) {
        let e = min(${nm.topk_idx}[t * ${u(k)} + j], ${u(E - 1)});
        var rank = base[e] + countOneBits(atomicLoad(&bits[e * 8u + word]) & (bit - 1u));
        for (var w = 0u; w < word; w++) { rank += countOneBits(atomicLoad(&bits[e * 8u + w])); }
        if (rank < kept[e]) {
          let pos = seg[e] + rank;
          ${nm.sorted_token}[pos] = t;
          ${nm.sorted_w}[pos] = ${nm.topk_w}[t * ${u(k)} + j];
          ${nm.slot_pos}[t * ${u(k)} + j] = pos;
        } else {
          ${nm.slot_pos}[t * ${u(k)} + j] = NONE;
        }
      }
    }
    workgroupBarrier();
    if (li < ${u(E)}) {
      var n = 0u;
      for (var w = 0u; w < 8u; w++) { n += countOneBits(atomicLoad(&bits[li * 8u + w])); }
      base[li] += n;
    }
    workgroupBarrier();
  }
}
`;
  return {
    code,
    workgroups: [1, 1, 1],
    label: `moe_sort_e${E}_tm${TM}${c.capacity === MOE_NONE ? "" : `_cap${c.capacity}`}`,
    bindings: [
      bnd(nm, "topk_idx", "u32", "read"),
      bnd(nm, "topk_w", "f32", "read"),
      bnd(nm, "sorted_token", "u32", "read_write"),
      bnd(nm, "sorted_w", "f32", "read_write"),
      bnd(nm, "tile_expert", "u32", "read_write"),
      bnd(nm, "slot_pos", "u32", "read_write"),
      bnd(nm, "counts", "u32", "read_write"),
    ],
  };
}

// ---------------------------------------------------------------- GEMMs

function wType(c: ResolvedMoeConfig): "f32" | "f16" {
  return c.weightDtype;
}

/** A weight load converted to f32 (f16 weights are widened after the load). */
function wLoad(c: ResolvedMoeConfig, name: string, idx: string, V: number): string {
  if (c.weightDtype === "f32") return `${name}[${idx}]`;
  return V === 4 ? `vec4<f32>(${name}[${idx}])` : `f32(${name}[${idx}])`;
}

function vecOpt(V: number): { vector?: 4 } {
  return V === 4 ? { vector: 4 } : {};
}

/** A binding of library buffer `buffer` under its mapped name. */
function bnd(
  nm: Names,
  buffer: MoeBufferName,
  type: MoeBindingType,
  access: "read" | "read_write",
  V = 1,
): MoeBinding {
  return { name: nm[buffer], buffer, type, access, ...vecOpt(V) };
}

/**
 * Register-tiled K loop shared by every expert GEMM: `R` A rows (`aIdx(r)` is
 * the vec index of row r's start) times `N` output columns of each weight matrix
 * in `mats` (`bIdx(j)` is the vec index of weight row j's start). Declares
 * accumulators `acc_<m>_<r>_<j>`.
 */
function kLoop(
  c: ResolvedMoeConfig,
  R: number,
  N: number,
  KV: number,
  V: number,
  aName: string,
  aIdx: (r: number) => string,
  mats: { name: string; bIdx: (j: number) => string }[],
): string[] {
  const L: string[] = [];
  // vec4 accumulators: one FMA per lane-element instead of dot's mul + horizontal add.
  const va = V === 4 && c.tile.vecAccum;
  for (const [m] of mats.entries()) {
    for (const r of range(R)) {
      for (const j of range(N)) {
        L.push(`  var ${va ? "v" : ""}acc_${m}_${r}_${j} = ${va ? "vec4<f32>(0.0)" : "0.0"};`);
      }
    }
  }
  for (const r of range(R)) L.push(`  let pa${r} = ${aIdx(r)};`);
  for (const [m, mat] of mats.entries()) {
    for (const j of range(N)) L.push(`  let pb${m}_${j} = ${mat.bIdx(j)};`);
  }
  L.push(`  for (var kk = 0u; kk < ${u(KV)}; kk++) {`);
  for (const r of range(R)) L.push(`    let a${r} = ${aName}[pa${r} + kk];`);
  for (const [m, mat] of mats.entries()) {
    for (const j of range(N)) {
      L.push(`    let b${m}_${j} = ${wLoad(c, mat.name, `pb${m}_${j} + kk`, V)};`);
    }
    for (const r of range(R)) {
      for (const j of range(N)) {
        L.push(
          va
            ? `    vacc_${m}_${r}_${j} = fma(a${r}, b${m}_${j}, vacc_${m}_${r}_${j});`
            : V === 4
            ? `    acc_${m}_${r}_${j} += dot(a${r}, b${m}_${j});`
            : `    acc_${m}_${r}_${j} = fma(a${r}, b${m}_${j}, acc_${m}_${r}_${j});`,
        );
      }
    }
  }
  L.push("  }");
  if (va) {
    for (const [m] of mats.entries()) {
      for (const r of range(R)) {
        for (const j of range(N)) {
          L.push(`  let acc_${m}_${r}_${j} = dot(vacc_${m}_${r}_${j}, vec4<f32>(1.0));`);
        }
      }
    }
  }
  return L;
}

/**
 * Stores `N` consecutive columns of row `rowExpr` (vec4 stores when possible).
 * With `store` (a function `fn(i: u32, v: f32)`), one scalar call per column.
 */
function storeRow(
  out: string,
  width: number,
  rowExpr: string,
  col0: string,
  vals: string[],
  store?: string,
): string[] {
  const N = vals.length;
  const L: string[] = [];
  if (store !== undefined) {
    for (const j of range(N)) {
      L.push(`    ${store}((${rowExpr}) * ${u(width)} + ${col0} + ${u(j)}, ${vals[j]});`);
    }
  } else if (N % 4 === 0 && width % 4 === 0) {
    for (let q = 0; q < N / 4; q++) {
      L.push(
        `    ${out}[(${rowExpr}) * ${u(width / 4)} + ${col0} / 4u + ${u(q)}] = vec4<f32>(${
          vals.slice(q * 4, q * 4 + 4).join(", ")
        });`,
      );
    }
  } else {
    for (const j of range(N)) {
      L.push(`    ${out}[(${rowExpr}) * ${u(width)} + ${col0} + ${u(j)}] = ${vals[j]};`);
    }
  }
  return L;
}

/** WGSL expression of the weight slab of expert expression `e` (through the slot table, if any). */
function slabOf(nm: Names, opts: MoeEmitOptions, e: string): string {
  const S = opts.slotTable;
  return S === undefined ? e : `${nm.table}[${e}]`;
}

/** WGSL condition: slab expression `es` names no slot on this device (the expert is skipped). */
function absent(opts: MoeEmitOptions, es: string): string | undefined {
  const S = opts.slotTable;
  return S === undefined ? undefined : `${es} >= ${u(S)}`;
}

/** The slot-table binding, when the weights are indexed through one. */
function tableBinding(nm: Names, opts: MoeEmitOptions): MoeBinding[] {
  return opts.slotTable === undefined ? [] : [bnd(nm, "table", "u32", "read")];
}

/**
 * Bindings of the second expert GEMV (decode and dense paths): the hidden rows `h`
 * (vec`V`), W2, the routing, the slot table if any, and y unless a store epilogue
 * replaces it (vec4 when both N and d allow).
 */
function gemv2Bindings(
  nm: Names,
  opts: MoeEmitOptions,
  c: ReturnType<typeof resolveMoeConfig>,
  h: "hd" | "hdense",
  V: number,
  N: number,
): MoeBinding[] {
  return [
    bnd(nm, h, "f32", "read", V),
    bnd(nm, "w2", wType(c), "read", V),
    bnd(nm, "topk_idx", "u32", "read"),
    bnd(nm, "topk_w", "f32", "read"),
    ...tableBinding(nm, opts),
    ...(opts.yStore === undefined
      ? [bnd(nm, "y", "f32", "read_write", N % 4 === 0 && c.d % 4 === 0 ? 4 : 1)]
      : []),
  ];
}

// Prefixed so it cannot clash with helpers a host adds to the shader.
const SILU = "fn moe_silu(v: f32) -> f32 { return v / (1.0 + exp(-v)); }";

function gemm1Like(
  c: ResolvedMoeConfig,
  mode: "grouped" | "dense",
  opts: MoeEmitOptions,
): MoeKernel {
  const nm = namesOf(opts);
  const { d, ff, E, T } = c;
  const { rows: R, cols1: N, wgSize } = c.tile;
  const V = d % 4 === 0 ? 4 : 1;
  const KV = d / V;
  const nct = ff / N;
  const tpe = Math.ceil(T / R);
  const tiles = mode === "grouped" ? c.tilesMax : E * tpe;
  const total = tiles * nct;
  const workgroups = grid(Math.ceil(total / wgSize));
  const hVec = N % 4 === 0 && ff % 4 === 0;
  const outBuf = mode === "grouped" ? "h" : "hdense";
  const out = nm[outBuf];
  const L: string[] = ["const NONE: u32 = 0xFFFFFFFFu;", linearEntry(wgSize, workgroups, total)];
  L.push(`  let tile = g / ${u(nct)};`);
  L.push(`  let col0 = (g % ${u(nct)}) * ${u(N)};`);
  if (mode === "grouped") {
    // Empty / padding tiles leave before touching any weight.
    L.push(`  let e = ${nm.tile_expert}[tile];`);
    L.push("  if (e == NONE) { return; }");
    L.push(`  let es = ${slabOf(nm, opts, "e")};`);
    const skip = absent(opts, "es");
    if (skip) L.push(`  if (${skip}) { return; }`); // GEMM 2 writes the tile's zero rows
    L.push(`  let row0 = tile * ${u(R)};`);
    for (const r of range(R)) {
      // The gather is folded into the A load; padding rows read token 0 and are never used.
      L.push(`  let tok${r} = ${nm.sorted_token}[row0 + ${u(r)}];`);
      L.push(`  let ar${r} = select(tok${r}, 0u, tok${r} == NONE);`);
    }
  } else {
    L.push(`  let e = tile / ${u(tpe)};`);
    L.push(`  let es = min(${slabOf(nm, opts, "e")}, ${u((opts.slotTable ?? E) - 1)});`);
    L.push(`  let row0 = tile * ${u(R)};`);
    for (const r of range(R)) {
      L.push(`  let ar${r} = min((tile % ${u(tpe)}) * ${u(R)} + ${u(r)}, ${u(T - 1)});`);
    }
  }
  L.push(
    ...kLoop(c, R, N, KV, V, nm.x, (r) => `ar${r} * ${u(KV)}`, [
      { name: nm.w1, bIdx: (j) => `(es * ${u(ff)} + col0 + ${u(j)}) * ${u(KV)}` },
      { name: nm.w3, bIdx: (j) => `(es * ${u(ff)} + col0 + ${u(j)}) * ${u(KV)}` },
    ]),
  );
  for (const r of range(R)) {
    L.push("  {");
    const vals = range(N).map((j) => `moe_silu(acc_0_${r}_${j}) * acc_1_${r}_${j}`);
    L.push(...storeRow(out, ff, `row0 + ${u(r)}`, "col0", vals));
    L.push("  }");
  }
  L.push("}");
  L.push(SILU);
  const bindings: MoeBinding[] = [
    bnd(nm, "x", "f32", "read", V),
    bnd(nm, "w1", wType(c), "read", V),
    bnd(nm, "w3", wType(c), "read", V),
    ...tableBinding(nm, opts),
  ];
  if (mode === "grouped") {
    bindings.push(bnd(nm, "sorted_token", "u32", "read"), bnd(nm, "tile_expert", "u32", "read"));
  }
  bindings.push(bnd(nm, outBuf, "f32", "read_write", hVec ? 4 : 1));
  return {
    code: L.join("\n") + "\n",
    workgroups,
    label: `moe_${mode}_gemm1_${R}x${N}x2_${c.weightDtype}`,
    bindings,
  };
}

/**
 * Grouped GEMM 1 over all row tiles of all experts in one launch:
 * `h[row] = silu(x[sorted_token[row]]·W1ₑᵀ) ⊙ (x[sorted_token[row]]·W3ₑᵀ)`,
 * `e = tile_expert[row / tile.rows]`. Both products share the A loads; tiles past
 * the last one exit at once.
 *
 * @example
 * ```ts
 * import { emitGroupedGemm1 } from "./moe_kernels.ts";
 * const k = emitGroupedGemm1({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" });
 * console.log(k.label);
 * ```
 */
export function emitGroupedGemm1(cfg: MoeConfig, opts: MoeEmitOptions = {}): MoeKernel {
  return gemm1Like(resolveMoeConfig(cfg), "grouped", opts);
}

/**
 * Dense-baseline GEMM 1: every token through every expert,
 * `hdense[e, t] = silu(x[t]·W1ₑᵀ) ⊙ (x[t]·W3ₑᵀ)` (tokens padded to `tile.rows`
 * per expert). Same register tile as {@linkcode emitGroupedGemm1}, so the
 * benchmark ratio compares routing, not code quality.
 *
 * @example
 * ```ts
 * import { emitDenseGemm1 } from "./moe_kernels.ts";
 * const k = emitDenseGemm1({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" });
 * ```
 */
export function emitDenseGemm1(cfg: MoeConfig, opts: MoeEmitOptions = {}): MoeKernel {
  return gemm1Like(resolveMoeConfig(cfg), "dense", opts);
}

/**
 * Grouped GEMM 2: `o[row] = sorted_w[row] · (h[row]·W2ₑᵀ)` for every real row
 * (the routing weight is the epilogue). Results stay in sorted order; the
 * combine kernel sums each token's slots.
 *
 * @example
 * ```ts
 * import { emitGroupedGemm2 } from "./moe_kernels.ts";
 * const k = emitGroupedGemm2({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" });
 * ```
 */
export function emitGroupedGemm2(cfg: MoeConfig, opts: MoeEmitOptions = {}): MoeKernel {
  const c = resolveMoeConfig(cfg);
  const nm = namesOf(opts);
  const { d, ff, tilesMax } = c;
  const { rows: R, cols2: N, wgSize } = c.tile;
  const V = ff % 4 === 0 ? 4 : 1;
  const KV = ff / V;
  const nct = d / N;
  const total = tilesMax * nct;
  const workgroups = grid(Math.ceil(total / wgSize));
  const oVec = N % 4 === 0 && d % 4 === 0;
  const L: string[] = ["const NONE: u32 = 0xFFFFFFFFu;", linearEntry(wgSize, workgroups, total)];
  L.push(`  let tile = g / ${u(nct)};`);
  L.push(`  let col0 = (g % ${u(nct)}) * ${u(N)};`);
  L.push(`  let e = ${nm.tile_expert}[tile];`);
  L.push("  if (e == NONE) { return; }");
  L.push(`  let es = ${slabOf(nm, opts, "e")};`);
  L.push(`  let row0 = tile * ${u(R)};`);
  const skip = absent(opts, "es");
  if (skip) {
    // An expert on another device: its rows add exactly 0 in the combine.
    L.push(`  if (${skip}) {`);
    for (const r of range(R)) {
      L.push(...storeRow(nm.o, d, `row0 + ${u(r)}`, "col0", range(N).map(() => "0.0")));
    }
    L.push("    return;");
    L.push("  }");
  }
  L.push(
    ...kLoop(c, R, N, KV, V, nm.h, (r) => `(row0 + ${u(r)}) * ${u(KV)}`, [
      { name: nm.w2, bIdx: (j) => `(es * ${u(d)} + col0 + ${u(j)}) * ${u(KV)}` },
    ]),
  );
  for (const r of range(R)) {
    L.push("  {");
    L.push(`    let sw = ${nm.sorted_w}[row0 + ${u(r)}];`);
    L.push(
      ...storeRow(nm.o, d, `row0 + ${u(r)}`, "col0", range(N).map((j) => `sw * acc_0_${r}_${j}`)),
    );
    L.push("  }");
  }
  L.push("}");
  return {
    code: L.join("\n") + "\n",
    workgroups,
    label: `moe_grouped_gemm2_${R}x${N}_${c.weightDtype}`,
    bindings: [
      bnd(nm, "h", "f32", "read", V),
      bnd(nm, "w2", wType(c), "read", V),
      bnd(nm, "sorted_w", "f32", "read"),
      bnd(nm, "tile_expert", "u32", "read"),
      bnd(nm, "o", "f32", "read_write", oVec ? 4 : 1),
      ...tableBinding(nm, opts),
    ],
  };
}

/**
 * Combine: `y[t] = Σⱼ o[slot_pos[t, j]]` in slot order (dropped slots add 0).
 * A fixed summation order keeps results bit-reproducible, unlike float atomics.
 *
 * @example
 * ```ts
 * import { emitCombine } from "./moe_kernels.ts";
 * const k = emitCombine({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" });
 * ```
 */
export function emitCombine(cfg: MoeConfig, opts: MoeEmitOptions = {}): MoeKernel {
  const c = resolveMoeConfig(cfg);
  const nm = namesOf(opts);
  const { T, d, k } = c;
  const V = d % 4 === 0 ? 4 : 1;
  const DV = d / V;
  const total = T * DV;
  const workgroups = grid(Math.ceil(total / 64));
  const zero = V === 4 ? "vec4<f32>(0.0)" : "0.0";
  const code = `
const NONE: u32 = 0xFFFFFFFFu;
${linearEntry(64, workgroups, total)}
  let t = g / ${u(DV)};
  let cv = g % ${u(DV)};
  var s = ${zero};
  for (var j = 0u; j < ${u(k)}; j++) {
    let p = ${nm.slot_pos}[t * ${u(k)} + j];
    if (p != NONE) { s += ${nm.o}[p * ${u(DV)} + cv]; }
  }
${
    opts.yStore === undefined
      ? `  ${nm.y}[g] = s;`
      : V === 4
      ? ["x", "y", "z", "w"].map((ch, q) => `  ${opts.yStore}(g * 4u + ${u(q)}, s.${ch});`).join(
        "\n",
      )
      : `  ${opts.yStore}(g, s);`
  }
}
`;
  return {
    code,
    workgroups,
    label: `moe_combine_k${k}`,
    bindings: [
      bnd(nm, "o", "f32", "read", V),
      bnd(nm, "slot_pos", "u32", "read"),
      ...(opts.yStore === undefined ? [bnd(nm, "y", "f32", "read_write", V)] : []),
    ],
  };
}

/**
 * Dense-baseline GEMM 2: `y[t] = Σₑ gₜₑ · (hdense[e, t]·W2ₑᵀ)` where `gₜₑ` is the
 * routing weight of e for t, 0 when e was not chosen (computed anyway).
 *
 * @example
 * ```ts
 * import { emitDenseGemm2 } from "./moe_kernels.ts";
 * const k = emitDenseGemm2({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" });
 * ```
 */
export function emitDenseGemm2(cfg: MoeConfig, opts: MoeEmitOptions = {}): MoeKernel {
  const c = resolveMoeConfig(cfg);
  const nm = namesOf(opts);
  const { T, d, ff, E, k } = c;
  const { rows: R, cols2: N, wgSize } = c.tile;
  const V = ff % 4 === 0 ? 4 : 1;
  const KV = ff / V;
  const tpe = Math.ceil(T / R);
  const nct = d / N;
  const total = tpe * nct;
  const workgroups = grid(Math.ceil(total / wgSize));
  const L: string[] = [linearEntry(wgSize, workgroups, total)];
  L.push(`  let tt = g / ${u(nct)};`);
  L.push(`  let col0 = (g % ${u(nct)}) * ${u(N)};`);
  for (const r of range(R)) {
    L.push(`  let tr${r} = min(tt * ${u(R)} + ${u(r)}, ${u(T - 1)});`);
    for (const j of range(N)) L.push(`  var y_${r}_${j} = 0.0;`);
  }
  L.push(`  for (var e = 0u; e < ${u(E)}; e++) {`);
  L.push(`    let es = min(${slabOf(nm, opts, "e")}, ${u((opts.slotTable ?? E) - 1)});`);
  const inner = kLoop(
    c,
    R,
    N,
    KV,
    V,
    nm.hdense,
    (r) => `(e * ${u(tpe * R)} + tt * ${u(R)} + ${u(r)}) * ${u(KV)}`,
    [
      { name: nm.w2, bIdx: (j) => `(es * ${u(d)} + col0 + ${u(j)}) * ${u(KV)}` },
    ],
  );
  L.push(...inner.map((s) => "  " + s));
  for (const r of range(R)) {
    L.push(`    var gw${r} = 0.0;`);
    L.push(`    for (var j = 0u; j < ${u(k)}; j++) {`);
    L.push(
      `      if (${nm.topk_idx}[tr${r} * ${u(k)} + j] == e) { gw${r} = ${nm.topk_w}[tr${r} * ${
        u(k)
      } + j]; }`,
    );
    L.push("    }");
    for (const j of range(N)) L.push(`    y_${r}_${j} += gw${r} * acc_0_${r}_${j};`);
  }
  L.push("  }");
  for (const r of range(R)) {
    L.push(`  if (tt * ${u(R)} + ${u(r)} < ${u(T)}) {`);
    L.push(
      ...storeRow(nm.y, d, `tr${r}`, "col0", range(N).map((j) => `y_${r}_${j}`), opts.yStore),
    );
    L.push("  }");
  }
  L.push("}");
  return {
    code: L.join("\n") + "\n",
    workgroups,
    label: `moe_dense_gemm2_${R}x${N}_${c.weightDtype}`,
    bindings: gemv2Bindings(nm, opts, c, "hdense", V, N),
  };
}

// ---------------------------------------------------------------- decode

/**
 * Decode GEMV 1: one invocation per (token, slot, `cols1` columns):
 * `hd[t, j] = silu(x[t]·W1ₑᵀ) ⊙ (x[t]·W3ₑᵀ)` with `e = topk_idx[t, j]`, so only the
 * chosen experts' rows of W1/W3 are read. Dropless (no capacity), no sort.
 *
 * @example
 * ```ts
 * import { emitDecodeGemv1 } from "./moe_kernels.ts";
 * const k = emitDecodeGemv1({ T: 1, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" });
 * ```
 */
export function emitDecodeGemv1(cfg: MoeConfig, opts: MoeEmitOptions = {}): MoeKernel {
  const c = resolveMoeConfig(cfg);
  const nm = namesOf(opts);
  const { T, d, ff, k } = c;
  const N = c.tile.cols1;
  const V = d % 4 === 0 ? 4 : 1;
  const KV = d / V;
  const nct = ff / N;
  const total = T * k * nct;
  const wgSize = 32;
  const workgroups = grid(Math.ceil(total / wgSize));
  const L: string[] = [linearEntry(wgSize, workgroups, total)];
  L.push(`  let pair = g / ${u(nct)};`);
  L.push(`  let col0 = (g % ${u(nct)}) * ${u(N)};`);
  L.push(`  let t = pair / ${u(k)};`);
  L.push(`  let e = min(${nm.topk_idx}[pair], ${u(c.E - 1)});`);
  L.push(`  let es = ${slabOf(nm, opts, "e")};`);
  const skip1 = absent(opts, "es");
  if (skip1) L.push(`  if (${skip1}) { return; }`); // not on this device: GEMV 2 skips the pair
  L.push(
    ...kLoop(c, 1, N, KV, V, nm.x, () => `t * ${u(KV)}`, [
      { name: nm.w1, bIdx: (j) => `(es * ${u(ff)} + col0 + ${u(j)}) * ${u(KV)}` },
      { name: nm.w3, bIdx: (j) => `(es * ${u(ff)} + col0 + ${u(j)}) * ${u(KV)}` },
    ]),
  );
  L.push("  {");
  L.push(
    ...storeRow(
      nm.hd,
      ff,
      "pair",
      "col0",
      range(N).map((j) => `moe_silu(acc_0_0_${j}) * acc_1_0_${j}`),
    ),
  );
  L.push("  }");
  L.push("}");
  L.push(SILU);
  return {
    code: L.join("\n") + "\n",
    workgroups,
    label: `moe_decode_gemv1_${N}x2_${c.weightDtype}`,
    bindings: [
      bnd(nm, "x", "f32", "read", V),
      bnd(nm, "w1", wType(c), "read", V),
      bnd(nm, "w3", wType(c), "read", V),
      bnd(nm, "topk_idx", "u32", "read"),
      bnd(nm, "hd", "f32", "read_write", N % 4 === 0 && ff % 4 === 0 ? 4 : 1),
      ...tableBinding(nm, opts),
    ],
  };
}

/**
 * Decode GEMV 2: one invocation per (token, `cols2` columns) sums its k slots in
 * slot order: `y[t] = Σⱼ wⱼ · (hd[t, j]·W2ₑⱼᵀ)`. Reads only chosen experts' W2 rows
 * and writes `y` directly (no combine needed).
 *
 * @example
 * ```ts
 * import { emitDecodeGemv2 } from "./moe_kernels.ts";
 * const k = emitDecodeGemv2({ T: 1, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" });
 * ```
 */
export function emitDecodeGemv2(cfg: MoeConfig, opts: MoeEmitOptions = {}): MoeKernel {
  const c = resolveMoeConfig(cfg);
  const nm = namesOf(opts);
  const { T, d, ff, k } = c;
  const N = c.tile.cols2;
  const V = ff % 4 === 0 ? 4 : 1;
  const KV = ff / V;
  const nct = d / N;
  const total = T * nct;
  const wgSize = 32;
  const workgroups = grid(Math.ceil(total / wgSize));
  const L: string[] = [linearEntry(wgSize, workgroups, total)];
  L.push(`  let t = g / ${u(nct)};`);
  L.push(`  let col0 = (g % ${u(nct)}) * ${u(N)};`);
  for (const j of range(N)) L.push(`  var y_${j} = 0.0;`);
  L.push(`  for (var s = 0u; s < ${u(k)}; s++) {`);
  L.push(`    let pair = t * ${u(k)} + s;`);
  L.push(`    let e = min(${nm.topk_idx}[pair], ${u(c.E - 1)});`);
  L.push(`    let es = ${slabOf(nm, opts, "e")};`);
  const skip2 = absent(opts, "es");
  if (skip2) L.push(`    if (${skip2}) { continue; }`);
  const inner = kLoop(c, 1, N, KV, V, nm.hd, () => `pair * ${u(KV)}`, [
    { name: nm.w2, bIdx: (j) => `(es * ${u(d)} + col0 + ${u(j)}) * ${u(KV)}` },
  ]);
  L.push(...inner.map((s) => "  " + s));
  L.push(`    let w = ${nm.topk_w}[pair];`);
  for (const j of range(N)) L.push(`    y_${j} += w * acc_0_0_${j};`);
  L.push("  }");
  L.push("  {");
  L.push(...storeRow(nm.y, d, "t", "col0", range(N).map((j) => `y_${j}`), opts.yStore));
  L.push("  }");
  L.push("}");
  return {
    code: L.join("\n") + "\n",
    workgroups,
    label: `moe_decode_gemv2_${N}_${c.weightDtype}`,
    bindings: gemv2Bindings(nm, opts, c, "hd", V, N),
  };
}

// ---------------------------------------------------------------- aux losses

/**
 * Aux losses in one workgroup (deterministic fixed-order reductions):
 * `aux[0] = E · Σᵢ fᵢ·Pᵢ` with `fᵢ` = fraction of the (token, slot) assignments
 * (top-k choices, before any capacity drop) that went to i and `Pᵢ` = mean of
 * `probs[:, i]`; `aux[1] = mean_t (logsumexp logits_t)²` (ST-MoE z-loss);
 * `aux[2]` = number of unmasked tokens. Tokens with `mask[t] = 0` are excluded
 * from every mean. Note HF's `load_balancing_loss_func` normalises the counts
 * by T rather than T·k, so its value is k times `aux[0]`.
 *
 * @example
 * ```ts
 * import { emitAuxLoss } from "./moe_kernels.ts";
 * const k = emitAuxLoss({ T: 16, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" });
 * ```
 */
export function emitAuxLoss(cfg: MoeConfig, opts: MoeEmitOptions = {}): MoeKernel {
  const c = resolveMoeConfig(cfg);
  const nm = namesOf(opts);
  const { T, E, k } = c;
  const W = 256;
  const S = Math.floor(W / E); // token stripes per expert
  const hasMask = opts.mask ?? true;
  const mk = (t: string): string => (hasMask ? `${nm.mask}[${t}]` : "1.0");
  const counts = opts.auxCounts ?? false;
  const code = `
var<workgroup> pp: array<f32, ${W}>;${counts ? `\nvar<workgroup> kc: array<u32, ${W}>;` : ""}
var<workgroup> cc: array<f32, ${W}>;
var<workgroup> zz: array<f32, ${W}>;
var<workgroup> nn: array<f32, ${W}>;

@compute @workgroup_size(${W})
fn main(@builtin(local_invocation_index) li: u32) {
  let e = li % ${u(E)};
  let s = li / ${u(E)};
  var p = 0.0;
  var cnt = 0.0;
  var all = 0u;
  if (s < ${u(S)}) {
    for (var t = s; t < ${u(T)}; t += ${u(S)}) {
      let m = ${mk("t")};
      p += m * ${nm.probs}[t * ${u(E)} + e];
      for (var j = 0u; j < ${u(k)}; j++) {
        if (${nm.topk_idx}[t * ${u(k)} + j] == e) { cnt += m; all += 1u; }
      }
    }
  }
  pp[li] = p;
  cc[li] = cnt;${counts ? "\n  kc[li] = all;" : ""}
  var z = 0.0;
  var n = 0.0;
  for (var t = li; t < ${u(T)}; t += ${u(W)}) {
    var mx = ${nm.logits}[t * ${u(E)}];
    for (var i = 1u; i < ${u(E)}; i++) { mx = max(mx, ${nm.logits}[t * ${u(E)} + i]); }
    var se = 0.0;
    for (var i = 0u; i < ${u(E)}; i++) { se += exp(${nm.logits}[t * ${u(E)} + i] - mx); }
    let lse = mx + log(se);
    z += ${mk("t")} * lse * lse;
    n += ${mk("t")};
  }
  zz[li] = z;
  nn[li] = n;
  workgroupBarrier();
  if (li != 0u) { return; }
  var nv = 0.0;
  var zs = 0.0;
  for (var i = 0u; i < ${u(W)}; i++) { nv += nn[i]; zs += zz[i]; }
  var lb = 0.0;
  for (var ex = 0u; ex < ${u(E)}; ex++) {
    var pe = 0.0;
    var ce = 0.0;
    for (var st = 0u; st < ${u(S)}; st++) { pe += pp[st * ${u(E)} + ex]; ce += cc[st * ${
    u(E)
  } + ex]; }
    lb += ce * pe;${
    counts
      ? `
    var ke = 0u;
    for (var st = 0u; st < ${u(S)}; st++) { ke += kc[st * ${u(E)} + ex]; }
    ${nm.counts}[ex] = ke;`
      : ""
  }
  }
  if (nv > 0.0) {
    ${nm.aux}[0] = ${f(E)} * lb / (nv * ${f(k)} * nv);
    ${nm.aux}[1] = zs / nv;
  } else {
    ${nm.aux}[0] = 0.0;
    ${nm.aux}[1] = 0.0;
  }
${(opts.auxLength ?? 4) === 4 ? `  ${nm.aux}[2] = nv;\n  ${nm.aux}[3] = 0.0;\n` : ""}}
`;
  return {
    code,
    workgroups: [1, 1, 1],
    label: `moe_aux_loss_e${E}`,
    bindings: [
      bnd(nm, "logits", "f32", "read"),
      bnd(nm, "probs", "f32", "read"),
      bnd(nm, "topk_idx", "u32", "read"),
      ...(hasMask ? [bnd(nm, "mask", "f32", "read")] : []),
      bnd(nm, "aux", "f32", "read_write"),
      ...(counts ? [bnd(nm, "counts", "u32", "read_write")] : []),
    ],
  };
}

// ---------------------------------------------------------------- pipelines

/** Which kernel sequence a layer runs. */
export type MoePath = "prefill" | "decode" | "dense";

/**
 * The kernels of one forward pass in launch order. `"prefill"`: router, sort,
 * GEMM 1, GEMM 2, combine (+ aux); `"decode"`: router, GEMV 1, GEMV 2 (+ aux);
 * `"dense"`: router, dense GEMM 1, dense GEMM 2 (+ aux).
 *
 * @example
 * ```ts
 * import { moeKernels } from "./moe_kernels.ts";
 * const ks = moeKernels({ T: 64, d: 64, ff: 128, E: 8, k: 2, router: "softmax_topk" }, "prefill");
 * console.log(ks.map((k) => k.label));
 * ```
 */
export function moeKernels(
  cfg: MoeConfig,
  path: MoePath,
  aux = true,
  opts: MoeEmitOptions = {},
): MoeKernel[] {
  const ks: MoeKernel[] = [emitRouter(cfg, opts)];
  if (path === "prefill") {
    ks.push(
      emitSort(cfg, opts),
      emitGroupedGemm1(cfg, opts),
      emitGroupedGemm2(cfg, opts),
      emitCombine(cfg, opts),
    );
  } else if (path === "decode") {
    if (cfg.capacityFactor !== undefined) {
      throw new RangeError(
        `MoE decode path is dropless: received capacityFactor ${cfg.capacityFactor}`,
      );
    }
    ks.push(emitDecodeGemv1(cfg, opts), emitDecodeGemv2(cfg, opts));
  } else {
    if (cfg.capacityFactor !== undefined) {
      throw new RangeError(
        `MoE dense baseline is dropless: received capacityFactor ${cfg.capacityFactor}`,
      );
    }
    ks.push(emitDenseGemm1(cfg, opts), emitDenseGemm2(cfg, opts));
  }
  if (aux) ks.push(emitAuxLoss(cfg, opts));
  return ks;
}
