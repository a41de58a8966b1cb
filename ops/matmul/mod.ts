/**
 * Batched matrix multiply with optionally transposed operands: the `matmul` op
 * (shape rule, CPU reference, lowering) and the kernel emitters it picks from —
 * the tiled kernels (`emitMatmul`, tile choice in `chooseTile`), the decode GEMV
 * (`emitGemv`) and the one-thread-per-output floor (`naiveMatmul`).
 *
 * @module
 */

import { allocHost, isFloat } from "../../core/dtype.ts";
import type { TensorType } from "../../core/graph.ts";
import { broadcastShapes, type Dim, formatShape, numel, stridesOf } from "../../core/shape.ts";
import type { HostTensor, KernelContext, KernelEmission, KernelSource, OpDef } from "../types.ts";
import { flatKernel, flatLaunch, flatMain, KernelIo, lit, u32Array } from "../wgsl/mod.ts";
import { emitGemv, GEMV_MAX_ROWS, gemvPacksHalf, type GemvSpec } from "./gemv.ts";
import { naiveMatmul } from "./naive.ts";
import {
  type MatmulKernel,
  type MatmulKernelSpec,
  type MatmulTile,
  uniformStride,
} from "./spec.ts";
import { emitMatmul } from "./tiled.ts";
import { parseTile } from "./tiles.ts";

export { emitGemv, GEMV_MAX_ROWS, gemvPacksHalf, type GemvSpec } from "./gemv.ts";
export { naiveMatmul } from "./naive.ts";
export type { MatmulKernel, MatmulKernelSpec, MatmulTile } from "./spec.ts";
export { emitMatmul } from "./tiled.ts";
export { chooseTile, parseTile, tileName } from "./tiles.ts";

/**
 * Attributes of `matmul`.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type MatmulAttrs } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const attrs: MatmulAttrs = { transA: false, transB: true };
 * const [y] = g.apply("matmul", [g.input("x", ["T", 16]), g.param("w", [32, 16])], attrs);
 * g.output("y", y); // f32[T, 32]
 * ```
 */
export interface MatmulAttrs {
  /** A is stored [..., K, M]. */
  readonly transA: boolean;
  /** B is stored [..., N, K] (PyTorch Linear weight layout). */
  readonly transB: boolean;
  /**
   * Forces a kernel (tuning, benchmarks, tests); absent, the op picks: the GEMV
   * for a few rows against a shared `[N, K]` weight, else a tiled kernel whose
   * tile `chooseTile` picks by shape. `"tiled"`: that tiled kernel, never the
   * GEMV; `"naive"`: one invocation per output, the floor the others are
   * measured against; a tile name (`"rb24x16_wg1x16b_u1"`,
   * `"splitk4_rb1x4_wg16s"`: a tiled kernel's label without `matmul_`, see
   * `tileName`): that tile. Only for batch dimensions that are all present or
   * all broadcast (partial broadcasts have one kernel).
   */
  readonly tile?: string;
  /**
   * Why `tile` was forced, in a phrase (e.g. a tuner's `"tuned: 12.3 ms vs
   * default 15.1 ms"`): the reason of the kernel's `choice` in plans.
   */
  readonly tileReason?: string;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: boolean | string | undefined;
}

/** What a `tile` attribute asks for; RangeError naming the attribute when it names nothing. */
function tileChoice(tile: string): "naive" | "tiled" | MatmulTile {
  if (typeof tile !== "string") {
    throw new TypeError(`matmul: tile must be a string, got ${JSON.stringify(tile)}`);
  }
  if (tile === "naive" || tile === "tiled") return tile;
  const t = parseTile(tile);
  if (!t) {
    throw new RangeError(
      `matmul: tile "${tile}" is not "tiled", "naive" or a tile name such as "rb24x16_wg1x16b_u1" or "splitk4_rb1x4_wg16s"`,
    );
  }
  return t;
}

/** Shape rule: `[...batch, M, K] @ [...batch, K, N] → [...broadcast(batch), M, N]`. */
export function inferMatmul(a: TensorType, b: TensorType, attrs: MatmulAttrs): TensorType {
  const show = `${formatShape(a.shape)}${attrs.transA ? "ᵀ" : ""} @ ${formatShape(b.shape)}${
    attrs.transB ? "ᵀ" : ""
  }`;
  if (a.shape.length < 2 || b.shape.length < 2) {
    throw new RangeError(`matmul: operands need rank >= 2, got ${show}`);
  }
  if (a.dtype !== b.dtype) {
    throw new TypeError(`matmul: operand dtypes differ (${a.dtype} vs ${b.dtype}) in ${show}`);
  }
  if (!isFloat(a.dtype)) throw new TypeError(`matmul: expects float operands, got ${a.dtype}`);
  const ra = a.shape.length, rb = b.shape.length;
  const M: Dim = attrs.transA ? a.shape[ra - 1] : a.shape[ra - 2];
  const Ka: Dim = attrs.transA ? a.shape[ra - 2] : a.shape[ra - 1];
  const Kb: Dim = attrs.transB ? b.shape[rb - 1] : b.shape[rb - 2];
  const N: Dim = attrs.transB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (Ka !== Kb) {
    throw new RangeError(`matmul: inner dimensions differ (${Ka} vs ${Kb}) in ${show}`);
  }
  const batch = broadcastShapes(a.shape.slice(0, ra - 2), b.shape.slice(0, rb - 2));
  if (!batch) throw new RangeError(`matmul: batch dimensions cannot be broadcast in ${show}`);
  if (attrs.tile !== undefined) tileChoice(attrs.tile);
  return { shape: [...batch, M, N], dtype: a.dtype };
}

