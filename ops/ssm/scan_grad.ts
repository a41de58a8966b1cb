/**
 * `selective_scan_grad`: the selective scan's backward as a reverse chunked
 * scan (mamba-ssm's recomputing backward, shaped for Kiln's kernels). One
 * thread per few channels of a batch row. The kernels, in order:
 *
 * 1. pack: A·log₂e, D, the Δ bias and the chunk into `scratch0`;
 * 2. checkpoints (`scan_grad_kernels.ts`): walks L forward from h0 and keeps
 *    the state entering each chunk, `[B, L/chunk, I, N]` — unless the forward
 *    saved them (`checkpoints`, a last input: the `scanCheckpoints` pass pairs
 *    a training graph's scan with its backward), when this kernel only sets
 *    the walk up;
 * 3. per segment of L (a few chunks, last segment first): the reverse walk
 *    (`scan_grad_reverse.ts`) takes the segment's chunks from last to first,
 *    walks each once more to keep the state entering each `block` of steps,
 *    and takes the blocks from last to first: recomputes the block's states
 *    into registers, then runs the adjoint gₜ = exp(Δₜ₊₁A)·gₜ₊₁ + Cₜ·dy₀ₜ back
 *    through them. du, dΔ and dz go out directly; dB and dC (sums over
 *    channels) go out as one partial per step and lane; g, dA, dD and the Δ
 *    bias's gradient are carried to the next segment through scratch. Then
 *    the reduce kernel sums the segment's partials into dB and dC;
 * 4. final: dA, dD and the Δ bias's gradient summed over the batch, and the
 *    initial state's gradient.
 *
 * The segments exist so that the per-lane partials (which spare the reverse
 * walk the workgroup barriers of a reduction in workgroup memory, see
 * `scan_grad_reverse.ts`) fit in about one `[B, L, I]` activation. On a GPU
 * (no per-lane loops, cheap barriers) the walk sums dB and dC over the
 * workgroup itself and L is one segment. No buffer holds `[B, L, I, N]`: the
 * states are `[B, L/chunk (+ chunk/block), I, N]`, the partials at most about
 * `[B, L, I]` (CPU) or `[B, L, I/wg, 2N]` (GPU).
 *
 * At B = 1, L = 1024, I = 512, N = 16 on lavapipe (2 threads) this takes about
 * 0.7× the CPU time of the earlier single kernel, which recomputed each
 * chunk's states into a per-step workspace and summed dB/dC in workgroup
 * memory (`bench/scan_grad_bench.ts`).
 *
 * @module
 */

import type { KernelContext, KernelEmission, OpDef } from "../types.ts";
import { checkpointsOf, SCAN_ATTR_NAMES, scanSlots } from "./attrs.ts";
import { packKernel } from "./scan_kernels.ts";
import {
  blocksOf,
  checkpointKernel,
  finalKernel,
  type GradPlan,
  localBlockSlots,
  partialRows,
  reduceKernel,
  segmentsOf,
} from "./scan_grad_kernels.ts";
import { reverseKernel } from "./scan_grad_reverse.ts";
import {
  gradSlots,
  inferScanGrad,
  referenceScanGrad,
  type ScanGradAttrs,
} from "./scan_grad_reference.ts";

/**
 * Default checkpoint spacing: about √L, so the checkpoints (L/chunk) and the
 * block starts of one chunk (chunk/block) cost about the same, at least 8 and
 * at most 64 steps. Shorter chunks cost more than they save on lavapipe: the
 * checkpoints miss the cache when the reverse walk reads them back (L = 1024:
 * chunk 16 took 5–7 % more CPU time than 32, a chunk of one block 35 % more;
 * 32 and 64 were alike).
 */
function pickChunk(L: number): number {
  let c = 8;
  while (c < 64 && c * c < L) c *= 2;
  return Math.min(c, L);
}

/**
 * The backward's checkpoint spacing for a sequence of `L` steps: the scan's
 * `chunk` attribute where it is set, else about √L (see `pickChunk`), at most L.
 * The `scanCheckpoints` pass has the forward save states at this spacing.
 *
 * @example
 * ```ts ignore
 * gradChunk(1024, 0); // 32
 * ```
 */
export function gradChunk(L: number, chunk: number): number {
  return Math.min(L, chunk || pickChunk(L));
}

/**
 * Channels per thread on a CPU rasteriser when they go as vec4 groups. Each
 * storage access costs a per-lane loop, so more channels per thread share
 * each B/C row load and each lane's dB/dC partials between more channels; but
 * the unrolled blocks spill more. At L = 1024, I = 512, N = 16 on lavapipe,
 * 16 channels took as much CPU time as 8, and LLVM compiled the backward in
 * 45 s instead of 12 s.
 */
