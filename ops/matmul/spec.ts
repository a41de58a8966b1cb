/**
 * What every matmul emitter shares: the spec of one matmul, the tile and
 * emitted-kernel types, spec validation, the 3-D workgroup spread and the
 * operand load/store helpers.
 *
 * @module
 */

import { type KernelIo, type KernelSymbol, u32 as u } from "../wgsl/mod.ts";
import { numel } from "../../core/shape.ts";

/**
 * Tile configuration of a matmul kernel; see `emitMatmul`.
 *
 * @example
 * ```ts
 * import type { MatmulTile } from "./spec.ts";
 * const t: MatmulTile = {
 *   kind: "register", rowsPerThread: 24, colsPerThread: 16, wgCols: 16, wgRows: 1,
 *   colLayout: "blocked", kUnroll: 1,
 * };
 * ```
 */
export interface MatmulTile {
  /**
   * `"register"`: no workgroup memory; each invocation accumulates a
   * `rowsPerThread × colsPerThread` block over the whole K range.
   * `"splitk"`: for tiny M (decode GEMV): each workgroup owns a few output
   * columns, its invocations split K and reduce in workgroup memory.
   */
  kind: "register" | "splitk";
  /** Output rows per invocation (also the row count per workgroup when `wgRows` is 1). */
  rowsPerThread: number;
  /** Output columns per invocation. */
  colsPerThread: number;
  /** Invocations per workgroup along N. */
  wgCols: number;
  /** Invocations per workgroup along M (`"register"`) or along K (`"splitk"`). */
  wgRows: number;
  /**
   * Column assignment inside a workgroup. `"blocked"`: invocation `t` owns
   * columns `t*colsPerThread + j`; `"strided"`: it owns `t + j*wgCols`.
   */
  colLayout: "blocked" | "strided";
  /** K-loop unroll factor (1, 2, 4 or 8). */
  kUnroll: number;
}

/**
 * Everything the emitters need to know about one matmul; see `emitMatmul`.
 *
 * @example
 * ```ts
 * import type { MatmulKernelSpec } from "./spec.ts";
 * const spec: MatmulKernelSpec = {
 *   batch: 1, M: 64, N: 64, K: 64, transA: false, transB: true,
 *   aBatchStride: 0, bBatchStride: 0, elem: "f32",
 *   aDirect: true, bDirect: true, cDirect: true,
 *   maxInvocations: 256, maxWorkgroupStorage: 16384, maxWorkgroupsPerDim: 65535,
 * };
 * ```
 */
export interface MatmulKernelSpec {
  /** Number of batch matrices (at least 1). */
  batch: number;
  /** Rows of C. */
  M: number;
  /** Columns of C. */
  N: number;
  /** Reduction length. */
  K: number;
  /** `false`: A stored row-major `[M, K]`; `true`: A stored `[K, M]`. */
  transA: boolean;
  /** `false`: B stored `[K, N]`; `true`: B stored `[N, K]` (PyTorch Linear weights). */
  transB: boolean;
  /** Elements between consecutive batch matrices of A (0 broadcasts A). */
  aBatchStride: number;
  /** Elements between consecutive batch matrices of B (0 broadcasts B). */
  bBatchStride: number;
  /** Storage element type of A, B and C; accumulation is always f32. */
  elem: "f32" | "f16";
  /** `in0: array<elem>` may be read directly; otherwise only `in0_load(i)`. */
  aDirect: boolean;
  /** `in1: array<elem>` may be read directly; otherwise only `in1_load(i)`. */
  bDirect: boolean;
  /** `out0: array<elem>` may be written directly; otherwise only `out0_store(i, v)`. */
  cDirect: boolean;
  /** Device limit `maxComputeInvocationsPerWorkgroup`. */
  maxInvocations: number;
  /** Device limit `maxComputeWorkgroupStorageSize` in bytes. */
  maxWorkgroupStorage: number;
  /** Device limit `maxComputeWorkgroupsPerDimension`. */
  maxWorkgroupsPerDim: number;
  /** Override of the automatically chosen tile (tuning, benchmarks, tests). */
  tile?: MatmulTile;
}

/**
 * An emitted kernel: WGSL body, dispatch size, a label and the operand names
 * the body uses (the compiler, or a harness, declares exactly these).
 *
 * @example
 * ```ts
 * import type { MatmulKernel } from "./spec.ts";
 * const k: MatmulKernel = { code: "", workgroups: [1, 1, 1], label: "matmul_naive", uses: [] };
 * ```
 */
export interface MatmulKernel {
  /** WGSL helper functions and one `@compute` entry point named `main`. */
  code: string;
  /** Workgroup counts to pass to `dispatchWorkgroups`. */
  workgroups: [number, number, number];
  /** Short human-readable name of the kernel variant, e.g. `"matmul_rb4x16"`. */
  label: string;
  /** Operand names `code` uses (`in0`, `in1_load`, `out0_store`, …), recorded as emitted. */
  uses: readonly KernelSymbol[];
}

