/**
 * The `selective_scan` op: Mamba's S6 scan over a whole sequence, in one pass
 * over L or chunked in three passes where the device needs the parallelism (see
 * `chooseScan`), plus the one-thread-per-channel baseline. Its portable kernels
 * are shaped for CPU rasterisers; {@linkcode selectiveScanGpu} is the GPU
 * target's (`ops/targets.ts`).
 *
 * @module
 */

import type {
  KernelContext,
  KernelEmission,
  KernelEmitter,
  KernelSource,
  OpDef,
  ScratchSpec,
} from "../types.ts";
import { KernelIo } from "../wgsl/mod.ts";
import { load, store } from "./access.ts";
import { checkpointsOf, SCAN_ATTR_NAMES, type ScanAttrs, scanSlots } from "./attrs.ts";
import { chooseScan, CPU_RASTER_SCAN, GPU_SCAN, pickShape, type ScanLayout } from "./chooser.ts";
import { inferScanLike } from "./infer.ts";
import { referenceScan } from "./reference.ts";
import { packKernel, scanKernel } from "./scan_kernels.ts";

function emitScan(ctx: KernelContext<ScanAttrs>, layout: ScanLayout): KernelEmission {
  const { slots } = scanSlots(ctx.attrs, false);
  const u = ctx.inputs[slots.u];
  const [B, L, I] = u.shape;
  const N = ctx.inputs[slots.a].shape[1];
  if (B * L * I === 0) return { kernels: [] };
  const finalState = ctx.attrs.finalState;
  const h0 = slots.h0;
  const choice = chooseScan(ctx.attrs, B, L, I, N, ctx.caps, layout);
  const chunk = choice.chunk;
  const NC = Math.ceil(L / chunk);
  const tag = `B${B}_L${L}_I${I}_N${N}`;
  // A·log₂e | D | Δ bias | the CPU prefetch touch's sink | L (one-pass kernels)
  // | with a `last` input, how many rows are real, for every walk to stop at.
  const padded = slots.last !== undefined;
  const params: ScratchSpec = { length: I * N + 2 * I + (padded ? 3 : 2), type: "f32" };
  const length = { slot: I * N + 2 * I + 1, value: L };
  const stop = padded ? { slot: I * N + 2 * I + 2, length: L } : undefined;
  // The backward's checkpoints (see `checkpointsOf`): the last output.
  const every = checkpointsOf(ctx.attrs);
  const checkpoints = every > 0 ? { output: ctx.outputs.length - 1, every } : undefined;
  const common = {
    batch: B,
    length: L,
    channels: I,
    state: N,
    slots,
    softplus: ctx.attrs.softplus,
    prefetch: layout.prefetch,
    stopSlot: stop?.slot,
  };
  // The choice and its reason lead the plan's first kernel label (`inspect`),
  // and ride on that kernel as its `choice` for tools that read plans. The
  // sequential baseline is a one-pass kernel too, and its label has always said
  // so; the structured `choice` names it "sequential".
  const head = (k: KernelSource): KernelSource => ({
    ...k,
    label: `[${
      choice.algorithm === "chunked" ? "chunked" : "one pass"
    }] ${choice.reason}; ${k.label}`,
    choice: { algorithm: choice.algorithm, reason: choice.reason },
  });
  if (choice.algorithm !== "chunked") {
    // One pass per channel over all of L. With both an initial and a final state
    // the pack kernel copies h0 into the final-state output, which the scan then
    // updates in place: 8 bindings with z instead of 9.
    const both = h0 !== undefined && finalState;
    const kernels = [
      head(packKernel(
        ctx,
        slots,
        I,
        N,
        both ? { input: h0, count: B * I * N } : undefined,
        undefined,
        length,
        stop,
      )),
      scanKernel(ctx, {
        ...common,
        label: `ssm_scan_sequential_${tag}`,
        mode: "output",
        chunk: L,
        chunks: 1,
        shape: pickShape(layout, I, N, L, choice.algorithm === "sequential"),
        init: both
          ? (io, idx) => `${io.out(1)}[${idx}]`
          : h0 !== undefined
          ? (io, idx) => load(ctx, io, h0, idx)
          : "zero",
        final: finalState,
        lengthSlot: length.slot,
        checkpoints,
      }),
    ];
    return { kernels, scratch: [params] };
  }
  // Chunked: pass 1 (chunk-end states from zero + ΣΔ), pass 2 (carry across
  // chunks with (a₁,b₁)∘(a₀,b₀) = (a₁a₀, a₁b₀ + b₁), a₁ = exp(A·ΣΔ)), pass 3
  // (re-scan each chunk from its carried-in state, write y). Only y and the final
  // state reach memory the graph sees; the per-chunk states are scratch of size
  // [B, L/chunk, I, N], never [B, L, I, N].
  // The chunk passes keep the long-walk shape (their pass 2 carries across all of L).
  const shape = pickShape(layout, I, N, Infinity, false);
  const NC1 = finalState ? NC : NC - 1; // the last chunk's end state only feeds h_final
  const pass1 = scanKernel(ctx, {
    ...common,
    label: `ssm_scan_chunk_states_${tag}_c${chunk}`,
    mode: "states",
    chunk,
    chunks: NC,
    shape,
    init: "zero",
  });
  const pass1Grid: [number, number, number] = [pass1.workgroups[0], NC1, B];
  const wg2 = 64;
  const io = new KernelIo();
  const h0Load = h0 !== undefined ? load(ctx, io, h0, `b * ${I * N}u + j`) : "0.0";
  const [params0, sums, states] = [io.scratch(0), io.scratch(1), io.scratch(2)];
  const code2 = `@compute @workgroup_size(${wg2})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = wid.x * ${wg2}u + lid.x;
  if (j >= ${I * N}u) { return; }
  let b = wid.y;
  let i = j / ${N}u;
  let a = ${params0}[j];
  var h: f32 = ${h0Load};
  for (var c = 0u; c < ${NC}u; c = c + 1u) {
    let idx = (b * ${NC}u + c) * ${I * N}u + j;
    let st = ${states}[idx];
    ${states}[idx] = h;
    if (c < ${NC1}u) {
      h = fma(exp2(${sums}[(b * ${NC}u + c) * ${I}u + i] * a), h, st);
    }
  }
${finalState ? `  ${store(io, ctx.outputs[1], 1, `b * ${I * N}u + j`, "h")}` : ""}
}`;
  const pass3 = scanKernel(ctx, {
    ...common,
    label: `ssm_scan_chunk_output_${tag}_c${chunk}`,
    mode: "output",
    chunk,
    chunks: NC,
    shape,
    init: "chunk",
    checkpoints,
  });
  return {
    kernels: [
      head(packKernel(ctx, slots, I, N, undefined, undefined, undefined, stop)),
      { ...pass1, workgroups: pass1Grid },
      {
        label: `ssm_scan_chunk_carry_${tag}_c${chunk}`,
        code: code2,
        workgroups: [Math.ceil(I * N / wg2), B, 1],
        uses: io.uses,
      },
      pass3,
    ],
    scratch: [
      params,
      { length: B * NC * I, type: "f32" },
      { length: B * NC * I * N, type: "f32" },
    ],
  };
}