interface Dims {
  M: number;
  N: number;
  K: number;
  batch: number[];
  /** For each output batch index, the flat batch index into A and into B. */
  aBatch: (b: number) => number;
  bBatch: (b: number) => number;
}

function dimsOf(
  a: readonly number[],
  b: readonly number[],
  out: readonly number[],
  attrs: MatmulAttrs,
): Dims {
  const ra = a.length, ro = out.length;
  const M = out[ro - 2], N = out[ro - 1];
  const K = attrs.transA ? a[ra - 2] : a[ra - 1];
  const batch = out.slice(0, ro - 2);
  const map = (shape: readonly number[]) => {
    const bs = shape.slice(0, shape.length - 2);
    const pad = [...new Array(batch.length - bs.length).fill(1), ...bs];
    const st = stridesOf(pad);
    const ost = stridesOf(batch);
    return (flat: number) => {
      let idx = 0, rem = flat;
      for (let k = 0; k < batch.length; k++) {
        const c = Math.floor(rem / ost[k]);
        rem -= c * ost[k];
        if (pad[k] !== 1) idx += c * st[k];
      }
      return idx;
    };
  };
  return { M, N, K, batch, aBatch: map(a), bBatch: map(b) };
}

function referenceMatmul(
  inputs: readonly HostTensor[],
  attrs: MatmulAttrs,
  out: readonly number[],
) {
  const [A, B] = inputs;
  const d = dimsOf(A.shape, B.shape, out, attrs);
  const res = allocHost(A.dtype, numel(out));
  const nb = numel(d.batch);
  for (let bi = 0; bi < nb; bi++) {
    const ao = d.aBatch(bi) * d.M * d.K, bo = d.bBatch(bi) * d.K * d.N;
    for (let m = 0; m < d.M; m++) {
      for (let n = 0; n < d.N; n++) {
        let acc = 0;
        for (let k = 0; k < d.K; k++) {
          const av = A.data[ao + (attrs.transA ? k * d.M + m : m * d.K + k)];
          const bv = B.data[bo + (attrs.transB ? n * d.K + k : k * d.N + n)];
          acc += av * bv;
        }
        res[(bi * d.M + m) * d.N + n] = acc;
      }
    }
  }
  return res;
}

function emitGeneral(ctx: KernelContext<MatmulAttrs>, d: Dims): KernelEmission {
  // Partially broadcast batches ([2,1,M,K] @ [1,3,K,N]): one thread per output with
  // per-batch offset arithmetic. Rare in models, so kept simple.
  const total = numel(d.batch) * d.M * d.N;
  const { wg, workgroups, index } = flatLaunch(total, ctx.caps);
  const nb = numel(d.batch);
  const aOff = Array.from({ length: nb }, (_, b) => d.aBatch(b) * d.M * d.K);
  const bOff = Array.from({ length: nb }, (_, b) => d.bBatch(b) * d.K * d.N);
  const T = ctx.outputs[0].dtype;
  const { transA, transB } = ctx.attrs;
  const io = new KernelIo();
  const body = `  let n = i % ${d.N}u;
  let m = (i / ${d.N}u) % ${d.M}u;
  let b = i / ${d.M * d.N}u;
  var acc = 0.0;
  for (var k = 0u; k < ${d.K}u; k++) {
    let a = f32(${io.load(0, `A_OFF[b] + ${transA ? `k * ${d.M}u + m` : `m * ${d.K}u + k`}`)});
    let w = f32(${io.load(1, `B_OFF[b] + ${transB ? `n * ${d.K}u + k` : `k * ${d.N}u + n`}`)});
    acc = fma(a, w, acc);
  }
  ${io.store(0, "i", `${T}(acc)`)};`;
  const code = `
const A_OFF = ${u32Array(aOff)};
const B_OFF = ${u32Array(bOff)};
${flatMain(wg, index, total, body)}`;
  return { kernels: [{ label: "matmul_general", code, workgroups, uses: io.uses }] };
}

