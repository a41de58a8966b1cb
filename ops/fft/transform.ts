/**
 * The `fft` op: complex-to-complex DFT along the second-to-last axis of
 * `[..., L, 2]` (re, im pairs), zero-padded (or cropped) to a power-of-two
 * length `n`, by the Stockham passes of `stockham.ts`.
 *
 * @module
 */

import { allocHost } from "../../core/dtype.ts";
import { formatShape, numel } from "../../core/shape.ts";
import type { OpDef } from "../types.ts";
import { f32, flatKernel, KernelIo } from "../wgsl/mod.ts";
import { asComplex, complexScratch, fftF64, fftPasses, twiddleKernel } from "./stockham.ts";

/**
 * Attributes of `fft`.
 *
 * @example
 * ```ts
 * import type { FftAttrs } from "@kiln/kiln";
 * const attrs: FftAttrs = { n: 256, inverse: false };
 * ```
 */
export interface FftAttrs {
  /** Transform length: a power of two; the input is zero-padded or cropped to it. */
  readonly n: number;
  /** Inverse transform (conjugate twiddles, scaled by 1/n like `numpy.fft.ifft`). */
  readonly inverse: boolean;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: number | boolean;
}

function isPow2(n: unknown): n is number {
  return typeof n === "number" && Number.isInteger(n) && n >= 1 && (n & (n - 1)) === 0;
}

/**
 * fft(x [..., L, 2]) → [..., n, 2].
 *
 * @example
 * ```ts ignore
 * opDef("fft") === fft; // in the op table
 * ```
 */
export const fft: OpDef<FftAttrs> = {
  arity: 1,
  attrNames: ["n", "inverse"],
  infer([x], a) {
    const r = x.shape.length;
    if (r < 2 || x.shape[r - 1] !== 2) {
      throw new RangeError(
        `fft: input must be complex pairs [..., L, 2], got ${formatShape(x.shape)}`,
      );
    }
    if (x.dtype !== "f32") throw new TypeError(`fft: input must be f32, got ${x.dtype}`);
    if (!isPow2(a.n)) {
      throw new RangeError(`fft: n must be a power of two, got ${JSON.stringify(a.n)}`);
    }
    return [{ shape: [...x.shape.slice(0, r - 2), a.n, 2], dtype: "f32" }];
  },
  reference([x], a, [out]) {
    const L = x.shape[x.shape.length - 2];
    const lines = numel(x.shape) / (2 * L);
    const res = allocHost(out.dtype, numel(out.shape));
    const re = new Float64Array(a.n), im = new Float64Array(a.n);
    for (let l = 0; l < lines; l++) {
      re.fill(0);
      im.fill(0);
      for (let t = 0; t < Math.min(L, a.n); t++) {
        re[t] = x.data[(l * L + t) * 2];
        im[t] = x.data[(l * L + t) * 2 + 1];
      }
      fftF64(re, im, a.inverse);
      for (let t = 0; t < a.n; t++) {
        res[(l * a.n + t) * 2] = re[t];
        res[(l * a.n + t) * 2 + 1] = im[t];
      }
    }
    return [res];
  },
  lower: {
    kind: "kernel",
    prologue: false,
    epilogue: true,
    emit({ attrs, inputs, caps }) {
      const shape = inputs[0].shape;
      const L = shape[shape.length - 2];
      const n = attrs.n;
      const lines = numel(shape) / (2 * L);
      const len = complexScratch(lines * n, caps, "fft");
      const packIo = new KernelIo();
      const pack = flatKernel(
        "pack",
        lines * n,
        caps,
        `  let line = i / ${n}u;
  let t = i % ${n}u;
  var v = vec2<f32>(0.0, 0.0);
  if (t < ${L}u) {
    let at = (line * ${L}u + t) * 2u;
    v = vec2<f32>(${packIo.load(0, "at")}, ${packIo.load(0, "at + 1u")});
  }
  ${packIo.scratch(1)}[i] = v;`,
        "",
        packIo,
      );
      const { kernels, result } = fftPasses("stage", lines, n, 1, 2, 0, attrs.inverse, caps);
      const scale = attrs.inverse ? ` * ${f32(1 / n, "the inverse FFT's scale")}` : "";
      const storeIo = new KernelIo();
      const store = flatKernel(
        "store",
        lines * n,
        caps,
        `  let v = ${storeIo.scratch(result)}[i]${scale};
  ${storeIo.store(0, "2u * i", "v.x")};
  ${storeIo.store(0, "2u * i + 1u", "v.y")};`,
        "",
        storeIo,
      );
      return {
        kernels: asComplex([twiddleKernel(n, 0, caps), pack, ...kernels, store]),
        scratch: [
          { length: Math.max(2, n), type: "f32" },
          { length: len, type: "f32" },
          { length: len, type: "f32" },
        ],
      };
    },
  },
};