/**
 * selective_scan(u, delta, A, B, C, D, z?, deltaBias?, h0?, last?) → [y, hFinal?]:
 * Mamba's S6 scan, hₜ = exp(Δₜ·A) ⊙ hₜ₋₁ + Δₜ·Bₜ·uₜ, yₜ = Cₜ·hₜ + D·uₜ, gated by
 * silu(z); Δ = softplus(delta + bias) when asked. State in f32. With `last`,
 * rows after it are padding (see `ScanAttrs.last`). Its portable
 * kernels are shaped for CPU rasterisers (16 channels per thread in 8-lane
 * workgroups, one pass while the channel blocks keep the cores busy).
 *
 * @example
 * ```ts ignore
 * opDef("selective_scan") === selectiveScan; // in the op table
 * ```
 */
export const selectiveScan: OpDef<ScanAttrs> = {
  arity: [6, 10],
  attrNames: [...SCAN_ATTR_NAMES, "last", "checkpoints"],
  infer: (inputs, attrs) => inferScanLike(inputs, attrs, false),
  reference: (inputs, attrs) => referenceScan(inputs, attrs, false),
  lower: {
    kind: "kernel",
    prologue: true,
    epilogue: true,
    emit: (ctx) => emitScan(ctx, CPU_RASTER_SCAN),
  },
};

/**
 * The selective scan's GPU kernels: one channel per thread in 64-lane
 * workgroups, chunked unless one chunk covers L (the `gpu` target's entry).
 *
 * @example
 * ```ts ignore
 * TARGET_TABLES.gpu.emitters.selective_scan === selectiveScanGpu; // true
 * ```
 */
export const selectiveScanGpu: KernelEmitter<ScanAttrs> = (ctx) => emitScan(ctx, GPU_SCAN);
