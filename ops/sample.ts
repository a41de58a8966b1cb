/**
 * sample: picks one token id per row of logits on the device — greedy, or
 * temperature / top-k / top-p sampling with a seeded counter-based RNG — so a
 * decode loop never needs the logits on the host.
 *
 * Semantics follow Hugging Face's warpers: logits are divided by the temperature,
 * top-k keeps every token whose probability is at least the k-th largest (ties kept),
 * top-p keeps the smallest set of most likely tokens whose renormalised mass reaches
 * p, then one token is drawn from what is left. The thresholds are found by
 * bisection over the bit patterns of the (positive) probabilities, which is exact
 * and needs no sort: 31 workgroup reductions each for top-k and top-p.
 *
 * Non-finite logits: `-Inf` is a mask (that token is never drawn, as in
 * Hugging Face). A row holding a NaN or `+Inf`, or no finite logit at all, has
 * no meaningful draw: its id is {@linkcode SAMPLE_NON_FINITE} (`0xFFFFFFFF`),
 * never a token id, so callers can tell broken logits from a sample. Both the
 * kernel and the reference test the bit patterns, since WGSL lets a compiler
 * assume floats are finite.
 *
 * @module
 */

import { formatShape } from "../core/shape.ts";
import { f32 as f32Lit, grid, KernelIo } from "./wgsl/mod.ts";
import type { HostTensor, OpDef } from "./types.ts";
import { groupIndex } from "./wgsl/grid.ts";
// Defined on the core floor, so the runtime's decode loop needs no op code.
import { SAMPLE_NON_FINITE } from "../core/sample_id.ts";

export { SAMPLE_NON_FINITE };

/**
 * Attributes of `sample`.
 *
 * @example
 * ```ts
 * import type { SampleAttrs } from "@kiln/kiln";
 * const greedy: SampleAttrs = { temperature: 0, topK: 0, topP: 1 };
 * const nucleus: SampleAttrs = { temperature: 0.8, topK: 0, topP: 0.95 };
 * ```
 */
export interface SampleAttrs {
  /** 0 means greedy (argmax, ties to the lower id). */
  readonly temperature: number;
  /** Keep the k most likely tokens (0: off). */
  readonly topK: number;
  /** Keep the smallest most-likely set with mass ≥ p (1: off). */
  readonly topP: number;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: number;
}

/** The RNG both the kernel and the reference use: a PCG hash of (seed, step, row). */
export function sampleUniform(seed: number, step: number, row: number): number {
  const pcg = (v: number) => {
    const s = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
    const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
    return ((w >>> 22) ^ w) >>> 0;
  };
  const r = pcg((seed ^ pcg((Math.imul(step >>> 0, 0x9e3779b9) + row) >>> 0)) >>> 0);
  return (r >>> 8) / 16777216;
}

const WGSL_RNG = `
fn pcg(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}
fn uniform01(seed: u32, step: u32, row: u32) -> f32 {
  let r = pcg(seed ^ pcg(step * 0x9e3779b9u + row));
  return f32(r >> 8u) / 16777216.0;
}`;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bitsOf = (x: number) => (f32[0] = x, u32[0]);
const fromBits = (b: number) => (u32[0] = b, f32[0]);

/** Reference for one row; also documents the algorithm the kernel runs. */
export function sampleRow(logits: ArrayLike<number>, attrs: SampleAttrs, u: number): number {
  const V = logits.length;
  let m = -Infinity, arg = -1;
  for (let i = 0; i < V; i++) {
    const x = logits[i];
    if (x === -Infinity) continue; // a mask
    if (!(x < Infinity)) return SAMPLE_NON_FINITE; // NaN or +Inf
    if (arg < 0 || x > m) (m = x, arg = i);
  }
  if (arg < 0) return SAMPLE_NON_FINITE; // nothing can be drawn
  if (attrs.temperature === 0) return arg;
  const invT = Math.fround(1 / attrs.temperature);
  const mz = Math.fround(m * invT);
  const p = new Float32Array(V);
  for (let i = 0; i < V; i++) p[i] = Math.exp(Math.fround(Math.fround(logits[i] * invT) - mz));
  const count = (t: number) => {
    let c = 0;
    for (let i = 0; i < V; i++) if (p[i] >= t) c++;
    return c;
  };
  const mass = (t: number) => {
    let s = 0;
    for (let i = 0; i < V; i++) if (p[i] >= t) s += p[i];
    return Math.fround(s);
  };
  let tk = 0;
  if (attrs.topK > 0 && attrs.topK < V) {
    let lo = 0, hi = bitsOf(1) + 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (count(fromBits(mid)) >= attrs.topK) lo = mid;
      else hi = mid;
    }
    tk = fromBits(lo);
  }
  let t = tk;
  if (attrs.topP < 1) {
    const need = Math.fround(attrs.topP * mass(tk));
    let lo = bitsOf(tk), hi = bitsOf(1) + 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      if (mass(fromBits(mid)) >= need) lo = mid;
      else hi = mid;
    }
    t = fromBits(lo);
  }
  const goal = Math.fround(u * mass(t));
  let acc = 0, last = arg;
  for (let i = 0; i < V; i++) {
    if (p[i] < t) continue;
    acc += p[i];
    last = i;
    if (acc > goal) return i;
  }
  return last;
}

