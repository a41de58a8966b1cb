/**
 * The WGSL pieces the backward's walking kernels (`scan_grad_kernels.ts`'s
 * checkpoint walk, `scan_grad_reverse.ts`'s reverse walk) share: which
 * channels a thread owns, how it reads its activations and B/C rows, where its
 * states and carried adjoint live in scratch, and one forward step.
 *
 * A thread owns `cpt` channels as `cpt / V` units `k`: where I and `cpt` are
 * multiples of 4 a unit is a vec4 of 4 contiguous channels `i{k}…i{k}+3` (one
 * storage access moves all four: llvmpipe runs every access as a loop over the
 * lanes, so accesses, not bytes, set the cost), else one channel, with the
 * lanes of a workgroup on contiguous channels.
 *
 * @module
 */

import type { KernelContext } from "../types.ts";
import type { KernelIo } from "../wgsl/mod.ts";
import { load, store } from "./access.ts";
import type { ScanSlots } from "./attrs.ts";
import type { GradPlan } from "./scan_grad_kernels.ts";
import type { ScanGradAttrs } from "./scan_grad_reference.ts";

/** Scratch buffers of the backward (see `scan_grad_kernels.ts`). */
export const SCRATCH = { params: 0, states: 1, partials: 2, carry: 3 } as const;

/**
 * The shared emitters of one kernel, bound to its `io` and `arrayTypes`.
 *
 * @example
 * ```ts ignore
 * const w = gradLanes(ctx, slots, plan, io, arrayTypes);
 * const lines = [...w.pre(["a", "db"]), ...w.walkStep("    ")];
 * ```
 */
export interface GradLanes {
  /** Channels per unit: 4 (vec4 groups) or 1. */
  readonly V: 1 | 4;
  /** WGSL type of a unit's value. */
  readonly T: string;
  /** Unit indices `0…cpt/V-1`. */
  readonly units: readonly number[];
  /** State indices `0…N-1`. */
  readonly NS: readonly number[];
  /** Channels the states and carries are padded to: `blocks · wg · cpt`. */
  readonly Ipad: number;
  /** Unit k's value of a [B, L, I] activation at row `r`. */
  act(slot: number, k: number, r: string): string;
  /** Stores unit k's value `v` of a [B, L, I] output at row `r`. */
  storeAct(slot: number, k: number, v: string, r: string): string;
  /** `let {tag}{n}` = row `r` of B or C (vec4 loads where they can). */
  row(slot: number, tag: string, r: string): string[];
  /** Unit k's state n in slot `slot` of this workgroup's states. */
  stateAt(slot: string, k: number, n: number): string;
  /**
   * Unit k's state n entering chunk `c`, from the forward's saved states (input
   * `slot`, `[B, NC, N, I]`: see `checkpointsOf`).
   */
  savedAt(slot: number, c: string, k: number, n: number): string;
  /**
   * Unit k's carried adjoint `what` (state n for g and gA) in the carry
   * buffer, or its copy of A·log₂e (state n), D or the Δ bias.
   */
  carryAt(what: "g" | "gA" | "gD" | "gb" | "a" | "d" | "db", k: number, n?: number): string;
  /**
   * `let i{k}, j{k}` and the per-channel constants named in `need`: from the
   * packed params, or (`copied`) from the checkpoint walk's copy in the carry
   * buffer, a vec4 per access instead of one access per channel.
   */
  pre(need: readonly ("a" | "d" | "db" | "m")[], copied?: boolean): string[];
  /** Δ of unit k from its raw value (softplus where the op says). */
  dt(raw: string): string;
  /** One forward step of `h{k}_{n}` at row `r` (t), with `extra` lines first. */
  walkStep(ind: string, extra?: readonly string[]): string[];
  /** Touches the lanes' cache lines of direct streams at row `r` (into `touched`). */
  touch(streams: readonly number[], r: string): string[];
}

/**
 * Binds the shared emitters to one kernel's `io` and `arrayTypes`.
 *
 * @example
 * ```ts ignore
 * const w = gradLanes(ctx, slots, plan, io, arrayTypes);
 * ```
 */