const CPU_VEC_CPT = 8;

/**
 * Steps per register block on a CPU rasteriser: the reverse walk's unrolled
 * code grows with it, while the block starts it keeps and reloads shrink. At
 * L = 1024, I = 512, N = 16: 2 steps took 10 % more CPU time than 4 and 3
 * steps 4 % more; 8 steps 7 % more (spills). LLVM's time grows faster than
 * the block: the backward compiled in about 7, 8, 10 and 13 s at 1, 2, 3 and
 * 4 steps (about 5 s for the earlier kernel). GPUs take 2 (registers, and the
 * workgroup memory of the dB/dC sums).
 */
const CPU_BLOCK = 4;

function gradPlan(ctx: KernelContext<ScanGradAttrs>): GradPlan {
  const { slots } = scanSlots(ctx.attrs, false);
  const [B, L, I] = ctx.inputs[slots.u].shape;
  const N = ctx.inputs[slots.a].shape[1];
  const every = checkpointsOf(ctx.attrs);
  const chunk = gradChunk(L, every || ctx.attrs.chunk);
  const cpu = ctx.caps.cpuCores > 0;
  const wg = cpu ? 8 : 64;
  const cpt = !cpu ? 1 : I % 4 === 0 ? CPU_VEC_CPT : Math.max(1, Math.min(4, Math.floor(32 / N)));
  const lanes = cpu;
  // GPU: the dB/dC terms of a block in workgroup memory.
  const perStep = wg * 2 * N * 4;
  const block = lanes
    ? CPU_BLOCK
    : Math.max(1, Math.min(2, Math.floor(ctx.caps.maxWorkgroupStorage / perStep)));
  // CPU: a segment's partials hold at most about one [B, L, I] activation.
  const rows = Math.ceil(I / (wg * cpt)) * (lanes ? wg : 1);
  const segSteps = lanes ? Math.max(1, Math.floor((L * I) / (rows * 2 * N))) : 2 * L;
  const workgroupBytes = ctx.caps.maxWorkgroupStorage;
  const p = { B, L, I, N, chunk, NC: Math.ceil(L / chunk), wg, cpt, block, lanes, segSteps };
  // CPU: the block starts of a chunk in workgroup memory where they fit.
  const local = lanes && Math.ceil(chunk / block) <= localBlockSlots({ ...p, workgroupBytes });
  return { ...p, localBlocks: local, workgroupBytes, saved: every > 0 };
}

function emitScanGrad(ctx: KernelContext<ScanGradAttrs>): KernelEmission {
  const { slots } = scanSlots(ctx.attrs, false);
  const gs = gradSlots(ctx.attrs);
  const p = gradPlan(ctx);
  const { B, L, I, N, chunk, NC } = p;
  if (B * L * I === 0) return { kernels: [] };
  // The chunk goes to the kernels at run time (after the params, as u32 bits),
  // so one compiled reverse walk serves every chunk length (one for chunks
  // whose block starts fit in workgroup memory, one for longer chunks).
  const chunkSlot = { slot: I * N + 2 * I + 1, value: chunk };
  const Ipad = blocksOf(p) * p.wg * p.cpt;
  const seg = segmentsOf(p);
  // One compiled reverse walk and reduce serve every segment: they read which
  // one from the counters in scratch0.
  const segment = [reverseKernel(ctx, slots, p, gs.gy, gs.ck), reduceKernel(ctx, slots, p)];
  return {
    kernels: [
      packKernel(ctx, slots, I, N, undefined, undefined, chunkSlot),
      checkpointKernel(ctx, slots, p, gs.ghF),
      ...Array.from({ length: seg.count }, () => segment).flat(),
      finalKernel(ctx, slots, p),
    ],
    scratch: [
      { length: I * N + 2 * I + 4, type: "f32" },
      {
        length: Math.max(
          1,
          B * ((p.saved ? 0 : NC) + (p.localBlocks ? 0 : Math.ceil(chunk / p.block))) * N * Ipad,
        ),
        type: "f32",
      },
      { length: B * seg.steps * partialRows(p) * 2 * N, type: "f32" },
      { length: (B * (2 * N + 2) + N + 2) * Ipad, type: "f32" },
    ],
  };
}

/**
 * selective_scan_grad(u, delta, A, B, C, D, z?, deltaBias?, h0?, dy, dhFinal?, saved?)
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
  arity: [7, 12],
  attrNames: [...SCAN_ATTR_NAMES, "finalGrad", "checkpoints"],
  infer: inferScanGrad,
  reference: (inputs, attrs) => referenceScanGrad(inputs, attrs),
  lower: { kind: "kernel", prologue: true, epilogue: false, emit: emitScanGrad },
};
