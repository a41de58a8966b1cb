/**
 * Mixture-of-Experts layers for the DSL: the routed expert FFN (Mixtral,
 * Qwen2-MoE, DeepSeek-V3, Switch routers; SwiGLU or GPT-OSS's clamped
 * `swiglu_oai` experts, optionally with biases) as one `moe` op, plus optional shared
 * experts built from ordinary ops, and a dense all-experts baseline for
 * benchmarks.
 *
 * Parameters, under the layer's `name`:
 * - `${name}.router` `[E, d]` — the gate (HF `block_sparse_moe.gate.weight`);
 * - `${name}.w1`, `${name}.w3` `[E, ff, d]` and `${name}.w2` `[E, d, ff]` — the
 *   experts' gate, up and down projections stacked per expert (HF stores one
 *   `[ff, d]` / `[d, ff]` Linear weight per expert: see {@linkcode stackExperts});
 * - `${name}.bias` `[E]` — `sigmoid_bias` only, the selection bias;
 * - `${name}.b1`, `${name}.b3` `[E, ff]` and `${name}.b2` `[E, d]` — with
 *   `expertBias` (GPT-OSS), the experts' gate, up and down biases, f32, always
 *   under the layer's own name (never a slot pool's: they stay resident);
 * - shared expert: `${name}.shared.w1`, `.shared.w3` `[ffShared, d]`,
 *   `.shared.w2` `[d, ffShared]`, and `.shared.gate` `[1, d]` when gated.
 *
 * With the ungated `"relu2"` activation (Nemotron-H) there is no `w3`, routed
 * or shared: `w1` holds the up projection, `h = relu(x·W1ᵀ)²`.
 *
 * @module
 */

import type { QuantFormat } from "../core/quant/formats.ts";
import { quantWords } from "../ops/quant/mod.ts";
import type { GraphBuilder, Tensor } from "../compiler/builder.ts";
import { atSite, callSite } from "../core/errors.ts";
import {
  MOE_ACTIVATIONS,
  MOE_OAI_DEFAULTS,
  type MoeActivation,
  moeGated,
  type MoeRouterKind,
  routerHasBias,
} from "../ops/moe/mod.ts";
import { applyHiddenAct, gateOfMoeActivation, type HiddenAct } from "./activation.ts";

export type { MoeActivation, MoeRouterKind };

/**
 * A shared (always-on) expert added to the routed output.
 *
 * @example
 * ```ts
 * import { GraphBuilder, moe, type SharedExpertOptions } from "@kiln/kiln";
 * const shared: SharedExpertOptions = { ff: 256, gated: true }; // Qwen2-MoE style
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 64]);
 * g.output("y", moe(g, x, { name: "moe", experts: 8, topK: 2, ff: 128, shared }).y);
 * ```
 */
export interface SharedExpertOptions {
  /** Hidden width (DeepSeek's n_shared_experts shared experts are one block of n·ff). */
  ff: number;
  /** Qwen2-MoE: scale the shared expert's output by σ(x·w_gateᵀ) per token. Default false. */
  gated?: boolean;
}

/**
 * Options of {@linkcode moe}.
 *
 * @example
 * ```ts
 * import { GraphBuilder, moe, type MoeOptions } from "@kiln/kiln";
 * const options: MoeOptions = { name: "l0.moe", experts: 8, topK: 2, ff: 128, normTopk: false };
 * const g = new GraphBuilder();
 * g.output("y", moe(g, g.input("x", ["T", 64]), options).y);
 * ```
 */
