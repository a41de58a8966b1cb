/**
 * Gradient rule of the routed expert layer `moe`: one `moe_grad` node (the
 * sorted, grouped backward over the forward's own routing) plus the router's
 * two GEMMs, `dx += dz·Wg` and `dWg = dzᵀ·x`.
 *
 * Gradients reach the router from every path the forward has: the routing
 * weights of the kept pairs (through softmax/sigmoid, top-k and the
 * renormalisation), the load-balancing and z losses (output 3), the logits
 * output itself and, with `routing`, the weights output. Top-k selection and
 * capacity drops are piecewise constant, so the `sigmoid_bias` selection bias
 * gets no gradient (DeepSeek-V3 updates it outside backprop) and neither does
 * the padding mask. The experts' biases (GPT-OSS's `expertBias`) and the
 * `swiglu_oai` activation are differentiated inside `moe_grad`.
 *
 * @module
 */

import { activationOf, groupLimitOf, optionalInputs } from "../../ops/moe/attrs.ts";
import type { MoeAttrs } from "../../ops/moe/mod.ts";
import type { Tensor } from "../tensor.ts";
import { filled } from "./broadcast.ts";
import type { GradContext, GradTable } from "./types.ts";

function moeRule(
  { g, attrs, inputs, outputs, grads, needs }: GradContext<MoeAttrs>,
): (Tensor | undefined)[] {
  if (typeof attrs.weightFormat === "string") {
    throw new TypeError(
      `grad: moe ${attrs.name ?? ""} has ${attrs.weightFormat} block-quantized expert weights, ` +
        "which have no gradient; train f32 weights",
    );
  }
  if (typeof attrs.slots === "number" && attrs.slots > 0) {
    throw new TypeError(
      `grad: moe ${attrs.name ?? ""} reads its experts through a slot table; ` +
        "train with the stacked layout (no slots)",
    );
  }
  const [x, router, w1, w3, w2] = inputs;
  if (w1.dtype !== "f32") {
    throw new TypeError(`grad: moe expert weights must be f32 to differentiate, got ${w1.dtype}`);
  }
  const E = attrs.experts, k = attrs.topK;
  const d = x.shape[x.shape.length - 1] as number; // concrete: the forward's shape rule says so
  // Tokens flattened to T rows: a symbolic T only as x's sole leading axis.
  const lead = x.shape.slice(0, -1);
  if (lead.length > 1 && lead.some((v) => typeof v !== "number")) {
    throw new TypeError(
      `grad: moe ${attrs.name ?? ""} x ${
        JSON.stringify(x.shape)
      } has several leading axes, some symbolic; give x as [T, d]`,
    );
  }
  const T = lead.length === 1 ? lead[0] : (lead as number[]).reduce((a, b) => a * b, 1);
  const rows = (t: Tensor, n: number) => (t.shape.length === 2 ? t : t.reshape([T, n]));
  const flatX = rows(x, d);
  const orZeros = (t: Tensor | undefined, shape: readonly (number | string)[]) =>
    t ?? filled(g, 0, shape as Tensor["shape"], "f32");
  // No slot table (refused above): the optional inputs are the selection bias,
  // the experts' biases and the mask, in that order.
  const at = optionalInputs(attrs, inputs.length);
  const biases = at.b1 !== undefined;
  const [gy, glogits, , gaux, , gtopkw] = grads;
  const [dx, dz, dw1, dw3, dw2, db1, db3, db2] = g.apply("moe_grad", [
    flatX,
    rows(outputs[1], E),
    w1,
    w3,
    w2,
    gy ? rows(gy, d) : orZeros(undefined, [T, d]),
    glogits ? rows(glogits, E) : orZeros(undefined, [T, E]),
    gtopkw ? rows(gtopkw, k) : orZeros(undefined, [T, k]),
    orZeros(gaux, [2]),
    at.mask !== undefined
      ? (lead.length === 1 ? inputs[at.mask] : inputs[at.mask].reshape([T]))
      : filled(g, 1, [T], "f32"),
    at.bias !== undefined ? inputs[at.bias] : orZeros(undefined, [E]),
    ...(biases ? [inputs[at.b1!], inputs[at.b3!], inputs[at.b2!]] : []),
  ], {
    experts: E,
    topK: k,
    router: attrs.router,
    normTopk: attrs.normTopk,
    routedScaling: attrs.routedScaling,
    capacityFactor: attrs.capacityFactor,
    ...groupLimitOf(attrs),
    // Only what differs from bias-free SwiGLU, so those layers' graphs stay as they were.
    ...(activationOf(attrs) === "swiglu" ? {} : {
      activation: activationOf(attrs),
      ...(typeof attrs.alpha === "number" ? { alpha: attrs.alpha } : {}),
      ...(typeof attrs.limit === "number" ? { limit: attrs.limit } : {}),
    }),
    ...(biases ? { expertBias: true } : {}),
  });
  const out: (Tensor | undefined)[] = inputs.map(() => undefined);
  if (attrs.logitsIn === true) {
    out[0] = needs[0] ? dx.reshape(x.shape) : undefined;
    out[1] = needs[1] ? dz.reshape(router.shape) : undefined;
  } else {
    // logits = x·Wgᵀ: the router's share of dx and the router weight's gradient.
    out[0] = needs[0] ? dx.add(dz.matmul(router)).reshape(x.shape) : undefined;
    out[1] = needs[1] ? dz.matmul(flatX, { transA: true }) : undefined;
  }
  out[2] = needs[2] ? dw1 : undefined;
  out[3] = needs[3] ? dw3 : undefined;
  out[4] = needs[4] ? dw2 : undefined;
  if (biases) {
    out[at.b1!] = needs[at.b1!] ? db1 : undefined;
    out[at.b3!] = needs[at.b3!] ? db3 : undefined;
    out[at.b2!] = needs[at.b2!] ? db2 : undefined;
  }
  return out;
}

/**
 * The rule of `moe`.
 *
 * @example
 * ```ts ignore
 * import { MOE_RULES } from "./rules_moe.ts";
 * "moe" in MOE_RULES; // true
 * ```
 */
export const MOE_RULES: GradTable = {
  moe: moeRule,
};
