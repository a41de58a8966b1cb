/**
 * @file WGSL emitters for batched matrix multiplication `C = A · B`.
 *
 * The emitters produce only the kernel body: helper functions plus one
 * `@compute` entry point. The caller (the compiler) declares the bindings
 * (`in0`, `in1`, `out0`), the `enable f16;` directive and the fused
 * prologue/epilogue functions (`in0_load`, `in1_load`, `out0_store`), so that
 * an elementwise prologue or epilogue can be fused into the matmul.
 *
 * Why the kernels look the way they do (measured on Mesa lavapipe, LLVM 15,
 * 256-bit SIMD, 2 CPU cores; see `bench/matmul_kernel_bench.ts`):
 *
 * - lavapipe runs one workgroup on one CPU thread and maps invocations onto
 *   SIMD lanes (8 at a time). Mesa 22's lavapipe emits every storage (and
 *   workgroup-memory) load as a loop over the 8 lanes with a per-lane
 *   exec-mask and bounds check, whatever the index; FMAs on the other hand are
 *   full 8-wide vector ops. Loads issued per FMA is therefore the number to
 *   minimise: each invocation owns a big `rowsPerThread × colsPerThread`
 *   block, so per K step it issues `rowsPerThread + colsPerThread` loads for
 *   `rowsPerThread × colsPerThread` FMAs.
 * - All invocations of a workgroup share the same rows of A and spread over
 *   columns of B (measured 2–3× faster than also spreading them over rows):
 *   the few A rows a workgroup streams stay hot in L1/L2.
 * - Workgroup memory and barriers are expensive (barriers are coroutine
 *   switches), and CPU caches already do what workgroup memory does on a GPU,
 *   so the register kernel uses no workgroup memory at all.
 * - Each invocation owns a block of `rowsPerThread × colsPerThread` outputs held
 *   in registers, so every loaded element feeds several FMAs.
 * - Out-of-range rows and columns are clamped once, before the K loop, so the
 *   K loop has no bounds checks: edge invocations compute duplicates of valid
 *   outputs and simply skip the stores.
 *
 * @module
 */

/** Tile configuration of a matmul kernel; see {@linkcode emitMatmul}. */
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

/** Everything the emitters need to know about one matmul; see {@linkcode emitMatmul}. */
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

/** An emitted kernel: WGSL body, dispatch size and a label. */
export interface MatmulKernel {
  /** WGSL helper functions and one `@compute` entry point named `main`. */
  code: string;
  /** Workgroup counts to pass to `dispatchWorkgroups`. */
  workgroups: [number, number, number];
  /** Short human-readable name of the kernel variant, e.g. `"matmul_rb4x16"`. */
  label: string;
}