export interface MoeOptions {
  /** Parameter name prefix, e.g. `"model.layers.0.moe"`. */
  name: string;
  /** Number of routed experts E. */
  experts: number;
  /** Experts per token k. */
  topK: number;
  /** Expert hidden width (`intermediate_size` of one expert). */
  ff: number;
  /** Router kind (default `"softmax_topk"`). */
  router?: MoeRouterKind;
  /**
   * `softmax_topk`, `sigmoid_bias`: renormalise the top-k weights (Mixtral and
   * GLM-4.5: true, the default; Qwen2-MoE: false).
   */
  normTopk?: boolean;
  /** `sigmoid_bias`: factor on the routing weights (DeepSeek-V3 `routed_scaling_factor`, default 1). */
  routedScaling?: number;
  /**
   * `sigmoid_bias`: group-limited routing, DeepSeek-V3's `n_group` and
   * `topk_group` — experts come only from the `groupsKept` of `groups` equal
   * groups whose two best selection scores sum highest. Default: none.
   */
  groups?: { count: number; kept: number };
  /**
   * `sigmoid_bias`: the selection bias `[E]` given as a tensor (another
   * device's copy of a layer, fed per run) instead of the param `${name}.bias`.
   */
  selectionBias?: Tensor;
  /** Switch-style capacity factor (> 0): tokens past an expert's capacity skip it. Default dropless. */
  capacityFactor?: number;
  /** Padding mask with x's leading shape, f32: 0 excludes a token from the aux and z losses. */
  mask?: Tensor;
  /**
   * How the load-balancing loss counts routed tokens:
   * - `"pairs"` (default): fᵢ is expert i's share of all (token, slot) picks, so
   *   Σfᵢ = 1 and a perfectly balanced router scores 1 whatever k is (Switch's
   *   definition, generalised to k slots);
   * - `"hf"`: fᵢ is expert i's picks divided by the token count, as Hugging
   *   Face's `load_balancing_loss_func` computes it: k times the `"pairs"` value
   *   (equal at k = 1). Use it to reuse a checkpoint's `router_aux_loss_coef`
   *   with the same gradient scale.
   */
  auxLossConvention?: "pairs" | "hf";
  /** Storage type of the expert weights (default f32; f16 halves their bytes). */
  weightDtype?: "f32" | "f16";
  /** Add a shared expert (plain SwiGLU, or sigmoid-gated as in Qwen2-MoE). */
  shared?: SharedExpertOptions;
  /**
   * Expert slots (the expert scheduler's layout): the weights are the slot
   * buffers `${pool}.w1`, `.w3` `[count, ff, d]` and `.w2` `[count, d, ff]`
   * (several layers may share one pool) and `${name}.slot_table` `[E]` u32 maps
   * each expert to its slot.
   */
  slots?: { count: number; pool: string };
  /**
   * Router logits `[..., E]` computed elsewhere (another device's router): the
   * layer takes them instead of its `${name}.router` weight, so a device that
   * holds a share of the experts selects exactly the experts the home device did.
   */
  logits?: Tensor;
  /**
   * The router weight `[E, d]` declared by the caller (a model that also
   * applies this router elsewhere, e.g. to predict the layer's experts from an
   * earlier hidden state); default: the param `${name}.router`.
   */
  routerWeight?: Tensor;
  /**
   * The experts' weights are llama.cpp blocks of this format (u32 params of
   * `quantWords(format, rows, cols)` words per expert, see `MoeAttrs`),
   * dequantized in the expert kernels; `weightDtype` is then ignored.
   */
  weightFormat?: QuantFormat;
  /** W2's block format when it differs from `weightFormat`'s. */
  w2Format?: QuantFormat;
  /**
   * The experts' activation: `"swiglu"` (default, `silu(gate) · up`), the
   * GEGLU and ReGLU forms (`"geglu"`, `"geglu_tanh"`, `"reglu"`) or GPT-OSS's
   * `"swiglu_oai"`, `(clamp(up, ±limit) + 1) · g · σ(alpha · g)` with
   * `g = min(gate, limit)`, or the ungated `"relu2"`, `relu(up)²` with the up
   * projection in `w1` and no `w3`. A shared expert applies the same
   * activation.
   */
  activation?: MoeActivation;
  /** `swiglu_oai`: scale inside the sigmoid (default 1.702). */
  alpha?: number;
  /** `swiglu_oai`: the clamp (default 7; finite, > 0). */
  limit?: number;
  /**
   * Per-expert biases on the three projections (GPT-OSS): params `${name}.b1`,
   * `${name}.b3` `[E, ff]` and `${name}.b2` `[E, d]`, f32. Default false.
   */
  expertBias?: boolean;
}

