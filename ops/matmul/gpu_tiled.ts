/**
 * GPU-shaped matmul kernels, the `gpu` target's entry for `matmul` (see
 * `ops/targets.ts`): a workgroup-tiled GEMM that stages A and B tiles in
 * workgroup memory, and a decode GEMV whose workgroup reduces K together.
 *
 * Why they look the way they do (a discrete GPU, unlike the CPU-rasteriser
 * kernels of `tiled.ts` and `gemv.ts`):
 *
 * - GEMM: a workgroup of 16×16 invocations owns a 64×64 block of C (128×64
 *   when M and N are both at least 256). Each K step of 16 it stages a tile of
 *   A and one of B in workgroup memory (k-major, so the inner loop reads both
 *   with unit stride), with vec4 loads where the operand's contiguous dimension
 *   and batch stride are multiples of 4 and it is bound directly, else scalar
 *   loads. Each invocation then accumulates a 4×4 (8×4) block in f32
 *   registers: 8 workgroup-memory reads per 16 FMAs (12 per 32). Its rows
 *   are `ty + 16·i` and columns `tx + 16·j`, so a warp's reads hit distinct
 *   banks (or broadcast) and its stores are coalesced. Ragged M, N and K are zero-filled at the tile load
 *   and masked at the store; f16 operands are widened on the load.
 * - GEMV (M = 1..4 rows against a `[N, K]` weight): a workgroup of up to 128
 *   invocations (fewer for short K) owns 4 output columns; its invocations
 *   stride over K in vec4 steps (consecutive invocations read consecutive
 *   vec4s of a weight row: coalesced), then a workgroup-memory tree reduces the
 *   partial sums. No subgroup reduction yet: lavapipe exposes no `subgroups`
 *   feature to test one against, and codegen declares only `enable f16;`.
 *
 * Everything else (forced tiles, partially broadcast batches, K = 0, devices
 * with fewer than 256 invocations or 8 KiB of workgroup memory) takes the op's
 * portable kernels. On lavapipe these kernels are 3–6× slower than the
 * portable ones (workgroup memory and barriers are costly there), which is why
 * only the `gpu` target uses them.
 *
 * @module
 */

import { numel } from "../../core/shape.ts";
import type { KernelContext, KernelEmission, KernelEmitter, KernelSource } from "../types.ts";
import { grid, groupIndex, KernelIo, u32 as u } from "../wgsl/mod.ts";
import { GEMV_MAX_ROWS } from "./gemv.ts";
import { matmul, type MatmulAttrs } from "./mod.ts";
import {
  checkSpec,
  linearWorkgroup,
  type MatmulKernelSpec,
  spreadGrid,
  uniformStride,
} from "./spec.ts";

/** K step and invocations per side of a GEMM workgroup (16 × 16 = 256). */
const BK = 16, WGS = 16;

/** Outputs per invocation along M and N; the workgroup's block is 16× that. */
interface Block {
  rm: number;
  rn: number;
}

/**
 * 128×64 blocks (8×4 per invocation: 12 workgroup-memory reads per 32 FMAs)
 * where both sides are large enough to fill a GPU with them, else 64×64 (4×4).
 */
function blockFor(M: number, N: number, storage: number): Block {
  const big = M >= 256 && N >= 256 && (128 + 64) * BK * 4 <= storage;
  return big ? { rm: 8, rn: 4 } : { rm: 4, rn: 4 };
}
/** Most invocations of a GEMV workgroup, and the output columns it owns. */
const GEMV_WG = 128, GEMV_COLS = 4;

/** GEMV invocations: about two vec4s of K each, a power of two from 32 to 128. */
function gemvWorkgroup(K4: number): number {
  let wg = 32;
  while (wg < GEMV_WG && wg * 2 < K4) wg *= 2;
  return wg;
}

