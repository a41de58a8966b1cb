/**
 * Tile choice for the tiled matmul kernels, tile validation, and the tile
 * names the `tile` attribute of `matmul` takes (a kernel's label without its
 * `matmul_` prefix, so a label read off a plan forces that kernel again).
 *
 * @module
 */

import type { MatmulKernelSpec, MatmulTile } from "./spec.ts";

/**
 * Picks the tile for a shape (or returns `spec.tile` when given).
 *
 * Tuned on lavapipe, where every storage load costs a per-lane scalar loop
 * (about 8 scalar loads per SIMD load) and FMAs are cheap even with
 * accumulators spilled to the stack. Per K step an invocation issues
 * `rowsPerThread + colsPerThread` loads for `rowsPerThread × colsPerThread`
 * FMAs, so big, roughly square register blocks win. Measured at 1024³ f32
 * (GFLOP/s incl. one readback, on a host shared with other jobs, so ranges):
 * 4×16 ≈ 8, 8×8 ≈ 9, 8×16 ≈ 12, 16×16 ≈ 12–17, 24×16 ≈ 16–19, 32×16 ≈ 17–19
 * (about 10% less CPU time than 24×16, but 2.5 s of LLVM compile time), 48×16
 * and 16×32 slower and very slow to compile. Spreading invocations over rows
 * (`wgRows > 1`) was 2–3× slower than giving all invocations of a workgroup
 * the same rows; 16 invocations per workgroup beat 8 and 32; "blocked"
 * columns were on par with "strided"; K unrolling did not help (the body is
 * already long). Staging A in workgroup memory as vec4 (one read instead of
 * four) was 1.6× slower: workgroup-memory reads are per-lane loops too, and
 * the barriers break the accumulators' register allocation. Walking
 * workgroups along N first (consecutive workgroups share A rows, which stay
 * in L2) was 2× faster at 2048³ than walking along M first.
 *
 * When the register kernel would make fewer than 4 workgroups but K is long
 * (e.g. decode GEMV with small N), the split-K kernel keeps all cores busy.
 *
 * @example
 * ```ts
 * import { chooseTile } from "./tiles.ts";
 * const t = chooseTile({
 *   batch: 1, M: 1024, N: 1024, K: 1024, transA: false, transB: false,
 *   aBatchStride: 0, bBatchStride: 0, elem: "f32",
 *   aDirect: true, bDirect: true, cDirect: true,
 *   maxInvocations: 256, maxWorkgroupStorage: 16384, maxWorkgroupsPerDim: 65535,
 * });
 * console.log(t.rowsPerThread, t.colsPerThread); // 16 16
 * ```
 */
export function chooseTile(spec: MatmulKernelSpec): MatmulTile {
  if (spec.tile) return spec.tile;
  const { M, N, K, batch } = spec;
  // The register block is fully unrolled, and LLVM's compile time at the first
  // dispatch grows with it much faster than the block's speed does (lavapipe,
  // bench/matmul_compile_bench.ts, compile / run at 256×256×1024: 32×16 3.3 s /
  // 37 ms, 24×16 1.9 s / 27 ms, 16×16 1.1 s / 30 ms, 8×16 0.28 s / 36 ms). So a
  // block pays for its compile time only with enough work per run: under
  // ~1 GFLOP 8 rows, under ~8.6 GFLOP 16, above that 32 (big M and N) or 24.
  const flops = 2 * batch * M * N * K;
  const rm = flops < 2 ** 30
    ? Math.min(M, 8)
    : flops < 2 ** 33
    ? Math.min(M, 16)
    : M >= 256 && N >= 256
    ? 32
    : Math.min(M, 24);
  const rn = Math.min(N, 16);
  const wgCols = Math.max(1, Math.min(16, spec.maxInvocations, Math.ceil(N / rn)));
  const register: MatmulTile = {
    kind: "register",
    rowsPerThread: rm,
    colsPerThread: rn,
    wgCols,
    wgRows: 1,
    colLayout: "blocked",
    kUnroll: 1,
  };
  const groups = Math.ceil(M / rm) * Math.ceil(N / (rn * wgCols)) * batch;
  if (groups >= 4 || K < 256) return register;
  // Split K: few columns per invocation, up to 64 invocations per workgroup.
  const srm = Math.min(M, 8);
  const srn = Math.min(N, 4);
  const c = Math.max(1, Math.min(16, Math.ceil(N / srn)));
  let s = Math.max(1, Math.min(Math.floor(64 / c), Math.floor(K / 64)));
  s = Math.min(s, Math.floor(spec.maxInvocations / c));
  while (s > 1 && s * c * srm * srn * 4 > spec.maxWorkgroupStorage) s--;
  if (s < 2) return register;
  return {
    kind: "splitk",
    rowsPerThread: srm,
    colsPerThread: srn,
    wgCols: c,
    wgRows: s,
    colLayout: "strided",
    kUnroll: 1,
  };
}

