/**
 * `selective_scan_grad`: the selective scan's backward as a reverse chunked
 * scan (mamba-ssm's recomputing backward, shaped for Kiln's kernels). One
 * thread per few channels of a batch row:
 *
 * 1. walks L forward from h0 and keeps the state entering each chunk: the
 *    checkpoints `[B, L/chunk, I, N]`;
 * 2. walks the chunks from last to first: recomputes the chunk's states from
 *    its checkpoint into a chunk-sized workspace, then runs the adjoint
 *    gₜ = exp(Δₜ₊₁A)·gₜ₊₁ + Cₜ·dy₀ₜ back through it, carrying g in registers from
 *    chunk to chunk. du, dΔ and dz go out directly; dB and dC (sums over
 *    channels) are summed over the workgroup's channels in workgroup memory;
 *    dA, dD and the Δ bias's gradient per channel.
 *
 * A reduction kernel then sums the partials. No buffer holds `[B, L, I, N]`:
 * the workspace is `[B, chunk + 1, I, N]`, the checkpoints `[B, L/chunk, I, N]`
 * and the dB/dC partials `[B, L, I/(wg·cpt), 2N]`.
 *
 * @module
 */

import type { KernelContext, KernelEmission, OpDef } from "../types.ts";
import { scanSlots } from "./attrs.ts";
import { packKernel } from "./scan_kernels.ts";
import { blocksOf, type GradPlan, reduceKernel } from "./scan_grad_kernels.ts";
import { reverseKernel } from "./scan_grad_reverse.ts";
import {
  gradSlots,
  inferScanGrad,
  referenceScanGrad,
  type ScanGradAttrs,
} from "./scan_grad_reference.ts";

/**
 * Default checkpoint spacing: about √L, so the checkpoints (L/chunk) and the
 * workspace (chunk) cost about the same, at least 8 and at most 64 steps.
 */
function pickChunk(L: number): number {
  let c = 8;
  while (c < 64 && c * c < L) c *= 2;
  return Math.min(c, L);
}

/**
 * The backward's sizes and thread shape. A CPU rasteriser (8-lane workgroups)
 * gives a thread several channels so each B/C row load serves them all
 * (`CPU_VEC_CPT` as vec4 groups; where I is not a multiple of 4, scalar
 * channels with about 32 live states); a GPU takes one channel per thread.
 * Workgroup memory holds the dB/dC terms of `sub` steps.
 */
/**
 * Channels per thread on a CPU rasteriser when they go as vec4 groups. Each
 * storage access costs a per-lane loop, so more channels per thread share
 * each B/C row load and each workgroup-memory write of the dB/dC terms
 * between more channels; the spilled registers cost far less. Process CPU
 * time of the whole backward at L = 1024, I = 512, N = 16 on lavapipe: 4
 * channels 80 ms, 8 → 69 ms, 16 → 60 ms, 32 → 58 ms; but LLVM compiles the
 * unrolled kernel in about 6 s at 8 channels, 27 s at 16 and minutes at 32.
 */
const CPU_VEC_CPT = 8;

function gradPlan(ctx: KernelContext<ScanGradAttrs>): GradPlan {
  const { slots } = scanSlots(ctx.attrs, false);
  const [B, L, I] = ctx.inputs[slots.u].shape;
  const N = ctx.inputs[slots.a].shape[1];
  const chunk = Math.min(L, ctx.attrs.chunk || pickChunk(L));
  const cpu = ctx.caps.cpuCores > 0;
  const wg = cpu ? 8 : 64;
  const cpt = !cpu ? 1 : I % 4 === 0 ? CPU_VEC_CPT : Math.max(1, Math.min(4, Math.floor(32 / N)));
  const perStep = wg * 2 * N * 4;
  const sub = Math.max(1, Math.min(16, Math.floor(ctx.caps.maxWorkgroupStorage / perStep)));
  return { B, L, I, N, chunk, NC: Math.ceil(L / chunk), wg, cpt, sub };
}

function emitScanGrad(ctx: KernelContext<ScanGradAttrs>): KernelEmission {
  const { slots } = scanSlots(ctx.attrs, false);
  const gs = gradSlots(ctx.attrs);
  const p = gradPlan(ctx);
  const { B, L, I, N, chunk, NC } = p;
  if (B * L * I === 0) return { kernels: [] };
  // The chunk goes to the kernels at run time (after the params, as u32 bits),
  // so one compiled reverse walk serves every chunk length.
  const chunkSlot = { slot: I * N + 2 * I + 1, value: chunk };
  const Ipad = blocksOf(p) * p.wg * p.cpt;
  return {
    kernels: [
      packKernel(ctx, slots, I, N, undefined, undefined, chunkSlot),
      reverseKernel(ctx, slots, p, gs.gy, gs.ghF),
      reduceKernel(ctx, slots, p),
    ],
    scratch: [
      { length: I * N + 2 * I + 2, type: "f32" },
      { length: B * NC * Ipad * N, type: "f32" },
      { length: B * (chunk + 1) * Ipad * N, type: "f32" },
      { length: B * L * blocksOf(p) * 2 * N, type: "f32" },
      { length: B * I * (N + 2), type: "f32" },
    ],
  };
}

/**
 * selective_scan_grad(u, delta, A, B, C, D, z?, deltaBias?, h0?, dy, dhFinal?)
 * → the gradient of each forward operand, in its shape and dtype: the
 * selective scan's backward, recomputing the states chunk by chunk from
 * checkpoints instead of storing them.
 *
 * @example
 * ```ts ignore
 * opDef("selective_scan_grad") === selectiveScanGrad; // in the op table
 * ```
 */
export const selectiveScanGrad: OpDef<ScanGradAttrs> = {
  arity: [7, 11],
  attrNames: [
    "gate",
    "deltaBias",
    "softplus",
    "initialState",
    "finalState",
    "algorithm",
    "chunk",
    "finalGrad",
  ],
  infer: inferScanGrad,
  reference: (inputs, attrs) => referenceScanGrad(inputs, attrs),
  lower: { kind: "kernel", prologue: true, epilogue: false, emit: emitScanGrad },
};
