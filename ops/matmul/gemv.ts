/**
 * The decode GEMV: a few rows against a `[N, K]` weight (Linear layout), read
 * four elements at a time.
 *
 * @module
 */

import { flatIndex, grid, KernelIo, unpackHalves } from "../wgsl/mod.ts";
import type { MatmulKernel } from "./spec.ts";

/**
 * Shape of a few-row matmul against a `[N, K]` weight; see {@linkcode emitGemv}.
 *
 * @example
 * ```ts
 * import type { GemvSpec } from "./gemv.ts";
 * const spec: GemvSpec = {
 *   rows: 1, N: 4096, K: 4096, elem: "f32", aDirect: true, cDirect: true,
 *   maxWorkgroupsPerDim: 65535,
 * };
 * ```
 */
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
  /**
   * f16 weights (and direct f16 activations) read as `vec4<u32>` words, eight
   * values a load, widened with `unpack2x16float`; needs `elem` f16, K a
   * multiple of 8 and `in1` bound whole. llvmpipe loads a storage value one
   * lane and one component at a time, so a `vec4<f16>` costs as many loads as
   * a `vec4<f32>`: packed words halve them (32000×512: 13.9 → 8.5 ms).
   * See {@linkcode gemvPacksHalf}.
   */
  packHalf?: boolean;
}

/**
 * Whether {@linkcode emitGemv} reads this spec's f16 values as packed words:
 * asked for, f16, K a multiple of 8, the weight bound whole.
 *
 * @example
 * ```ts
 * import { gemvPacksHalf } from "./gemv.ts";
 * gemvPacksHalf({ rows: 1, N: 8, K: 16, elem: "f16", aDirect: true, cDirect: true, maxWorkgroupsPerDim: 65535, packHalf: true }); // true
 * ```
 */
export function gemvPacksHalf(spec: GemvSpec): boolean {
  return spec.packHalf === true && spec.elem === "f16" && spec.K % 8 === 0 &&
    spec.bAccess !== "segmented";
}

/**
 * Rows a GEMV kernel handles in registers; more rows take the tiled matmul.
 *
 * @example
 * ```ts
 * import { GEMV_MAX_ROWS } from "./gemv.ts";
 * const decode = 1 <= GEMV_MAX_ROWS; // true
 * ```
 */
export const GEMV_MAX_ROWS = 4;

/**
 * A GEMV for decode: C[r, n] = Σ_k A[r, k]·W[n, k] with W stored `[N, K]` (Linear
 * layout) and few rows. Each invocation owns `rows × 4` outputs and walks K four
 * elements at a time with vec4 loads of A and W; no workgroup memory, no barriers.
 * On llvmpipe a scalar storage load costs a per-lane gather, so vec4 loads of the
 * weight rows are what lets a decode step read weights near memory speed. `in1`
 * (and a direct `in0`) must be bound as `array<vec4<elem>>`, or as
 * `array<vec4<u32>>` when {@linkcode gemvPacksHalf} (the caller sets `arrayTypes`).
 *
 * @example
 * ```ts
 * import { emitGemv } from "./gemv.ts";
 * const k = emitGemv({ rows: 1, N: 4096, K: 4096, elem: "f32", aDirect: true, cDirect: true, maxWorkgroupsPerDim: 65535 });
 * k.workgroups; // [64, 1, 1]
 * ```
 */
export function emitGemv(spec: GemvSpec): MatmulKernel {
  const { rows: R, N, K, elem } = spec;
  if (R < 1 || R > GEMV_MAX_ROWS || K % 4 !== 0 || K < 4 || N < 1) {
    throw new RangeError(`emitGemv: rows ${R}, K ${K} (multiple of 4), N ${N} out of range`);
  }
  const io = new KernelIo();
  const C = 4; // columns per invocation
  const packed = gemvPacksHalf(spec);
  // Vectors a row: vec4 of elem, or vec4<u32> of eight halves when packed.
  const K4 = packed ? K / 8 : K / 4;
  const invocations = Math.ceil(N / C);
  // Invocations per workgroup: two 8-lane SIMD batches on llvmpipe; one batch when
  // that leaves fewer than 4 workgroups (x_proj's 64 columns), since a workgroup
  // runs on one core there.
  const WG = Math.ceil(invocations / 16) < 4 ? 8 : 16;
  const workgroups = grid(Math.ceil(invocations / WG), spec.maxWorkgroupsPerDim);
  // Element e of the four (or eight, packed) activations at vector k4 of row r.
  const loadA = (r: number, half = 0) => {
    const base = packed ? `k4 * 8u + ${half * 4}u` : "k4 * 4u";
    return `vec4<f32>(${
      [0, 1, 2, 3].map((e) => `f32(${io.load(0, `${r * K}u + ${base}${e ? ` + ${e}u` : ""}`)})`)
        .join(", ")
    })`;
  };
  const acc: string[] = [];
  const body: string[] = [];
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) acc.push(`  var acc_${r}_${c} = vec4<f32>(0.0);`);
  }
  const readB = spec.bAccess === "segmented"
    ? (i: string) => io.vget(1, i)
    : (i: string) => `${io.in(1)}[${i}]`;
  if (packed) {
    for (let c = 0; c < C; c++) body.push(`    let q${c} = ${readB(`row${c} + k4`)};`);
    for (let r = 0; r < R; r++) {
      if (spec.aDirect) body.push(`    let x${r} = ${io.in(0)}[${r * K4}u + k4];`);
      for (const h of [0, 1] as const) {
        const a = spec.aDirect ? unpackHalves(`x${r}`, h) : loadA(r, h);
        body.push(`    let a${r}_${h} = ${a};`);
        for (let c = 0; c < C; c++) {
          body.push(
            `    acc_${r}_${c} = fma(a${r}_${h}, ${unpackHalves(`q${c}`, h)}, acc_${r}_${c});`,
          );
        }
      }
    }
  } else {
    for (let c = 0; c < C; c++) body.push(`    let w${c} = vec4<f32>(${readB(`row${c} + k4`)});`);
    for (let r = 0; r < R; r++) {
      body.push(
        `    let a${r} = ${spec.aDirect ? `vec4<f32>(${io.in(0)}[${r * K4}u + k4])` : loadA(r)};`,
      );
      for (let c = 0; c < C; c++) {
        body.push(`    acc_${r}_${c} = fma(a${r}, w${c}, acc_${r}_${c});`);
      }
    }
  }
  const stores: string[] = [];
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) {
      const v = `${elem}(dot(acc_${r}_${c}, vec4<f32>(1.0)))`;
      const i = `${r * N}u + n0 + ${c}u`;
      stores.push(
        `  if (n0 + ${c}u < ${N}u) { ${
          spec.cDirect ? `${io.out(0)}[${i}] = ${v};` : `${io.store(0, i, v)};`
        } }`,
      );
    }
  }
  const code = `
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let inv = ${flatIndex(workgroups, WG)};
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
  return { code, workgroups, label: `gemv_r${R}x${C}${packed ? "_packed" : ""}`, uses: io.uses };
}
