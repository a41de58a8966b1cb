/**
 * Fused scaled-dot-product attention with grouped-query heads, a causal mask, an
 * optional sliding window and a KV cache whose valid length is read from the
 * device, computed flash-attention style: each query keeps a running max, sum and
 * f32 accumulator while it streams over the keys, so no [T, S] score matrix is ever
 * written to memory.
 *
 * Positions: query row t sits at absolute position pos + t; key row j at j. Keys at
 * or past pos + T are not yet written (a KV cache of capacity S) and are ignored.
 * With `causal`, query t sees keys j ≤ pos + t; with `window` W > 0 also only keys
 * with pos + t − j < W (Mistral's `sliding_window`).
 *
 * Kernel shape (chosen for lavapipe first, sound on GPUs): one workgroup serves
 * query rows that share one KV head; each invocation keeps QB of them (running
 * max, sum, f32 accumulator) in registers, so every K/V vector it loads feeds QB
 * dot products and QB accumulations. The key loop bounds are workgroup-uniform and
 * the causal / window mask is applied per row inside it. When the query rows cannot
 * fill the device (decode, T = 1), the key range is split over the invocations of a
 * workgroup and over extra workgroups, each writing a partial (max, sum,
 * accumulator) triple, and a small second kernel merges them (flash-decoding).
 * Scratch is O(splits · T · Hq · D), never O(T · S).
 *
 * @module
 */

import { allocHost, isFloat } from "../core/dtype.ts";
import { formatShape, numel } from "../core/shape.ts";
import type {
  HostTensor,
  KernelContext,
  KernelEmission,
  KernelSource,
  OpDef,
  ScratchSpec,
} from "./types.ts";
import { f32, flatKernel, flatLaunch, flatMain, KernelIo, lit } from "./wgsl/mod.ts";

/**
 * Attributes of `attention`.
 *
 * @example
 * ```ts
 * import type { AttentionAttrs } from "@kiln/kiln";
 * const attrs: AttentionAttrs = { scale: 1 / Math.sqrt(64), causal: true, window: 0, splits: 0 };
 * ```
 */
export interface AttentionAttrs {
  /** Multiplier of q·k (HF: 1/√headDim). */
  readonly scale: number;
  /** Query t sees only keys at positions ≤ pos + t. */
  readonly causal: boolean;
  /** Sliding window W (keys with pos + t − j < W); 0 means none. Needs `causal`. */
  readonly window: number;
  /** Key-range splits per query block (flash-decoding); 0 chooses automatically. */
  readonly splits: number;
  /**
   * Also return each query row's log-sum-exp of its visible scores, f32 [T, Hq]
   * (`LSE_NONE` of `attention_grad.ts` for a row that sees no key): the statistic
   * the backward recomputes probabilities from. Set by the pass that merges a
   * backward's `attention_lse` into its forward (`compiler/passes/attention_lse.ts`).
   */
  readonly lse?: boolean;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: number | boolean | undefined;
}

const LOG2E = 1.4426950408889634;
/** A row without visible keys: its log-sum-exp (`LSE_NONE` of attention_grad.ts). */
const LSE_NONE = 1e30;

/**
 * Float64 reference: naive softmax(q·kᵀ·scale + mask)·v per head. Rows with no
 * visible key give zeros.
 */
function referenceAttention(
  [q, k, v, pos]: readonly HostTensor[],
  attrs: AttentionAttrs,
  lse?: Float64Array,
): Float64Array {
  const [T, Hq, D] = q.shape;
  const [S, Hkv] = k.shape;
  const G = Hq / Hkv;
  const p = pos.data[0];
  const valid = Math.min(S, p + T);
  const out = new Float64Array(T * Hq * D);
  const s = new Float64Array(Math.max(valid, 1));
  for (let t = 0; t < T; t++) {
    const at = p + t;
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / G);
      const qo = (t * Hq + h) * D;
      let mx = -Infinity;
      for (let j = 0; j < valid; j++) {
        const visible = (!attrs.causal || j <= at) &&
          (!(attrs.window > 0) || at - j < attrs.window);
        if (!visible) {
          s[j] = -Infinity;
          continue;
        }
        let dot = 0;
        const ko = (j * Hkv + kh) * D;
        for (let d = 0; d < D; d++) dot += q.data[qo + d] * k.data[ko + d];
        s[j] = dot * attrs.scale;
        mx = Math.max(mx, s[j]);
      }
      if (lse) lse[t * Hq + h] = LSE_NONE;
      if (mx === -Infinity) continue;
      let sum = 0;
      for (let j = 0; j < valid; j++) {
        s[j] = s[j] === -Infinity ? 0 : Math.exp(s[j] - mx);
        sum += s[j];
      }
      if (lse) lse[t * Hq + h] = mx + Math.log(sum);
      for (let j = 0; j < valid; j++) {
        if (s[j] === 0) continue;
        const w = s[j] / sum, vo = (j * Hkv + kh) * D;
        for (let d = 0; d < D; d++) out[qo + d] += w * v.data[vo + d];
      }
    }
  }
  return out;
}

