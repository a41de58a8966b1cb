/**
 * Rotary position embedding (RoPE) in Hugging Face's half-split convention: the
 * head vector is split into halves x1 = x[:d/2], x2 = x[d/2:], and
 * out = x·cos + rotate_half(x)·sin with rotate_half(x) = [−x2, x1], angle
 * (pos + t)·θ^(−2i/d); a partial RoPE rotates only the first `rotaryDim`
 * values of each head that way (d = `rotaryDim`). The position offset is read from a u32 [1] device buffer,
 * so a decode loop advances it without re-planning.
 *
 * @module
 */

import { allocHost, isFloat } from "../core/dtype.ts";
import { formatShape, numel } from "../core/shape.ts";
import { f32, f32Array, flatLaunch, flatMain, KernelIo } from "./wgsl/mod.ts";
import type { OpDef } from "./types.ts";

const TWO_PI = 2 * Math.PI;

/**
 * Attributes of `rope`.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type RopeAttrs } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const attrs: RopeAttrs = { theta: 1e6 };
 * const q = g.input("q", ["T", 8, 64]), pos = g.input("pos", [1], "u32");
 * g.output("q_rot", g.apply("rope", [q, pos], attrs)[0]); // q.rope(pos, 1e6)
 * ```
 */
export interface RopeAttrs {
  /** Base θ of the inverse frequencies (HF `rope_theta`: 10000, Mixtral 1e6). */
  readonly theta: number;
  /**
   * The `headDim / 2` inverse frequencies, when RoPE scaling changes them
   * (linear, yarn, llama3: see `models/rope_scaling.ts`); absent: `θ^(−2i/d)`.
   */
  readonly invFreq?: readonly number[];
  /** Factor on cos and sin (yarn's attention factor); absent: 1. */
  readonly scale?: number;
  /**
   * Rotate by −angle instead (times the same `scale`): the transpose of the
   * rotation, so rope with `inverse` is rope's gradient with respect to x.
   */
  readonly inverse?: boolean;
  /**
   * Partial RoPE (HF `partial_rotary_factor`): only each head's first
   * `rotaryDim` values rotate, as a head of that size would (frequencies over
   * `rotaryDim`); the rest pass through. Absent: the whole head.
   */
  readonly rotaryDim?: number;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: number | boolean | readonly number[] | undefined;
}

/** The inverse frequencies an op uses: its `invFreq` attribute, or θ's. */
function frequencies(headDim: number, attrs: RopeAttrs): Float32Array {
  return attrs.invFreq ? Float32Array.from(attrs.invFreq) : ropeInvFreq(headDim, attrs.theta);
}

/**
 * HF's inverse frequencies `1 / θ^(2i/d)` rounded to f32, as PyTorch computes them
 * in float32: the GPU kernel embeds exactly these values so both sides agree.
 *
 * @example
 * ```ts
 * import { ropeInvFreq } from "./rope.ts";
 * ropeInvFreq(4, 10000); // Float32Array [1, 0.01]
 * ```
 */
export function ropeInvFreq(headDim: number, theta: number): Float32Array {
  const half = headDim / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    out[i] = 1 / Math.fround(theta ** Math.fround((2 * i) / headDim));
  }
  return out;
}

