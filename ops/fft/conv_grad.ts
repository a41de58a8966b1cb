/**
 * The two halves of the causal convolution's gradient (`fft_conv`,
 * `direct_conv`, and S4 through them), `y[b, t, h] = Σₛ k[h, s]·x[b, t − s, h]`:
 *
 * - `conv_grad_input(dy, k)` → dx[b, t, h] = Σₛ k[h, s]·dy[b, t + s, h]: the
 *   convolution run backwards in time (a correlation with the kernel);
 * - `conv_grad_kernel(dy, x)` → dk[h, s] = Σ_b Σ_t dy[b, t, h]·x[b, t − s, h]:
 *   the correlation of the output gradient with the input, summed over the batch.
 *
 * Each has a `method`: `fft` (O(T log T) per line, for long sequences) or
 * `direct` (the O(T·Lk) sums). The FFT forms reuse the forward's Stockham
 * passes at the same padded length, which keeps every kept lag free of
 * wrap-around: a correlation's negative lags land at n − T + 1 … n − 1, beyond
 * the min(Lk, T) lags kept, once n ≥ T + min(Lk, T) − 1.
 *
 * @module
 */

import { allocHost } from "../../core/dtype.ts";
import type { TensorType } from "../../core/graph.ts";
import { type Dim, formatShape, numel } from "../../core/shape.ts";
import type { HostArray } from "../../core/dtype.ts";
import type { HostTensor, KernelEmission, OpDef } from "../types.ts";
import { f32, flatKernel, KernelIo } from "../wgsl/mod.ts";
import { convFftKernels, convFftLength } from "./long_conv.ts";
import { asComplex, complexScratch, fftPasses, twiddleKernel, WGSL_COMPLEX } from "./stockham.ts";

/**
 * How a convolution gradient is computed.
 *
 * @example
 * ```ts
 * import type { ConvGradMethod } from "@kiln/kiln";
 * const m: ConvGradMethod = "fft";
 * ```
 */
export type ConvGradMethod = "fft" | "direct";

/**
 * Attributes of `conv_grad_input`.
 *
 * @example
 * ```ts
 * import type { ConvGradInputAttrs } from "@kiln/kiln";
 * const attrs: ConvGradInputAttrs = { method: "fft" };
 * ```
 */
export interface ConvGradInputAttrs {
  /** FFT correlation or the direct sum. */
  readonly method: ConvGradMethod;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: string;
}

/**
 * Attributes of `conv_grad_kernel`.
 *
 * @example
 * ```ts
 * import type { ConvGradKernelAttrs } from "@kiln/kiln";
 * const attrs: ConvGradKernelAttrs = { length: 64, method: "direct" };
 * ```
 */
export interface ConvGradKernelAttrs {
  /** Taps Lk of the kernel whose gradient this is (a number or a symbol). */
  readonly length: Dim;
  /** FFT correlation or the direct sum. */
  readonly method: ConvGradMethod;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: Dim;
}

function checkMethod(op: string, m: unknown): void {
  if (m !== "fft" && m !== "direct") {
    throw new TypeError(`${op}: method must be "fft" or "direct", got ${JSON.stringify(m)}`);
  }
}

function dims(x: HostTensor | { shape: readonly number[] }) {
  const r = x.shape.length;
  const T = x.shape[r - 2], H = x.shape[r - 1];
  return { T, H, batch: numel(x.shape) / (T * H) };
}

/**
 * dx[b, t, h] = Σ_{s < min(Lk, T − t)} k[h, s]·dy[b, t + s, h], in float64.
 *
 * @example
 * ```ts ignore
 * convGradInputF64(dy, k); // dy [B, T, H], k [H, Lk]
 * ```
 */
export function convGradInputF64(dy: HostTensor, k: HostTensor): HostArray {
  const { T, H, batch } = dims(dy);
  const Lk = k.shape[1];
  const dx = allocHost("f32", numel(dy.shape));
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < H; h++) {
        let acc = 0;
        for (let s = 0; s < Math.min(Lk, T - t); s++) {
          acc += k.data[h * Lk + s] * dy.data[(b * T + t + s) * H + h];
        }
        dx[(b * T + t) * H + h] = acc;
      }
    }
  }
  return dx;
}

/**
 * dk[h, s] = Σ_b Σ_{t ≥ s} dy[b, t, h]·x[b, t − s, h] for s < Lk, in float64.
 *
 * @example
 * ```ts ignore
 * convGradKernelF64(dy, x, 16); // [H, 16]
 * ```
 */
