/**
 * The experts' gated activation and biases as every MoE kernel writes them:
 * one WGSL helper `moe_act(a, b)` chosen by the config (so the register-tiled,
 * GEMV, GPU-shaped and quantized kernels cannot disagree), and the reads of
 * expert e's biases that the kernels add in their epilogues.
 *
 * @module
 */

import { erfWgsl, geluTanhWgsl } from "../unary.ts";
import { f32, u32 } from "../wgsl/mod.ts";
import { moeGated, type ResolvedMoeConfig } from "./config.ts";
import type { MoeIo } from "./operands.ts";

/**
 * The WGSL of `fn moe_act(a: f32, b: f32) -> f32`, the experts' activation of
 * gate `a` and up `b`: `silu(a) · b` for `"swiglu"` (the same operations, in
 * the same order, as before the helper existed, so results stay bit-identical),
 * `gate(a) · b` for GEGLU, ReGLU and quick GEGLU ({@linkcode moeGateHelper}),
 * `gate(a)` alone for the ungated `"relu2"`, or GPT-OSS's
 * `(clamp(b, −limit, limit) + 1) · g · σ(alpha · g)` with
 * `g = min(a, limit)` for `"swiglu_oai"`. Prefixed so it cannot clash with
 * helpers the compiler adds to the shader.
 *
 * @example
 * ```ts
 * import { moeActHelper } from "./activation.ts";
 * const code = moeActHelper({ activation: "swiglu_oai", alpha: 1.702, limit: 7 });
 * code.includes("fn moe_act("); // true
 * ```
 */
export function moeActHelper(
  c: Pick<ResolvedMoeConfig, "activation" | "alpha" | "limit">,
): string {
  if (c.activation === "swiglu") {
    return "fn moe_silu(v: f32) -> f32 { return v / (1.0 + exp(-v)); }\n" +
      "fn moe_act(a: f32, b: f32) -> f32 { return moe_silu(a) * b; }";
  }
  if (c.activation !== "swiglu_oai") {
    // Ungated (relu2): b is the caller's 0.0 ({@linkcode moeActCall}), never a W3 product.
    const up = moeGated(c.activation) ? " * b" : "";
    return `${
      moeGateHelper(c.activation)
    }\nfn moe_act(a: f32, b: f32) -> f32 { return moe_gate(a)${up}; }`;
  }
  const limit = f32(c.limit, "moe limit"), low = f32(-c.limit, "moe limit");
  // g · σ(alpha · g) = g / (1 + exp(−alpha · g)): exp overflows to +∞ only for
  // g ≪ 0, where the quotient is the correct 0.
  return `fn moe_act(a: f32, b: f32) -> f32 {
  let g = min(a, ${limit});
  let u = clamp(b, ${low}, ${limit});
  return (u + 1.0) * g / (1.0 + exp(${f32(-c.alpha, "moe alpha")} * g));
}`;
}

/**
 * The WGSL call of `moe_act` on gate `a` and up `b` (expressions): for an
 * ungated activation ({@linkcode moeGated}) `b` is left out, since its kernels
 * never compute a W3 product.
 *
 * @example
 * ```ts
 * import { moeActCall } from "./activation.ts";
 * moeActCall({ activation: "relu2" }, "acc_0", "acc_1"); // "moe_act(acc_0, 0.0)"
 * ```
 */
export function moeActCall(c: Pick<ResolvedMoeConfig, "activation">, a: string, b: string): string {
  return `moe_act(${a}, ${moeGated(c.activation) ? b : "0.0"})`;
}

/**
 * The gate and up matrices GEMM 1 reads: both, or W1 alone when the
 * activation is ungated.
 *
 * @example
 * ```ts
 * import { gemm1Weights } from "./activation.ts";
 * gemm1Weights({ activation: "relu2" }); // ["w1"]
 * ```
 */
export function gemm1Weights(c: Pick<ResolvedMoeConfig, "activation">): ("w1" | "w3")[] {
  return moeGated(c.activation) ? ["w1", "w3"] : ["w1"];
}

const GELU_C = Math.sqrt(2 / Math.PI);

/**
 * WGSL of `fn moe_gate(v: f32) -> f32` and its derivative `fn moe_gate_d`
 * for the gated activations `f(a)·b` other than SwiGLU (whose kernels keep
 * their own lines) and `swiglu_oai`: exact GELU through an erf helper, GELU's
 * tanh form (the `gelu` op's tanh, `geluTanhWgsl`), ReLU (derivative 0 at 0, as PyTorch's),
 * the quick GELU `v·σ(1.702·v)` and the ungated `relu2`'s `relu(v)²`.
 *
 * @example
 * ```ts
 * import { moeGateHelper } from "./activation.ts";
 * moeGateHelper("reglu").includes("fn moe_gate_d("); // true
 * ```
 */
