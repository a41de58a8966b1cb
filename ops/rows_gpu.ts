/**
 * The frame the `gpu` target's row kernels share (`norm_gpu.ts`,
 * `softmax_gpu.ts`): ops that reduce each row of the last axis and then write
 * the row back normalised, in one kernel.
 *
 * Two shapes, picked by the row's width `d`:
 *
 * - **workgroup per row** (`d ≥ 64`): 64–256 invocations stride over the row,
 *   four elements at a time (`vec4` loads of a direct or segmented operand,
 *   four scalar `in{j}_load` calls through a fused prologue) when `d` is a
 *   multiple of 4, one at a time otherwise. Partials meet through
 *   `subgroupAdd`/`subgroupMax` and one workgroup-memory slot per subgroup where
 *   the device has `subgroups` (one barrier per reduction), else through a
 *   workgroup-memory tree (log₂ of the workgroup size in barriers). Then the
 *   same invocations write the row. The workgroup is the largest power of two
 *   from 64 to 256 that still gives every invocation at least one vector (or
 *   element), so a decode row of 4096 gets 256 invocations of four vec4s.
 * - **thread per row** (`d < 64`): a row this short would leave most of a
 *   64-invocation workgroup idle and pay a barrier per few elements; one
 *   invocation walks the whole row instead (no barriers at all), 64 rows per
 *   workgroup. Its loads are 4·d bytes apart across a warp, which the L1 absorbs
 *   at these widths.
 *
 * Up to 16 f32 values per invocation (a 4096-wide row at 256 invocations) stay
 * in registers, so the input and any fused prologue are read once; longer rows
 * are read again per pass (from L2) rather than spill. Statistics are f32 for
 * f16 storage too. Rows past `maxWorkgroupsPerDim` spill over y (`grid`).
 *
 * The subgroup reduction assumes subgroups tile the workgroup in order of
 * `local_invocation_index` (invocation t in subgroup ⌊t / size⌋), as every
 * known implementation lays out a one-dimensional workgroup. Its WGSL does not
 * declare `enable subgroups;`: Naga (Deno's WGSL front end) rejects the
 * directive and takes the capability from the device's `subgroups` feature.
 *
 * @module
 */

import type { DType } from "../core/dtype.ts";
import type { DeviceCaps, KernelChoice, KernelContext, KernelSource } from "./types.ts";
import { flatLaunch, grid, groupIndex, KernelIo } from "./wgsl/mod.ts";

/**
 * Rows narrower than this take one invocation each, wider ones a workgroup:
 * below it a workgroup of 64 would idle most invocations and spend a barrier
 * per few elements.
 *
 * @example
 * ```ts
 * import { THREAD_ROW_BELOW } from "./rows_gpu.ts";
 * const shape = 48 < THREAD_ROW_BELOW ? "thread" : "workgroup"; // "thread"
 * ```
 */
export const THREAD_ROW_BELOW = 64;
/**
 * Most f32 values an invocation keeps in registers across passes: a 4096-wide
 * row at 256 invocations; more would cost occupancy, so longer rows are re-read.
 *
 * @example
 * ```ts
 * import { MAX_CACHED } from "./rows_gpu.ts";
 * const cached = Math.ceil(4096 / 256) <= MAX_CACHED; // true
 * ```
 */
export const MAX_CACHED = 16;
/** Workgroup sizes of the workgroup-per-row shape. */
const MIN_WG = 64, MAX_WG = 256;
/** Smallest subgroup WebGPU allows: sizes the per-subgroup slot array. */
const MIN_SUBGROUP = 4;

/**
 * How one row kernel covers its rows, chosen by {@linkcode planRows}.
 *
 * @example
 * ```ts
 * import type { RowPlan } from "./rows_gpu.ts";
 * const p: RowPlan = {
 *   mode: "workgroup", wg: 256, quad: true, units: 1024, perThread: 4, cached: true,
 *   subgroups: false, rows: 1, workgroups: [1, 1, 1], index: "wid.x",
 * };
 * ```
 */
