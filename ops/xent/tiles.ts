/**
 * The shared pieces of the fused cross-entropy kernels: how work is tiled and
 * the WGSL that recomputes a tile of logits from `h` and `W`.
 *
 * Why this shape (Mesa lavapipe runs a workgroup on one CPU thread with its
 * invocations as SIMD lanes, and every storage load is a per-lane loop, see
 * `ops/matmul/tiled.ts`): loads per FMA are what to minimise. An invocation
 * owns a `R × RN` tile of logits (R tokens of the workgroup against RN of its
 * vocabulary rows) and reads both operands four floats at a time along `d`,
 * so one step of the `d` loop issues `R + RN` vec4 loads for `R·RN` dot
 * products. All invocations of a workgroup share the same R tokens, which stay
 * hot in cache, and spread over the vocabulary.
 *
 * @module
 */

import type { DeviceCaps, KernelOperand } from "../types.ts";
import type { KernelIo } from "../wgsl/mod.ts";

/**
 * How a fused cross-entropy kernel is cut.
 *
 * @example
 * ```ts ignore
 * const t: XentTiles = { NI: 16, RN: 4, R: 4, block: 64, DQ: 8 };
 * ```
 */
export interface XentTiles {
  /** Invocations per workgroup. */
  readonly NI: number;
  /** Vocabulary rows (or tokens, for `dW`) per invocation per streamed step. */
  readonly RN: number;
  /** Tokens (or, for `dW`, vocabulary rows) a workgroup owns. */
  readonly R: number;
  /** Rows streamed per step: `NI · RN`. */
  readonly block: number;
  /** vec4 columns of `d` each invocation accumulates in the gradient kernels. */
  readonly DQ: number;
}

/**
 * Most vec4 accumulators an invocation keeps in the gradient kernels. Far
 * more than registers hold: on lavapipe spills to the stack cost less than
 * the loads a smaller tile issues per FMA (128 measured 1.5–2× faster than 32).
 */
const MAX_ACC = 128;

/**
 * Which of the three kernels a tiling is for.
 *
 * @example
 * ```ts ignore
 * const k: XentKernel = "dh";
 * ```
 */
export type XentKernel = "forward" | "dh" | "dw";

/**
 * Default tiles per kernel, the fastest of those tried on lavapipe at T = 128,
 * d = 512, V = 4000 (4×4 tiles ran 2–3× slower).
 */
const DEFAULTS: Record<XentKernel, { NI: number; RN: number; R: number }> = {
  forward: { NI: 16, RN: 8, R: 8 },
  dh: { NI: 16, RN: 8, R: 16 },
  dw: { NI: 16, RN: 8, R: 16 },
};

/** The least power of two ≥ n (n ≥ 1). */
function pow2At(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(n, 1)));
}

/**
 * Picks the tiling of one kernel for `D4` vec4 columns of the hidden size,
 * `owned` rows split among workgroups (tokens, or the vocabulary for `dW`)
 * and `streamed` rows each workgroup loops over. `block` (the op's
 * attribute) forces the rows streamed per step; 0 lets this choose.
 *
 * @example
 * ```ts ignore
 * planTiles(device.caps, 0, 128, "forward", 512, 32000).block; // 128 rows per step
 * ```
 */
export function planTiles(
  caps: DeviceCaps,
  block: number,
  D4: number,
  kernel: XentKernel,
  owned: number,
  streamed: number,
): XentTiles {
  let { NI, RN, R } = DEFAULTS[kernel];
  const grads = kernel !== "forward";
  const cap = Math.min(64, caps.maxInvocations);
  if (block > 0) {
    RN = block % 4 === 0 && block >= 16 ? 4 : block % 2 === 0 ? 2 : 1;
    NI = block / RN;
    if (NI > caps.maxInvocations) {
      throw new RangeError(
        `lm_head_xent: block ${block} needs ${NI} invocations per workgroup, ` +
          `the device allows ${caps.maxInvocations}`,
      );
    }
  } else {
    // A wide hidden size spreads the gradients' accumulators over more invocations.
    while (grads && 4 * Math.ceil(D4 / NI) > MAX_ACC && NI * 2 <= cap) NI *= 2;
    NI = Math.min(NI, caps.maxInvocations);
    // No wider than the rows there are: a bigger tile is only duplicated work
    // (and compile time for its unrolled code).
    RN = Math.min(RN, pow2At(Math.ceil(streamed / NI)));
  }
  R = Math.min(R, pow2At(owned));
  while (grads && R > 1 && R * Math.ceil(D4 / NI) > MAX_ACC) R /= 2;
  // The gradients' coefficient block lives in workgroup memory.
  while (grads && R > 1 && R * NI * RN * 4 > caps.maxWorkgroupStorage) R /= 2;
  return { NI, RN, R, block: NI * RN, DQ: Math.ceil(D4 / NI) };
}

