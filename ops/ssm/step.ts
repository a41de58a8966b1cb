/**
 * The `ssm_step` op: one decode token of the selective SSM, the state updated in
 * place, built from the scan's kernel generator at L = 1. Its portable kernels
 * are shaped for CPU rasterisers; {@linkcode ssmStepGpu} is the GPU target's.
 *
 * @module
 */

import { numel } from "../../core/shape.ts";
import type { KernelContext, KernelEmission, KernelEmitter, OpDef } from "../types.ts";
import { deltaRankOf, SCAN_ATTR_NAMES, type ScanAttrs, scanSlots } from "./attrs.ts";
import { CPU_RASTER_SCAN, GPU_SCAN, type ScanLayout } from "./chooser.ts";
import { inferScanLike } from "./infer.ts";
import { referenceScan } from "./reference.ts";
import { packKernel, scanKernel } from "./scan_kernels.ts";
import { LOOP_STATES, stepLoopKernel } from "./step_loop.ts";

function emitSsmStep(ctx: KernelContext<ScanAttrs>, layout: ScanLayout): KernelEmission {
  const { slots } = scanSlots(ctx.attrs, true);
  const u = ctx.inputs[slots.u];
  const I = u.shape[u.shape.length - 1];
  const B = numel(u.shape) / I;
  const N = ctx.inputs[slots.a].shape[1];
  if (B * I === 0) return { kernels: [] };
  const R = deltaRankOf(ctx.attrs);
  const fits = ctx.inputs.length + ctx.outputs.length <= ctx.caps.maxStorageBuffers;
  // Large states on a CPU rasteriser: a loop over N compiles in a fraction of the
  // unrolled kernel's time (Mamba-2's N = 128: see step_loop.ts).
  if (layout === CPU_RASTER_SCAN && N >= LOOP_STATES && R === 0 && fits) {
    return { kernels: [stepLoopKernel(ctx, slots, B, I, N)] };
  }
  const scan = scanKernel(ctx, {
    label: `ssm_step_B${B}_I${I}_N${N}${R > 0 ? `_dtR${R}` : ""}`,
    mode: "output",
    batch: B,
    length: 1,
    channels: I,
    state: N,
    chunk: 1,
    chunks: 1,
    shape: layout.stepShape(I, N),
    slots,
    softplus: ctx.attrs.softplus,
    init: (io, idx) => `${io.out(1)}[${idx}]`,
    final: true,
    // A decode step runs every token: skip the pack dispatch when every input and
    // the state can be bound at once (lavapipe allows 32 storage buffers).
    directParams: fits,
    deltaProj: R === 0 ? undefined : fits ? "direct" : "scratch",
  });
  if (fits) return { kernels: [scan] };
  return {
    kernels: [packKernel(ctx, slots, I, N, undefined, R > 0 ? { R, rows: B } : undefined), scan],
    scratch: [{ length: I * N + 2 * I + (R > 0 ? B * I : 0), type: "f32" }],
  };
}

/**
 * ssm_step(state [B, I, N] f32, u, delta, A, B, C, D, z?, deltaBias?, dtW?) → [y, state']:
 * one decode token of the selective SSM, the state updated in place. With the
 * attribute `deltaRank` R > 0, delta is Mamba's low-rank `[B, R]` and dtW
 * (dt_proj's weight `[I, R]`) projects it inside the kernel: no GEMV dispatch.
 * Its portable kernel gives each thread 4 channels (CPU rasterisers).
 *
 * @example
 * ```ts ignore
 * opDef("ssm_step") === ssmStep; // in the op table
 * ```
 */
export const ssmStep: OpDef<ScanAttrs> = {
  arity: [7, 10],
  attrNames: [...SCAN_ATTR_NAMES, "deltaRank"],
  infer: (inputs, attrs) => inferScanLike(inputs, attrs, true),
  reference: (inputs, attrs) => referenceScan(inputs, attrs, true),
  lower: {
    kind: "kernel",
    prologue: [1, 2, 3, 4, 5, 6, 7, 8],
    epilogue: true,
    inplace: [[1, 0]],
    emit: (ctx) => emitSsmStep(ctx, CPU_RASTER_SCAN),
  },
};

/**
 * `ssm_step`'s GPU kernel: one channel per thread in 64-lane workgroups (the
 * `gpu` target's entry).
 *
 * @example
 * ```ts ignore
 * TARGET_TABLES.gpu.emitters.ssm_step === ssmStepGpu; // true
 * ```
 */
export const ssmStepGpu: KernelEmitter<ScanAttrs> = (ctx) => emitSsmStep(ctx, GPU_SCAN);
