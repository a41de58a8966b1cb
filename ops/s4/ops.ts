/**
 * The S4 / S4D ops: `s4_kernel` (K̄ by the Vandermonde product), `s4` (from a
 * zero state) and `s4_state` (from a state, which it updates in place). The
 * representation — recurrence, FFT convolution or direct sum — is chosen when
 * the plan is built for a concrete T (`choice.ts`); it leads the first kernel's
 * label and rides on that kernel as its `choice`.
 *
 * @module
 */

import { allocHost } from "../../core/dtype.ts";
import { type Dim, formatShape } from "../../core/shape.ts";
import type { TensorType } from "../../core/graph.ts";
import type { DeviceCaps, KernelEmission, KernelSource, OpDef } from "../types.ts";
import { convFftKernels, convFftLength, directConvKernel } from "../fft/mod.ts";
import { s4Choice, type S4Mode } from "./choice.ts";
import { recurrenceF64, type S4Discretisation, s4KernelF64 } from "./discretise.ts";
import { recurrentKernel, type S4Wgsl, stateKernels, vandermondeKernel } from "./kernels.ts";

/**
 * Attributes of `s4` and `s4_state`.
 *
 * @example
 * ```ts
 * import type { S4Attrs } from "@kiln/kiln";
 * const attrs: S4Attrs = { mode: "auto", discretisation: "zoh", conj: true, name: "s4" };
 * ```
 */
export interface S4Attrs {
  /** Representation: `auto` chooses per T when the plan is built. */
  readonly mode: S4Mode;
  /** ZOH or bilinear. */
  readonly discretisation: S4Discretisation;
  /** States are conjugate pairs (output 2·Re) rather than independent (output Re). */
  readonly conj: boolean;
  /** Layer name shown in plans. */
  readonly name: string;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: string | boolean;
}

/**
 * Attributes of `s4_kernel`.
 *
 * @example
 * ```ts
 * import type { S4KernelAttrs } from "@kiln/kiln";
 * const attrs: S4KernelAttrs = { length: "T", discretisation: "zoh", conj: true };
 * ```
 */
export interface S4KernelAttrs {
  /** Kernel length L (a number or a symbolic dimension). */
  readonly length: Dim;
  /** ZOH or bilinear. */
  readonly discretisation: S4Discretisation;
  /** Conjugate-pair states (factor 2 on the real part). */
  readonly conj: boolean;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: Dim | boolean;
}

const MODES: readonly string[] = ["auto", "conv", "recurrent", "direct"];
const DISCS: readonly string[] = ["zoh", "bilinear"];

function checkParams(
  op: string,
  ps: readonly TensorType[],
  attrs: { discretisation: unknown; conj: unknown },
) {
  const [A, B, C, dt] = ps;
  const show = `${op}(A ${formatShape(A.shape)}, B ${formatShape(B.shape)}, C ${
    formatShape(C.shape)
  }, log_dt ${formatShape(dt.shape)})`;
  for (const [name, t] of [["A", A], ["B", B], ["C", C], ["log_dt", dt]] as const) {
    if (t.dtype !== "f32") throw new TypeError(`${op}: ${name} must be f32, got ${t.dtype}`);
  }
  if (A.shape.length !== 3 || A.shape[2] !== 2) {
    throw new RangeError(`${show}: A must be complex [H, N2, 2]`);
  }
  const [H, N2] = A.shape;
  for (const [name, t] of [["B", B], ["C", C]] as const) {
    if (formatShape(t.shape) !== formatShape(A.shape)) {
      throw new RangeError(`${show}: ${name} must have A's shape ${formatShape(A.shape)}`);
    }
  }
  if (dt.shape.length !== 1 || dt.shape[0] !== H) {
    throw new RangeError(`${show}: log_dt must be [H] = [${H}]`);
  }
  if (typeof H !== "number" || typeof N2 !== "number") {
    throw new RangeError(`${show}: H and N2 must be concrete`);
  }
  if (!DISCS.includes(attrs.discretisation as string)) {
    throw new TypeError(
      `${op}: discretisation must be "zoh" or "bilinear", got ${
        JSON.stringify(attrs.discretisation)
      }`,
    );
  }
  if (typeof attrs.conj !== "boolean") {
    throw new TypeError(`${op}: conj must be a boolean, got ${JSON.stringify(attrs.conj)}`);
  }
  return { H, N2 };
}

