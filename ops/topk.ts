/**
 * Top-k values and indices along the last axis (small k; ties go to the lower index).
 *
 * Order: descending by value; equal values keep ascending index order, so ties
 * go to the lower index. NaN ranks above every number, +Infinity included (as in
 * PyTorch's `topk`), several NaNs again by index; -0 and +0 are equal. `k` is at
 * most {@linkcode TOPK_MAX_K} (64).
 *
 * Lowering: values are compared through an order-preserving u32 key (floats by
 * their bits, so the comparison does not depend on how a driver treats NaN).
 * - Short rows: one thread per row keeps a sorted list of (key, index) — for
 *   k <= 8 in unrolled registers, else in a private array — and inserts each
 *   element that beats the current last.
 * - Long rows (n >= 512): one workgroup per row; each thread builds the list of a
 *   strided subset, then the lists are merged pairwise in workgroup memory.
 * Values are re-read from the input by index when stored.
 *
 * @module
 */

import { allocHost, type DType } from "../core/dtype.ts";
import { formatShape, numel } from "../core/shape.ts";
import { flatKernel, grid, KernelIo } from "./wgsl/mod.ts";
import type { DeviceCaps, KernelEmission, OpDef } from "./types.ts";
import { groupIndex } from "./wgsl/grid.ts";

/** Largest `k` topk supports. */
export const TOPK_MAX_K = 64;

/**
 * Attributes of `topk`.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type TopkAttrs } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const attrs: TopkAttrs = { k: 2 };
 * const [values, indices] = g.apply("topk", [g.input("scores", ["T", 8])], attrs);
 * g.output("values", values);
 * g.output("indices", indices);
 * ```
 */
export interface TopkAttrs {
  /** How many to keep. */
  readonly k: number;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: number;
}

/** Comparison of the reference: negative when `a` ranks before `b`. */
function rank(a: number, b: number): number {
  const na = Number.isNaN(a), nb = Number.isNaN(b);
  if (na || nb) return na && nb ? 0 : na ? -1 : 1;
  return a > b ? -1 : a < b ? 1 : 0;
}

/** WGSL helpers: the order key of a value and the (key, index) comparison. */
function keyHelpers(dtype: DType): string {
  let key: string;
  if (dtype === "u32") key = "return x;";
  else if (dtype === "i32") key = "return bitcast<u32>(x) ^ 0x80000000u;";
  else {
    const bits = dtype === "f16" ? "bitcast<u32>(f32(x))" : "bitcast<u32>(x)";
    key = `let b = ${bits};
  if ((b & 0x7fffffffu) > 0x7f800000u) { return 0xffffffffu; }
  if (b == 0x80000000u) { return 0x80000000u; }
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);`;
  }
  return `
fn topk_key(x: ${dtype}) -> u32 {
  ${key}
}
fn topk_better(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
  return ka > kb || (ka == kb && ia < ib);
}`;
}

/** An empty list slot: loses to every real element (key 0, index max). */
const EMPTY = "0xffffffffu";

/**
 * WGSL for a private sorted list of K (key, index) pairs: declarations, an insert
 * of `(key, idx)`, and accessors of slot p.
 */