export function convGradKernelF64(dy: HostTensor, x: HostTensor, Lk: number): HostArray {
  const { T, H, batch } = dims(dy);
  const dk = allocHost("f32", H * Lk);
  for (let h = 0; h < H; h++) {
    for (let s = 0; s < Math.min(Lk, T); s++) {
      let acc = 0;
      for (let b = 0; b < batch; b++) {
        for (let t = s; t < T; t++) {
          acc += dy.data[(b * T + t) * H + h] * x.data[(b * T + t - s) * H + h];
        }
      }
      dk[h * Lk + s] = acc;
    }
  }
  return dk;
}

function inferGrad(op: string, dy: TensorType, other: TensorType, otherName: string): void {
  const show = `${op}(dy ${formatShape(dy.shape)}, ${otherName} ${formatShape(other.shape)})`;
  if (dy.dtype !== "f32" || other.dtype !== "f32") {
    throw new TypeError(`${show}: expects f32 operands, got ${dy.dtype} and ${other.dtype}`);
  }
  if (dy.shape.length < 2) throw new RangeError(`${show}: dy must be [..., T, H]`);
}

/**
 * conv_grad_input(dy [..., T, H], k [H, Lk]) → dx [..., T, H].
 *
 * @example
 * ```ts ignore
 * opDef("conv_grad_input") === convGradInput; // in the op table
 * ```
 */
export const convGradInput: OpDef<ConvGradInputAttrs> = {
  arity: 2,
  attrNames: ["method"],
  infer([dy, k], a) {
    checkMethod("conv_grad_input", a.method);
    inferGrad("conv_grad_input", dy, k, "k");
    const H = dy.shape[dy.shape.length - 1];
    if (k.shape.length !== 2 || k.shape[0] !== H) {
      throw new RangeError(
        `conv_grad_input: k must be [H, Lk] with H = ${H}, got ${formatShape(k.shape)}`,
      );
    }
    return [{ shape: dy.shape, dtype: "f32" }];
  },
  reference([dy, k]) {
    return [convGradInputF64(dy, k)];
  },
  lower: {
    kind: "kernel",
    prologue: false,
    epilogue: true,
    emit({ attrs, inputs, caps }): KernelEmission {
      const { T, H, batch } = dims(inputs[0]);
      const Lk = inputs[1].shape[1];
      const io = new KernelIo();
      if (attrs.method === "direct") {
        const body = `  let h = i % ${H}u;
  let t = (i / ${H}u) % ${T}u;
  let last = min(${Lk}u, ${T}u - t);
  var acc = 0.0;
  for (var s = 0u; s < last; s = s + 1u) {
    acc = acc + ${io.load(1, `h * ${Lk}u + s`)} * ${io.load(0, `i + s * ${H}u`)};
  }
  ${io.store(0, "i", "acc")};`;
        return {
          kernels: [flatKernel("conv_grad_input", numel(inputs[0].shape), caps, body, "", io)],
        };
      }
      // A correlation is a convolution with the kernel reversed circularly
      // (k'[t] = k[(n − t) mod n]: its spectrum is K's conjugate), so the
      // forward pipeline runs unchanged on dy with that kernel.
      const n = convFftLength(T, Lk);
      const packK = flatKernel(
        "pack_k_reversed",
        H * n,
        caps,
        `  let s = (${n}u - i % ${n}u) % ${n}u;
  var v = 0.0;
  if (s < ${Math.min(Lk, T)}u) { v = ${io.load(1, `(i / ${n}u) * ${Lk}u + s`)}; }
  ${io.scratch(1)}[i] = vec2<f32>(v, 0.0);`,
        "",
        io,
      );
      const conv = convFftKernels({ batch, T, H, n, caps, packK });
      return {
        kernels: conv.kernels.map((k) => ({ ...k, label: `grad_input/${k.label}` })),
        scratch: conv.scratch,
      };
    },
  },
};

/**
 * conv_grad_kernel(dy [..., T, H], x [..., T, H]) → dk [H, length].
 *
 * @example
 * ```ts ignore
 * opDef("conv_grad_kernel") === convGradKernel; // in the op table
 * ```
 */
