/**
 * FFT and long causal convolution on the GPU.
 *
 * - `fft`: complex-to-complex DFT along the second-to-last axis of `[..., L, 2]`
 *   (re, im pairs), zero-padded (or cropped) to a power-of-two length `n`.
 * - `fft_conv`: causal convolution `y[b, t, h] = Σ_{s ≤ t} k[h, s] · x[b, t − s, h]`
 *   by FFT. Both sequences are zero-padded to the next power of two ≥ T + min(Lk, T) − 1
 *   (≤ 2T), so the circular convolution the DFT computes equals the linear one on
 *   every output kept.
 * - `direct_conv`: the same convolution as a direct O(T·Lk) sum, for comparison
 *   and for short sequences.
 *
 * The FFT is a radix-2 Stockham autosort FFT in global memory: one dispatch per
 * stage, ping-ponging between two scratch buffers, twiddles read from a table
 * computed once per run. Stockham needs no bit-reversal pass and every stage
 * reads and writes contiguous runs, which suits GPUs and the CPU adapter alike.
 * Sequences of 16384 complex values (L = 8192 after padding) do not fit in 16 KiB
 * of workgroup memory, hence the global-memory passes.
 *
 * @module
 */

import { allocHost } from "../core/dtype.ts";
import type { TensorType } from "../core/graph.ts";
import { formatShape, numel } from "../core/shape.ts";
import type { DeviceCaps, KernelSource, OpDef } from "./types.ts";
import { flatKernel } from "./layout.ts";

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

/** Smallest power of two ≥ `x` (1 for x ≤ 1). */
export function nextPow2(x: number): number {
  let n = 1;
  while (n < x) n *= 2;
  return n;
}

/** FFT length that makes a circular convolution of T outputs with Lk taps linear. */
export function convFftLength(T: number, Lk: number): number {
  return nextPow2(Math.max(1, T + Math.min(Lk, T) - 1));
}

/** WGSL complex helpers shared by the FFT and S4 kernels. */
export const WGSL_COMPLEX = `
fn c_mul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}
fn c_div(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  let d = b.x * b.x + b.y * b.y;
  return vec2<f32>(a.x * b.x + a.y * b.y, a.y * b.x - a.x * b.y) / d;
}
fn c_exp(a: vec2<f32>) -> vec2<f32> {
  return exp(a.x) * vec2<f32>(cos(a.y), sin(a.y));
}`;

/**
 * Kernels of an in-place batch of FFTs over `lines` sequences of length `n` held
 * as `vec2<f32>` in scratch `src`; scratch `other` is the ping-pong partner and
 * scratch `tw` holds the twiddle table (see {@linkcode twiddleKernel}). Returns
 * the kernels and the scratch index that holds the result.
 */
export function fftPasses(
  label: string,
  lines: number,
  n: number,
  src: number,
  other: number,
  tw: number,
  inverse: boolean,
  caps: DeviceCaps,
): { kernels: KernelSource[]; result: number } {
  const kernels: KernelSource[] = [];
  const half = n / 2;
  let [a, b] = [src, other];
  for (let ns = 1; ns < n; ns *= 2) {
    const body = `  let line = i / ${half}u;
  let j = i % ${half}u;
  let base = line * ${n}u;
  let k = j % ${ns}u;
  var w = scratch${tw}[k * ${half / ns}u];
  ${inverse ? "w.y = -w.y;" : ""}
  let u = scratch${a}[base + j];
  let v = c_mul(scratch${a}[base + j + ${half}u], w);
  let d = base + (j / ${ns}u) * ${2 * ns}u + k;
  scratch${b}[d] = u + v;
  scratch${b}[d + ${ns}u] = u - v;`;
    kernels.push(
      flatKernel(
        `${label}${Math.log2(ns) + 1}/${Math.log2(n)}`,
        lines * half,
        caps,
        body,
        WGSL_COMPLEX,
      ),
    );
    [a, b] = [b, a];
  }
  return { kernels, result: a };
}