/** rope(x [T, ..., D], pos u32 [1]) → [T, ..., D]; row t sits at position pos + t. */
export const rope: OpDef<RopeAttrs> = {
  arity: 2,
  attrNames: ["theta", "invFreq", "scale", "inverse", "rotaryDim"],
  infer([x, pos], attrs) {
    const show = `rope(${x.dtype}${formatShape(x.shape)}, ${pos.dtype}${formatShape(pos.shape)})`;
    if (!isFloat(x.dtype)) throw new TypeError(`${show}: x must be f32 or f16, got ${x.dtype}`);
    if (x.shape.length < 2) {
      throw new RangeError(`${show}: x must be [T, heads, headDim] (rank >= 2)`);
    }
    const d = x.shape[x.shape.length - 1];
    if (typeof d !== "number" || d % 2 !== 0) {
      throw new RangeError(`${show}: headDim must be a concrete even number, got ${d}`);
    }
    if (pos.dtype !== "u32" || pos.shape.length !== 1 || pos.shape[0] !== 1) {
      throw new TypeError(
        `${show}: pos must be u32 [1], got ${pos.dtype}${formatShape(pos.shape)}`,
      );
    }
    const R = attrs.rotaryDim ?? d;
    if (!Number.isInteger(R) || R < 2 || R % 2 !== 0 || R > d) {
      throw new RangeError(
        `${show}: rotaryDim must be an even number from 2 to headDim ${d}, got ${attrs.rotaryDim}`,
      );
    }
    if (typeof attrs.theta !== "number" || !(attrs.theta > 1)) {
      throw new RangeError(`${show}: theta must be a number > 1, got ${attrs.theta}`);
    }
    const inv = attrs.invFreq;
    if (
      inv !== undefined &&
      (!Array.isArray(inv) || inv.length !== R / 2 || inv.some((v) => !Number.isFinite(v)))
    ) {
      throw new RangeError(
        `${show}: invFreq must hold rotaryDim / 2 = ${R / 2} finite numbers, got ${
          Array.isArray(inv) ? `${inv.length} values` : JSON.stringify(inv)
        }`,
      );
    }
    if (attrs.scale !== undefined && !(Number.isFinite(attrs.scale) && attrs.scale > 0)) {
      throw new RangeError(`${show}: scale must be a finite number > 0, got ${attrs.scale}`);
    }
    if (attrs.inverse !== undefined && typeof attrs.inverse !== "boolean") {
      throw new TypeError(`${show}: inverse must be a boolean, got ${attrs.inverse}`);
    }
    return [{ shape: x.shape, dtype: x.dtype }];
  },
  reference([x, pos], attrs) {
    const D = x.shape[x.shape.length - 1];
    const T = x.shape[0];
    const rowsPerT = numel(x.shape) / Math.max(1, T * D);
    const R = attrs.rotaryDim ?? D;
    const inv = frequencies(R, attrs);
    const m = attrs.scale ?? 1;
    const sign = attrs.inverse ? -1 : 1; // sin(−a) = −sin(a)
    const out = allocHost(x.dtype, x.data.length);
    out.set(x.data as never); // the pass-through part of each head
    const half = R / 2;
    for (let t = 0; t < T; t++) {
      const p = pos.data[0] + t;
      for (let h = 0; h < rowsPerT; h++) {
        const base = (t * rowsPerT + h) * D;
        for (let i = 0; i < half; i++) {
          const a = Math.fround(p * inv[i]);
          const c = Math.cos(a) * m, s = sign * Math.sin(a) * m;
          const x1 = x.data[base + i], x2 = x.data[base + half + i];
          out[base + i] = x1 * c - x2 * s;
          out[base + half + i] = x2 * c + x1 * s;
        }
      }
    }
    return [out];
  },
  foldable: false,
  lower: {
    kind: "kernel",
    prologue: [0],
    epilogue: true,
    emit(ctx) {
      const x = ctx.inputs[0];
      const D = x.shape[x.shape.length - 1];
      const T = x.shape[0];
      const half = D / 2;
      const total = numel(x.shape) / 2;
      if (total === 0) return { kernels: [] };
      const rowsPerT = numel(x.shape) / (T * D);
      const R = ctx.attrs.rotaryDim ?? D;
      const rot = R / 2; // pairs a head rotates
      const inv = frequencies(R, ctx.attrs);
      const m = ctx.attrs.scale ?? 1;
      const ty = x.dtype;
      const { wg, workgroups, index } = flatLaunch(total, ctx.caps);
      // The angle is an exact f32 product (as in HF), but it reaches thousands of
      // radians; a Cody–Waite reduction by 2π keeps sin/cos accurate whatever the
      // driver's range reduction does with large arguments.
      const c2 = Math.fround(TWO_PI - 6.28125);
      const c3 = TWO_PI - 6.28125 - c2;
      const scaled = m === 1 ? "" : ` * ${f32(m, "rope: scale")}`;
      const sinSign = ctx.attrs.inverse ? "-" : "";
      const io = new KernelIo();
      // Thread k of a head rotates pair (k, k + R/2) when k < R/2; past that, a
      // partial RoPE's thread copies two pass-through values (D − R = 2·(D/2 − R/2)).
      const pass = R === D ? "" : `  if (k >= ${rot}u) {
    let p = row * ${D}u + ${R}u + 2u * (k - ${rot}u);
    ${io.store(0, "p", io.load(0, "p"))};
    ${io.store(0, "p + 1u", io.load(0, "p + 1u"))};
    return;
  }
`;
      const body = `  let k = i % ${half}u;
  let row = i / ${half}u;
${pass}  let t = row / ${rowsPerT}u;
  let a = f32(${io.load(1, "0u")} + t) * INV_FREQ[k];
  let n = round(a * ${f32(1 / TWO_PI)});
  let r = ((a - n * 6.28125) - n * ${f32(c2)}) - n * ${f32(c3)};
  let c = cos(r)${scaled};
  let s = ${sinSign}sin(r)${scaled};
  let base = row * ${D}u + k;
  let x1 = f32(${io.load(0, "base")});
  let x2 = f32(${io.load(0, `base + ${rot}u`)});
  ${io.store(0, "base", `${ty}(x1 * c - x2 * s)`)};
  ${io.store(0, `base + ${rot}u`, `${ty}(x2 * c + x1 * s)`)};`;
      const code = `
const INV_FREQ = ${f32Array(inv, "rope: invFreq")};
${flatMain(wg, index, total, body)}`;
      return {
        kernels: [{
          label: ctx.attrs.inverse ? "rope_inverse" : "rope",
          code,
          workgroups,
          uses: io.uses,
        }],
      };
    },
  },
};
