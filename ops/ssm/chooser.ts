/**
 * How a selective scan runs on a device class: the thread shape of its kernels
 * (a {@linkcode ScanLayout} per target) and the algorithm — one pass over L or
 * the chunked scan — with the reason the plan shows.
 *
 * @module
 */

import type { DeviceCaps, KernelChoice } from "../types.ts";
import type { ScanAttrs } from "./attrs.ts";
import type { ScanShape } from "./scan_kernels.ts";

/**
 * The scan kernels' thread shape on one device class.
 *
 * @example
 * ```ts ignore
 * GPU_SCAN.shape(1536, 16); // { cpt: 1, wg: 64 }
 * ```
 */
export interface ScanLayout {
  /** Thread shape of the scan kernels over I channels of N states, walking L steps. */
  shape(I: number, N: number, L: number): ScanShape;
  /** Thread shape of the decode step (`ssm_step`, L = 1). */
  stepShape(I: number, N: number): ScanShape;
  /** Touch the u/Δ/z rows ahead of the walk (see `scanKernel`). */
  readonly prefetch: boolean;
}

/** The baseline's shape, and the GPU's: the textbook one thread per channel. */
const ONE_PER_THREAD: ScanShape = { cpt: 1, wg: 64 };

/**
 * CPU rasterisers (llvmpipe): a workgroup is one 8-lane SIMD thread and every
 * storage access a per-lane loop, also when all lanes read the same address. So
 * a thread owns 16 channels: each B/C row load serves all of them, and each
 * step's u/Δ/z cache misses are waited for once per 16 channels. The spilled
 * state registers cost far less than the loads: 2 channels per thread in
 * 128-lane groups ran the I = 1536, L = 8192 scan in 357 ms vs 269 ms at 16
 * (I = 256: 135 vs 92 ms). More channels run faster still (one pass, same shape:
 * 16 → 122 ms, 32 → 105 ms, 48 → 98 ms) but LLVM compiles the unrolled kernel in
 * 8 s, 27 s and 67 s, so the shape stays at 256 states per thread (fewer
 * channels for larger N). The one-pass kernel reads L at run time, so that
 * compile is paid once per model shape, not once per prompt length; the chunked
 * kernels still bake L in.
 *
 * @example
 * ```ts ignore
 * CPU_RASTER_SCAN.shape(1536, 16, 8192); // { cpt: 16, wg: 8 }; 256 steps: { cpt: 4, wg: 8 }
 * ```
 */
export const CPU_RASTER_SCAN: ScanLayout = {
  // Walks of at most 512 steps (a prompt's chunks are 256) keep 128 states a
  // thread: in the demo model's 256-token prefill (I = 512, N = 16, 6 layers; GPU
  // timestamps, two rounds) 16 / 8 / 4 channels ran the scans in 10.7, 11.1 /
  // 9.5, 13.4 / 12.3, 15.6 ms of a ~450 ms prefill, and LLVM compiled the kernel in
  // 5.2 / 1.6 / 0.54 s. Walks of at most 256 steps — every chunk a prompt runs,
  // padded or not — keep 64: that 256-token prefill compiled in 5.6 s instead of
  // 6.5 s and its scans took 11.1, 11.5 instead of 9.4, 9.4 ms of ~350 ms (two
  // rounds): the compile is what a first long prompt waits for.
  shape: (I, N, L) => {
    if (I < 128) return ONE_PER_THREAD;
    const states = L <= 256 ? 64 : L <= 512 ? 128 : 256;
    return { cpt: Math.max(1, Math.min(16, Math.floor(states / N))), wg: 8 };
  },
  // The decode step walks one row: a B/C load shared by 16 channels saves little
  // when every state is loaded and stored once anyway. Measured on lavapipe (N = 16,
  // dt_proj fused; per step, GPU timestamps, two rounds): I = 1536 at 16 / 8 / 4
  // channels a thread 1.17, 1.11 / 1.09, 1.01 / 1.02, 1.07 ms, I = 512 (6 layers)
  // 2.1, 1.8 / 1.7, 2.2 / 1.5, 1.6 ms — no slower at 4 — while LLVM compiled the
  // kernel in 11.8 / 1.8 / 0.75 s (I = 1536) and 8.6 / 2.6 / 0.86 s (I = 512): the
  // step was most of a Mamba model's decode compile, which a first token waits for.
  // One channel a thread in 64-lane groups compiles in 0.18 s instead of 0.6–0.8 s
  // and runs as fast up to I = 1536 (40 steps, medians of two rounds: 0.419, 0.426
  // vs 0.420, 0.422 ms at 1536; the demo's 6 layers at I = 512: 1.15 vs 1.24 ms), but
  // 4–8% slower at I = 5120 (0.917, 0.920 vs 0.878, 0.845 ms): so up to I = 2048.
  stepShape: (I) => (I <= 2048 ? ONE_PER_THREAD : { cpt: 4, wg: 8 }),
  prefetch: true,
};