/**
 * `[0, 1, …, n − 1]`, for unrolled code.
 *
 * @example
 * ```ts ignore
 * range(3); // [0, 1, 2]
 * ```
 */
export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/**
 * WGSL `fn name(r: u32, c: u32) -> vec4<f32>`: elements `4c .. 4c + 3` of row
 * `r` of a `[rows, d]` operand, zeros past `d`. A direct operand whose rows
 * are whole vec4s is read as one vec4 (recorded in `arrayTypes`); any other
 * goes through its scalar loads, clamped to stay in bounds.
 *
 * @example
 * ```ts ignore
 * const fn = rowLoader(io, arrayTypes, 1, ctx.inputs[1], V, d, "ldw");
 * ```
 */
export function rowLoader(
  io: KernelIo,
  arrayTypes: Record<string, string>,
  j: number,
  operand: KernelOperand,
  rows: number,
  d: number,
  name: string,
): string {
  if (d % 4 === 0 && operand.direct) {
    arrayTypes[`in${j}`] = "vec4<f32>";
    return `fn ${name}(r: u32, c: u32) -> vec4<f32> { return ${io.in(j)}[r * ${d / 4}u + c]; }`;
  }
  const last = rows * d - 1;
  const comps = range(4).map((e) =>
    `select(0.0, f32(${
      io.load(j, `min(r * ${d}u + c * 4u + ${e}u, ${last}u)`)
    }), c * 4u + ${e}u < ${d}u)`
  );
  return `fn ${name}(r: u32, c: u32) -> vec4<f32> {\n  return vec4<f32>(${
    comps.join(",\n    ")
  });\n}`;
}

/**
 * WGSL that declares `l{i}_{j}` (`R × RN` f32) as the dot products of rows
 * `a{i}` of operand `la` with rows `b{j}` of operand `lb` (row indices already
 * clamped in range), over `D4` vec4 columns.
 *
 * @example
 * ```ts ignore
 * logitTile(4, 4, 16, "ldh", (i) => `r${i}`, "ldw", (j) => `c${j}`, "    ");
 * ```
 */
export function logitTile(
  R: number,
  RN: number,
  D4: number,
  la: string,
  rowA: (i: number) => string,
  lb: string,
  rowB: (j: number) => string,
  ind: string,
): string {
  const L: string[] = [];
  for (const i of range(R)) for (const j of range(RN)) L.push(`${ind}var l${i}_${j} = 0.0;`);
  L.push(`${ind}for (var k = 0u; k < ${D4}u; k++) {`);
  for (const i of range(R)) L.push(`${ind}  let a${i} = ${la}(${rowA(i)}, k);`);
  for (const j of range(RN)) L.push(`${ind}  let b${j} = ${lb}(${rowB(j)}, k);`);
  for (const i of range(R)) {
    for (const j of range(RN)) L.push(`${ind}  l${i}_${j} = l${i}_${j} + dot(a${i}, b${j});`);
  }
  L.push(`${ind}}`);
  return L.join("\n");
}

/**
 * WGSL test that target `tg` (of the targets' dtype) is a vocabulary row, i.e. counted.
 *
 * @example
 * ```ts ignore
 * countedExpr("tg", "u32", 37); // "(tg < 37u)"
 * ```
 */
export function countedExpr(tg: string, dtype: string, V: number): string {
  return dtype === "i32" ? `(${tg} >= 0 && ${tg} < ${V})` : `(${tg} < ${V}u)`;
}