function emitS4(
  attrs: S4Attrs,
  inputs: readonly { shape: readonly number[] }[],
  outputs: readonly { direct: boolean }[],
  caps: DeviceCaps,
  stateful: boolean,
): KernelEmission {
  const [Bt, T, H] = inputs[0].shape;
  const N2 = inputs[1].shape[1];
  if (stateful && !outputs[1].direct) {
    throw new RangeError(
      `s4_state "${attrs.name}": state of ${Bt * H * N2 * 8} bytes exceeds one binding`,
    );
  }
  const s: S4Wgsl = { H, N2, disc: attrs.discretisation, conj: attrs.conj, ins: [1, 2, 3, 4] };
  const choice = s4Choice(attrs.mode, T);
  const head = (k: KernelSource, i: number): KernelSource =>
    i === 0
      ? {
        ...k,
        label: `[${choice.representation}] ${
          attrs.name ? `"${attrs.name}" ` : ""
        }${choice.reason}; ${k.label}`,
        choice: { algorithm: choice.representation, reason: choice.reason },
      }
      : { ...k, label: `${choice.representation}/${k.label}` };
  if (choice.representation === "recurrent") {
    return { kernels: [recurrentKernel(s, Bt, T, stateful, caps)].map(head) };
  }
  const sk = stateful
    ? stateKernels(s, Bt, T, choice.representation === "fft" ? 5 : 1, caps)
    : undefined;
  if (choice.representation === "direct") {
    // K̄ stored [T, H] so that neighbouring threads (channels) read neighbouring taps.
    const k = vandermondeKernel(
      s,
      T,
      T,
      caps,
      (io, h, l, v) => `${io.scratch(0)}[${l} * ${H}u + ${h}] = ${v};`,
      "vandermonde",
    );
    const conv = directConvKernel(
      T,
      H,
      T,
      Bt * T * H,
      caps,
      (io, h, l) => `${io.scratch(0)}[${l} * ${H}u + ${h}]`,
      sk ? (io) => `${io.scratch(1)}[i]` : undefined,
    );
    return {
      kernels: [k, ...(sk ? [sk.response] : []), conv, ...(sk ? [sk.final] : [])].map(head),
      scratch: [
        { length: H * T, type: "f32" },
        ...(sk ? [{ length: Bt * T * H, type: "f32" as const }] : []),
      ],
    };
  }
  const n = convFftLength(T, T);
  const packK = vandermondeKernel(
    s,
    T,
    n,
    caps,
    (io, h, l, v) => `${io.scratch(1)}[${h} * ${n}u + ${l}] = vec2<f32>(${v}, 0.0);`,
    "vandermonde",
  );
  const conv = convFftKernels({
    batch: Bt,
    T,
    H,
    n,
    caps,
    packK,
    extra: sk ? (io) => `${io.scratch(5)}[i]` : undefined,
    scratch: sk ? [{ length: Bt * T * H, type: "f32" }] : [],
    first: sk ? [sk.response] : [],
  });
  return {
    kernels: [...conv.kernels, ...(sk ? [sk.final] : [])].map(head),
    scratch: conv.scratch,
  };
}

function inferS4(op: string, inputs: readonly TensorType[], attrs: S4Attrs, stateful: boolean) {
  const [x, ...rest] = inputs;
  const { H, N2 } = checkParams(op, rest.slice(0, 4), attrs);
  if (!MODES.includes(attrs.mode)) {
    throw new TypeError(
      `${op}: mode must be "auto", "conv", "recurrent" or "direct", got ${
        JSON.stringify(attrs.mode)
      }`,
    );
  }
  if (typeof attrs.name !== "string") throw new TypeError(`${op}: name must be a string`);
  if (x.dtype !== "f32") throw new TypeError(`${op}: x must be f32, got ${x.dtype}`);
  if (x.shape.length !== 3 || x.shape[2] !== H) {
    throw new RangeError(
      `${op}: x must be [B, T, H] with H = ${H} (from A), got ${formatShape(x.shape)}`,
    );
  }
  const out: TensorType[] = [{ shape: x.shape, dtype: "f32" }];
  if (stateful) {
    const st = inputs[5];
    const want = [x.shape[0], H, N2, 2];
    if (formatShape(st.shape) !== formatShape(want) || st.dtype !== "f32") {
      throw new RangeError(
        `${op}: state must be f32${formatShape(want)} ([B, H, N2, 2]), got ${st.dtype}${
          formatShape(st.shape)
        }`,
      );
    }
    out.push({ shape: st.shape, dtype: "f32" });
  }
  return out;
}