/**
 * Extra facts the GPU GEMM needs beyond a {@linkcode MatmulKernelSpec}.
 *
 * @example
 * ```ts
 * import type { GpuMatmulSpec } from "./gpu_tiled.ts";
 * const s: GpuMatmulSpec = {
 *   batch: 1, M: 64, N: 64, K: 64, transA: false, transB: true,
 *   aBatchStride: 0, bBatchStride: 0, elem: "f32",
 *   aDirect: true, bDirect: true, cDirect: true,
 *   maxInvocations: 256, maxWorkgroupStorage: 16384, maxWorkgroupsPerDim: 65535,
 * };
 * ```
 */
export type GpuMatmulSpec = MatmulKernelSpec;

/** Loads one operand's tile into workgroup array `S` (k-major: `S[k * 64 + o]`). */
function tileLoad(
  L: string[],
  B: number,
  S: string,
  fn: string,
  contiguousK: boolean,
  D: number,
  K: number,
  o0: string,
  base: string,
  vec4: boolean,
): void {
  if (contiguousK) {
    // Element (o, k) at base + o*K + k.
    if (vec4) {
      for (let s = 0; s < (B * BK) / 1024; s++) {
        L.push("  {");
        L.push(`    let o = lid / 4u + ${u(64 * s)};`);
        L.push("    let kq = lid % 4u;");
        L.push("    var v = vec4<f32>(0.0);");
        L.push(`    if (${o0} + o < ${u(D)} && k0 + kq * 4u < ${u(K)}) {`);
        L.push(`      v = ${fn}4(${base} / 4u + (${o0} + o) * ${u(K / 4)} + k0 / 4u + kq);`);
        L.push("    }");
        for (let c = 0; c < 4; c++) {
          L.push(`    ${S}[(kq * 4u + ${u(c)}) * ${u(B)} + o] = v[${c}];`);
        }
        L.push("  }");
      }
    } else {
      for (let s = 0; s < (B * BK) / 256; s++) {
        L.push("  {");
        L.push(`    let e = lid + ${u(256 * s)};`);
        L.push(`    let o = e / ${u(BK)};`);
        L.push(`    let kk = e % ${u(BK)};`);
        L.push("    var v = 0.0;");
        L.push(`    if (${o0} + o < ${u(D)} && k0 + kk < ${u(K)}) {`);
        L.push(`      v = ${fn}(${base} + (${o0} + o) * ${u(K)} + k0 + kk);`);
        L.push("    }");
        L.push(`    ${S}[kk * ${u(B)} + o] = v;`);
        L.push("  }");
      }
    }
  } else {
    // Element (o, k) at base + k*D + o.
    if (vec4) {
      for (let s = 0; s < (B * BK) / 1024; s++) {
        L.push("  {");
        L.push(`    let kk = (lid + ${u(256 * s)}) / ${u(B / 4)};`);
        L.push(`    let oq = lid % ${u(B / 4)};`);
        L.push("    var v = vec4<f32>(0.0);");
        L.push(`    if (k0 + kk < ${u(K)} && ${o0} + oq * 4u < ${u(D)}) {`);
        L.push(`      v = ${fn}4(${base} / 4u + (k0 + kk) * ${u(D / 4)} + ${o0} / 4u + oq);`);
        L.push("    }");
        for (let c = 0; c < 4; c++) L.push(`    ${S}[kk * ${u(B)} + oq * 4u + ${u(c)}] = v[${c}];`);
        L.push("  }");
      }
    } else {
      for (let s = 0; s < (B * BK) / 256; s++) {
        L.push("  {");
        L.push(`    let e = lid + ${u(256 * s)};`);
        L.push(`    let kk = e / ${u(B)};`);
        L.push(`    let o = e % ${u(B)};`);
        L.push("    var v = 0.0;");
        L.push(`    if (k0 + kk < ${u(K)} && ${o0} + o < ${u(D)}) {`);
        L.push(`      v = ${fn}(${base} + (k0 + kk) * ${u(D)} + ${o0} + o);`);
        L.push("    }");
        L.push(`    ${S}[kk * ${u(B)} + o] = v;`);
        L.push("  }");
      }
    }
  }
}

