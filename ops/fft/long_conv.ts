/**
 * Long causal convolution `y[b, t, h] = Σ_{s ≤ t} k[h, s] · x[b, t − s, h]`:
 * `fft_conv` by FFT — both sequences zero-padded to the next power of two
 * ≥ T + min(Lk, T) − 1 (≤ 2T), so the circular convolution the DFT computes
 * equals the linear one on every output kept — and `direct_conv`, the same sum
 * in O(T·Lk), for comparison and short sequences. The pipelines are shared with
 * S4's convolution mode.
 *
 * @module
 */

import { allocHost, type HostArray } from "../../core/dtype.ts";
import type { TensorType } from "../../core/graph.ts";
import { formatShape, numel } from "../../core/shape.ts";
import type { DeviceCaps, KernelSource, OpDef } from "../types.ts";
import { f32, flatKernel, KernelIo } from "../wgsl/mod.ts";
import {
  asComplex,
  complexScratch,
  fftPasses,
  nextPow2,
  twiddleKernel,
  WGSL_COMPLEX,
} from "./stockham.ts";

/**
 * Attributes of `fft_conv` and `direct_conv` (none).
 *
 * @example
 * ```ts
 * import type { ConvAttrs } from "@kiln/kiln";
 * const attrs: ConvAttrs = {}; // fft_conv and direct_conv take none
 * ```
 */
export type ConvAttrs = Record<string, never>;

/**
 * FFT length that makes a circular convolution of T outputs with Lk taps linear.
 *
 * @example
 * ```ts ignore
 * convFftLength(100, 100); // 256
 * ```
 */
export function convFftLength(T: number, Lk: number): number {
  return nextPow2(Math.max(1, T + Math.min(Lk, T) - 1));
}

/** Shape rule of `fft_conv` / `direct_conv`: x [..., T, H], k [H, Lk] → x's type. */
function inferConv(op: string, x: TensorType, k: TensorType): TensorType[] {
  const show = `${op}(x ${formatShape(x.shape)}, k ${formatShape(k.shape)})`;
  if (x.shape.length < 2) throw new RangeError(`${show}: x must be [..., T, H]`);
  if (k.shape.length !== 2) throw new RangeError(`${show}: k must be [H, Lk]`);
  const H = x.shape[x.shape.length - 1];
  if (H !== k.shape[0]) {
    throw new RangeError(`${show}: channels differ (x has H = ${H}, k has ${k.shape[0]})`);
  }
  if (x.dtype !== "f32" || k.dtype !== "f32") {
    throw new TypeError(`${show}: expects f32 operands, got ${x.dtype} and ${k.dtype}`);
  }
  return [{ shape: x.shape, dtype: "f32" }];
}

/** Direct causal convolution in float64 (the reference of both conv ops). */
function convReference(
  x: { data: ArrayLike<number>; shape: readonly number[] },
  k: { data: ArrayLike<number>; shape: readonly number[] },
): HostArray {
  const r = x.shape.length;
  const T = x.shape[r - 2], H = x.shape[r - 1], Lk = k.shape[1];
  const batch = numel(x.shape) / (T * H);
  const y = allocHost("f32", numel(x.shape));
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        let acc = 0;
        for (let s = 0; s <= Math.min(t, Lk - 1); s++) {
          acc += k.data[h * Lk + s] * x.data[(b * T + t - s) * H + h];
        }
        y[(b * T + t) * H + h] = acc;
      }
    }
  }
  return y;
}

/**
 * fft_conv(x [..., T, H], k [H, Lk]) → y [..., T, H], causal, by FFT.
 *
 * @example
 * ```ts ignore
 * opDef("fft_conv") === fftConv; // in the op table
 * ```
 */
export const fftConv: OpDef<ConvAttrs> = {
  arity: 2,
  attrNames: [],
  infer([x, k]) {
    return inferConv("fft_conv", x, k);
  },
  reference([x, k]) {
    return [convReference(x, k)];
  },
  lower: {
    kind: "kernel",
    prologue: false,
    epilogue: true,
    emit({ inputs, caps }) {
      const [xs, ks] = [inputs[0].shape, inputs[1].shape];
      const T = xs[xs.length - 2], H = xs[xs.length - 1], Lk = ks[1];
      const batch = numel(xs) / (T * H);
      const n = convFftLength(T, Lk);
      const io = new KernelIo();
      const packK = flatKernel(
        "pack_k",
        H * n,
        caps,
        `  let t = i % ${n}u;
  var v = 0.0;
  if (t < ${Math.min(Lk, T)}u) { v = ${io.load(1, `(i / ${n}u) * ${Lk}u + t`)}; }
  ${io.scratch(1)}[i] = vec2<f32>(v, 0.0);`,
        "",
        io,
      );
      return convFftKernels({ batch, T, H, n, caps, packK });
    },
  },
};

/**
 * Sizes and hooks of the FFT convolution pipeline shared with the S4 op.
 *
 * @example
 * ```ts ignore
 * const spec: ConvFftSpec = { batch: 1, T, H, n: convFftLength(T, T), caps, packK };
 * ```
 */
export interface ConvFftSpec {
  /** Batch (product of leading dims). */
  readonly batch: number;
  /** Sequence length. */
  readonly T: number;
  /** Channels. */
  readonly H: number;
  /** FFT length. */
  readonly n: number;
  /** Device caps. */
  readonly caps: DeviceCaps;
  /** Kernel that writes the kernel sequences, zero-padded, as complex `[H, n]` into scratch1. */
  readonly packK: KernelSource;
  /** WGSL expression added to each output at flat index `i`, through the store kernel's `io`. */
  readonly extra?: (io: KernelIo) => string;
  /** Extra scratch buffers the caller's kernels use (indices from 5 on). */
  readonly scratch?: readonly { length: number; type: "f32" }[];
  /** Kernels to run first (they may write the extra scratch). */
  readonly first?: readonly KernelSource[];
}

