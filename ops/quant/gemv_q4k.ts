/**
 * The decode GEMV for Q4_K weights, block at a time: each invocation reads a
 * whole 144-byte super-block of a row as nine `vec4<u32>` loads — its scales
 * once, then 32 code bytes a pair of sub-blocks, whose low nibbles are one
 * sub-block and high nibbles the next — so a weight element costs 0.14 words
 * gathered (f16: 0.5, f32: 1). On llvmpipe, where each invocation is a SIMD lane
 * and a per-lane load is a gather, that count is what a GEMV's time follows;
 * the activations' loads are uniform across lanes (decode rows are constants),
 * which llvmpipe turns into scalar loads.
 *
 * @module
 */

import type { KernelSource } from "../types.ts";
import { flatIndex, grid, KernelIo } from "../wgsl/mod.ts";
import { Q4K_HELPERS, q4kLoop } from "./q4k_loop.ts";

/**
 * Shape of a Q4_K decode GEMV; see {@linkcode emitQ4kGemv}.
 *
 * @example
 * ```ts
 * import type { Q4kGemvSpec } from "./gemv_q4k.ts";
 * const s: Q4kGemvSpec = { rows: 1, N: 14336, K: 4096, elem: "f32", aDirect: true, cDirect: true, maxWorkgroupsPerDim: 65535 };
 * ```
 */
export interface Q4kGemvSpec {
  /** Activation rows (1–4). */
  rows: number;
  /** Weight rows (outputs per activation row). */
  N: number;
  /** Row length, a multiple of 256. */
  K: number;
  /** Activation and output storage type. */
  elem: "f32" | "f16";
  /** `in0` may be read as `array<vec4<elem>>`. */
  aDirect: boolean;
  /** `out0` may be written directly. */
  cDirect: boolean;
  /** Device limit `maxComputeWorkgroupsPerDimension`. */
  maxWorkgroupsPerDim: number;
  /**
   * Weight rows an invocation owns (default 16). On llvmpipe more rows share
   * each activation load: 4 → 8 → 16 → 32 measured 20.5, 11.3, 9.5 and 8.4 ms
   * at 14336×4096 (f16: 25 ms), compile time growing with the unrolled code; a
   * GPU wants 4 (more invocations in flight).
   */
  columns?: number;
}

/**
 * Emits the block-at-a-time Q4_K GEMV: `out[r, n] = Σ_k in0[r, k]·W[n, k]` with
 * `W` the Q4_K bytes bound as `array<vec4<u32>>` (the caller sets
 * `arrayTypes.in1`). Four weight rows an invocation.
 *
 * @example
 * ```ts
 * import { emitQ4kGemv } from "./gemv_q4k.ts";
 * const k = emitQ4kGemv({ rows: 1, N: 64, K: 256, elem: "f32", aDirect: true, cDirect: true, maxWorkgroupsPerDim: 65535 });
 * k.label; // "qgemv_q4_k_blocks_r1x16"
 * ```
 */
export function emitQ4kGemv(spec: Q4kGemvSpec): KernelSource {
  const { rows: R, N, K, elem } = spec;
  if (R < 1 || R > 4 || K % 256 !== 0 || N < 1) {
    throw new RangeError(`emitQ4kGemv: rows ${R} (1–4), K ${K} (multiple of 256), N ${N}`);
  }
  const io = new KernelIo();
  const C = spec.columns ?? 16;
  const BPR = K / 256; // super-blocks per row
  const invocations = Math.ceil(N / C);
  const WG = Math.ceil(invocations / 16) < 4 ? 8 : 16;
  const workgroups = grid(Math.ceil(invocations / WG), spec.maxWorkgroupsPerDim);
  const K4 = K / 4;
  const W = io.in(1);
  const a = (r: number, i: string) =>
    spec.aDirect
      ? `vec4<f32>(${io.in(0)}[${r * K4}u + ${i}])`
      : `vec4<f32>(${
        [0, 1, 2, 3].map((e) => `f32(${io.load(0, `(${r * K4}u + ${i}) * 4u + ${e}u`)})`).join(", ")
      })`;
  const rs = Array.from({ length: R }, (_, r) => r);
  const cs = Array.from({ length: C }, (_, c) => c);
  const L = q4kLoop(R, C, BPR, a, [{
    read: (i) => `${W}[${i}]`,
    row: (c) => `min(n0 + ${c}u, ${N - 1}u) * ${BPR * 9}u`,
  }]);
  for (const r of rs) {
    for (const c of cs) {
      const i = `${r * N}u + n0 + ${c}u`;
      const v = `${elem}(acc_0_${r}_${c})`;
      L.push(
        `  if (n0 + ${c}u < ${N}u) { ${
          spec.cDirect ? `${io.out(0)}[${i}] = ${v};` : `${io.store(0, i, v)};`
        } }`,
      );
    }
  }
  const code = `${Q4K_HELPERS}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let inv = ${flatIndex(workgroups, WG)};
  if (inv >= ${invocations}u) { return; }
  let n0 = inv * ${C}u;
${L.join("\n")}
}`;
  const arrayTypes: Record<string, string> = { in1: "vec4<u32>" };
  if (spec.aDirect) arrayTypes.in0 = `vec4<${elem}>`;
  return {
    label: `qgemv_q4_k_blocks_r${R}x${C}`,
    code,
    workgroups,
    uses: io.uses,
    arrayTypes,
    choice: {
      algorithm: `qgemv_blocks_r${R}x${C}`,
      reason: "q4_k decode: whole super-blocks as vec4<u32> loads (0.14 words a weight)",
    },
  };
}