function privateList(
  K: number,
): {
  decl: string;
  insert: string;
  key: (p: string | number) => string;
  idx: (p: string | number) => string;
} {
  if (K <= 8) {
    const decl = Array.from({ length: K }, (_, p) => `  var lk${p} = 0u;\n  var li${p} = ${EMPTY};`)
      .join("\n");
    const swaps: string[] = [];
    for (let p = K - 1; p > 0; p--) {
      swaps.push(`      if (topk_better(lk${p}, li${p}, lk${p - 1}, li${p - 1})) {
        let tk = lk${p}; lk${p} = lk${p - 1}; lk${p - 1} = tk;
        let ti = li${p}; li${p} = li${p - 1}; li${p - 1} = ti;
      }`);
    }
    const insert = `    if (topk_better(key, idx, lk${K - 1}, li${K - 1})) {
      lk${K - 1} = key;
      li${K - 1} = idx;
${swaps.join("\n")}
    }`;
    const at = (pre: string) => (p: string | number) => {
      if (typeof p === "number") return `${pre}${p}`;
      throw new Error("internal: unrolled topk list needs constant slots");
    };
    return { decl, insert, key: at("lk"), idx: at("li") };
  }
  const decl = `  var lk: array<u32, ${K}>;
  var li: array<u32, ${K}>;
  for (var p = 0u; p < ${K}u; p = p + 1u) { li[p] = ${EMPTY}; }`;
  const insert = `    if (topk_better(key, idx, lk[${K - 1}], li[${K - 1}])) {
      var p = ${K - 1}u;
      loop {
        if (p == 0u) { break; }
        if (!topk_better(key, idx, lk[p - 1u], li[p - 1u])) { break; }
        lk[p] = lk[p - 1u];
        li[p] = li[p - 1u];
        p = p - 1u;
      }
      lk[p] = key;
      li[p] = idx;
    }`;
  return { decl, insert, key: (p) => `lk[${p}]`, idx: (p) => `li[${p}]` };
}

/** Workgroup size of the row-per-workgroup kernel: a power of two whose lists fit workgroup memory. */
function rowWorkgroup(K: number, caps: DeviceCaps): number {
  const cap = Math.min(256, caps.maxInvocations, Math.floor(caps.maxWorkgroupStorage / (8 * K)));
  let w = 1;
  while (w * 2 <= cap) w *= 2;
  return w;
}

/** Rows at least this long get a workgroup each. */
const WORKGROUP_ROW_LENGTH = 512;