/**
 * The FFT convolution pipeline: twiddles; K (from `packK`) transformed; x packed
 * and transformed; spectra multiplied; inverse transform; real part stored.
 * Scratch: 0 twiddles, 1–2 K ping-pong, 3–4 x ping-pong, 5… the caller's.
 *
 * @example
 * ```ts ignore
 * const { kernels, scratch } = convFftKernels({ batch, T, H, n, caps, packK });
 * ```
 */
export function convFftKernels(s: ConvFftSpec): {
  kernels: KernelSource[];
  scratch: { length: number; type: "f32" }[];
} {
  const { batch, T, H, n, caps } = s;
  const lines = batch * H;
  const kLen = complexScratch(H * n, caps, "fft_conv");
  const xLen = complexScratch(lines * n, caps, "fft_conv");
  const kf = fftPasses("fft_k", H, n, 1, 2, 0, false, caps);
  const packIo = new KernelIo();
  const packX = flatKernel(
    "pack_x",
    lines * n,
    caps,
    `  let line = i / ${n}u;
  let t = i % ${n}u;
  var v = 0.0;
  if (t < ${T}u) { v = ${packIo.load(0, `((line / ${H}u) * ${T}u + t) * ${H}u + line % ${H}u`)}; }
  ${packIo.scratch(3)}[i] = vec2<f32>(v, 0.0);`,
    "",
    packIo,
  );
  const xf = fftPasses("fft_x", lines, n, 3, 4, 0, false, caps);
  const mulIo = new KernelIo();
  const spectrum = mulIo.scratch(xf.result);
  const mul = flatKernel(
    "spectra",
    lines * n,
    caps,
    `  let line = i / ${n}u;
  let f = i % ${n}u;
  ${spectrum}[i] = c_mul(${spectrum}[i], ${mulIo.scratch(kf.result)}[(line % ${H}u) * ${n}u + f]);`,
    WGSL_COMPLEX,
    mulIo,
  );
  const xi = fftPasses("ifft", lines, n, xf.result, xf.result === 3 ? 4 : 3, 0, true, caps);
  const storeIo = new KernelIo();
  const extra = s.extra ? ` + ${s.extra(storeIo)}` : "";
  const store = flatKernel(
    "store",
    batch * T * H,
    caps,
    `  let h = i % ${H}u;
  let bt = i / ${H}u;
  let line = (bt / ${T}u) * ${H}u + h;
  let v = ${storeIo.scratch(xi.result)}[line * ${n}u + bt % ${T}u].x * ${
      f32(1 / n, "the inverse FFT's scale")
    };
  ${storeIo.store(0, "i", `v${extra}`)};`,
    "",
    storeIo,
  );
  return {
    kernels: asComplex([
      ...(s.first ?? []),
      twiddleKernel(n, 0, caps),
      s.packK,
      ...kf.kernels,
      packX,
      ...xf.kernels,
      mul,
      ...xi.kernels,
      store,
    ]),
    scratch: [
      { length: Math.max(2, n), type: "f32" },
      { length: kLen, type: "f32" },
      { length: kLen, type: "f32" },
      { length: xLen, type: "f32" },
      { length: xLen, type: "f32" },
      ...(s.scratch ?? []),
    ],
  };
}

/**
 * Direct causal convolution kernel: one thread per output, O(min(t, Lk)) each.
 * `loadK(io, h, s)` reads tap s of channel h; `extra(io)`, when given, is added
 * to each output at flat index `i`.
 *
 * @example
 * ```ts ignore
 * directConvKernel(T, H, Lk, B * T * H, caps, (io, h, s) => io.load(1, `${h} * ${Lk}u + ${s}`));
 * ```
 */
export function directConvKernel(
  T: number,
  H: number,
  Lk: number,
  total: number,
  caps: DeviceCaps,
  loadK: (io: KernelIo, h: string, s: string) => string,
  extra?: (io: KernelIo) => string,
): KernelSource {
  const io = new KernelIo();
  return flatKernel(
    "direct_conv",
    total,
    caps,
    `  let h = i % ${H}u;
  let t = (i / ${H}u) % ${T}u;
  let row0 = i - t * ${H}u;
  var acc = 0.0;
  let last = min(t, ${Lk - 1}u);
  for (var s = 0u; s <= last; s = s + 1u) {
    acc = acc + ${loadK(io, "h", "s")} * ${io.load(0, `row0 + (t - s) * ${H}u`)};
  }
  ${io.store(0, "i", `acc${extra ? ` + ${extra(io)}` : ""}`)};`,
    "",
    io,
  );
}

/**
 * direct_conv(x [..., T, H], k [H, Lk]) → y [..., T, H], by the direct sum.
 *
 * @example
 * ```ts ignore
 * opDef("direct_conv") === directConv; // in the op table
 * ```
 */
export const directConv: OpDef<ConvAttrs> = {
  arity: 2,
  attrNames: [],
  infer([x, k]) {
    return inferConv("direct_conv", x, k);
  },
  reference([x, k]) {
    return [convReference(x, k)];
  },
  lower: {
    kind: "kernel",
    prologue: true,
    epilogue: true,
    emit({ inputs, caps }) {
      const [xs, ks] = [inputs[0].shape, inputs[1].shape];
      const T = xs[xs.length - 2], H = xs[xs.length - 1];
      return {
        kernels: [
          directConvKernel(
            T,
            H,
            ks[1],
            numel(xs),
            caps,
            (io, h, s) => io.load(1, `${h} * ${ks[1]}u + ${s}`),
          ),
        ],
      };
    },
  },
};