/** Kernel shape knobs, chosen per shape (and overridable for measurements). */
interface Shape {
  /** Query rows per invocation (register blocking: each K/V load feeds QB rows). */
  readonly QB: number;
  /** Invocations per workgroup along the query rows. */
  readonly RL: number;
  /** Invocations per workgroup along the keys (each takes a sub-range). */
  readonly SUB: number;
  /** Workgroups along the keys. */
  readonly splits: number;
}

/**
 * Picks the kernel shape. Loads from storage cost one scalar load per invocation
 * on lavapipe (no uniform-load path), so each invocation handles QB query rows
 * that share the K/V rows it loads. When the query rows cannot fill the device
 * (decode), the keys are split over the invocations of a workgroup and over extra
 * workgroups, and a combine kernel merges the partial softmax states.
 *
 * QB is capped at 4 (D ≤ 64) / 2 (D = 128): QB = 8 ran prefill about 2× faster on
 * lavapipe but its unrolled shader took ~18 s to compile there.
 */
function chooseShape(
  attrs: AttentionAttrs,
  rows: number,
  Hkv: number,
  S: number,
  D: number,
  maxParts: number,
) {
  const QB = Math.min(rows, D <= 64 ? 4 : 2);
  const lanes = Math.ceil(rows / QB);
  const RL = Math.min(16, 2 ** Math.ceil(Math.log2(lanes)));
  const blocks = Math.ceil(lanes / RL) * Hkv;
  // Key-parallel invocations fill the workgroup up to 8 (one SIMD vector on lavapipe).
  const SUB = attrs.splits > 0 ? 1 : Math.max(1, Math.min(8 / RL, Math.floor(S / 32)));
  let splits: number;
  if (attrs.splits > 0) splits = Math.min(attrs.splits, Math.max(1, S));
  else if (blocks >= 16) splits = 1;
  else splits = Math.max(1, Math.min(Math.ceil(16 / blocks), Math.floor(S / (64 * SUB))));
  // The partial states of the parts live in scratch buffers bound whole: no more
  // parts than one binding holds (a requested `splits` included).
  let sub = SUB;
  if (sub * splits > maxParts) splits = Math.max(1, Math.floor(maxParts / sub));
  if (sub * splits > maxParts) sub = 1;
  return { QB, RL, SUB: sub, splits };
}

/**
 * WGSL: the natural log-sum-exp of a row from its running max `m` (log2 units:
 * scores are pre-scaled by log2 e) and sum `l` under that max; LSE_NONE when the
 * row saw no key.
 *
 * @example
 * ```ts
 * import { lseOf } from "./attention.ts";
 * lseOf("m0", "l0"); // "select(1e+30, (m0 + log2(l0)) * 0.6931..., l0 > 0.0)"
 * ```
 */
export function lseOf(m: string, l: string): string {
  return `select(${f32(LSE_NONE)}, (${m} + log2(${l})) * ${f32(Math.LN2)}, ${l} > 0.0)`;
}

