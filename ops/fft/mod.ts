/**
 * FFT and long causal convolution on the GPU.
 *
 * - `fft` (`transform.ts`): complex-to-complex DFT along the second-to-last axis
 *   of `[..., L, 2]` (re, im pairs), zero-padded (or cropped) to a power-of-two
 *   length `n`.
 * - `fft_conv` and `direct_conv` (`long_conv.ts`): causal convolution
 *   `y[b, t, h] = Σ_{s ≤ t} k[h, s] · x[b, t − s, h]` by FFT, or by the direct
 *   O(T·Lk) sum.
 * - `stockham.ts`: the radix-2 Stockham passes, twiddles and complex helpers
 *   these and S4 share, and the float64 FFT on the CPU.
 *
 * @example
 * ```ts
 * import { fftF64 } from "./mod.ts";
 * const re = new Float64Array([1, 0, 0, 0]), im = new Float64Array(4);
 * fftF64(re, im, false); // re = [1, 1, 1, 1]
 * ```
 *
 * @module
 */

export { fft, type FftAttrs } from "./transform.ts";
export {
  type ConvAttrs,
  convFftKernels,
  convFftLength,
  type ConvFftSpec,
  directConv,
  directConvKernel,
  fftConv,
} from "./long_conv.ts";
export { fftF64, WGSL_COMPLEX } from "./stockham.ts";