function checkSpec(spec: MatmulKernelSpec): void {
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

/** `123u`, the WGSL literal of a non-negative integer. */
function u(n: number): string {
  return `${n}u`;
}

/**
 * Lays `total` workgroups out on a grid whose dimensions each stay within
 * `maxPerDim`; the kernel recovers the linear index and skips the excess.
 */
function spreadGrid(
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

/** WGSL that turns `workgroup_id` into a linear index `wg` and returns past `total`. */
function linearWorkgroup(
  grid: [number, number, number],
  total: number,
): string {
  const [gx, gy, gz] = grid;
  const expr = gy === 1 && gz === 1 ? "wid.x" : `wid.x + wid.y * ${u(gx)} + wid.z * ${u(gx * gy)}`;
  const guard = gx * gy * gz > total ? `  if (wg >= ${u(total)}) { return; }\n` : "";
  return `  let wg = ${expr};\n${guard}`;
}

/** Load/store helper functions shared by every variant. */
function helpers(spec: MatmulKernelSpec): string {
  const e = spec.elem;
  const lda = spec.aDirect ? "in0[i]" : "in0_load(i)";
  const ldb = spec.bDirect ? "in1[i]" : "in1_load(i)";
  const stc = spec.cDirect ? `out0[i] = ${e}(v);` : `out0_store(i, ${e}(v));`;
  return [
    `fn mm_a(i: u32) -> f32 { return f32(${lda}); }`,
    `fn mm_b(i: u32) -> f32 { return f32(${ldb}); }`,
    `fn mm_c(i: u32, v: f32) { ${stc} }`,
    "",
  ].join("\n");
}

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
 * import { chooseTile } from "./matmul_kernel.ts";
 * const t = chooseTile({
 *   batch: 1, M: 1024, N: 1024, K: 1024, transA: false, transB: false,
 *   aBatchStride: 0, bBatchStride: 0, elem: "f32",
 *   aDirect: true, bDirect: true, cDirect: true,
 *   maxInvocations: 256, maxWorkgroupStorage: 16384, maxWorkgroupsPerDim: 65535,
 * });
 * console.log(t.rowsPerThread, t.colsPerThread); // 32 16
 * ```
 */
export function chooseTile(spec: MatmulKernelSpec): MatmulTile {
  if (spec.tile) return spec.tile;
  const { M, N, K, batch } = spec;
  // 32 rows pay off once the problem is big enough that run time dominates
  // the (larger) LLVM compile time of the fully unrolled 32×16 block.
  const rm = M >= 256 && N >= 256 ? 32 : Math.min(M, 24);
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

function validateTile(spec: MatmulKernelSpec, t: MatmulTile): void {
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
 * Register-blocked kernel without workgroup memory. Workgroup `(tm, tn, b)`
 * owns rows `tm*TM ..` and columns `tn*TN ..` of batch `b`; invocation
 * `(tx, ty)` owns `rowsPerThread` rows and `colsPerThread` columns.
 */
function emitRegister(spec: MatmulKernelSpec, t: MatmulTile): MatmulKernel {
  const { M, N, K, batch } = spec;
  const RM = t.rowsPerThread, RN = t.colsPerThread;
  const TM = RM * t.wgRows, TN = RN * t.wgCols;
  const tilesM = Math.ceil(M / TM), tilesN = Math.ceil(N / TN);
  const total = tilesM * tilesN * batch;
  const grid = spreadGrid(total, spec.maxWorkgroupsPerDim);
  const U = Math.min(t.kUnroll, K);
  const kMain = K - (K % U);

  const L: string[] = [];
  L.push(helpers(spec));
  L.push(`@compute @workgroup_size(${t.wgCols * t.wgRows})`);
  L.push(
    "fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {",
  );
  L.push(linearWorkgroup(grid, total));
  L.push(`  let tn = wg % ${u(tilesN)};`);
  L.push(`  let tm = (wg / ${u(tilesN)}) % ${u(tilesM)};`);
  L.push(`  let b = wg / ${u(tilesN * tilesM)};`);
  L.push(`  let tx = lid % ${u(t.wgCols)};`);
  L.push(`  let ty = lid / ${u(t.wgCols)};`);
  L.push(`  let row0 = tm * ${u(TM)} + ty * ${u(RM)};`);
  L.push(`  let aBase = b * ${u(spec.aBatchStride)};`);
  L.push(`  let bBase = b * ${u(spec.bBatchStride)};`);
  L.push(`  let cBase = b * ${u(M * N)};`);
  // Clamped row / column indices: loads stay in bounds without checks.
  for (let i = 0; i < RM; i++) {
    L.push(`  let r${i} = min(row0 + ${u(i)}, ${u(M - 1)});`);
  }
  for (let j = 0; j < RN; j++) {
    const col = t.colLayout === "blocked"
      ? `tn * ${u(TN)} + tx * ${u(RN)} + ${u(j)}`
      : `tn * ${u(TN)} + tx + ${u(j * t.wgCols)}`;
    L.push(`  let col${j} = ${col};`);
    L.push(`  let c${j} = min(col${j}, ${u(N - 1)});`);
  }
  // Per-row / per-column base offsets so the K loop only adds k (times a stride).
  for (let i = 0; i < RM; i++) {
    L.push(
      spec.transA ? `  let pa${i} = aBase + r${i};` : `  let pa${i} = aBase + r${i} * ${u(K)};`,
    );
  }
  for (let j = 0; j < RN; j++) {
    L.push(
      spec.transB ? `  let pb${j} = bBase + c${j} * ${u(K)};` : `  let pb${j} = bBase + c${j};`,
    );
  }
  for (let i = 0; i < RM; i++) {
    for (let j = 0; j < RN; j++) L.push(`  var acc${i}_${j} = 0.0;`);
  }
  const aIdx = (i: number, k: string) =>
    spec.transA ? `pa${i} + (${k}) * ${u(M)}` : `pa${i} + ${k}`;
  const bIdx = (j: number, k: string) =>
    spec.transB ? `pb${j} + ${k}` : `pb${j} + (${k}) * ${u(N)}`;
  const step = (k: string, ind: string) => {
    for (let i = 0; i < RM; i++) {
      L.push(`${ind}let a${i} = mm_a(${aIdx(i, k)});`);
    }
    for (let j = 0; j < RN; j++) {
      L.push(`${ind}let b${j} = mm_b(${bIdx(j, k)});`);
    }
    for (let i = 0; i < RM; i++) {
      for (let j = 0; j < RN; j++) {
        L.push(`${ind}acc${i}_${j} = fma(a${i}, b${j}, acc${i}_${j});`);
      }
    }
  };
  if (kMain > 0) {
    L.push(`  for (var k = 0u; k < ${u(kMain)}; k += ${u(U)}) {`);
    for (let s = 0; s < U; s++) {
      L.push("    {");
      step(s === 0 ? "k" : `k + ${u(s)}`, "      ");
      L.push("    }");
    }
    L.push("  }");
  }
  for (let k = kMain; k < K; k++) {
    L.push("  {");
    step(u(k), "    ");
    L.push("  }");
  }
  for (let i = 0; i < RM; i++) {
    for (let j = 0; j < RN; j++) {
      L.push(
        `  if (row0 + ${u(i)} < ${u(M)} && col${j} < ${u(N)}) { mm_c(cBase + (row0 + ${u(i)}) * ${
          u(N)
        } + col${j}, acc${i}_${j}); }`,
      );
    }
  }
  L.push("}");
  return {
    code: L.join("\n") + "\n",
    workgroups: grid,
    label: `matmul_rb${RM}x${RN}_wg${t.wgRows}x${t.wgCols}${
      t.colLayout === "strided" ? "s" : "b"
    }_u${U}`,
  };
}

/**
 * Split-K kernel for tiny M (decode GEMV) when the register kernel would
 * leave the CPU cores idle: a workgroup owns `colsPerThread × wgCols` columns,
 * its `wgRows` invocation rows each reduce one contiguous K chunk, and a single
 * barrier plus a workgroup-memory reduction combines the partial sums.
 */
function emitSplitK(spec: MatmulKernelSpec, t: MatmulTile): MatmulKernel {
  const { M, N, K, batch } = spec;
  const RM = t.rowsPerThread, RN = t.colsPerThread;
  const C = t.wgCols, S = t.wgRows;
  const TM = RM, TN = RN * C;
  const tilesM = Math.ceil(M / TM), tilesN = Math.ceil(N / TN);
  const total = tilesM * tilesN * batch;
  const grid = spreadGrid(total, spec.maxWorkgroupsPerDim);
  const chunk = Math.ceil(K / S);
  const outs = C * RM * RN;
  if (S * outs * 4 > spec.maxWorkgroupStorage) {
    throw new RangeError(
      `Matmul split-K tile needs ${
        S * outs * 4
      } bytes of workgroup memory, more than the device limit ${spec.maxWorkgroupStorage}`,
    );
  }
  const L: string[] = [];
  L.push(helpers(spec));
  L.push(`var<workgroup> mm_red: array<f32, ${S * outs}>;`);
  L.push(`@compute @workgroup_size(${C * S})`);
  L.push(
    "fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {",
  );
  L.push(linearWorkgroup(grid, total));
  L.push(`  let tn = wg % ${u(tilesN)};`);
  L.push(`  let tm = (wg / ${u(tilesN)}) % ${u(tilesM)};`);
  L.push(`  let b = wg / ${u(tilesN * tilesM)};`);
  L.push(`  let cx = lid % ${u(C)};`);
  L.push(`  let ks = lid / ${u(C)};`);
  L.push(`  let row0 = tm * ${u(TM)};`);
  L.push(`  let aBase = b * ${u(spec.aBatchStride)};`);
  L.push(`  let bBase = b * ${u(spec.bBatchStride)};`);
  for (let i = 0; i < RM; i++) {
    L.push(`  let r${i} = min(row0 + ${u(i)}, ${u(M - 1)});`);
    L.push(
      spec.transA ? `  let pa${i} = aBase + r${i};` : `  let pa${i} = aBase + r${i} * ${u(K)};`,
    );
  }
  for (let j = 0; j < RN; j++) {
    const col = t.colLayout === "blocked"
      ? `tn * ${u(TN)} + cx * ${u(RN)} + ${u(j)}`
      : `tn * ${u(TN)} + cx + ${u(j * C)}`;
    L.push(`  let c${j} = min(${col}, ${u(N - 1)});`);
    L.push(
      spec.transB ? `  let pb${j} = bBase + c${j} * ${u(K)};` : `  let pb${j} = bBase + c${j};`,
    );
  }
  for (let i = 0; i < RM; i++) {
    for (let j = 0; j < RN; j++) L.push(`  var acc${i}_${j} = 0.0;`);
  }
  L.push(`  let k0 = ks * ${u(chunk)};`);
  L.push(`  let k1 = min(k0 + ${u(chunk)}, ${u(K)});`);
  L.push("  for (var k = k0; k < k1; k++) {");
  for (let i = 0; i < RM; i++) {
    L.push(
      `    let a${i} = mm_a(${spec.transA ? `pa${i} + k * ${u(M)}` : `pa${i} + k`});`,
    );
  }
  for (let j = 0; j < RN; j++) {
    L.push(
      `    let b${j} = mm_b(${spec.transB ? `pb${j} + k` : `pb${j} + k * ${u(N)}`});`,
    );
  }
  for (let i = 0; i < RM; i++) {
    for (let j = 0; j < RN; j++) {
      L.push(`    acc${i}_${j} = fma(a${i}, b${j}, acc${i}_${j});`);
    }
  }
  L.push("  }");
  // Partial sums laid out [i*RN + j][ks][cx]: the reduction below reads them
  // with unit stride in cx.
  for (let i = 0; i < RM; i++) {
    for (let j = 0; j < RN; j++) {
      L.push(
        `  mm_red[(${u((i * RN + j) * S)} + ks) * ${u(C)} + cx] = acc${i}_${j};`,
      );
    }
  }
  L.push("  workgroupBarrier();");
  L.push(`  for (var o = lid; o < ${u(outs)}; o += ${u(C * S)}) {`);
  L.push(`    let ox = o % ${u(C)};`);
  L.push(`    let ij = o / ${u(C)};`);
  L.push(`    let i = ij / ${u(RN)};`);
  L.push(`    let j = ij % ${u(RN)};`);
  L.push("    var sum = 0.0;");
  L.push(`    for (var s = 0u; s < ${u(S)}; s++) {`);
  L.push(`      sum += mm_red[(ij * ${u(S)} + s) * ${u(C)} + ox];`);
  L.push("    }");
  L.push("    let row = row0 + i;");
  L.push(
    t.colLayout === "blocked"
      ? `    let col = tn * ${u(TN)} + ox * ${u(RN)} + j;`
      : `    let col = tn * ${u(TN)} + ox + j * ${u(C)};`,
  );
  L.push(
    `    if (row < ${u(M)} && col < ${u(N)}) { mm_c(b * ${u(M * N)} + row * ${u(N)} + col, sum); }`,
  );
  L.push("  }");
  L.push("}");
  return {
    code: L.join("\n") + "\n",
    workgroups: grid,
    label: `matmul_splitk${S}_rb${RM}x${RN}_wg${C}${t.colLayout === "strided" ? "s" : "b"}`,
  };
}

/**
 * Emits a fast tiled matmul kernel for `spec`, choosing the tile by shape and
 * device limits unless `spec.tile` overrides it.
 *
 * @example
 * ```ts
 * import { emitMatmul } from "./matmul_kernel.ts";
 * const k = emitMatmul({
 *   batch: 1, M: 64, N: 64, K: 64, transA: false, transB: true,
 *   aBatchStride: 0, bBatchStride: 0, elem: "f32",
 *   aDirect: true, bDirect: true, cDirect: true,
 *   maxInvocations: 256, maxWorkgroupStorage: 16384, maxWorkgroupsPerDim: 65535,
 * });
 * console.log(k.label, k.workgroups);
 * ```
 */
export function emitMatmul(spec: MatmulKernelSpec): MatmulKernel {
  checkSpec(spec);
  const t = chooseTile(spec);
  validateTile(spec, t);
  return t.kind === "splitk" ? emitSplitK(spec, t) : emitRegister(spec, t);
}

/**
 * Emits the reference kernel: one invocation per output element, scalar
 * loads. It is the floor that benchmarks compare {@linkcode emitMatmul} to.
 *
 * @example
 * ```ts
 * import { naiveMatmul } from "./matmul_kernel.ts";
 * const k = naiveMatmul({
 *   batch: 2, M: 3, N: 5, K: 7, transA: false, transB: false,
 *   aBatchStride: 21, bBatchStride: 0, elem: "f32",
 *   aDirect: true, bDirect: true, cDirect: true,
 *   maxInvocations: 256, maxWorkgroupStorage: 16384, maxWorkgroupsPerDim: 65535,
 * });
 * console.log(k.workgroups); // [1, 1, 1]
 * ```
 */
export function naiveMatmul(spec: MatmulKernelSpec): MatmulKernel {
  checkSpec(spec);
  const { M, N, K, batch } = spec;
  const wgSize = Math.min(64, spec.maxInvocations);
  const outputs = batch * M * N;
  const total = Math.ceil(outputs / wgSize);
  const grid = spreadGrid(total, spec.maxWorkgroupsPerDim);
  const aIdx = spec.transA ? `aBase + k * ${u(M)} + m` : `aBase + m * ${u(K)} + k`;
  const bIdx = spec.transB ? `bBase + n * ${u(K)} + k` : `bBase + k * ${u(N)} + n`;
  const code = `${helpers(spec)}
@compute @workgroup_size(${wgSize})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${linearWorkgroup(grid, total)}  let i = wg * ${u(wgSize)} + lid;
  if (i >= ${u(outputs)}) { return; }
  let n = i % ${u(N)};
  let m = (i / ${u(N)}) % ${u(M)};
  let b = i / ${u(M * N)};
  let aBase = b * ${u(spec.aBatchStride)};
  let bBase = b * ${u(spec.bBatchStride)};
  var acc = 0.0;
  for (var k = 0u; k < ${u(K)}; k++) {
    acc = fma(mm_a(${aIdx}), mm_b(${bIdx}), acc);
  }
  mm_c(i, acc);
}
`;
  return { code, workgroups: grid, label: "matmul_naive" };
}

/** Shape of a few-row matmul against a `[N, K]` weight; see {@linkcode emitGemv}. */
export interface GemvSpec {
  /** Rows of A and C (tokens in a decode step), at most {@linkcode GEMV_MAX_ROWS}. */
  rows: number;
  /** Output columns (rows of the weight). */
  N: number;
  /** Reduction length, a multiple of 4. */
  K: number;
  /** Storage type of A, B and C (accumulation is f32). */
  elem: "f32" | "f16";
  /** `in0` may be read directly as `array<vec4<elem>>`; else four `in0_load` calls per vec4. */
  aDirect: boolean;
  /** `out0` may be written directly; else `out0_store`. */
  cDirect: boolean;
  /**
   * `in1` is bound whole (`"direct"`), or in segments because it exceeds one binding
   * (`"segmented"`: read through `in1_vget`, which picks the segment). Default direct.
   */
  bAccess?: "direct" | "segmented";
  /** Device limit `maxComputeWorkgroupsPerDimension`. */
  maxWorkgroupsPerDim: number;
}

/** Rows a GEMV kernel handles in registers; more rows take the tiled matmul. */
export const GEMV_MAX_ROWS = 4;

/**
 * A GEMV for decode: C[r, n] = Σ_k A[r, k]·W[n, k] with W stored `[N, K]` (Linear
 * layout) and few rows. Each invocation owns `rows × 4` outputs and walks K four
 * elements at a time with vec4 loads of A and W; no workgroup memory, no barriers.
 * On llvmpipe a scalar storage load costs a per-lane gather, so vec4 loads of the
 * weight rows are what lets a decode step read weights near memory speed. `in1`
 * must be bound as `array<vec4<elem>>` (the caller sets `arrayTypes`).
 *
 * @example
 * ```ts
 * import { emitGemv } from "./matmul_kernel.ts";
 * const k = emitGemv({ rows: 1, N: 4096, K: 4096, elem: "f32", aDirect: true, cDirect: true, maxWorkgroupsPerDim: 65535 });
 * k.workgroups; // [64, 1, 1]
 * ```
 */
export function emitGemv(spec: GemvSpec): MatmulKernel {
  const { rows: R, N, K, elem } = spec;
  if (R < 1 || R > GEMV_MAX_ROWS || K % 4 !== 0 || K < 4 || N < 1) {
    throw new RangeError(`emitGemv: rows ${R}, K ${K} (multiple of 4), N ${N} out of range`);
  }
  const C = 4; // columns per invocation
  const K4 = K / 4;
  const invocations = Math.ceil(N / C);
  // Invocations per workgroup: two 8-lane SIMD batches on llvmpipe; one batch when
  // that leaves fewer than 4 workgroups (x_proj's 64 columns), since a workgroup
  // runs on one core there.
  const WG = Math.ceil(invocations / 16) < 4 ? 8 : 16;
  const groups = Math.ceil(invocations / WG);
  const gx = Math.min(groups, spec.maxWorkgroupsPerDim);
  const gy = Math.ceil(groups / gx);
  const loadA = (r: number) =>
    spec.aDirect
      ? `vec4<f32>(in0[${r * K4}u + k4])`
      : `vec4<f32>(f32(in0_load(${r * K}u + k4 * 4u)), f32(in0_load(${r * K}u + k4 * 4u + 1u)), ` +
        `f32(in0_load(${r * K}u + k4 * 4u + 2u)), f32(in0_load(${r * K}u + k4 * 4u + 3u)))`;
  const acc: string[] = [];
  const body: string[] = [];
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) acc.push(`  var acc_${r}_${c} = vec4<f32>(0.0);`);
  }
  const readB = spec.bAccess === "segmented"
    ? (i: string) => `in1_vget(${i})`
    : (i: string) => `in1[${i}]`;
  for (let c = 0; c < C; c++) body.push(`    let w${c} = vec4<f32>(${readB(`row${c} + k4`)});`);
  for (let r = 0; r < R; r++) {
    body.push(`    let a${r} = ${loadA(r)};`);
    for (let c = 0; c < C; c++) body.push(`    acc_${r}_${c} = fma(a${r}, w${c}, acc_${r}_${c});`);
  }
  const stores: string[] = [];
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) {
      const v = `${elem}(dot(acc_${r}_${c}, vec4<f32>(1.0)))`;
      const i = `${r * N}u + n0 + ${c}u`;
      stores.push(
        `  if (n0 + ${c}u < ${N}u) { ${
          spec.cDirect ? `out0[${i}] = ${v};` : `out0_store(${i}, ${v});`
        } }`,
      );
    }
  }
  const code = `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let inv = gid.x + gid.y * ${gx * WG}u;
  if (inv >= ${invocations}u) { return; }
  let n0 = inv * ${C}u;
  // Columns past N re-read the last row; their results are not stored.
${
    Array.from({ length: C }, (_, c) => `  let row${c} = min(n0 + ${c}u, ${N - 1}u) * ${K4}u;`)
      .join("\n")
  }
${acc.join("\n")}
  for (var k4 = 0u; k4 < ${K4}u; k4++) {
${body.join("\n")}
  }
${stores.join("\n")}
}`;
  return { code, workgroups: [gx, gy, 1], label: `gemv_r${R}x${C}` };
}