export interface RowPlan {
  /** One workgroup or one invocation per row. */
  readonly mode: "workgroup" | "thread";
  /** Invocations per workgroup. */
  readonly wg: number;
  /** Elements move four at a time (`d` is a multiple of 4). */
  readonly quad: boolean;
  /** Units (vec4s or elements) per row. */
  readonly units: number;
  /** Units each invocation handles. */
  readonly perThread: number;
  /** Those units stay in registers between passes. */
  readonly cached: boolean;
  /** Reductions use subgroup operations. */
  readonly subgroups: boolean;
  /** Rows. */
  readonly rows: number;
  /** Dispatch size. */
  readonly workgroups: [number, number, number];
  /** WGSL expression of the row: of `wid` per workgroup, of `gid` per invocation. */
  readonly index: string;
}

/**
 * The row kernel shape for `rows` rows of `d` elements on `caps`, or undefined
 * where the portable kernels should run instead (empty rows, a device under
 * 64 invocations or without workgroup memory for three reductions).
 *
 * @example
 * ```ts
 * import { planRows } from "./rows_gpu.ts";
 * const caps = {
 *   maxStorageBuffers: 8, maxBindingSize: 1 << 30, maxInvocations: 256,
 *   maxWorkgroupStorage: 16384, maxWorkgroupsPerDim: 65535, offsetAlignment: 256,
 *   f16: true, subgroups: true, cpuCores: 0,
 * };
 * planRows(caps, 8, 4096)?.wg; // 256
 * planRows(caps, 8, 7)?.mode; // "thread"
 * ```
 */
export function planRows(caps: DeviceCaps, rows: number, d: number): RowPlan | undefined {
  if (rows === 0 || d === 0 || caps.maxInvocations < MIN_WG) return undefined;
  if (caps.maxWorkgroupStorage < 3 * MAX_WG * 4) return undefined;
  const quad = d % 4 === 0;
  const units = quad ? d / 4 : d;
  const lanes = quad ? 4 : 1;
  if (d < THREAD_ROW_BELOW) {
    const { wg, workgroups, index } = flatLaunch(rows, caps, 64);
    return {
      mode: "thread",
      wg,
      quad,
      units,
      perThread: units,
      cached: units * lanes <= MAX_CACHED,
      subgroups: false,
      rows,
      workgroups,
      index,
    };
  }
  const cap = Math.min(MAX_WG, caps.maxInvocations);
  let wg = MIN_WG;
  while (wg * 2 <= cap && wg * 2 <= units) wg *= 2;
  const perThread = Math.ceil(units / wg);
  const workgroups = grid(rows, caps.maxWorkgroupsPerDim);
  return {
    mode: "workgroup",
    wg,
    quad,
    units,
    perThread,
    cached: perThread * lanes <= MAX_CACHED,
    subgroups: caps.subgroups,
    rows,
    workgroups,
    index: groupIndex(workgroups),
  };
}

/**
 * Writes one row kernel for a {@linkcode RowPlan}: operand access by unit,
 * loops over an invocation's units, reductions across the row, and the entry
 * point. Bodies see `rb` (the row's first unit), `q` (the unit) and `k` (its
 * slot in the register cache `xs`).
 *
 * @example
 * ```ts
 * import { planRows, RowWriter } from "./rows_gpu.ts";
 * import type { KernelContext } from "./types.ts";
 * const caps = {
 *   maxStorageBuffers: 8, maxBindingSize: 1 << 30, maxInvocations: 256,
 *   maxWorkgroupStorage: 16384, maxWorkgroupsPerDim: 65535, offsetAlignment: 256,
 *   f16: false, subgroups: false, cpuCores: 0,
 * };
 * const x = { shape: [4, 256], dtype: "f32" as const, direct: true };
 * const ctx: KernelContext<unknown> = { attrs: {}, inputs: [x], outputs: [x], caps };
 * const w = new RowWriter(planRows(caps, 4, 256)!, ctx);
 * const body = `  var acc = ${w.unit}(0.0);
 * ${w.each((v) => `      acc = acc + ${v};`, "load")}
 * ${w.reduce("sum", w.hsum("acc"), "tot")}
 * ${w.each((v) => `      ${w.store("rb + q", `${v} - tot`)}`, "load")}`;
 * w.finish("centre", body).label; // "centre_gpu_wg64_v4"
 * ```
 */