function emitMatmulOp(ctx: KernelContext<MatmulAttrs>): KernelEmission {
  const [a, b] = ctx.inputs;
  const out = ctx.outputs[0];
  const d = dimsOf(a.shape, b.shape, out.shape, ctx.attrs);
  const nb = numel(d.batch);
  if (nb * d.M * d.N === 0) return { kernels: [] };
  if (d.K === 0) {
    // Empty reduction: the product is all zeros.
    const io = new KernelIo();
    const body = `  ${io.store(0, "i", lit(0, out.dtype))};`;
    return { kernels: [flatKernel("matmul_k0", nb * d.M * d.N, ctx.caps, body, "", io)] };
  }
  const tile = ctx.attrs.tile === undefined ? undefined : tileChoice(ctx.attrs.tile);
  const aStride = uniformStride(a.shape, d.batch, d.M * d.K);
  const bStride = uniformStride(b.shape, d.batch, d.K * d.N);
  if (aStride === undefined || bStride === undefined) {
    if (tile !== undefined) {
      throw new RangeError(
        `matmul: tile "${ctx.attrs.tile}" cannot be honoured for [${a.shape}] @ [${b.shape}]: ` +
          "partially broadcast batch dimensions have only the general kernel",
      );
    }
    return emitGeneral(ctx, d);
  }
  // Decode: a few rows against a shared [N, K] weight read with vec4 loads.
  const rows = nb * d.M;
  if (
    tile === undefined && ctx.attrs.transB && !ctx.attrs.transA && bStride === 0 &&
    (nb === 1 || aStride === d.M * d.K) &&
    rows <= GEMV_MAX_ROWS && d.K % 4 === 0 && (b.direct || b.segmented)
  ) {
    const elem = out.dtype === "f16" ? "f16" : "f32";
    const gemv: GemvSpec = {
      rows,
      N: d.N,
      K: d.K,
      elem,
      aDirect: a.direct,
      cDirect: out.direct,
      // A weight larger than one binding (an LM head) is bound in segments.
      bAccess: b.direct ? "direct" : "segmented",
      maxWorkgroupsPerDim: ctx.caps.maxWorkgroupsPerDim,
      // Measured on llvmpipe only, where a load's cost is per component.
      packHalf: ctx.caps.cpuCores > 0,
    };
    const k = emitGemv(gemv);
    const vec = gemvPacksHalf(gemv) ? "vec4<u32>" : `vec4<${elem}>`;
    const arrayTypes: Record<string, string> = { in1: vec };
    if (a.direct) arrayTypes.in0 = vec;
    return { kernels: [{ ...source(k), arrayTypes }] };
  }
  const spec: MatmulKernelSpec = {
    batch: nb,
    M: d.M,
    N: d.N,
    K: d.K,
    transA: ctx.attrs.transA,
    transB: ctx.attrs.transB,
    aBatchStride: aStride,
    bBatchStride: bStride,
    elem: out.dtype === "f16" ? "f16" : "f32",
    aDirect: a.direct,
    bDirect: b.direct,
    cDirect: out.direct,
    maxInvocations: ctx.caps.maxInvocations,
    maxWorkgroupStorage: ctx.caps.maxWorkgroupStorage,
    maxWorkgroupsPerDim: ctx.caps.maxWorkgroupsPerDim,
  };
  const k = tile === "naive"
    ? naiveMatmul(spec)
    : emitMatmul(tile === undefined || tile === "tiled" ? spec : { ...spec, tile });
  const algorithm = k.label.replace(/^matmul_/, "");
  const target = ctx.caps.cpuCores > 0 ? "cpu_raster" : "gpu";
  const gflop = (2 * nb * d.M * d.N * d.K / 1e9).toPrecision(3);
  const reason = typeof ctx.attrs.tileReason === "string"
    ? ctx.attrs.tileReason
    : tile === undefined || tile === "tiled"
    ? `default for ${target}: chooseTile by work (${gflop} GFLOP)`
    : `tile attribute "${ctx.attrs.tile}"`;
  return { kernels: [{ ...source(k), choice: { algorithm, reason } }] };
}

/** The kernel source of an emitted matmul kernel. */
function source(k: MatmulKernel): KernelSource {
  return { label: k.label, code: k.code, workgroups: k.workgroups, uses: k.uses };
}

/** Batched matmul. */
export const matmul: OpDef<MatmulAttrs> = {
  arity: 2,
  attrNames: ["transA", "transB", "tile", "tileReason"],
  infer: ([a, b], attrs) => [inferMatmul(a, b, attrs)],
  reference: (inputs, attrs, outs) => [referenceMatmul(inputs, attrs, outs[0].shape)],
  lower: { kind: "kernel", prologue: true, epilogue: true, emit: emitMatmulOp },
};