/** topk(x [..., n]) → values [..., k] (x's dtype), indices [..., k] (u32), largest first. */
export const topk: OpDef<TopkAttrs> = {
  arity: 1,
  attrNames: ["k"],
  infer([x], a) {
    const r = x.shape.length;
    if (r < 1) throw new RangeError(`topk: input must have rank >= 1, got ${formatShape(x.shape)}`);
    const n = x.shape[r - 1];
    if (!Number.isInteger(a.k) || a.k < 1 || (typeof n === "number" && a.k > n)) {
      throw new RangeError(`topk: k = ${a.k} is invalid for last axis of ${formatShape(x.shape)}`);
    }
    if (a.k > TOPK_MAX_K) {
      throw new RangeError(
        `topk: k = ${a.k} exceeds the supported maximum ${TOPK_MAX_K} (input ${
          formatShape(x.shape)
        })`,
      );
    }
    const shape = [...x.shape.slice(0, -1), a.k];
    return [{ shape, dtype: x.dtype }, { shape, dtype: "u32" }];
  },
  reference([x], a, [vo]) {
    const n = x.shape[x.shape.length - 1];
    const rows = n === 0 ? 0 : x.data.length / n;
    const K = a.k;
    const vals = allocHost(vo.dtype, rows * K);
    const idxs = new Uint32Array(rows * K);
    const order = Array.from({ length: n }, (_, i) => i);
    for (let r = 0; r < rows; r++) {
      const row = x.data.subarray(r * n, (r + 1) * n);
      // Array.prototype.sort is stable: equal values keep ascending index order.
      const sorted = order.slice().sort((i, j) => rank(row[i], row[j]));
      for (let p = 0; p < K; p++) {
        idxs[r * K + p] = sorted[p];
        vals[r * K + p] = row[sorted[p]];
      }
    }
    return [vals, idxs];
  },
  lower: {
    kind: "kernel",
    prologue: true,
    epilogue: false,
    emit({ attrs, inputs, caps }): KernelEmission {
      const shape = inputs[0].shape;
      const n = shape[shape.length - 1];
      const K = attrs.k;
      if (K > n) {
        throw new RangeError(
          `topk: k = ${K} is larger than the last axis of ${formatShape(shape)}`,
        );
      }
      const rows = n === 0 ? 0 : numel(shape) / n;
      const helpers = keyHelpers(inputs[0].dtype);
      const io = new KernelIo();
      /** Stores list slot `p` of row `row` (its index, then its value re-read by index). */
      const store = (row: string, p: string, idx: string, ind: string) =>
        `${ind}${io.store(1, `${row} * ${K}u + ${p}`, idx)};\n${ind}${
          io.store(0, `${row} * ${K}u + ${p}`, io.load(0, `base + ${idx}`))
        };`;

      if (n < WORKGROUP_ROW_LENGTH) {
        // One thread per row.
        const list = privateList(K);
        const stores = K <= 8
          ? Array.from({ length: K }, (_, p) => store("i", `${p}u`, list.idx(p), "  ")).join("\n")
          : `  for (var p = 0u; p < ${K}u; p = p + 1u) {
${store("i", "p", "li[p]", "    ")}
  }`;
        const body = `  let base = i * ${n}u;
${list.decl}
  for (var idx = 0u; idx < ${n}u; idx = idx + 1u) {
    let key = topk_key(${io.load(0, "base + idx")});
${list.insert}
  }
${stores}`;
        return { kernels: [flatKernel("topk", rows, caps, body, helpers, io)] };
      }

      // One workgroup per row: strided per-thread lists, then a pairwise merge tree.
      const W = rowWorkgroup(K, caps);
      const list = privateList(K);
      const wgs = grid(rows, caps.maxWorkgroupsPerDim);
      const save = K <= 8
        ? Array.from(
          { length: K },
          (_, p) => `  topk_k[t * ${K}u + ${p}u] = lk${p};\n  topk_i[t * ${K}u + ${p}u] = li${p};`,
        )
          .join("\n")
        : `  for (var p = 0u; p < ${K}u; p = p + 1u) {
    topk_k[t * ${K}u + p] = lk[p];
    topk_i[t * ${K}u + p] = li[p];
  }`;
      const code = `${helpers}
var<workgroup> topk_k: array<u32, ${W * K}>;
var<workgroup> topk_i: array<u32, ${W * K}>;

@compute @workgroup_size(${W})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = ${groupIndex(wgs)};
  if (row >= ${rows}u) { return; }
  let base = row * ${n}u;
${list.decl}
  for (var idx = t; idx < ${n}u; idx = idx + ${W}u) {
    let key = topk_key(${io.load(0, "base + idx")});
${list.insert}
  }
${save}
  var mk: array<u32, ${K}>;
  var mi: array<u32, ${K}>;
  for (var s = ${W / 2}u; s > 0u; s = s / 2u) {
    workgroupBarrier();
    if (t < s) {
      let a0 = t * ${K}u;
      let b0 = (t + s) * ${K}u;
      var a = 0u;
      var b = 0u;
      for (var p = 0u; p < ${K}u; p = p + 1u) {
        if (topk_better(topk_k[a0 + a], topk_i[a0 + a], topk_k[b0 + b], topk_i[b0 + b])) {
          mk[p] = topk_k[a0 + a];
          mi[p] = topk_i[a0 + a];
          a = a + 1u;
        } else {
          mk[p] = topk_k[b0 + b];
          mi[p] = topk_i[b0 + b];
          b = b + 1u;
        }
      }
      for (var p = 0u; p < ${K}u; p = p + 1u) {
        topk_k[a0 + p] = mk[p];
        topk_i[a0 + p] = mi[p];
      }
    }
  }
  workgroupBarrier();
  for (var p = t; p < ${K}u; p = p + ${W}u) {
    let idx = topk_i[p];
${store("row", "p", "idx", "    ")}
  }
}`;
      return { kernels: [{ label: "topk", code, workgroups: wgs, uses: io.uses }] };
    },
  },
};