export class RowWriter {
  /** The shape being written. */
  readonly plan: RowPlan;
  /** Records the operand names the kernel uses. */
  readonly io: KernelIo = new KernelIo();
  /** f32 type of one unit. */
  readonly unit: string;
  readonly #ctx: KernelContext<unknown>;
  readonly #helpers = new Map<string, string>();
  readonly #shared: string[] = [];
  readonly #arrayTypes: Record<string, string> = {};

  /** A writer for `plan` over the operands of `ctx`. */
  constructor(plan: RowPlan, ctx: KernelContext<unknown>) {
    this.plan = plan;
    this.#ctx = ctx;
    this.unit = plan.quad ? "vec4<f32>" : "f32";
  }

  /** The type of one unit stored as `dtype`. */
  unitOf(dtype: DType): string {
    return this.plan.quad ? `vec4<${dtype}>` : dtype;
  }

  /** Unit `q` of input `j` in the operand's own dtype. */
  raw(j: number, q: string): string {
    const op = this.#ctx.inputs[j];
    if (!this.plan.quad) return this.io.load(j, q);
    if (op.direct || op.segmented) {
      // Whole vectors: `d` is a multiple of 4, so a row never starts mid-vector;
      // segments start on aligned offsets, so none straddles two.
      this.#arrayTypes[`in${j}`] = `vec4<${op.dtype}>`;
      return op.direct ? `${this.io.in(j)}[${q}]` : this.io.vget(j, q);
    }
    const name = `kr_in${j}`;
    if (!this.#helpers.has(name)) {
      const e = [0, 1, 2, 3].map((l) => this.io.load(j, l ? `e + ${l}u` : "e")).join(", ");
      this.#helpers.set(
        name,
        `fn ${name}(q: u32) -> vec4<${op.dtype}> {\n  let e = q * 4u;\n  return vec4<${op.dtype}>(${e});\n}`,
      );
    }
    return `${name}(${q})`;
  }

  /** Unit `q` of input `j` widened to f32. */
  load(j: number, q: string): string {
    return `${this.unit}(${this.raw(j, q)})`;
  }

  /** Statement storing unit `q` of output 0 (`v` is of the output's dtype). */
  store(q: string, v: string): string {
    const out = this.#ctx.outputs[0];
    if (!this.plan.quad) return `${this.io.store(0, q, v)};`;
    if (out.direct) {
      this.#arrayTypes.out0 = `vec4<${out.dtype}>`;
      return `${this.io.out(0)}[${q}] = ${v};`;
    }
    const name = "kr_out0";
    if (!this.#helpers.has(name)) {
      const st = [0, 1, 2, 3].map((l) =>
        `  ${this.io.store(0, l ? `e + ${l}u` : "e", `v[${l}]`)};`
      );
      this.#helpers.set(
        name,
        `fn ${name}(q: u32, v: vec4<${out.dtype}>) {\n  let e = q * 4u;\n${st.join("\n")}\n}`,
      );
    }
    return `${name}(${q}, ${v});`;
  }

  /** Sum of a unit's lanes (`v` a plain name). */
  hsum(v: string): string {
    return this.plan.quad ? `((${v}.x + ${v}.y) + (${v}.z + ${v}.w))` : v;
  }

  /** Max of a unit's lanes (`v` a plain name). */
  hmax(v: string): string {
    return this.plan.quad ? `max(max(${v}.x, ${v}.y), max(${v}.z, ${v}.w))` : v;
  }

  /**
   * A loop over this invocation's units of the row. `body` gets the name of the
   * unit's f32 value `x`. `cache`: `"fill"` loads x and keeps it, `"read"` takes
   * it from the registers (only when the plan caches), `"load"` reads it again.
   */
  each(body: (x: string) => string, cache: "fill" | "read" | "load", j = 0): string {
    const { mode, wg, units, perThread, cached } = this.plan;
    if (cache !== "load" && !cached) throw new Error("internal: the row is not in registers");
    const x = cache === "read" ? "xs[k]" : this.load(j, "rb + q");
    const head = cache === "fill" ? `let x = ${x};\n      xs[k] = x;` : `let x = ${x};`;
    const inner = `      ${head}\n${body("x")}`;
    if (mode === "thread") {
      return `  for (var k = 0u; k < ${units}u; k = k + 1u) {
    let q = k;
${inner}
  }`;
    }
    return `  for (var k = 0u; k < ${perThread}u; k = k + 1u) {
    let q = t + k * ${wg}u;
    if (q < ${units}u) {
${inner}
    }
  }`;
  }

  /** The register cache's declaration, when the plan caches. */
  cacheDecl(): string {
    return this.plan.cached ? `  var xs: array<${this.unit}, ${this.plan.perThread}>;` : "";
  }

  /**
   * Statements that reduce each invocation's `value` (an f32 expression) over
   * the row with `kind` and bind the result, the same in every invocation, to
   * `name`. Every invocation of the workgroup must reach them.
   */
  reduce(kind: "sum" | "max", value: string, name: string): string {
    const { mode, wg, subgroups } = this.plan;
    if (mode === "thread") return `  let ${name} = ${value};`;
    const op = (a: string, b: string) => (kind === "sum" ? `${a} + ${b}` : `max(${a}, ${b})`);
    const arr = `kr_${name}`;
    if (subgroups) {
      this.#shared.push(`var<workgroup> ${arr}: array<f32, ${Math.ceil(wg / MIN_SUBGROUP)}>;`);
      const sg = kind === "sum" ? "subgroupAdd" : "subgroupMax";
      // One slot per subgroup and one barrier; every invocation then folds the
      // few slots in the same order, so all of them see the same bits.
      return `  let ${name}_sg = ${sg}(${value});
  if (sid == 0u) { ${arr}[t / sgs] = ${name}_sg; }
  workgroupBarrier();
  var ${name} = ${arr}[0];
  for (var i = 1u; i < (${wg}u + sgs - 1u) / sgs; i = i + 1u) { ${name} = ${
        op(name, `${arr}[i]`)
      }; }`;
    }
    this.#shared.push(`var<workgroup> ${arr}: array<f32, ${wg}>;`);
    return `  ${arr}[t] = ${value};
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (t < s) { ${arr}[t] = ${op(`${arr}[t]`, `${arr}[t + s]`)}; }
    workgroupBarrier();
  }
  let ${name} = ${arr}[0];`;
  }

  /** The finished kernel: shared arrays, helpers and `main` around `body`. */
  finish(op: string, body: string): KernelSource {
    const p = this.plan;
    let main: string;
    if (p.mode === "thread") {
      main = `@compute @workgroup_size(${p.wg})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let o = ${p.index};`;
    } else {
      const sg = p.subgroups
        ? ",\n  @builtin(subgroup_size) sgs: u32, @builtin(subgroup_invocation_id) sid: u32"
        : "";
      main = `@compute @workgroup_size(${p.wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32${sg}) {
  let o = ${p.index};`;
    }
    const code = [
      ...this.#shared,
      ...this.#helpers.values(),
      `${main}
  if (o >= ${p.rows}u) { return; }
  let rb = o * ${p.units}u;
${this.cacheDecl()}
${body}
}
`,
    ].join("\n");
    const label = `${op}_gpu_${p.mode === "thread" ? "thread" : `wg${p.wg}`}${p.quad ? "_v4" : ""}${
      p.subgroups ? "_sg" : ""
    }`;
    const choice: KernelChoice = p.mode === "thread"
      ? {
        algorithm: "thread per row",
        reason: `rows of ${p.units * (p.quad ? 4 : 1)} < ${THREAD_ROW_BELOW}: no barriers`,
      }
      : {
        algorithm: "workgroup per row",
        reason: `${p.wg} invocations, ${p.subgroups ? "subgroup" : "workgroup-tree"} reduction${
          p.cached ? "" : ", row re-read per pass"
        }`,
      };
    return {
      label,
      code,
      workgroups: p.workgroups,
      uses: this.io.uses,
      choice,
      ...(Object.keys(this.#arrayTypes).length ? { arrayTypes: { ...this.#arrayTypes } } : {}),
    };
  }
}