export const convGradKernel: OpDef<ConvGradKernelAttrs> = {
  arity: 2,
  attrNames: ["length", "method"],
  infer([dy, x], a) {
    checkMethod("conv_grad_kernel", a.method);
    inferGrad("conv_grad_kernel", dy, x, "x");
    if (formatShape(dy.shape) !== formatShape(x.shape)) {
      throw new RangeError(
        `conv_grad_kernel: dy ${formatShape(dy.shape)} and x ${
          formatShape(x.shape)
        } must have one shape`,
      );
    }
    const L = a.length;
    if (!(typeof L === "string" && L.length > 0) && !(Number.isInteger(L) && (L as number) >= 1)) {
      throw new RangeError(
        `conv_grad_kernel: length must be an integer >= 1 or a symbol, got ${JSON.stringify(L)}`,
      );
    }
    return [{ shape: [dy.shape[dy.shape.length - 1], L], dtype: "f32" }];
  },
  reference([dy, x], _a, [out]) {
    return [convGradKernelF64(dy, x, out.shape[1])];
  },
  lower: {
    kind: "kernel",
    prologue: false,
    epilogue: true,
    emit({ attrs, inputs, outputs, caps }): KernelEmission {
      const { T, H, batch } = dims(inputs[0]);
      const Lk = outputs[0].shape[1];
      const kept = Math.min(Lk, T);
      if (attrs.method === "direct") {
        const io = new KernelIo();
        // One invocation per tap, walking the batch and time in order.
        const body = `  let h = i / ${Lk}u;
  let s = i % ${Lk}u;
  var acc = 0.0;
  if (s < ${T}u) {
    for (var b = 0u; b < ${batch}u; b = b + 1u) {
      let row = b * ${T * H}u + h;
      for (var t = s; t < ${T}u; t = t + 1u) {
        acc = acc + ${io.load(0, `row + t * ${H}u`)} * ${io.load(1, `row + (t - s) * ${H}u`)};
      }
    }
  }
  ${io.store(0, "i", "acc")};`;
        return { kernels: [flatKernel("conv_grad_kernel", H * Lk, caps, body, "", io)] };
      }
      const n = convFftLength(T, Lk);
      const lines = batch * H;
      const len = complexScratch(lines * n, caps, "conv_grad_kernel");
      const pack = (label: string, input: number, dst: number) => {
        const io = new KernelIo();
        return flatKernel(
          label,
          lines * n,
          caps,
          `  let line = i / ${n}u;
  let t = i % ${n}u;
  var v = 0.0;
  if (t < ${T}u) { v = ${io.load(input, `((line / ${H}u) * ${T}u + t) * ${H}u + line % ${H}u`)}; }
  ${io.scratch(dst)}[i] = vec2<f32>(v, 0.0);`,
          "",
          io,
        );
      };
      const dyf = fftPasses("fft_dy", lines, n, 1, 2, 0, false, caps);
      const xf = fftPasses("fft_x", lines, n, 3, 4, 0, false, caps);
      // Σ_b DY·conj(X) per (h, f), written over line h of DY's spectrum: thread
      // (h, f) is the only one that reads or writes that element.
      const mulIo = new KernelIo();
      const dys = mulIo.scratch(dyf.result), xs = mulIo.scratch(xf.result);
      const mul = flatKernel(
        "spectra",
        H * n,
        caps,
        `  var acc = vec2<f32>(0.0, 0.0);
  for (var b = 0u; b < ${batch}u; b = b + 1u) {
    let at = b * ${H * n}u + i;
    let xv = ${xs}[at];
    acc = acc + c_mul(${dys}[at], vec2<f32>(xv.x, -xv.y));
  }
  ${dys}[i] = acc;`,
        WGSL_COMPLEX,
        mulIo,
      );
      const inv = fftPasses(
        "ifft",
        H,
        n,
        dyf.result,
        dyf.result === 1 ? 2 : 1,
        0,
        true,
        caps,
      );
      const storeIo = new KernelIo();
      const store = flatKernel(
        "store",
        H * Lk,
        caps,
        `  let s = i % ${Lk}u;
  var v = 0.0;
  if (s < ${kept}u) {
    v = ${storeIo.scratch(inv.result)}[(i / ${Lk}u) * ${n}u + s].x * ${
          f32(1 / n, "the inverse FFT's scale")
        };
  }
  ${storeIo.store(0, "i", "v")};`,
        "",
        storeIo,
      );
      return {
        kernels: asComplex([
          twiddleKernel(n, 0, caps),
          pack("pack_dy", 0, 1),
          ...dyf.kernels,
          pack("pack_x", 1, 3),
          ...xf.kernels,
          mul,
          ...inv.kernels,
          store,
        ]).map((k) => ({ ...k, label: `grad_kernel/${k.label}` })),
        scratch: [
          { length: Math.max(2, n), type: "f32" },
          { length: len, type: "f32" },
          { length: len, type: "f32" },
          { length: len, type: "f32" },
          { length: len, type: "f32" },
        ],
      };
    },
  },
};
