/**
 * Hugging Face's `hidden_act` as Kiln applies it: the gate activation of
 * gated MLPs (`down(act(gate·x) ⊙ up·x)`), of shared and routed experts, and
 * of Mamba's causal conv. One table maps each kind to its tensor op and to the
 * `moe` op's gated activation, so dense MLPs and experts cannot disagree.
 *
 * @module
 */

import type { Tensor } from "../compiler/builder.ts";
import type { MoeActivation } from "../ops/moe/mod.ts";

/**
 * The activations Kiln implements for `hidden_act`: `"silu"` (`silu`,
 * `swish`), `"gelu"` (PyTorch's exact erf GELU, HF `gelu`), `"gelu_tanh"`
 * (the tanh approximation: HF `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`),
 * `"relu"` and `"quick_gelu"` (`x·σ(1.702·x)`, HF `quick_gelu`).
 *
 * @example
 * ```ts
 * import type { HiddenAct } from "@kiln/kiln";
 * const act: HiddenAct = "gelu_tanh"; // hidden_act "gelu_pytorch_tanh"
 * ```
 */
export type HiddenAct = "silu" | "gelu" | "gelu_tanh" | "relu" | "quick_gelu";

/**
 * Hugging Face's `hidden_act` names (transformers' `ACT2FN` keys) and the
 * Kiln activation each computes.
 *
 * @example
 * ```ts
 * import { HF_HIDDEN_ACTS } from "@kiln/kiln";
 * HF_HIDDEN_ACTS.gelu_pytorch_tanh; // "gelu_tanh"
 * ```
 */
export const HF_HIDDEN_ACTS: Readonly<Record<string, HiddenAct>> = {
  silu: "silu",
  swish: "silu",
  gelu: "gelu",
  gelu_new: "gelu_tanh",
  gelu_pytorch_tanh: "gelu_tanh",
  gelu_fast: "gelu_tanh",
  relu: "relu",
  quick_gelu: "quick_gelu",
};

const MOE_OF: Record<HiddenAct, MoeActivation> = {
  silu: "swiglu",
  gelu: "geglu",
  gelu_tanh: "geglu_tanh",
  relu: "reglu",
  quick_gelu: "quick_geglu",
};

/** transformers' `QuickGELUActivation` constant: `x·σ(1.702·x)`. */
const QUICK_GELU = 1.702;

/**
 * `act(t)` for an activation of {@linkcode HiddenAct} (absent: silu), or
 * `"relu2"`, Nemotron-H's `relu(t)²` (its `mlp_hidden_act`, for ungated MLPs).
 *
 * @example
 * ```ts
 * import { applyHiddenAct, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", applyHiddenAct(g.input("x", [4]), "gelu"));
 * ```
 */
export function applyHiddenAct(t: Tensor, act: HiddenAct | "relu2" | undefined): Tensor {
  switch (act ?? "silu") {
    case "silu":
      return t.silu();
    case "gelu":
      return t.gelu({ approximate: "none" });
    case "gelu_tanh":
      return t.gelu();
    case "relu":
      return t.relu();
    case "quick_gelu":
      return t.mul(t.mul(QUICK_GELU).sigmoid());
    case "relu2": {
      // Nemotron-H's ungated MLPs and experts: relu(t)².
      const u = t.relu();
      return u.mul(u);
    }
    default:
      throw new TypeError(`applyHiddenAct: unknown activation ${JSON.stringify(act)}`);
  }
}

/**
 * The `moe` op's gated activation whose gate is `act` (absent: silu, i.e.
 * SwiGLU).
 *
 * @example
 * ```ts
 * import { moeActivationOf } from "@kiln/kiln";
 * moeActivationOf("relu"); // "reglu"
 * ```
 */
export function moeActivationOf(act: HiddenAct | undefined): MoeActivation {
  return MOE_OF[act ?? "silu"];
}

/**
 * The gate activation of a plain gated `moe` activation (the one a shared
 * expert beside those experts applies); throws for `swiglu_oai`, which has
 * no separable gate.
 *
 * @example
 * ```ts
 * import { gateOfMoeActivation } from "@kiln/kiln";
 * gateOfMoeActivation("geglu"); // "gelu"
 * ```
 */
export function gateOfMoeActivation(activation: MoeActivation): HiddenAct {
  const hit = (Object.keys(MOE_OF) as HiddenAct[]).find((k) => MOE_OF[k] === activation);
  if (hit === undefined) {
    throw new TypeError(`moe activation ${JSON.stringify(activation)} has no separable gate`);
  }
  return hit;
}
