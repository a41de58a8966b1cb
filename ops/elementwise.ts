/**
 * Shared machinery for elementwise ops: numpy broadcasting for shape rules and CPU
 * references, and a factory so each op is one small declaration.
 *
 * @module
 */

import { allocHost, type DType, type HostArray, isFloat } from "../core/dtype.ts";
import type { TensorType } from "../core/graph.ts";
import { broadcastShapes, type Dim, formatShape, stridesOf } from "../core/shape.ts";
import type { HostTensor, OpAttrs, OpDef } from "./types.ts";

/** Broadcast shape of several operands, or a RangeError naming the op and shapes. */
export function broadcastAll(op: string, inputs: readonly TensorType[]): Dim[] {
  let shape: Dim[] = [...inputs[0].shape];
  for (let i = 1; i < inputs.length; i++) {
    const next = broadcastShapes(shape, inputs[i].shape);
    if (!next) {
      throw new RangeError(
        `${op}: shapes ${
          inputs.map((t) => formatShape(t.shape)).join(" and ")
        } cannot be broadcast together`,
      );
    }
    shape = next;
  }
  return shape;
}

/**
 * For each input, maps an output flat index to the input's flat index under numpy
 * broadcasting. Shared by CPU references and anything that walks broadcasts.
 */
export function broadcastIndexers(
  out: readonly number[],
  inputs: readonly (readonly number[])[],
): ((i: number) => number)[] {
  const outStrides = stridesOf(out);
  return inputs.map((shape) => {
    if (shape.length === out.length && shape.every((d, k) => d === out[k])) return (i) => i;
    const rankDiff = out.length - shape.length;
    const inStrides = stridesOf(shape);
    const eff = out.map((_, k) => {
      const d = k - rankDiff;
      return d < 0 || shape[d] === 1 ? 0 : inStrides[d];
    });
    return (i: number) => {
      let idx = 0;
      let rem = i;
      for (let k = 0; k < out.length; k++) {
        const c = Math.floor(rem / outStrides[k]);
        rem -= c * outStrides[k];
        idx += c * eff[k];
      }
      return idx;
    };
  });
}

/** Rounds a real result to what storing it as `dtype` gives (ints truncate and wrap). */
export function storeAs(dtype: DType, v: number): number {
  if (dtype === "i32") return Number.isFinite(v) ? v | 0 : 0;
  if (dtype === "u32") return Number.isFinite(v) ? v >>> 0 : 0;
  return v;
}

/** Broadcasting CPU reference from a scalar function. */
export function referenceElementwise(
  inputs: readonly HostTensor[],
  outShape: readonly number[],
  outDtype: DType,
  fn: (args: number[]) => number,
): HostArray {
  let n = 1;
  for (const d of outShape) n *= d;
  const out = allocHost(outDtype, n);
  const idx = broadcastIndexers(outShape, inputs.map((t) => t.shape));
  const args = new Array<number>(inputs.length);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < inputs.length; j++) args[j] = inputs[j].data[idx[j](i)];
    out[i] = storeAs(outDtype, fn(args));
  }
  return out;
}

/** Which dtypes an elementwise op accepts. */
export type DTypeClass = "float" | "number" | "any";

/** Declaration of an elementwise op for {@linkcode elementwiseOp}. */
export interface ElementwiseSpec<A extends OpAttrs> {
  /** Op name for messages. */
  readonly name: string;
  /** Number of inputs. */
  readonly arity: number;
  /** Accepted input dtypes: floats only, signed numbers, or any. */
  readonly accepts: DTypeClass;
  /** Attributes. */
  readonly attrNames?: readonly string[];
  /** Output dtype from the (common) input dtype; default: same. */
  outDtype?(inputs: readonly DType[], attrs: A): DType;
  /** Checks attributes. */
  checkAttrs?(attrs: A): void;
  /** Which input positions must share a dtype (default: all). */
  readonly sameDtype?: readonly number[];
  /** Scalar reference in float64 (integer inputs arrive as integers). */
  scalar(args: number[], dtypes: readonly DType[], attrs: A): number;
  /** WGSL expression. */
  expr(args: readonly string[], inputs: readonly DType[], out: DType, attrs: A): string;
}

/** Builds an {@linkcode OpDef} for a broadcasting elementwise op. */
export function elementwiseOp<A extends OpAttrs>(spec: ElementwiseSpec<A>): OpDef<A> {
  return {
    arity: spec.arity,
    attrNames: spec.attrNames ?? [],
    infer(inputs, attrs) {
      spec.checkAttrs?.(attrs);
      const same = spec.sameDtype ?? inputs.map((_, i) => i);
      const d0 = inputs[same[0]].dtype;
      for (const j of same) {
        if (inputs[j].dtype !== d0) {
          throw new TypeError(
            `${spec.name}: operand dtypes differ (${
              same.map((k) => inputs[k].dtype).join(" vs ")
            }); cast one with .cast()`,
          );
        }
      }
      for (const j of same) {
        const dt = inputs[j].dtype;
        if (spec.accepts === "float" && !isFloat(dt)) {
          throw new TypeError(`${spec.name}: expects a float tensor, got ${dt}`);
        }
        if (spec.accepts === "number" && dt === "u32") {
          throw new TypeError(`${spec.name}: is not defined for unsigned u32 tensors`);
        }
      }
      const shape = broadcastAll(spec.name, inputs);
      const dtype = spec.outDtype?.(inputs.map((t) => t.dtype), attrs) ?? d0;
      return [{ shape, dtype }];
    },
    reference(inputs, attrs, outputs) {
      const dtypes = inputs.map((t) => t.dtype);
      return [
        referenceElementwise(
          inputs,
          outputs[0].shape,
          outputs[0].dtype,
          (args) => spec.scalar(args, dtypes, attrs),
        ),
      ];
    },
    lower: { kind: "elementwise", expr: spec.expr },
  };
}

/**
 * Wraps a float expression so f16 operands are computed in f32: transcendental
 * functions lose too much in half precision and overflow early (exp(11) > 65504).
 */
export function viaF32(dtype: DType, arg: string, body: (x: string) => string): string {
  return dtype === "f16" ? `f16(${body(`f32(${arg})`)})` : body(arg);
}
