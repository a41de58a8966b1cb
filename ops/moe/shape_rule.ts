/**
 * The shape rule of `moe`: checks every input against the attributes and
 * returns the output types, naming the offending operand in any error.
 *
 * @module
 */

import type { TensorType } from "../../core/graph.ts";
import { type Dim, formatShape } from "../../core/shape.ts";
import { GGML_TYPES, type QuantFormat } from "../../core/quant/formats.ts";
import { quantWords } from "../quant/mod.ts";
import { routerHasBias } from "./config.ts";
import {
  checkAttrs,
  expertBiasOf,
  type MoeAttrs,
  optionalInputs,
  routingOf,
  slotsOf,
} from "./attrs.ts";

function sameShape(a: readonly Dim[], b: readonly Dim[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Output types of `moe` for these inputs: `y` (shape of x), router `logits
 * [..., E]`, `counts [E]` u32, `aux [2]` f32 and, with `routing`, the chosen
 * experts `[..., k]` u32, their weights `[..., k]` f32 and the kept pairs per
 * expert `[E]` u32.
 *
 * @example
 * ```ts
 * import { inferMoe } from "./shape_rule.ts";
 * const attrs = { experts: 4, topK: 2, router: "softmax_topk" as const, normTopk: true, routedScaling: 1, capacityFactor: 0, dense: false };
 * const f32 = (...shape: (number | string)[]) => ({ shape, dtype: "f32" as const });
 * inferMoe([f32("T", 8), f32(4, 8), f32(4, 16, 8), f32(4, 16, 8), f32(4, 8, 16)], attrs).length; // 4
 * ```
 */
export function inferMoe(inputs: readonly TensorType[], attrs: MoeAttrs): TensorType[] {
  checkAttrs(attrs);
  const E = attrs.experts;
  const sig = routerHasBias(attrs.router);
  const S = slotsOf(attrs);
  const eb = expertBiasOf(attrs);
  const lo = 5 + (sig ? 1 : 0) + (eb ? 3 : 0) + (S > 0 ? 1 : 0), hi = lo + 1;
  if (inputs.length < lo || inputs.length > hi) {
    throw new RangeError(
      `moe: the ${attrs.router} router${eb ? " with expert biases" : ""} takes ${lo}..${hi} ` +
        `inputs (x, router, w1, w3, w2${sig ? ", bias" : ""}${
          eb ? ", b1, b3, b2" : ""
        }, optional mask${S > 0 ? ", slot table" : ""}), got ${inputs.length}`,
    );
  }
  const [x, router, w1, w3, w2] = inputs;
  const show = (name: string, t: TensorType) => `${name} ${t.dtype}${formatShape(t.shape)}`;
  if (x.shape.length < 2) {
    throw new RangeError(`moe: x must be [..., T, d] or [T, d], got ${formatShape(x.shape)}`);
  }
  if (x.dtype !== "f32") throw new TypeError(`moe: x must be f32, got ${show("x", x)}`);
  const d = x.shape[x.shape.length - 1];
  if (typeof d !== "number") {
    throw new RangeError(`moe: the model width of x must be concrete, got ${formatShape(x.shape)}`);
  }
  if (router.dtype !== "f32") {
    throw new TypeError(`moe: router weight must be f32, got ${show("router", router)}`);
  }
  if (attrs.logitsIn === true) {
    if (!sameShape(router.shape, [...x.shape.slice(0, -1), E])) {
      throw new RangeError(
        `moe: given router logits must be ${formatShape([...x.shape.slice(0, -1), E])}, got ${
          formatShape(router.shape)
        }`,
      );
    }
  } else if (!sameShape(router.shape, [E, d])) {
    throw new RangeError(
      `moe: router weight must be [experts, d] = ${formatShape([E, d])}, got ${
        formatShape(router.shape)
      }`,
    );
  }
  const W = S > 0 ? S : E;
  const lead0 = S > 0 ? "slots" : "experts";
  let ff: number;
  if (typeof attrs.weightFormat === "string") {
    const f = attrs.weightFormat as QuantFormat;
    const f2 = (attrs.w2Format ?? f) as QuantFormat;
    ff = attrs.ff as number;
    checkQuantExperts(f, f2, ff, d, W, lead0, [w1, w3, w2]);
  } else {
    ff = checkDenseExperts(W, lead0, d, [w1, w3, w2]);
  }
  const opt = optionalInputs(attrs, inputs.length);
  if (opt.bias !== undefined) {
    const b = inputs[opt.bias];
    if (b.dtype !== "f32" || !sameShape(b.shape, [E])) {
      throw new TypeError(`moe: bias must be f32[${E}], got ${show("bias", b)}`);
    }
  }
  // Expert biases are per expert, not per slot: always [experts, …], f32 whatever the weights.
  const biasShapes = [["b1", opt.b1, ff, "ff"], ["b3", opt.b3, ff, "ff"], ["b2", opt.b2, d, "d"]];
  for (const [name, j, n, what] of biasShapes as [string, number | undefined, number, string][]) {
    if (j === undefined) continue;
    const b = inputs[j];
    if (b.dtype !== "f32") {
      throw new TypeError(`moe: expert bias ${name} must be f32, got ${show(name, b)}`);
    }
    if (!sameShape(b.shape, [E, n])) {
      throw new RangeError(
        `moe: expert bias ${name} must be [experts, ${what}] = ${formatShape([E, n])}, got ${
          formatShape(b.shape)
        }`,
      );
    }
  }
  if (opt.table !== undefined) {
    const t = inputs[opt.table];
    if (t.dtype !== "u32" || !sameShape(t.shape, [E])) {
      throw new TypeError(`moe: the slot table must be u32[${E}], got ${show("table", t)}`);
    }
  }
  const lead = x.shape.slice(0, -1);
  if (opt.mask !== undefined) {
    const m = inputs[opt.mask];
    if (m.dtype !== "f32" || !sameShape(m.shape, lead)) {
      throw new TypeError(
        `moe: mask must be f32${formatShape(lead)} (x without its last axis), got ${
          show("mask", m)
        }`,
      );
    }
  }
  const outputs: TensorType[] = [
    { shape: [...x.shape], dtype: "f32" },
    { shape: [...lead, E], dtype: "f32" },
    { shape: [E], dtype: "u32" },
    { shape: [2], dtype: "f32" },
  ];
  if (routingOf(attrs)) {
    outputs.push(
      { shape: [...lead, attrs.topK], dtype: "u32" },
      { shape: [...lead, attrs.topK], dtype: "f32" },
      { shape: [E], dtype: "u32" },
    );
  }
  return outputs;
}

/** Dense f32/f16 expert weights: w1, w3 `[W, ff, d]`, w2 `[W, d, ff]`, one dtype; returns ff. */
function checkDenseExperts(
  W: number,
  lead0: string,
  d: number,
  [w1, w3, w2]: readonly TensorType[],
): number {
  const show = (name: string, t: TensorType) => `${name} ${t.dtype}${formatShape(t.shape)}`;
  if (w1.shape.length !== 3 || w1.shape[0] !== W || w1.shape[2] !== d) {
    throw new RangeError(
      `moe: w1 must be [${lead0}, ff, d] = [${W}, ff, ${d}], got ${formatShape(w1.shape)}`,
    );
  }
  const ff = w1.shape[1];
  if (typeof ff !== "number" || ff < 1) {
    throw new RangeError(`moe: w1's expert width must be a positive number, got ${ff}`);
  }
  if (!sameShape(w3.shape, w1.shape)) {
    throw new RangeError(
      `moe: w3 shape ${formatShape(w3.shape)} differs from w1 shape ${formatShape(w1.shape)}`,
    );
  }
  if (!sameShape(w2.shape, [W, d, ff])) {
    throw new RangeError(
      `moe: w2 must be [${lead0}, d, ff] = ${formatShape([W, d, ff])} (from w1 ${
        formatShape(w1.shape)
      }), got ${formatShape(w2.shape)}`,
    );
  }
  if (w1.dtype !== "f32" && w1.dtype !== "f16") {
    throw new TypeError(`moe: expert weights must be f32 or f16, got ${show("w1", w1)}`);
  }
  for (const [name, t] of [["w3", w3], ["w2", w2]] as const) {
    if (t.dtype !== w1.dtype) {
      throw new TypeError(`moe: ${name} is ${t.dtype} but w1 is ${w1.dtype}; use one dtype`);
    }
  }
  return ff;
}

/** Quantized expert weights: u32 slabs of the format's words (see `MoeAttrs`). */
function checkQuantExperts(
  format: QuantFormat,
  format2: QuantFormat,
  ff: number,
  d: number,
  W: number,
  lead0: string,
  [w1, w3, w2]: readonly TensorType[],
): void {
  // W1/W3 rows are d long, W2 rows ff long: each a whole number of its format's blocks.
  for (const [f, len, what] of [[format, d, "d"], [format2, ff, "ff"]] as const) {
    const block = GGML_TYPES[f].blockElems;
    if (len % block !== 0) {
      throw new RangeError(
        `moe: ${f} expert weights need ${what} (${len}) to be a multiple of ${block}`,
      );
    }
  }
  const want: [string, TensorType, number, QuantFormat][] = [
    ["w1", w1, quantWords(format, ff, d), format],
    ["w3", w3, quantWords(format, ff, d), format],
    ["w2", w2, quantWords(format2, d, ff), format2],
  ];
  for (const [name, t, words, f] of want) {
    if (t.dtype !== "u32" || !sameShape(t.shape, [W, words])) {
      throw new TypeError(
        `moe: ${f} ${name} must be u32[${lead0}, words] = u32[${W}, ${words}], got ${t.dtype}${
          formatShape(t.shape)
        }`,
      );
    }
  }
}