/**
 * What {@linkcode moe} returns.
 *
 * @example
 * ```ts
 * import { GraphBuilder, moe, type MoeOutputs } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 64]);
 * const m: MoeOutputs = moe(g, x, { name: "l0.moe", experts: 8, topK: 2, ff: 128 });
 * g.output("y", m.y.add(x));
 * g.output("counts", m.counts); // u32[8]: routed pairs per expert
 * g.output("losses", m.losses); // [aux, z]
 * ```
 */
export interface MoeOutputs {
  /** Layer output, shape of x (routed experts plus the shared expert, if any). */
  y: Tensor;
  /** Router logits `[..., E]`. */
  logits: Tensor;
  /** Routed (token, slot) pairs per expert `[E]` u32, before any capacity drop. */
  counts: Tensor;
  /** `[aux, z]`: both losses in one tensor (one buffer to read back). */
  losses: Tensor;
  /**
   * Load-balancing loss `E·Σfᵢ·Pᵢ` (scalar), Pᵢ the mean router probability of
   * expert i. By default fᵢ is the share of (token, slot) picks routed to i, so
   * the value is k times smaller than Hugging Face's `load_balancing_loss_func`
   * (which divides by tokens, not picks; equal at k = 1); see
   * {@linkcode MoeOptions.auxLossConvention}. Hugging Face also pools every
   * layer's tokens into one loss before multiplying fᵢ by Pᵢ, where a sum of
   * per-layer losses weighs each layer on its own.
   */
  auxLoss: Tensor;
  /** Router z-loss `mean_t (logsumexp zₜ)²` (scalar). */
  zLoss: Tensor;
}

const POOLS = new WeakMap<GraphBuilder, Map<string, Tensor>>();

function fail(err: Error): never {
  throw atSite(err, callSite());
}