/**
 * s4(x [B, T, H], A, B, C, log_dt) → y [B, T, H], from a zero state.
 *
 * @example
 * ```ts ignore
 * opDef("s4") === s4; // in the op table
 * ```
 */
export const s4: OpDef<S4Attrs> = {
  arity: 5,
  attrNames: ["mode", "discretisation", "conj", "name"],
  infer(inputs, attrs) {
    return inferS4("s4", inputs, attrs, false);
  },
  reference([x, ...ps], attrs) {
    const [Bt, , H] = x.shape;
    const state = new Float64Array(Bt * H * ps[0].shape[1] * 2);
    return [recurrenceF64(x, ps, attrs, state)];
  },
  lower: {
    kind: "kernel",
    prologue: false,
    epilogue: true,
    emit({ attrs, inputs, outputs, caps }) {
      return emitS4(attrs, inputs, outputs, caps, false);
    },
  },
};

/**
 * s4_state(x, A, B, C, log_dt, state [B, H, N2, 2]) → [y, state after the last step].
 *
 * @example
 * ```ts ignore
 * opDef("s4_state") === s4State; // in the op table
 * ```
 */
export const s4State: OpDef<S4Attrs> = {
  arity: 6,
  attrNames: ["mode", "discretisation", "conj", "name"],
  infer(inputs, attrs) {
    return inferS4("s4_state", inputs, attrs, true);
  },
  reference([x, A, B, C, dt, st], attrs) {
    const state = Float64Array.from(st.data);
    const y = recurrenceF64(x, [A, B, C, dt], attrs, state);
    const next = allocHost("f32", state.length);
    next.set(state);
    return [y, next];
  },
  lower: {
    kind: "kernel",
    prologue: false,
    epilogue: true,
    inplace: [[1, 5]],
    emit({ attrs, inputs, outputs, caps }) {
      return emitS4(attrs, inputs, outputs, caps, true);
    },
  },
  foldable: false,
};

/**
 * s4_kernel(A, B, C, log_dt) → K̄ [H, length].
 *
 * @example
 * ```ts ignore
 * opDef("s4_kernel") === s4Kernel; // in the op table
 * ```
 */
export const s4Kernel: OpDef<S4KernelAttrs> = {
  arity: 4,
  attrNames: ["length", "discretisation", "conj"],
  infer(inputs, attrs) {
    const { H } = checkParams("s4_kernel", inputs, attrs);
    const L = attrs.length;
    if (!(typeof L === "string" && L.length > 0) && !(Number.isInteger(L) && (L as number) >= 1)) {
      throw new RangeError(
        `s4_kernel: length must be an integer >= 1 or a symbol, got ${JSON.stringify(L)}`,
      );
    }
    return [{ shape: [H, L], dtype: "f32" }];
  },
  reference([A, B, C, dt], attrs, [out]) {
    const K = s4KernelF64(
      A.data,
      B.data,
      C.data,
      dt.data,
      out.shape[1],
      attrs.discretisation,
      attrs.conj,
    );
    const res = allocHost("f32", K.length);
    res.set(K);
    return [res];
  },
  lower: {
    kind: "kernel",
    prologue: false,
    epilogue: true,
    emit({ attrs, inputs, outputs, caps }) {
      const [H, N2] = inputs[0].shape;
      const L = outputs[0].shape[1];
      const s: S4Wgsl = { H, N2, disc: attrs.discretisation, conj: attrs.conj, ins: [0, 1, 2, 3] };
      return {
        kernels: [
          vandermondeKernel(
            s,
            L,
            L,
            caps,
            (io, h, l, v) => `${io.store(0, `${h} * ${L}u + ${l}`, v)};`,
            "vandermonde",
          ),
        ],
      };
    },
  },
};