/** Kernel filling scratch `tw` with e^{−2πi·m/n} for m < n/2. */
export function twiddleKernel(n: number, tw: number, caps: DeviceCaps): KernelSource {
  const body = `  let ang = ${(-2 * Math.PI / n).toPrecision(17)} * f32(i);
  scratch${tw}[i] = vec2<f32>(cos(ang), sin(ang));`;
  return flatKernel("twiddles", Math.max(1, n / 2), caps, body);
}

/** Scratch length in f32 units of `count` complex values, checked against the binding limit. */
export function complexScratch(count: number, caps: DeviceCaps, what: string): number {
  const bytes = count * 8;
  if (bytes > caps.maxBindingSize) {
    throw new RangeError(
      `${what}: FFT work buffer of ${bytes} bytes exceeds the device's binding limit (${caps.maxBindingSize})`,
    );
  }
  return Math.max(2, count * 2);
}

/**
 * Float64 in-place radix-2 FFT on the CPU (`re`, `im` of power-of-two length),
 * the inverse scaled by 1/n.
 *
 * @example
 * ```ts
 * import { fftF64 } from "@kiln/kiln";
 * const re = new Float64Array([1, 0, 0, 0]), im = new Float64Array(4);
 * fftF64(re, im, false); // re = [1, 1, 1, 1]
 * ```
 */
export function fftF64(re: Float64Array, im: Float64Array, inverse: boolean): void {
  const n = re.length;
  if (n !== im.length || (n & (n - 1)) !== 0) {
    throw new RangeError(`fftF64: length must be a power of two, got ${n}`);
  }
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  const sign = inverse ? 1 : -1;
  for (let len = 2; len <= n; len *= 2) {
    const ang = (sign * 2 * Math.PI) / len;
    for (let i = 0; i < n; i += len) {
      for (let k = 0; k < len / 2; k++) {
        const wr = Math.cos(ang * k), wi = Math.sin(ang * k);
        const a = i + k, b = a + len / 2;
        const vr = re[b] * wr - im[b] * wi, vi = re[b] * wi + im[b] * wr;
        re[b] = re[a] - vr;
        im[b] = im[a] - vi;
        re[a] += vr;
        im[a] += vi;
      }
    }
  }
  if (inverse) {
    for (let i = 0; i < n; i++) {
      re[i] /= n;
      im[i] /= n;
    }
  }
}

function isPow2(n: unknown): n is number {
  return typeof n === "number" && Number.isInteger(n) && n >= 1 && (n & (n - 1)) === 0;
}

/** fft(x [..., L, 2]) → [..., n, 2]. */
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
      const pack = flatKernel(
        "pack",
        lines * n,
        caps,
        `  let line = i / ${n}u;
  let t = i % ${n}u;
  var v = vec2<f32>(0.0, 0.0);
  if (t < ${L}u) {
    let at = (line * ${L}u + t) * 2u;
    v = vec2<f32>(in0_load(at), in0_load(at + 1u));
  }
  scratch1[i] = v;`,
      );
      const { kernels, result } = fftPasses("stage", lines, n, 1, 2, 0, attrs.inverse, caps);
      const scale = attrs.inverse ? ` * ${(1 / n).toPrecision(17)}` : "";
      const store = flatKernel(
        "store",
        lines * n,
        caps,
        `  let v = scratch${result}[i]${scale};
  out0_store(2u * i, v.x);
  out0_store(2u * i + 1u, v.y);`,
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
): Float32Array {
  const r = x.shape.length;
  const T = x.shape[r - 2], H = x.shape[r - 1], Lk = k.shape[1];
  const batch = numel(x.shape) / (T * H);
  const y = new Float32Array(numel(x.shape));
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

/** fft_conv(x [..., T, H], k [H, Lk]) → y [..., T, H], causal, by FFT. */
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
      const kernels = convFftKernels({
        batch,
        T,
        H,
        n,
        caps,
        packK: flatKernel(
          "pack_k",
          H * n,
          caps,
          `  let t = i % ${n}u;
  var v = 0.0;
  if (t < ${Math.min(Lk, T)}u) { v = in1_load((i / ${n}u) * ${Lk}u + t); }
  scratch1[i] = vec2<f32>(v, 0.0);`,
        ),
        extra: "",
      });
      return kernels;
    },
  },
};