function emitAttention(ctx: KernelContext<AttentionAttrs>): KernelEmission {
  const [q, k, v] = ctx.inputs;
  const [T, Hq, D] = q.shape;
  const [S, Hkv] = k.shape;
  const out = ctx.outputs[0];
  if (T * Hq * D === 0) return { kernels: [] };
  if (S === 0) {
    // No keys at all: every row sees none and is zeros, as in the reference.
    const zio = new KernelIo();
    const body = `  ${zio.store(0, "i", lit(0, out.dtype))};${
      ctx.outputs.length === 2
        ? `\n  if (i < ${T * Hq}u) { ${zio.store(1, "i", f32(LSE_NONE))}; }`
        : ""
    }`;
    return { kernels: [flatKernel("attention_empty", T * Hq * D, ctx.caps, body, "", zio)] };
  }
  const G = Hq / Hkv;
  const D4 = Math.ceil(D / 4);
  const rowsPerKv = T * G; // query rows sharing one KV head, ordered (t, g)
  // Bytes per part of the larger scratch buffer: a vec4 accumulator per D4 per row.
  const maxParts = Math.max(1, Math.floor(ctx.caps.maxBindingSize / (T * Hq * D4 * 16)));
  const sh: Shape = chooseShape(ctx.attrs, rowsPerKv, Hkv, Math.max(S, 1), D, maxParts);
  const { QB, RL, SUB, splits } = sh;
  const WG = RL * SUB;
  const rowsPerWg = RL * QB;
  const xGroups = Math.ceil(rowsPerKv / rowsPerWg);
  if (
    xGroups > ctx.caps.maxWorkgroupsPerDim || Hkv > ctx.caps.maxWorkgroupsPerDim ||
    WG > ctx.caps.maxInvocations
  ) {
    throw new RangeError(
      `attention: ${T}×${Hq} queries need more workgroups than the device's grid allows`,
    );
  }
  const parts = splits * SUB; // partial softmax states per query row
  const ty = out.dtype;
  const vecOk = D % 4 === 0;
  const arrayTypes: Record<string, string> = {};
  const io = new KernelIo();
  // Loads of four consecutive head elements as one vec4<f32>.
  const loader = (j: number, operand: typeof q) => {
    if (vecOk && operand.direct) {
      arrayTypes[`in${j}`] = `vec4<${operand.dtype}>`;
      return `fn ld${j}(r: u32, c: u32) -> vec4<f32> { return vec4<f32>(${
        io.in(j)
      }[r * ${D4}u + c]); }`;
    }
    const comps = [0, 1, 2, 3].map((e) =>
      `select(0.0, f32(${
        io.load(j, `min(r * ${D}u + c * 4u + ${e}u, ${numel(operand.shape) - 1}u)`)
      }), c * 4u + ${e}u < ${D}u)`
    );
    return `fn ld${j}(r: u32, c: u32) -> vec4<f32> { return vec4<f32>(${comps.join(", ")}); }`;
  };
  const fns = [loader(0, q), loader(1, k), loader(2, v)];
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const C = range(D4);
  const R = range(QB);
  const qScale = ctx.attrs.scale * LOG2E; // exp2 of pre-scaled scores = exp of the true ones
  const causal = ctx.attrs.causal;
  const W = ctx.attrs.window > 0 ? ctx.attrs.window : 0;
  const rows = T * Hq;
  const scratch: ScratchSpec[] = parts > 1
    ? [{ length: parts * rows * 2, type: "f32" }, { length: parts * rows * D4 * 4, type: "f32" }]
    : [];
  if (parts > 1) arrayTypes.scratch1 = "vec4<f32>";
  const withLse = ctx.outputs.length === 2;

  const finish = R.map((r) => {
    if (parts === 1) {
      const stores: string[] = [];
      for (const i of C) {
        for (let e = 0; e < 4 && i * 4 + e < D; e++) {
          stores.push(
            `    ${io.store(0, `ob${r} + ${i * 4 + e}u`, `${ty}(a${r}_${i}[${e}] * il${r})`)};`,
          );
        }
      }
      if (withLse) {
        stores.push(`    ${io.store(1, `row${r}`, lseOf(`m${r}`, `l${r}`))};`);
      }
      return `  if (live${r}) {
    let il${r} = select(0.0, 1.0 / l${r}, l${r} > 0.0);
    let ob${r} = row${r} * ${D}u;
${stores.join("\n")}
  }`;
    }
    return `  if (live${r}) {
    let sp${r} = part * ${rows}u + row${r};
    ${io.scratch(0)}[sp${r} * 2u] = m${r};
    ${io.scratch(0)}[sp${r} * 2u + 1u] = l${r};
${C.map((i) => `    ${io.scratch(1)}[sp${r} * ${D4}u + ${i}u] = a${r}_${i};`).join("\n")}
  }`;
  }).join("\n");

  const perRow = R.map((r) =>
    `  let rr${r} = rbase + ${r}u;
  let live${r} = rr${r} < ${rowsPerKv}u;
  let t${r} = min(rr${r} / ${G}u, ${T - 1}u);
  let row${r} = t${r} * ${Hq}u + kvh * ${G}u + rr${r} % ${G}u;
  let at${r} = p + t${r};
${
      C.map((i) => `  let q${r}_${i} = ld0(row${r}, ${i}u) * ${f32(qScale, "attention: scale")};`)
        .join("\n")
    }
${C.map((i) => `  var a${r}_${i} = vec4<f32>(0.0);`).join("\n")}
  var m${r} = -1.0e30;
  var l${r} = 0.0;`
  ).join("\n");

  const scoreRows = R.map((r) => {
    const ok = `live${r}${causal ? ` && j <= at${r}` : ""}${W ? ` && at${r} - j < ${W}u` : ""}`;
    return `    let s${r} = ${C.map((i) => `dot(q${r}_${i}, k${i})`).join(" + ")};
    let ok${r} = ${ok};
    if (ok${r} && s${r} > m${r}) {
      // A new running max: rescale what was accumulated under the old one.
      let f = exp2(m${r} - s${r});
      l${r} = l${r} * f;
${C.map((i) => `      a${r}_${i} = a${r}_${i} * f;`).join("\n")}
      m${r} = s${r};
    }
    let e${r} = vec4<f32>(select(0.0, exp2(s${r} - m${r}), ok${r}));
    l${r} = l${r} + e${r}.x;`;
  }).join("\n");

  const main = `
${fns.join("\n")}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let kvh = wid.y;
  let rbase = (wid.x * ${RL}u + lid % ${RL}u) * ${QB}u;
  let part = wid.z * ${SUB}u + lid / ${RL}u;
  let p = ${io.load(3, "0u")};
  // The key range this workgroup's queries can see, cut into ${parts} parts.
  let t_first = min(wid.x * ${rowsPerWg}u / ${G}u, ${T - 1}u);
  let t_last = min((wid.x * ${rowsPerWg}u + ${rowsPerWg - 1}u) / ${G}u, ${T - 1}u);
  let valid = min(${S}u, p + ${T}u);
  let j_end = ${causal ? `min(valid, p + t_last + 1u)` : "valid"};
  let j_beg = ${W ? `select(0u, p + t_first + 1u - ${W}u, p + t_first + 1u > ${W}u)` : "0u"};
  let span = select(0u, j_end - j_beg, j_end > j_beg);
  let chunk = (span + ${parts - 1}u) / ${parts}u;
  let j0 = min(j_end, j_beg + part * chunk);
  let j1 = min(j_end, j0 + chunk);
${perRow}
  for (var j = j0; j < j1; j++) {
    let r = j * ${Hkv}u + kvh;
${C.map((i) => `    let k${i} = ld1(r, ${i}u);`).join("\n")}
${scoreRows}
${C.map((i) => `    let v${i} = ld2(r, ${i}u);`).join("\n")}
${
    R.map((r) => C.map((i) => `    a${r}_${i} = fma(e${r}, v${i}, a${r}_${i});`).join("\n")).join(
      "\n",
    )
  }
  }
${finish}
}`;
  const kernels: KernelSource[] = [{
    label: parts > 1 ? "attention_split" : "attention",
    code: main,
    workgroups: [xGroups, Hkv, splits],
    arrayTypes,
    uses: io.uses,
  }];
  if (parts > 1) {
    // Merge partials: weights 2^(m_c − M) rescale each part's sum and accumulator.
    const total = rows * D4;
    const { wg, workgroups, index } = flatLaunch(total, ctx.caps, 64);
    const cio = new KernelIo();
    const [stats, acc] = [cio.scratch(0), cio.scratch(1)];
    const body = `  let row = i / ${D4}u;
  let c = i % ${D4}u;
  var mx = -1.0e30;
  for (var s = 0u; s < ${parts}u; s++) {
    let sp = s * ${rows}u + row;
    if (${stats}[sp * 2u + 1u] > 0.0) { mx = max(mx, ${stats}[sp * 2u]); }
  }
  var l = 0.0;
  var a = vec4<f32>(0.0);
  for (var s = 0u; s < ${parts}u; s++) {
    let sp = s * ${rows}u + row;
    let ls = ${stats}[sp * 2u + 1u];
    if (ls > 0.0) {
      let w = exp2(${stats}[sp * 2u] - mx);
      l = l + ls * w;
      a = fma(vec4<f32>(w), ${acc}[sp * ${D4}u + c], a);
    }
  }
  let o = a * select(0.0, 1.0 / l, l > 0.0);
  let ob = row * ${D}u + c * 4u;
  for (var e = 0u; e < 4u; e++) {
    if (c * 4u + e < ${D}u) { ${cio.store(0, "ob + e", `${ty}(o[e])`)}; }
  }${withLse ? `\n  if (c == 0u) { ${cio.store(1, "row", lseOf("mx", "l"))}; }` : ""}`;
    kernels.push({
      label: "attention_combine",
      code: `\n${flatMain(wg, index, total, body)}`,
      workgroups,
      arrayTypes: { scratch1: "vec4<f32>" },
      uses: cio.uses,
    });
  }
  return { kernels, scratch };
}