export function moeGateHelper(
  activation: "geglu" | "geglu_tanh" | "reglu" | "quick_geglu" | "relu2",
): string {
  if (activation === "quick_geglu") {
    // v·σ(1.702·v) as v / (1 + exp(−1.702·v)): exp overflows only where the result is 0.
    return `fn moe_gate(v: f32) -> f32 { return v / (1.0 + exp(-1.702 * v)); }
fn moe_gate_d(v: f32) -> f32 {
  let s = 1.0 / (1.0 + exp(-1.702 * v));
  return s + 1.702 * v * s * (1.0 - s);
}`;
  }
  if (activation === "relu2") {
    return `fn moe_gate(v: f32) -> f32 { let r = max(v, 0.0); return r * r; }
fn moe_gate_d(v: f32) -> f32 { return 2.0 * max(v, 0.0); }`;
  }
  if (activation === "reglu") {
    return `fn moe_gate(v: f32) -> f32 { return max(v, 0.0); }
fn moe_gate_d(v: f32) -> f32 { return select(0.0, 1.0, v > 0.0); }`;
  }
  if (activation === "geglu") {
    const h = f32(Math.SQRT1_2), n = f32(1 / Math.sqrt(2 * Math.PI));
    return `${erfWgsl("moe_erf")}
fn moe_gate(v: f32) -> f32 { return 0.5 * v * (1.0 + moe_erf(v * ${h})); }
fn moe_gate_d(v: f32) -> f32 { return 0.5 * (1.0 + moe_erf(v * ${h})) + v * exp(-0.5 * v * v) * ${n}; }`;
  }
  const c = f32(GELU_C), c3 = f32(3 * 0.044715);
  const t = geluTanhWgsl("v");
  return `fn moe_gate(v: f32) -> f32 { return 0.5 * v * (1.0 + ${t}); }
fn moe_gate_d(v: f32) -> f32 {
  let t = ${t};
  return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * ${c} * (1.0 + ${c3} * v * v);
}`;
}

/**
 * WGSL expression of expert `e`'s bias `b` at column `col` (`b1`, `b3` are
 * `[E, ff]`, `b2` is `[E, d]`), or undefined when the layer has no expert
 * biases. Indexed by the expert, never its slot: biases are always resident.
 *
 * @example
 * ```ts ignore
 * expertBias(io, c, "b2", "e", "col0 + 1u"); // "in7[e * 20u + col0 + 1u]"
 * ```
 */
export function expertBias(
  io: MoeIo,
  c: ResolvedMoeConfig,
  b: "b1" | "b3" | "b2",
  e: string,
  col: string,
): string | undefined {
  if (!c.expertBias) return undefined;
  const width = b === "b2" ? c.d : c.ff;
  return `${io.arr(b)}[${e} * ${u32(width)} + ${col}]`;
}

/**
 * `v + bias` (parenthesised) when there is a bias, else `v` unchanged, so
 * layers without biases keep their kernels' code exactly.
 *
 * @example
 * ```ts
 * import { plusBias } from "./activation.ts";
 * plusBias("acc", "eb2_0"); // "(acc + eb2_0)"
 * plusBias("acc", undefined); // "acc"
 * ```
 */
export function plusBias(v: string, bias: string | undefined): string {
  return bias === undefined ? v : `(${v} + ${bias})`;
}

/**
 * `let <prefix>_<j> = <expert e's bias b at col0 + j>;` for the N columns
 * an invocation writes (read once, added to every row), and the names; no
 * lines and undefined names without expert biases.
 *
 * @example
 * ```ts ignore
 * const { lines, names } = biasLets(io, c, "b1", "e", "col0", 4, "eb1");
 * ```
 */
export function biasLets(
  io: MoeIo,
  c: ResolvedMoeConfig,
  b: "b1" | "b3" | "b2",
  e: string,
  col0: string,
  N: number,
  prefix: string,
  indent = "  ",
): { lines: string[]; names: (string | undefined)[] } {
  const lines: string[] = [], names: (string | undefined)[] = [];
  for (let j = 0; j < N; j++) {
    const v = expertBias(io, c, b, e, `${col0} + ${u32(j)}`);
    if (v === undefined) {
      names.push(undefined);
      continue;
    }
    lines.push(`${indent}let ${prefix}_${j} = ${v};`);
    names.push(`${prefix}_${j}`);
  }
  return { lines, names };
}
