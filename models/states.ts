/**
 * Names the model graphs give their device states and the expert slot pool,
 * shared by the graphs that declare them (`buildCausalLM`) and the
 * runners that read and write them by name (`Executable.readStates`,
 * `writeState`, `setParams`). One spelling on both sides: a renamed state
 * fails type checking instead of reading nothing at run time.
 *
 * @module
 */

/**
 * Device states of a causal LM graph (see `buildCausalLM`):
 * - `token`: the last sampled id `[1]` u32, fed back into the next decode step;
 * - `generated`: sampled ids by step `[maxNew]` u32, read back every few steps;
 * - `moeUsage`: routed (token, slot) pairs per MoE layer and expert, summed
 *   over every run `[layers·E]` u32 (graphs with expert slots);
 * - `moeLog`: each step's routing row `[maxNew, layers·E]` u32, which the cache
 *   scheduler checks residency with;
 * - `moeLookahead`: each decode step's router-lookahead prediction
 *   `[maxNew, layers·E]` u32 (graphs built with `moeLookahead`).
 *
 * @example
 * ```ts
 * import { buildCausalLM, compile, parseConfig, requestDevice, STATES } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2,
 * });
 * const graph = buildCausalLM(cfg, { mode: "decode", maxSeq: 64, maxNew: 8 });
 * graph.states.has(STATES.generated); // true
 * const exe = compile(graph, await requestDevice());
 * exe.writeState(STATES.token, [1]);
 * ```
 */
export const STATES = {
  token: "token",
  generated: "generated",
  moeUsage: "moe.usage",
  moeLog: "moe.log",
  moeLookahead: "moe.lookahead",
} as const;

/**
 * The name of one of {@linkcode STATES}.
 *
 * @example
 * ```ts
 * import { type StateName, STATES } from "@kiln/kiln";
 * const names: StateName[] = [STATES.generated, STATES.moeUsage];
 * ```
 */
export type StateName = typeof STATES[keyof typeof STATES];

/**
 * Name of the expert slot pool shared by every MoE layer of a graph built with
 * `expertSlots` (its parameters are {@linkcode SLOT_POOL_PARAMS}).
 *
 * @example
 * ```ts
 * import { SLOT_POOL } from "@kiln/kiln";
 * const w1 = `${SLOT_POOL}.w1`; // "moe.slots.w1": the pool parameter of scheduled graphs
 * ```
 */
export const SLOT_POOL = "moe.slots";

/**
 * The slot pool's stacked expert weights, `[slots, ff, d]` for `w1` and `w3`,
 * `[slots, d, ff]` for `w2`.
 *
 * @example
 * ```ts ignore
 * import { SLOT_POOL_PARAMS } from "./states.ts";
 * const buffer = exe.paramBuffer(SLOT_POOL_PARAMS.w2); // "moe.slots.w2"
 * ```
 */
export const SLOT_POOL_PARAMS = {
  // `${SLOT_POOL}.w1` …, spelled out so each value's type is its literal.
  w1: "moe.slots.w1",
  w3: "moe.slots.w3",
  w2: "moe.slots.w2",
} as const;

/**
 * The states of a causal LM graph that a step updates in place — Mamba's
 * convolution and scan states, S4's state — as opposed to attention's KV
 * caches (`…k_cache`, `…v_cache`, MLA's `…kv_cache`: indexed by position, so a
 * later run overwrites rows instead of changing them) and the decode loop's
 * own {@linkcode STATES}. Any other state counts as recurrent, so a state
 * added later is kept and restored rather than wrongly assumed rewindable.
 *
 * @example
 * ```ts
 * import { recurrentStateNames } from "@kiln/kiln";
 * recurrentStateNames(["token", "l0.attn.k_cache", "l1.mamba.ssm_state"]); // ["l1.mamba.ssm_state"]
 * ```
 */
export function recurrentStateNames(names: Iterable<string>): string[] {
  const loop = new Set<string>(Object.values(STATES));
  return [...names].filter((n) => !loop.has(n) && !n.endsWith("_cache"));
}
