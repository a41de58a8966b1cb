/**
 * The tiled matmul kernels `C = A · B`: register-blocked and split-K.
 *
 * The emitters produce only the kernel body: helper functions plus one
 * `@compute` entry point, and the operand names it uses (`uses`, recorded by a
 * `KernelIo`). The caller (the compiler) declares exactly those bindings
 * (`in0`, `in1`, `out0`) and accessor functions (`in0_load`, `in1_load`,
 * `out0_store`, where a fused elementwise prologue or epilogue lives), and the
 * `enable f16;` directive.
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

import { KernelIo, u32 as u } from "../wgsl/mod.ts";
import {
  checkSpec,
  linearWorkgroup,
  type MatmulKernel,
  type MatmulKernelSpec,
  type MatmulTile,
  operandHelpers,
  spreadGrid,
} from "./spec.ts";
import { chooseTile, validateTile } from "./tiles.ts";

/**
 * Register-blocked kernel without workgroup memory. Workgroup `(tm, tn, b)`
 * owns rows `tm*TM ..` and columns `tn*TN ..` of batch `b`; invocation
 * `(tx, ty)` owns `rowsPerThread` rows and `colsPerThread` columns.
 */
function emitRegister(spec: MatmulKernelSpec, t: MatmulTile): MatmulKernel {
  const io = new KernelIo();
  const { M, N, K, batch } = spec;
  const RM = t.rowsPerThread, RN = t.colsPerThread;
  const TM = RM * t.wgRows, TN = RN * t.wgCols;
  const tilesM = Math.ceil(M / TM), tilesN = Math.ceil(N / TN);
  const total = tilesM * tilesN * batch;
  const grid = spreadGrid(total, spec.maxWorkgroupsPerDim);
  const U = Math.min(t.kUnroll, K);
  const kMain = K - (K % U);

  const L: string[] = [];
  L.push(operandHelpers(spec, io));
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
    uses: io.uses,
  };
}

/**
 * Split-K kernel for tiny M (decode GEMV) when the register kernel would
 * leave the CPU cores idle: a workgroup owns `colsPerThread × wgCols` columns,
 * its `wgRows` invocation rows each reduce one contiguous K chunk, and a single
 * barrier plus a workgroup-memory reduction combines the partial sums.
 */
function emitSplitK(spec: MatmulKernelSpec, t: MatmulTile): MatmulKernel {
  const io = new KernelIo();
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
  L.push(operandHelpers(spec, io));
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
    uses: io.uses,
  };
}

/**
 * Emits a fast tiled matmul kernel for `spec`, choosing the tile by shape and
 * device limits unless `spec.tile` overrides it.
 *
 * @example
 * ```ts
 * import { emitMatmul } from "./tiled.ts";
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