/**
 * attention(q [T, Hq, D], k [S, Hkv, D], v [S, Hkv, D], pos u32 [1]) → [T, Hq, D].
 * Query head h reads KV head ⌊h / (Hq / Hkv)⌋.
 */
export const attention: OpDef<AttentionAttrs> = {
  arity: 4,
  attrNames: ["scale", "causal", "window", "splits", "lse"],
  infer([q, k, v, pos], attrs) {
    const show = `attention(q ${q.dtype}${formatShape(q.shape)}, k ${k.dtype}${
      formatShape(k.shape)
    }, v ${v.dtype}${formatShape(v.shape)})`;
    for (const [name, x] of [["q", q], ["k", k], ["v", v]] as const) {
      if (x.shape.length !== 3) {
        throw new RangeError(
          `${show}: ${name} must be [rows, heads, headDim], got rank ${x.shape.length}`,
        );
      }
      if (!isFloat(x.dtype)) {
        throw new TypeError(`${show}: ${name} must be f32 or f16, got ${x.dtype}`);
      }
    }
    if (k.dtype !== q.dtype || v.dtype !== q.dtype) {
      throw new TypeError(`${show}: q, k and v dtypes differ`);
    }
    const [, Hq, D] = q.shape;
    const [S, Hkv, Dk] = k.shape;
    if (typeof D !== "number" || typeof Hq !== "number" || typeof Hkv !== "number") {
      throw new RangeError(`${show}: heads and headDim must be concrete`);
    }
    if (Dk !== D || v.shape[2] !== D) {
      throw new RangeError(
        `${show}: headDim differs between q (${D}), k (${Dk}) and v (${v.shape[2]})`,
      );
    }
    if (v.shape[0] !== S || v.shape[1] !== Hkv) {
      throw new RangeError(`${show}: k and v must have the same shape`);
    }
    if (Hkv < 1 || Hq % Hkv !== 0) {
      throw new RangeError(
        `${show}: query heads (${Hq}) must be a multiple of key/value heads (${Hkv})`,
      );
    }
    if (pos.dtype !== "u32" || pos.shape.length !== 1 || pos.shape[0] !== 1) {
      throw new TypeError(
        `${show}: pos must be u32 [1], got ${pos.dtype}${formatShape(pos.shape)}`,
      );
    }
    if (typeof attrs.scale !== "number" || !Number.isFinite(attrs.scale)) {
      throw new RangeError(`${show}: scale must be a finite number, got ${attrs.scale}`);
    }
    if (!Number.isInteger(attrs.window) || attrs.window < 0) {
      throw new RangeError(`${show}: window must be a non-negative integer, got ${attrs.window}`);
    }
    if (attrs.window > 0 && !attrs.causal) {
      throw new RangeError(`${show}: a sliding window (${attrs.window}) needs causal attention`);
    }
    if (!Number.isInteger(attrs.splits) || attrs.splits < 0) {
      throw new RangeError(`${show}: splits must be a non-negative integer, got ${attrs.splits}`);
    }
    if (attrs.lse !== undefined && typeof attrs.lse !== "boolean") {
      throw new TypeError(`${show}: lse must be a boolean, got ${attrs.lse}`);
    }
    const o = { shape: q.shape, dtype: q.dtype };
    return attrs.lse ? [o, { shape: q.shape.slice(0, 2), dtype: "f32" }] : [o];
  },
  reference(inputs, attrs, outs) {
    const lse = attrs.lse ? new Float64Array(numel(outs[1].shape)) : undefined;
    const r = referenceAttention(inputs, attrs, lse);
    const out = allocHost(outs[0].dtype, r.length);
    for (let i = 0; i < r.length; i++) out[i] = r[i];
    if (!lse) return [out];
    const l = allocHost("f32", lse.length);
    for (let i = 0; i < lse.length; i++) l[i] = lse[i];
    return [out, l];
  },
  foldable: false,
  lower: { kind: "kernel", prologue: [0, 1, 2], epilogue: true, emit: emitAttention },
};