/** Sizes and hooks of the FFT convolution pipeline shared with the S4 op. */
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
  /** WGSL expression added to each output at flat index `i` (`""` for none). */
  readonly extra: string;
  /** Extra scratch buffers the caller's kernels use (indices from 5 on). */
  readonly scratch?: readonly { length: number; type: "f32" }[];
  /** Kernels to run first (they may write the extra scratch). */
  readonly first?: readonly KernelSource[];
}

/**
 * The FFT convolution pipeline: twiddles; K (from `packK`) transformed; x packed
 * and transformed; spectra multiplied; inverse transform; real part stored.
 * Scratch: 0 twiddles, 1–2 K ping-pong, 3–4 x ping-pong, 5… the caller's.
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
  const packX = flatKernel(
    "pack_x",
    lines * n,
    caps,
    `  let line = i / ${n}u;
  let t = i % ${n}u;
  var v = 0.0;
  if (t < ${T}u) { v = in0_load(((line / ${H}u) * ${T}u + t) * ${H}u + line % ${H}u); }
  scratch3[i] = vec2<f32>(v, 0.0);`,
  );
  const xf = fftPasses("fft_x", lines, n, 3, 4, 0, false, caps);
  const mul = flatKernel(
    "spectra",
    lines * n,
    caps,
    `  let line = i / ${n}u;
  let f = i % ${n}u;
  scratch${xf.result}[i] = c_mul(scratch${xf.result}[i], scratch${kf.result}[(line % ${H}u) * ${n}u + f]);`,
    WGSL_COMPLEX,
  );
  const xi = fftPasses("ifft", lines, n, xf.result, xf.result === 3 ? 4 : 3, 0, true, caps);
  const store = flatKernel(
    "store",
    batch * T * H,
    caps,
    `  let h = i % ${H}u;
  let bt = i / ${H}u;
  let line = (bt / ${T}u) * ${H}u + h;
  let v = scratch${xi.result}[line * ${n}u + bt % ${T}u].x * ${(1 / n).toPrecision(17)};
  out0_store(i, v${s.extra ? ` + ${s.extra}` : ""});`,
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

/** Array types for the complex scratch buffers of {@linkcode convFftKernels}. */
export const COMPLEX_SCRATCH: Readonly<Record<string, string>> = {
  scratch0: "vec2<f32>",
  scratch1: "vec2<f32>",
  scratch2: "vec2<f32>",
  scratch3: "vec2<f32>",
  scratch4: "vec2<f32>",
};

/** Declares scratch0–4 as `vec2<f32>` in each kernel (the complex work buffers). */
function asComplex(kernels: KernelSource[]): KernelSource[] {
  return kernels.map((k) => ({ ...k, arrayTypes: { ...COMPLEX_SCRATCH, ...k.arrayTypes } }));
}

/** Direct causal convolution kernel: one thread per output, O(min(t, Lk)) each. */
export function directConvKernel(
  T: number,
  H: number,
  Lk: number,
  total: number,
  caps: DeviceCaps,
  loadK: (h: string, s: string) => string,
  extra: string,
): KernelSource {
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
    acc = acc + ${loadK("h", "s")} * in0_load(row0 + (t - s) * ${H}u);
  }
  out0_store(i, acc${extra ? ` + ${extra}` : ""});`,
  );
}

/** direct_conv(x [..., T, H], k [H, Lk]) → y [..., T, H], by the direct sum. */
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
            (h, s) => `in1_load(${h} * ${ks[1]}u + ${s})`,
            "",
          ),
        ],
      };
    },
  },
};