function build(g: GraphBuilder, x: Tensor, o: MoeOptions, dense: boolean): MoeOutputs {
  if (typeof o.name !== "string" || o.name.length === 0) {
    fail(new TypeError(`moe: name must be a non-empty string, got ${JSON.stringify(o.name)}`));
  }
  if (!Number.isInteger(o.ff) || o.ff < 1) {
    fail(new RangeError(`moe ${o.name}: ff must be a positive integer, got ${o.ff}`));
  }
  if (o.capacityFactor !== undefined && !(o.capacityFactor > 0)) {
    fail(new RangeError(`moe ${o.name}: capacityFactor must be > 0, got ${o.capacityFactor}`));
  }
  if (
    o.auxLossConvention !== undefined && o.auxLossConvention !== "pairs" &&
    o.auxLossConvention !== "hf"
  ) {
    fail(
      new TypeError(
        `moe ${o.name}: auxLossConvention must be "pairs" or "hf", got ${
          JSON.stringify(o.auxLossConvention)
        }`,
      ),
    );
  }
  const activation = o.activation ?? "swiglu";
  if (!MOE_ACTIVATIONS.includes(activation)) {
    fail(
      new TypeError(
        `moe ${o.name}: activation must be one of ${MOE_ACTIVATIONS.join(", ")}, got ${
          JSON.stringify(o.activation)
        }`,
      ),
    );
  }
  if (o.shared && activation === "swiglu_oai") {
    fail(new TypeError(`moe ${o.name}: a shared expert needs a gated activation, not swiglu_oai`));
  }
  if (o.expertBias && !moeGated(activation)) {
    fail(new TypeError(`moe ${o.name}: expertBias needs a gated activation, not ${activation}`));
  }
  for (const key of ["alpha", "limit"] as const) {
    const v = o[key];
    if (v === undefined) continue;
    if (activation !== "swiglu_oai") {
      fail(new TypeError(`moe ${o.name}: ${key} applies to activation "swiglu_oai" only`));
    }
    if (!Number.isFinite(v) || (key === "limit" && !(v > 0))) {
      fail(
        new RangeError(
          `moe ${o.name}: ${key} must be a finite number${key === "limit" ? " > 0" : ""}, got ${v}`,
        ),
      );
    }
  }
  if (dense && o.capacityFactor !== undefined) {
    fail(new RangeError(`moeDense ${o.name}: the dense baseline is dropless (no capacityFactor)`));
  }
  const router = o.router ?? "softmax_topk";
  const d = x.shape[x.shape.length - 1];
  if (typeof d !== "number") {
    fail(new RangeError(`moe ${o.name}: x's last dim must be concrete, got ${x}`));
  }
  const E = o.experts, ff = o.ff;
  const wdt = o.weightDtype ?? "f32";
  const S = o.slots?.count ?? 0;
  if (o.slots && (!Number.isInteger(S) || S < 1)) {
    fail(new RangeError(`moe ${o.name}: slots.count must be a positive integer, got ${S}`));
  }
  const wName = o.slots ? o.slots.pool : o.name;
  const W = o.slots ? S : E;
  // A pool shared by several layers is declared once per graph.
  const wf = o.weightFormat;
  const declare = (key: string, [n, rows, cols]: number[]) => {
    if (wf === undefined) return g.param(key, [n, rows, cols], wdt);
    const f = key.endsWith(".w2") ? o.w2Format ?? wf : wf;
    return g.param(key, [n, quantWords(f, rows, cols)], "u32");
  };
  const pool = (w: string, shape: number[]) => {
    if (!o.slots) return declare(`${wName}.${w}`, shape);
    let m = POOLS.get(g);
    if (!m) POOLS.set(g, m = new Map());
    const key = `${wName}.${w}`;
    let t = m.get(key);
    if (!t) m.set(key, t = declare(key, shape));
    return t;
  };
  // Declared in this order (router, w1, w3, w2): random weights are drawn in it.
  const gate = o.logits ?? o.routerWeight ?? g.param(`${o.name}.router`, [E, d]);
  const w1 = pool("w1", [W, ff, d]);
  const inputs = [
    x,
    gate,
    w1,
    // An ungated layer (relu2) has no W3; its kernels never read the operand.
    moeGated(activation) ? pool("w3", [W, ff, d]) : w1,
    pool("w2", [W, d, ff]),
  ];
  if (routerHasBias(router)) inputs.push(o.selectionBias ?? g.param(`${o.name}.bias`, [E]));
  if (o.expertBias) {
    inputs.push(
      g.param(`${o.name}.b1`, [E, ff]),
      g.param(`${o.name}.b3`, [E, ff]),
      g.param(`${o.name}.b2`, [E, d]),
    );
  }
  if (o.mask) inputs.push(o.mask);
  if (o.slots) inputs.push(g.param(`${o.name}.slot_table`, [E], "u32"));
  const [routed, logits, counts, pairLosses] = g.apply("moe", inputs, {
    experts: E,
    topK: o.topK,
    router,
    normTopk: o.normTopk ?? true,
    routedScaling: o.routedScaling ?? 1,
    capacityFactor: o.capacityFactor ?? 0,
    dense,
    ...(o.groups && o.groups.kept < o.groups.count
      ? { groups: o.groups.count, groupsKept: o.groups.kept }
      : {}),
    slots: S,
    ...(o.logits ? { logitsIn: true } : {}),
    ...(wf === undefined ? {} : { weightFormat: wf, w2Format: o.w2Format ?? wf, ff }),
    ...(activation === "swiglu" ? {} : { activation }),
    ...(activation === "swiglu_oai"
      ? { alpha: o.alpha ?? MOE_OAI_DEFAULTS.alpha, limit: o.limit ?? MOE_OAI_DEFAULTS.limit }
      : {}),
    ...(o.expertBias ? { expertBias: true } : {}),
    name: o.name,
  });
  let y = routed;
  if (o.shared) {
    const act = moeGated(activation) ? gateOfMoeActivation(activation) : "relu2";
    y = y.add(sharedExpert(g, x, `${o.name}.shared`, d, o.shared, act));
  }
  // HF divides the routed counts by T instead of T·k: k times the aux loss, same z-loss.
  const losses = o.auxLossConvention === "hf"
    ? pairLosses.mul(g.constant(Float32Array.of(o.topK, 1), [2]))
    : pairLosses;
  return {
    y,
    logits,
    counts,
    losses,
    auxLoss: losses.slice(0, 0, 1).reshape([]),
    zLoss: losses.slice(0, 1, 2).reshape([]),
  };
}