/**
 * The workgroup-tiled GEMM for `spec` (256 invocations, K step 16; a 64×64
 * block with 4×4 outputs per invocation, or 128×64 with 8×4 when M and N are
 * both at least 256), with the vec4 array types its vector operands must be
 * bound with (`arrayTypes`).
 *
 * @example
 * ```ts
 * import { emitGpuMatmul } from "./gpu_tiled.ts";
 * const k = emitGpuMatmul({
 *   batch: 1, M: 65, N: 130, K: 64, transA: false, transB: true,
 *   aBatchStride: 0, bBatchStride: 0, elem: "f32",
 *   aDirect: true, bDirect: true, cDirect: true,
 *   maxInvocations: 256, maxWorkgroupStorage: 16384, maxWorkgroupsPerDim: 65535,
 * });
 * k.label; // "matmul_gpu_t64x64x16_r4x4_va_vb"
 * ```
 */
export function emitGpuMatmul(spec: GpuMatmulSpec): KernelSource {
  checkSpec(spec);
  const { M, N, K, batch, elem } = spec;
  const io = new KernelIo();
  const contA = !spec.transA, contB = spec.transB;
  // vec4 reads need the operand bound whole and every vec4 inside one row.
  const aVec = spec.aDirect && (contA ? K : M) % 4 === 0 && spec.aBatchStride % 4 === 0;
  const bVec = spec.bDirect && (contB ? K : N) % 4 === 0 && spec.bBatchStride % 4 === 0;
  const { rm, rn } = blockFor(M, N, spec.maxWorkgroupStorage);
  const BM = WGS * rm, BN = WGS * rn;
  const tilesM = Math.ceil(M / BM), tilesN = Math.ceil(N / BN);
  const total = tilesM * tilesN * batch;
  const workgroups = spreadGrid(total, spec.maxWorkgroupsPerDim);
  const helper = (j: 0 | 1, name: string, vec: boolean, direct: boolean) =>
    vec
      ? `fn ${name}4(i: u32) -> vec4<f32> { return vec4<f32>(${io.in(j)}[i]); }`
      : `fn ${name}(i: u32) -> f32 { return f32(${direct ? `${io.in(j)}[i]` : io.load(j, "i")}); }`;
  const stc = spec.cDirect ? `${io.out(0)}[i] = ${elem}(v);` : `${io.store(0, "i", `${elem}(v)`)};`;
  const L: string[] = [];
  L.push(helper(0, "mm_a", aVec, spec.aDirect));
  L.push(helper(1, "mm_b", bVec, spec.bDirect));
  L.push(`fn mm_c(i: u32, v: f32) { ${stc} }`);
  L.push(`var<workgroup> mm_as: array<f32, ${BK * BM}>;`);
  L.push(`var<workgroup> mm_bs: array<f32, ${BK * BN}>;`);
  L.push(`@compute @workgroup_size(${WGS * WGS})`);
  L.push(
    "fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {",
  );
  L.push(linearWorkgroup(workgroups, total));
  L.push(`  let tn = wg % ${u(tilesN)};`);
  L.push(`  let tm = (wg / ${u(tilesN)}) % ${u(tilesM)};`);
  L.push(`  let b = wg / ${u(tilesN * tilesM)};`);
  L.push(`  let tx = lid % ${u(WGS)};`);
  L.push(`  let ty = lid / ${u(WGS)};`);
  L.push(`  let row0 = tm * ${u(BM)};`);
  L.push(`  let col0 = tn * ${u(BN)};`);
  L.push(`  let aBase = b * ${u(spec.aBatchStride)};`);
  L.push(`  let bBase = b * ${u(spec.bBatchStride)};`);
  for (let i = 0; i < rm; i++) {
    for (let j = 0; j < rn; j++) L.push(`  var acc${i}_${j} = 0.0;`);
  }
  L.push(`  for (var k0 = 0u; k0 < ${u(K)}; k0 += ${u(BK)}) {`);
  tileLoad(L, BM, "mm_as", "mm_a", contA, M, K, "row0", "aBase", aVec);
  tileLoad(L, BN, "mm_bs", "mm_b", contB, N, K, "col0", "bBase", bVec);
  L.push("  workgroupBarrier();");
  L.push(`  for (var kk = 0u; kk < ${u(BK)}; kk++) {`);
  for (let i = 0; i < rm; i++) {
    L.push(`    let a${i} = mm_as[kk * ${u(BM)} + ty + ${u(i * WGS)}];`);
  }
  for (let j = 0; j < rn; j++) {
    L.push(`    let b${j} = mm_bs[kk * ${u(BN)} + tx + ${u(j * WGS)}];`);
  }
  for (let i = 0; i < rm; i++) {
    for (let j = 0; j < rn; j++) L.push(`    acc${i}_${j} = fma(a${i}, b${j}, acc${i}_${j});`);
  }
  L.push("  }");
  L.push("  workgroupBarrier();");
  L.push("  }");
  L.push(`  let cBase = b * ${u(M * N)};`);
  for (let i = 0; i < rm; i++) {
    L.push(`  let sr${i} = row0 + ty + ${u(i * WGS)};`);
  }
  for (let j = 0; j < rn; j++) L.push(`  let sc${j} = col0 + tx + ${u(j * WGS)};`);
  for (let i = 0; i < rm; i++) {
    for (let j = 0; j < rn; j++) {
      L.push(
        `  if (sr${i} < ${u(M)} && sc${j} < ${u(N)}) { mm_c(cBase + sr${i} * ${
          u(N)
        } + sc${j}, acc${i}_${j}); }`,
      );
    }
  }
  L.push("}");
  const arrayTypes: Record<string, string> = {};
  if (aVec) arrayTypes.in0 = `vec4<${elem}>`;
  if (bVec) arrayTypes.in1 = `vec4<${elem}>`;
  return {
    label: `matmul_gpu_t${BM}x${BN}x${BK}_r${rm}x${rn}${aVec ? "_va" : ""}${bVec ? "_vb" : ""}`,
    code: L.join("\n") + "\n",
    workgroups,
    uses: io.uses,
    arrayTypes,
  };
}