const WG = 256;
/** {@linkcode SAMPLE_NON_FINITE} in WGSL: no finite logit yet (argmax), or the row's result. */
const NONE = "0xffffffffu";

/**
 * sample(logits [R, V], seed u32 [1], step u32 [1]) → ids u32 [R]; a row with a
 * NaN or `+Inf` logit, or none finite, gives {@linkcode SAMPLE_NON_FINITE}.
 */
export const sample: OpDef<SampleAttrs> = {
  arity: 3,
  attrNames: ["temperature", "topK", "topP"],
  foldable: false,
  infer([logits, seed, step], a) {
    const show = `sample(${formatShape(logits.shape)})`;
    if (logits.shape.length !== 2) throw new RangeError(`${show}: logits must be [rows, vocab]`);
    if (logits.dtype !== "f32" && logits.dtype !== "f16") {
      throw new TypeError(`${show}: logits must be float`);
    }
    for (const [name, t] of [["seed", seed], ["step", step]] as const) {
      if (t.dtype !== "u32" || t.shape.length !== 1 || t.shape[0] !== 1) {
        throw new TypeError(
          `${show}: ${name} must be u32 [1], got ${t.dtype}${formatShape(t.shape)}`,
        );
      }
    }
    if (!(a.temperature >= 0)) {
      throw new RangeError(`${show}: temperature must be >= 0, got ${a.temperature}`);
    }
    if (a.temperature > 0 && !Number.isFinite(Math.fround(1 / a.temperature))) {
      // The kernel scales logits by 1/temperature in f32: this one would be ∞.
      throw new RangeError(
        `${show}: temperature ${a.temperature} is too small (1/temperature overflows f32); use 0 for greedy`,
      );
    }
    if (!Number.isInteger(a.topK) || a.topK < 0) {
      throw new RangeError(`${show}: topK must be an integer >= 0, got ${a.topK}`);
    }
    if (!(a.topP > 0 && a.topP <= 1)) {
      throw new RangeError(`${show}: topP must be in (0, 1], got ${a.topP}`);
    }
    return [{ shape: [logits.shape[0]], dtype: "u32" }];
  },
  reference([logits, seed, step]: readonly HostTensor[], a) {
    const [R, V] = logits.shape;
    const out = new Uint32Array(R);
    for (let r = 0; r < R; r++) {
      const row = logits.data.subarray(r * V, (r + 1) * V);
      out[r] = sampleRow(row, a, sampleUniform(seed.data[0], step.data[0], r));
    }
    return [out];
  },
  lower: {
    kind: "kernel",
    prologue: [0],
    epilogue: false,
    emit(ctx) {
      const [R, V] = ctx.inputs[0].shape;
      const a = ctx.attrs;
      const wg = Math.min(WG, ctx.caps.maxInvocations);
      const per = Math.ceil(V / wg);
      const workgroups = grid(R, ctx.caps.maxWorkgroupsPerDim);
      const io = new KernelIo();
      // 1/T rounded to f32 as the reference rounds it (finite: the shape rule checked).
      const invT = f32Lit(Math.fround(1 / (a.temperature || 1)), "sample: 1 / temperature");
      const put = (v: string) =>
        ctx.outputs[0].direct ? `${io.out(0)}[row] = ${v};` : `${io.store(0, "row", v)};`;
      const tree = (v: string, op: string) => `
  red[lid] = ${v};
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = ${op.replace(/A/g, "red[lid]").replace(/B/g, "red[lid + s]")}; }
    workgroupBarrier();
  }
  // A uniform load: the bisection below branches on it around barriers.
  let ${v}_all = workgroupUniformLoad(&red[0]);`;
      const greedy = a.temperature === 0;
      const code = `${WGSL_RNG}
var<workgroup> red: array<f32, ${wg}>;
var<workgroup> redi: array<u32, ${wg}>;
var<workgroup> redb: array<u32, ${wg}>;
fn logit(row: u32, i: u32) -> f32 { return f32(${io.load(0, `row * ${V}u + i`)}); }
fn count_ge(row: u32, lid: u32, t: f32) -> f32 {
  var c = 0.0;
  for (var j = 0u; j < ${per}u; j++) {
    let i = lid * ${per}u + j;
    if (i < ${V}u && prob(row, i) >= t) { c += 1.0; }
  }
  return c;
}
fn mass_ge(row: u32, lid: u32, t: f32) -> f32 {
  var c = 0.0;
  for (var j = 0u; j < ${per}u; j++) {
    let i = lid * ${per}u + j;
    if (i < ${V}u) { let p = prob(row, i); if (p >= t) { c += p; } }
  }
  return c;
}
var<private> g_m: f32;
fn prob(row: u32, i: u32) -> f32 { return exp(logit(row, i) * ${invT} - g_m); }
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = ${groupIndex(workgroups)};
  if (row >= ${R}u) { return; }
  // Contiguous chunks per thread so the final draw can walk indices in order.
  // Argmax over the finite logits (mi = none yet); by bits, as WGSL may assume
  // finite floats: -Inf is a mask, NaN or +Inf marks the row broken.
  var m = 0.0;
  var mi = ${NONE};
  var bad = 0u;
  for (var j = 0u; j < ${per}u; j++) {
    let i = lid * ${per}u + j;
    if (i < ${V}u) {
      let x = logit(row, i);
      let b = bitcast<u32>(x);
      if ((b & 0x7f800000u) == 0x7f800000u) {
        if (b != 0xff800000u) { bad = 1u; }
      } else if (mi == ${NONE} || x > m) { m = x; mi = i; }
    }
  }
  red[lid] = m;
  redi[lid] = mi;
  redb[lid] = bad;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let o = red[lid + s];
      let oi = redi[lid + s];
      let ri = redi[lid];
      if (oi != ${NONE} && (ri == ${NONE} || o > red[lid] || (o == red[lid] && oi < ri))) {
        red[lid] = o;
        redi[lid] = oi;
      }
      redb[lid] = redb[lid] | redb[lid + s];
    }
    workgroupBarrier();
  }
  // Uniform loads: the early return below must not split the workgroup.
  let best = workgroupUniformLoad(&redi[0]);
  let mx = red[0];
  let broken = workgroupUniformLoad(&redb[0]) != 0u || best == ${NONE};
  if (broken) {
    if (lid == 0u) { ${put(NONE)} }
    return;
  }
${
        greedy ? `  if (lid == 0u) { ${put("best")} }` : `  g_m = mx * ${invT};
  var tk = 0.0;
${
          a.topK > 0 && a.topK < V
            ? `  var lo = 0u;
  var hi = bitcast<u32>(1.0) + 1u;
  for (var it = 0u; it < 31u; it++) {
    let mid = (lo + hi) >> 1u;
    let c = count_ge(row, lid, bitcast<f32>(mid));${tree("c", "A + B")}
    if (hi - lo > 1u) { if (c_all >= ${
              f32Lit(a.topK, "sample: topK")
            }) { lo = mid; } else { hi = mid; } }
  }
  tk = bitcast<f32>(lo);`
            : ""
        }
  var t = tk;
${
          a.topP < 1
            ? `  let mk = mass_ge(row, lid, tk);${tree("mk", "A + B")}
  let need = ${f32Lit(Math.fround(a.topP), "sample: topP")} * mk_all;
  var plo = bitcast<u32>(tk);
  var phi = bitcast<u32>(1.0) + 1u;
  for (var it = 0u; it < 32u; it++) {
    let mid = (plo + phi) >> 1u;
    let ms = mass_ge(row, lid, bitcast<f32>(mid));${tree("ms", "A + B")}
    if (phi - plo > 1u) { if (ms_all >= need) { plo = mid; } else { phi = mid; } }
  }
  t = bitcast<f32>(plo);`
            : ""
        }
  let chunk = mass_ge(row, lid, t);
  red[lid] = chunk;
  workgroupBarrier();
  if (lid == 0u) {
    // Exclusive prefix of the chunk masses, in index order.
    var acc = 0.0;
    for (var k = 0u; k < ${wg}u; k++) { let c = red[k]; red[k] = acc; acc += c; }
    redi[0] = bitcast<u32>(acc);
  }
  workgroupBarrier();
  let total = bitcast<f32>(redi[0]);
  let goal = uniform01(${io.load(1, "0u")}, ${io.load(2, "0u")}, row) * total;
  let start = red[lid];
  if (lid == 0u) { redi[1] = best; }
  workgroupBarrier();
  // Chunks are disjoint, so at most one thread finds the goal in its range.
  if (chunk > 0.0 && goal >= start && goal < start + chunk) {
    var acc = start;
    var pick = best;
    for (var j = 0u; j < ${per}u; j++) {
      let i = lid * ${per}u + j;
      if (i < ${V}u) {
        let p = prob(row, i);
        if (p >= t) { acc += p; pick = i; if (acc > goal) { break; } }
      }
    }
    redi[1] = pick;
  }
  workgroupBarrier();
  if (lid == 0u) { ${put("redi[1]")} }`
      }
}`;
      return {
        kernels: [{ label: greedy ? "sample_greedy" : "sample", code, workgroups, uses: io.uses }],
      };
    },
  },
};
