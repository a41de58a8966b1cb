/**
 * The FFT machinery shared by the `fft` op, the FFT convolution and S4: a
 * radix-2 Stockham autosort FFT in global memory — one dispatch per stage,
 * ping-ponging between two scratch buffers, twiddles read from a table computed
 * once per run — the WGSL complex helpers, and the float64 FFT on the CPU.
 * Stockham needs no bit-reversal pass and every stage reads and writes
 * contiguous runs, which suits GPUs and the CPU adapter alike. Sequences of
 * 16384 complex values (L = 8192 after padding) do not fit in 16 KiB of
 * workgroup memory, hence the global-memory passes.
 *
 * @module
 */

import type { DeviceCaps, KernelSource } from "../types.ts";
import { f32, flatKernel, KernelIo } from "../wgsl/mod.ts";

/**
 * Smallest power of two ≥ `x` (1 for x ≤ 1).
 *
 * @example
 * ```ts ignore
 * nextPow2(100); // 128
 * ```
 */
export function nextPow2(x: number): number {
  let n = 1;
  while (n < x) n *= 2;
  return n;
}

/**
 * WGSL complex helpers shared by the FFT and S4 kernels (`c_mul`, `c_div`, `c_exp`
 * on `vec2<f32>` as re, im).
 *
 * @example
 * ```ts ignore
 * flatKernel("spectra", n, caps, body, WGSL_COMPLEX, io);
 * ```
 */
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
 *
 * @example
 * ```ts ignore
 * const { kernels, result } = fftPasses("stage", lines, 256, 1, 2, 0, false, caps);
 * ```
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
    const io = new KernelIo();
    const body = `  let line = i / ${half}u;
  let j = i % ${half}u;
  let base = line * ${n}u;
  let k = j % ${ns}u;
  var w = ${io.scratch(tw)}[k * ${half / ns}u];
  ${inverse ? "w.y = -w.y;" : ""}
  let u = ${io.scratch(a)}[base + j];
  let v = c_mul(${io.scratch(a)}[base + j + ${half}u], w);
  let d = base + (j / ${ns}u) * ${2 * ns}u + k;
  ${io.scratch(b)}[d] = u + v;
  ${io.scratch(b)}[d + ${ns}u] = u - v;`;
    kernels.push(
      flatKernel(
        `${label}${Math.log2(ns) + 1}/${Math.log2(n)}`,
        lines * half,
        caps,
        body,
        WGSL_COMPLEX,
        io,
      ),
    );
    [a, b] = [b, a];
  }
  return { kernels, result: a };
}

/**
 * Kernel filling scratch `tw` with e^{−2πi·m/n} for m < n/2.
 *
 * @example
 * ```ts ignore
 * twiddleKernel(256, 0, caps); // scratch0 = 128 twiddles
 * ```
 */
export function twiddleKernel(n: number, tw: number, caps: DeviceCaps): KernelSource {
  const io = new KernelIo();
  const body = `  let ang = ${f32(-2 * Math.PI / n, "the twiddle angle step")} * f32(i);
  ${io.scratch(tw)}[i] = vec2<f32>(cos(ang), sin(ang));`;
  return flatKernel("twiddles", Math.max(1, n / 2), caps, body, "", io);
}

/**
 * Scratch length in f32 units of `count` complex values, checked against the
 * binding limit (the error names `what`).
 *
 * @example
 * ```ts ignore
 * complexScratch(1024, caps, "fft"); // 2048
 * ```
 */
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
 * Array types for the complex scratch buffers 0–4 of the FFT pipelines.
 *
 * @example
 * ```ts ignore
 * COMPLEX_SCRATCH.scratch1; // "vec2<f32>"
 * ```
 */
export const COMPLEX_SCRATCH: Readonly<Record<string, string>> = {
  scratch0: "vec2<f32>",
  scratch1: "vec2<f32>",
  scratch2: "vec2<f32>",
  scratch3: "vec2<f32>",
  scratch4: "vec2<f32>",
};

/**
 * Declares scratch0–4 as `vec2<f32>` in each kernel (the complex work buffers).
 *
 * @example
 * ```ts ignore
 * asComplex([twiddleKernel(n, 0, caps)]);
 * ```
 */
export function asComplex(kernels: KernelSource[]): KernelSource[] {
  return kernels.map((k) => ({ ...k, arrayTypes: { ...COMPLEX_SCRATCH, ...k.arrayTypes } }));
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