/**
 * Shape of a GPU GEMV; see {@linkcode emitGpuGemv}.
 *
 * @example
 * ```ts
 * import type { GpuGemvSpec } from "./gpu_tiled.ts";
 * const s: GpuGemvSpec = { rows: 1, N: 4096, K: 4096, elem: "f32", aDirect: true, cDirect: true, bAccess: "direct", maxWorkgroupsPerDim: 65535 };
 * ```
 */
export interface GpuGemvSpec {
  /** Rows of A and C, 1 to {@linkcode GEMV_MAX_ROWS}. */
  rows: number;
  /** Output columns (rows of the `[N, K]` weight). */
  N: number;
  /** Reduction length, a multiple of 4. */
  K: number;
  /** Storage type of A, B and C; accumulation is f32. */
  elem: "f32" | "f16";
  /** `in0` is read directly as `array<vec4<elem>>`; else through `in0_load`. */
  aDirect: boolean;
  /** `out0` is written directly; else through `out0_store`. */
  cDirect: boolean;
  /** The weight is bound whole or in segments (read through `in1_vget`). */
  bAccess: "direct" | "segmented";
  /** Device limit `maxComputeWorkgroupsPerDimension`. */
  maxWorkgroupsPerDim: number;
}

/**
 * The GPU decode GEMV: one workgroup per 4 output columns (32 to 128
 * invocations, about two vec4s of K each), its invocations striding over K
 * with vec4 loads, then a workgroup-memory tree reduction (`rows · 4 · WG`
 * f32, at most 8 KiB).
 *
 * @example
 * ```ts
 * import { emitGpuGemv } from "./gpu_tiled.ts";
 * const k = emitGpuGemv({ rows: 1, N: 4096, K: 4096, elem: "f32", aDirect: true, cDirect: true, bAccess: "direct", maxWorkgroupsPerDim: 65535 });
 * k.workgroups; // [1024, 1, 1]
 * ```
 */