/**
 * Checks the sizes and strides of a spec: RangeError/TypeError naming the field.
 *
 * @example
 * ```ts ignore
 * checkSpec({ ...spec, M: 0 }); // RangeError: Matmul M must be a positive integer
 * ```
 */
export function checkSpec(spec: MatmulKernelSpec): void {
  for (const key of ["batch", "M", "N", "K"] as const) {
    const v = spec[key];
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(
        `Matmul ${key} must be a positive integer: received ${v}`,
      );
    }
  }
  for (const key of ["aBatchStride", "bBatchStride"] as const) {
    const v = spec[key];
    if (!Number.isInteger(v) || v < 0) {
      throw new RangeError(
        `Matmul ${key} must be a non-negative integer: received ${v}`,
      );
    }
  }
  if (spec.elem !== "f32" && spec.elem !== "f16") {
    throw new TypeError(
      `Matmul elem must be "f32" or "f16": received "${spec.elem}"`,
    );
  }
  const maxIndex = Math.max(
    (spec.batch - 1) * spec.aBatchStride + spec.M * spec.K,
    (spec.batch - 1) * spec.bBatchStride + spec.K * spec.N,
    spec.batch * spec.M * spec.N,
  );
  if (maxIndex > 0xffffffff) {
    throw new RangeError(
      `Matmul operands are too large for u32 indexing: ${maxIndex} elements`,
    );
  }
}

/**
 * Lays `total` workgroups out on a grid whose dimensions each stay within
 * `maxPerDim`, filling x, then y, then z (a 3-D spread: a batched matmul can
 * outgrow the 2-D `grid` of ops/wgsl); the kernel recovers the linear index
 * with {@linkcode linearWorkgroup} and skips the excess.
 *
 * @example
 * ```ts
 * import { spreadGrid } from "./spec.ts";
 * spreadGrid(160, 6); // [6, 6, 5]
 * ```
 */
export function spreadGrid(
  total: number,
  maxPerDim: number,
): [number, number, number] {
  if (total <= maxPerDim) return [total, 1, 1];
  const x = maxPerDim;
  const rest = Math.ceil(total / x);
  if (rest <= maxPerDim) return [x, rest, 1];
  const y = maxPerDim;
  const z = Math.ceil(rest / y);
  if (z > maxPerDim) {
    throw new RangeError(
      `Matmul needs ${total} workgroups, more than a 3-D grid of ${maxPerDim} per dimension holds`,
    );
  }
  return [x, y, z];
}

/**
 * WGSL that turns `workgroup_id` into a linear index `wg` and returns past `total`.
 *
 * @example
 * ```ts
 * import { linearWorkgroup } from "./spec.ts";
 * linearWorkgroup([4, 1, 1], 4); // "  let wg = wid.x;\n"
 * ```
 */
export function linearWorkgroup(
  grid: [number, number, number],
  total: number,
): string {
  const [gx, gy, gz] = grid;
  const expr = gy === 1 && gz === 1 ? "wid.x" : `wid.x + wid.y * ${u(gx)} + wid.z * ${u(gx * gy)}`;
  const guard = gx * gy * gz > total ? `  if (wg >= ${u(total)}) { return; }\n` : "";
  return `  let wg = ${expr};\n${guard}`;
}

/**
 * The load/store helpers every tiled and naive variant calls (`mm_a`, `mm_b`,
 * `mm_c`), reaching the operands through names `io` records: the raw arrays
 * where the spec says they are direct, else the accessor functions.
 *
 * @example
 * ```ts ignore
 * const io = new KernelIo();
 * const code = operandHelpers(spec, io); // fn mm_a(i: u32) -> f32 { return f32(in0[i]); } …
 * ```
 */
export function operandHelpers(spec: MatmulKernelSpec, io: KernelIo): string {
  const e = spec.elem;
  const lda = spec.aDirect ? `${io.in(0)}[i]` : io.load(0, "i");
  const ldb = spec.bDirect ? `${io.in(1)}[i]` : io.load(1, "i");
  const stc = spec.cDirect ? `${io.out(0)}[i] = ${e}(v);` : `${io.store(0, "i", `${e}(v)`)};`;
  return [
    `fn mm_a(i: u32) -> f32 { return f32(${lda}); }`,
    `fn mm_b(i: u32) -> f32 { return f32(${ldb}); }`,
    `fn mm_c(i: u32, v: f32) { ${stc} }`,
    "",
  ].join("\n");
}

/**
 * Batch stride of an operand when its batch dims are either all present or all
 * broadcast (`matrix` or 0); undefined for partial broadcasts, which take the
 * general kernel.
 *
 * @example
 * ```ts
 * import { uniformStride } from "./spec.ts";
 * uniformStride([3, 4, 5], [3], 20); // 20
 * uniformStride([4, 5], [3], 20); // 0
 * ```
 */
export function uniformStride(
  shape: readonly number[],
  batch: readonly number[],
  matrix: number,
): number | undefined {
  const bs = shape.slice(0, shape.length - 2);
  if (numel(bs) === 1) return 0;
  const pad = [...new Array(batch.length - bs.length).fill(1), ...bs];
  return pad.every((d, k) => d === batch[k]) ? matrix : undefined;
}