export function gradLanes(
  ctx: KernelContext<ScanGradAttrs>,
  slots: ScanSlots,
  p: GradPlan,
  io: KernelIo,
  arrayTypes: Record<string, string>,
): GradLanes {
  const { B, L, I, N, wg, cpt } = p;
  const V: 1 | 4 = I % 4 === 0 && cpt % 4 === 0 ? 4 : 1;
  const T = V === 4 ? "vec4<f32>" : "f32";
  const units = [...Array(cpt / V).keys()];
  const NS = [...Array(N).keys()];
  const blocks = Math.ceil(I / (wg * cpt));
  const Ipad = blocks * wg * cpt;
  const plus = (e: number) => (e === 0 ? "" : ` + ${e}u`);
  const perChannel = (at: (e: number) => string): string =>
    V === 1 ? at(0) : `vec4<f32>(${[0, 1, 2, 3].map(at).join(", ")})`;
  const params = io.scratch(SCRATCH.params);
  const vec4Of = (j: number) => {
    arrayTypes[`in${j}`] = `vec4<${ctx.inputs[j].dtype}>`;
  };
  if (V === 4) {
    arrayTypes[`scratch${SCRATCH.states}`] = "vec4<f32>";
    arrayTypes[`scratch${SCRATCH.carry}`] = "vec4<f32>";
  }
  const act = (slot: number, k: number, r: string): string => {
    if (V === 4 && ctx.inputs[slot].direct) {
      vec4Of(slot);
      return `vec4<f32>(${io.in(slot)}[${r} * ${I / 4}u + j${k} / 4u])`;
    }
    return perChannel((e) => load(ctx, io, slot, `${r} * ${I}u + j${k}${plus(e)}`));
  };
  const storeAct = (slot: number, k: number, v: string, r: string): string => {
    const o = ctx.outputs[slot];
    if (V === 4 && o.direct) {
      arrayTypes[`out${slot}`] = `vec4<${o.dtype}>`;
      return `${io.out(slot)}[${r} * ${I / 4}u + i${k} / 4u] = vec4<${o.dtype}>(${v});`;
    }
    return [...Array(V).keys()].map((e) =>
      store(io, o, slot, `${r} * ${I}u + i${k}${plus(e)}`, V === 1 ? v : `${v}[${e}]`)
    ).join(" ");
  };
  const row = (slot: number, tag: string, r: string): string[] => {
    if (N % 4 === 0 && ctx.inputs[slot].direct) {
      vec4Of(slot);
      return [
        ...[...Array(N / 4).keys()].map((q) =>
          `let ${tag}v${q} = vec4<f32>(${io.in(slot)}[${r} * ${N / 4}u + ${q}u]);`
        ),
        ...NS.map((n) => `let ${tag}${n} = ${tag}v${n >> 2}[${n & 3}];`),
      ];
    }
    return NS.map((n) => `let ${tag}${n} = ${load(ctx, io, slot, `${r} * ${N}u + ${n}u`)};`);
  };
  // States `[B, blocks, slots, N, wg·cpt/V]` (the WGSL `slots` of the kernel): a
  // workgroup's state is one contiguous 4 kB run (at N = 16, 64 channels), so
  // the hardware prefetcher follows it and each access touches few lines.
  const U = cpt / V;
  const unitIdx = (k: number) => (V === 4 ? `lid.x * ${U}u + ${k}u` : `${k * wg}u + lid.x`);
  const stateAt = (slot: string, k: number, n: number) =>
    `${io.scratch(SCRATCH.states)}[((b * ${blocks}u + wid.x) * slots + ${slot}) * ${
      N * wg * U
    }u + ${n * wg * U}u + ${unitIdx(k)}]`;
  const savedAt = (slot: number, c: string, k: number, n: number) => {
    const row = `(b * ${p.NC}u + ${c}) * ${N}u + ${n}u`;
    if (V === 4 && ctx.inputs[slot].direct) {
      vec4Of(slot);
      return `vec4<f32>(${io.in(slot)}[(${row}) * ${I / 4}u + j${k} / 4u])`;
    }
    return perChannel((e) => load(ctx, io, slot, `(${row}) * ${I}u + j${k}${plus(e)}`));
  };
  // Carry `[B·(2N + 2) + N + 2, Ipad]`: per batch row g (N rows), gA (N rows),
  // gD, gb; then A·log₂e (N rows), D and the Δ bias, channel-minor.
  const carryAt = (what: "g" | "gA" | "gD" | "gb" | "a" | "d" | "db", k: number, n = 0) => {
    const rows = { g: n, gA: N + n, gD: 2 * N, gb: 2 * N + 1, a: n, d: N, db: N + 1 };
    const row = ["a", "d", "db"].includes(what)
      ? `${B * (2 * N + 2) + rows[what]}u`
      : `b * ${2 * N + 2}u + ${rows[what]}u`;
    return `${io.scratch(SCRATCH.carry)}[(${row}) * ${Ipad / V}u + i${k}${V === 4 ? " / 4u" : ""}]`;
  };
  const pre = (need: readonly ("a" | "d" | "db" | "m")[], copied = false): string[] => {
    const out: string[] = [];
    const param = (what: "a" | "d" | "db", k: number, n: number, packed: string) =>
      copied ? carryAt(what, k, n) : packed;
    for (const k of units) {
      out.push(
        V === 1
          ? `let i${k} = wid.x * ${wg * cpt}u + ${k * wg}u + lid.x;`
          : `let i${k} = (wid.x * ${wg}u + lid.x) * ${cpt}u + ${4 * k}u;`,
      );
      out.push(`let j${k} = min(i${k}, ${I - V}u);`);
      if (need.includes("m")) out.push(`let m${k} = select(0.0, 1.0, i${k} < ${I}u);`);
      if (need.includes("a")) {
        for (const n of NS) {
          const packed = perChannel((e) => `${params}[(j${k}${plus(e)}) * ${N}u + ${n}u]`);
          out.push(`let a${k}_${n} = ${param("a", k, n, packed)};`);
        }
      }
      if (need.includes("d")) {
        const packed = perChannel((e) => `${params}[${I * N}u + j${k}${plus(e)}]`);
        out.push(`let d${k} = ${param("d", k, 0, packed)};`);
      }
      if (need.includes("db")) {
        out.push(
          `let db${k} = ${
            slots.bias !== undefined
              ? param("db", k, 0, perChannel((e) => `${params}[${I * N + I}u + j${k}${plus(e)}]`))
              : `${T}(0.0)`
          };`,
        );
      }
    }
    return out;
  };
  const sp = V === 4 ? "kiln_softplus4" : "kiln_softplus";
  const dt = (raw: string) => (ctx.attrs.softplus ? `${sp}(${raw})` : raw);
  const walkStep = (ind: string, extra: readonly string[] = []): string[] => {
    const out = [`let r = b * ${L}u + t;`, ...extra, ...row(slots.b, "bb", "r")];
    for (const k of units) {
      out.push(`let dt${k} = ${dt(`${act(slots.delta, k, "r")} + db${k}`)};`);
      out.push(`let du${k} = dt${k} * ${act(slots.u, k, "r")};`);
      for (const n of NS) {
        out.push(`h${k}_${n} = fma(exp2(dt${k} * a${k}_${n}), h${k}_${n}, du${k} * bb${n});`);
      }
    }
    return out.map((l) => ind + l);
  };
  // One scalar per lane and 64-byte line of its channels (every fourth unit):
  // the loads of one step then miss side by side instead of one after another.
  const touch = (streams: readonly number[], r: string): string[] => {
    const direct = streams.filter((j) => V === 4 && ctx.inputs[j].direct);
    if (direct.length === 0) return [];
    direct.forEach(vec4Of);
    const loads = direct.flatMap((j) =>
      units.filter((k) => k % 4 === 0).map((k) =>
        `f32(${io.in(j)}[${r} * ${I / 4}u + j${k} / 4u].x)`
      )
    );
    return [`touched = touched + ${loads.join(" + ")};`];
  };
  return {
    V,
    T,
    units,
    NS,
    Ipad,
    act,
    storeAct,
    row,
    stateAt,
    savedAt,
    carryAt,
    pre,
    dt,
    walkStep,
    touch,
  };
}