export function emitGpuGemv(spec: GpuGemvSpec): KernelSource {
  const { rows: R, N, K, elem } = spec;
  if (R < 1 || R > GEMV_MAX_ROWS || K % 4 !== 0 || K < 4 || N < 1) {
    throw new RangeError(`emitGpuGemv: rows ${R}, K ${K} (multiple of 4), N ${N} out of range`);
  }
  const io = new KernelIo();
  const C = GEMV_COLS, K4 = K / 4, WG = gemvWorkgroup(K4), outs = R * C;
  const groups = Math.ceil(N / C);
  const workgroups = grid(groups, spec.maxWorkgroupsPerDim);
  const readB = (i: string) => spec.bAccess === "segmented" ? io.vget(1, i) : `${io.in(1)}[${i}]`;
  const loadA = (r: number) =>
    spec.aDirect
      ? `vec4<f32>(${io.in(0)}[${u(r * K4)} + k4])`
      : `vec4<f32>(${
        [0, 1, 2, 3].map((e) => `f32(${io.load(0, `${u(r * K)} + k4 * 4u + ${u(e)}`)})`).join(", ")
      })`;
  const L: string[] = [];
  L.push(`var<workgroup> gv_red: array<f32, ${outs * WG}>;`);
  L.push(`@compute @workgroup_size(${WG})`);
  L.push(
    "fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {",
  );
  L.push(`  let g = ${groupIndex(workgroups)};`);
  if (workgroups[0] * workgroups[1] > groups) L.push(`  if (g >= ${u(groups)}) { return; }`);
  L.push(`  let n0 = g * ${u(C)};`);
  for (let c = 0; c < C; c++) {
    L.push(`  let w${c}row = min(n0 + ${u(c)}, ${u(N - 1)}) * ${u(K4)};`);
  }
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) L.push(`  var acc${r}_${c} = vec4<f32>(0.0);`);
  }
  L.push(`  for (var k4 = lid; k4 < ${u(K4)}; k4 += ${u(WG)}) {`);
  for (let c = 0; c < C; c++) L.push(`    let w${c} = vec4<f32>(${readB(`w${c}row + k4`)});`);
  for (let r = 0; r < R; r++) {
    L.push(`    let a${r} = ${loadA(r)};`);
    for (let c = 0; c < C; c++) L.push(`    acc${r}_${c} = fma(a${r}, w${c}, acc${r}_${c});`);
  }
  L.push("  }");
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) {
      L.push(`  gv_red[${u((r * C + c) * WG)} + lid] = dot(acc${r}_${c}, vec4<f32>(1.0));`);
    }
  }
  L.push("  workgroupBarrier();");
  for (let s = WG / 2; s >= 1; s /= 2) {
    L.push(`  if (lid < ${u(s)}) {`);
    for (let o = 0; o < outs; o++) {
      L.push(`    gv_red[${u(o * WG)} + lid] += gv_red[${u(o * WG + s)} + lid];`);
    }
    L.push("  }");
    L.push("  workgroupBarrier();");
  }
  const store = (i: string, v: string) =>
    spec.cDirect ? `${io.out(0)}[${i}] = ${elem}(${v});` : `${io.store(0, i, `${elem}(${v})`)};`;
  L.push(`  if (lid < ${u(outs)}) {`);
  L.push(`    let r = lid / ${u(C)};`);
  L.push(`    let n = n0 + lid % ${u(C)};`);
  L.push(`    if (n < ${u(N)}) { ${store(`r * ${u(N)} + n`, `gv_red[lid * ${u(WG)}]`)} }`);
  L.push("  }");
  L.push("}");
  const arrayTypes: Record<string, string> = { in1: `vec4<${elem}>` };
  if (spec.aDirect) arrayTypes.in0 = `vec4<${elem}>`;
  return {
    label: `gemv_gpu_r${R}x${C}_wg${WG}`,
    code: L.join("\n") + "\n",
    workgroups,
    uses: io.uses,
    arrayTypes,
  };
}