function sharedExpert(
  g: GraphBuilder,
  x: Tensor,
  name: string,
  d: number,
  s: SharedExpertOptions,
  act: HiddenAct | "relu2",
): Tensor {
  if (!Number.isInteger(s.ff) || s.ff < 1) {
    fail(new RangeError(`moe ${name}: ff must be a positive integer, got ${s.ff}`));
  }
  const w1 = g.param(`${name}.w1`, [s.ff, d]);
  let h = applyHiddenAct(x.matmul(w1, { transB: true }), act);
  // Ungated (relu2, as the routed experts): no W3.
  if (act !== "relu2") h = h.mul(x.matmul(g.param(`${name}.w3`, [s.ff, d]), { transB: true }));
  const w2 = g.param(`${name}.w2`, [d, s.ff]);
  const out = h.matmul(w2, { transB: true });
  if (!s.gated) return out;
  const gate = g.param(`${name}.gate`, [1, d]);
  return out.mul(x.matmul(gate, { transB: true }).sigmoid());
}

/**
 * A routed Mixture-of-Experts FFN layer on `x [..., d]` (prefill: ≤ 6 kernels
 * whatever E is; decode, T ≤ 4: GEMVs over only the chosen experts).
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "../compiler/builder.ts";
 * import { moe } from "./moe.ts";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 64]);
 * const m = moe(g, x, { name: "l0.moe", experts: 8, topK: 2, ff: 128 });
 * g.output("y", m.y.add(x)); // the residual add fuses into the combine kernel
 * g.output("aux", m.auxLoss);
 * const graph = g.build();
 * ```
 */
export function moe(g: GraphBuilder, x: Tensor, options: MoeOptions): MoeOutputs {
  return build(g, x, options, false);
}

/**
 * The same layer (same parameters and results) computed densely: every token
 * through every expert, weighted by the routing. A baseline for benchmarks.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "../compiler/builder.ts";
 * import { moeDense } from "./moe.ts";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 64]);
 * g.output("y", moeDense(g, x, { name: "l0.moe", experts: 8, topK: 2, ff: 128 }).y);
 * ```
 */
export function moeDense(g: GraphBuilder, x: Tensor, options: MoeOptions): MoeOutputs {
  return build(g, x, options, true);
}

/**
 * Stacks per-expert weights (each a row-major `[N, K]` Linear weight, as HF
 * checkpoints store `experts.E.w1.weight`) into the `[E, N, K]` tensor `moe`
 * takes.
 *
 * @example
 * ```ts
 * import { stackExperts } from "./moe.ts";
 * const w1 = stackExperts([new Float32Array(6), new Float32Array(6)]); // 2 experts of [3, 2]
 * w1.length; // 12
 * ```
 */
export function stackExperts(perExpert: readonly ArrayLike<number>[]): Float32Array {
  if (perExpert.length === 0) throw new RangeError("stackExperts: no experts given");
  const n = perExpert[0].length;
  const out = new Float32Array(perExpert.length * n);
  perExpert.forEach((w, e) => {
    if (w.length !== n) {
      throw new RangeError(
        `stackExperts: expert ${e} has ${w.length} elements, expert 0 has ${n}`,
      );
    }
    out.set(w, e * n);
  });
  return out;
}