/**
 * GPUs: one channel per thread in 64-lane workgroups, its N states in registers.
 *
 * @example
 * ```ts ignore
 * GPU_SCAN.shape(64, 16); // { cpt: 1, wg: 64 }
 * ```
 */
export const GPU_SCAN: ScanLayout = {
  shape: () => ONE_PER_THREAD,
  stepShape: () => ONE_PER_THREAD,
  prefetch: false,
};

/**
 * Thread shape of the scan kernels: the layout's, or one thread per channel for
 * the baseline.
 *
 * @example
 * ```ts ignore
 * pickShape(CPU_RASTER_SCAN, 1536, 16, 8192, true); // { cpt: 1, wg: 64 }
 * ```
 */
export function pickShape(
  layout: ScanLayout,
  I: number,
  N: number,
  L: number,
  baseline: boolean,
): ScanShape {
  return baseline ? ONE_PER_THREAD : layout.shape(I, N, L);
}

/** Default chunk: enough chunks to give a many-core GPU ≥ 32× the sequential parallelism. */
function pickChunk(L: number): number {
  return L >= 4096 ? 64 : L >= 512 ? 64 : 32;
}

/**
 * The scan's algorithms as plans name them: the one-thread-per-channel
 * baseline, one pass over L, or the chunked scan.
 *
 * @example
 * ```ts ignore
 * const a: ScanAlgorithm = "one pass";
 * ```
 */
export type ScanAlgorithm = "sequential" | "one pass" | "chunked";

/**
 * How a selective scan runs on a device, and why (the plan's first kernel of the
 * scan carries it as its `choice` and leads its label with it).
 *
 * @example
 * ```ts ignore
 * const c: ScanChoice = { algorithm: "one pass", chunk: 512, reason: "chunk 512 ≥ L = 512: one pass" };
 * ```
 */
export interface ScanChoice extends KernelChoice {
  /** The algorithm taken. */
  readonly algorithm: ScanAlgorithm;
  /** Steps per chunk (L for one pass). */
  readonly chunk: number;
}

/**
 * The compiler's choice of scan algorithm. The chunked scan computes every state
 * twice (chunk-end states, then outputs) to expose L/chunk-fold parallelism: a GPU
 * needs it, a CPU adapter whose cores are already busy with channel blocks loses
 * by it (I = 1536, L = 8192 on 2 cores: one pass 117 ms, chunked 197 ms).
 *
 * @example
 * ```ts ignore
 * chooseScan(scanAttrs(), 1, 8192, 1536, 16, caps, CPU_RASTER_SCAN).algorithm; // "one pass"
 * ```
 */
export function chooseScan(
  attrs: ScanAttrs,
  B: number,
  L: number,
  I: number,
  N: number,
  caps: Pick<DeviceCaps, "cpuCores">,
  layout: ScanLayout,
): ScanChoice {
  if (attrs.algorithm === "sequential") {
    return {
      algorithm: "sequential",
      chunk: L,
      reason: `"sequential": one thread per channel over L`,
    };
  }
  const chunk = Math.min(L, attrs.chunk || pickChunk(L));
  const NC = Math.ceil(L / chunk);
  if (NC === 1) {
    return { algorithm: "one pass", chunk: L, reason: `chunk ${chunk} ≥ L = ${L}: one pass` };
  }
  if (attrs.algorithm === "chunked" || attrs.chunk > 0) {
    return { algorithm: "chunked", chunk, reason: `"chunked": ${NC} chunks of ${chunk}` };
  }
  const cores = caps.cpuCores;
  const shape = pickShape(layout, I, N, L, false);
  const blocks = B * Math.ceil(I / (shape.wg * shape.cpt));
  if (cores > 0 && blocks >= cores) {
    return {
      algorithm: "one pass",
      chunk: L,
      reason: `auto: ${blocks} channel blocks keep the CPU adapter's ${cores} cores busy, ` +
        `so one pass over L (chunks would compute every state twice)`,
    };
  }
  return {
    algorithm: "chunked",
    chunk,
    reason: `auto: ${NC} chunks of ${chunk} × ${blocks} channel blocks = ${NC * blocks} ` +
      `workgroups for ${cores > 0 ? `${cores} CPU cores` : "a GPU"}`,
  };
}