/**
 * The `gpu` target's `matmul` emitter: the GPU GEMV for a few rows against a
 * shared `[N, K]` weight, the workgroup-tiled GEMM otherwise, and the op's
 * portable kernels where neither applies (a forced `tile`, partially broadcast
 * batches, K = 0, small device limits).
 *
 * @example
 * ```ts
 * import { TARGET_TABLES } from "../targets.ts";
 * import { matmulGpu } from "./gpu_tiled.ts";
 * TARGET_TABLES.gpu.emitters.matmul === matmulGpu; // true
 * ```
 */
export const matmulGpu: KernelEmitter<MatmulAttrs> = (ctx) => {
  const portable = () => {
    const lower = matmul.lower;
    if (lower.kind !== "kernel") throw new Error("internal: matmul is a kernel op");
    return lower.emit(ctx);
  };
  const emission = emitGpu(ctx);
  return emission ?? portable();
};

function emitGpu(ctx: KernelContext<MatmulAttrs>): KernelEmission | undefined {
  const [a, b] = ctx.inputs;
  const out = ctx.outputs[0];
  const { transA, transB } = ctx.attrs;
  if (ctx.attrs.tile !== undefined) return undefined;
  if (ctx.caps.maxInvocations < 256 || ctx.caps.maxWorkgroupStorage < 8192) return undefined;
  const ra = a.shape.length, ro = out.shape.length;
  const M = out.shape[ro - 2], N = out.shape[ro - 1];
  const K = transA ? a.shape[ra - 2] : a.shape[ra - 1];
  const batch = out.shape.slice(0, ro - 2);
  const nb = numel(batch);
  if (nb * M * N === 0 || K === 0) return undefined;
  const aStride = uniformStride(a.shape, batch, M * K);
  const bStride = uniformStride(b.shape, batch, K * N);
  if (aStride === undefined || bStride === undefined) return undefined;
  const elem = out.dtype === "f16" ? "f16" : "f32";
  const rows = nb * M;
  if (
    transB && !transA && bStride === 0 && (nb === 1 || aStride === M * K) &&
    rows <= GEMV_MAX_ROWS && K % 4 === 0 && (b.direct || b.segmented)
  ) {
    return {
      kernels: [emitGpuGemv({
        rows,
        N,
        K,
        elem,
        aDirect: a.direct,
        cDirect: out.direct,
        bAccess: b.direct ? "direct" : "segmented",
        maxWorkgroupsPerDim: ctx.caps.maxWorkgroupsPerDim,
      })],
    };
  }
  const gemm = emitGpuMatmul({
    batch: nb,
    M,
    N,
    K,
    transA,
    transB,
    aBatchStride: aStride,
    bBatchStride: bStride,
    elem,
    aDirect: a.direct,
    bDirect: b.direct,
    cDirect: out.direct,
    maxInvocations: ctx.caps.maxInvocations,
    maxWorkgroupStorage: ctx.caps.maxWorkgroupStorage,
    maxWorkgroupsPerDim: ctx.caps.maxWorkgroupsPerDim,
  });
  const algorithm = gemm.label.replace(/^matmul_/, "");
  const reason = typeof ctx.attrs.tileReason === "string"
    ? ctx.attrs.tileReason
    : "default for gpu: workgroup-tiled GEMM (not selectable by a tile name)";
  return { kernels: [{ ...gemm, choice: { algorithm, reason } }] };
}