/**
 * Checks a tile's fields and that its workgroup fits the device: a RangeError
 * naming the field or the limit.
 *
 * @example
 * ```ts ignore
 * validateTile(spec, { ...tile, wgCols: 64, wgRows: 8 }); // RangeError: … invocations per workgroup …
 * ```
 */
export function validateTile(spec: MatmulKernelSpec, t: MatmulTile): void {
  const ints: (keyof MatmulTile)[] = [
    "rowsPerThread",
    "colsPerThread",
    "wgCols",
    "wgRows",
    "kUnroll",
  ];
  for (const key of ints) {
    const v = t[key] as number;
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(
        `Matmul tile ${key} must be a positive integer: received ${v}`,
      );
    }
  }
  if (t.wgCols * t.wgRows > spec.maxInvocations) {
    throw new RangeError(
      `Matmul tile needs ${
        t.wgCols * t.wgRows
      } invocations per workgroup, more than the device limit ${spec.maxInvocations}`,
    );
  }
}

/**
 * The name of a tile: the label of the kernel it makes, without `matmul_`
 * (`rb{rows}x{cols}_wg{wgRows}x{wgCols}{b|s}_u{kUnroll}` for a register tile,
 * `splitk{wgRows}_rb{rows}x{cols}_wg{wgCols}{b|s}` for split-K, which does not
 * unroll). The `tile` attribute of `matmul` takes it.
 *
 * @example
 * ```ts
 * import { tileName } from "./tiles.ts";
 * tileName({
 *   kind: "register", rowsPerThread: 3, colsPerThread: 4, wgCols: 4, wgRows: 2,
 *   colLayout: "strided", kUnroll: 4,
 * }); // "rb3x4_wg2x4s_u4"
 * ```
 */
export function tileName(t: MatmulTile): string {
  const layout = t.colLayout === "strided" ? "s" : "b";
  return t.kind === "splitk"
    ? `splitk${t.wgRows}_rb${t.rowsPerThread}x${t.colsPerThread}_wg${t.wgCols}${layout}`
    : `rb${t.rowsPerThread}x${t.colsPerThread}_wg${t.wgRows}x${t.wgCols}${layout}_u${t.kUnroll}`;
}

const REGISTER_NAME = /^rb(\d+)x(\d+)_wg(\d+)x(\d+)([bs])_u(\d+)$/;
const SPLITK_NAME = /^splitk(\d+)_rb(\d+)x(\d+)_wg(\d+)([bs])$/;

/**
 * The tile a {@linkcode tileName} names, or undefined when `name` names none.
 * Every count in the name must be a positive integer (a RangeError naming the
 * tile otherwise); device limits are checked when a kernel is emitted.
 *
 * @example
 * ```ts
 * import { parseTile } from "./tiles.ts";
 * parseTile("splitk7_rb2x3_wg5b")?.wgRows; // 7
 * parseTile("naive"); // undefined
 * ```
 */
export function parseTile(name: string): MatmulTile | undefined {
  let t: MatmulTile | undefined;
  const r = REGISTER_NAME.exec(name);
  if (r) {
    t = {
      kind: "register",
      rowsPerThread: Number(r[1]),
      colsPerThread: Number(r[2]),
      wgRows: Number(r[3]),
      wgCols: Number(r[4]),
      colLayout: r[5] === "s" ? "strided" : "blocked",
      kUnroll: Number(r[6]),
    };
  }
  const s = SPLITK_NAME.exec(name);
  if (s) {
    t = {
      kind: "splitk",
      wgRows: Number(s[1]),
      rowsPerThread: Number(s[2]),
      colsPerThread: Number(s[3]),
      wgCols: Number(s[4]),
      colLayout: s[5] === "s" ? "strided" : "blocked",
      kUnroll: 1,
    };
  }
  if (t) {
    for (const key of ["rowsPerThread", "colsPerThread", "wgCols", "wgRows", "kUnroll"] as const) {
      if (!(t[key] >= 1 && Number.isSafeInteger(t[key]))) {
        throw new RangeError(`matmul: tile "${name}" has ${key} ${t[key]}, not a positive integer`);
      }
    }
  }
  return t;
}
