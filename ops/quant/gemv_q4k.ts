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
 * k.label; // "qgemv_q4_k_blocks_r1x4"
 * ```
 */
export function emitQ4kGemv(spec: Q4kGemvSpec): KernelSource {
  const { rows: R, N, K, elem } = spec;
  if (R < 1 || R > 4 || K % 256 !== 0 || N < 1) {
    throw new RangeError(`emitQ4kGemv: rows ${R} (1–4), K ${K} (multiple of 256), N ${N}`);
  }
  const io = new KernelIo();
  const C = 4;
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
  const L: string[] = [];
  for (const c of cs) L.push(`  let rb${c} = min(n0 + ${c}u, ${N - 1}u) * ${BPR * 9}u;`);
  for (const r of rs) for (const c of cs) L.push(`  var acc_${r}_${c} = 0.0;`);
  L.push(`  for (var b = 0u; b < ${BPR}u; b++) {`);
  for (const c of cs) {
    // Header: d, dmin (f16 pair) then 12 bytes of 6-bit scales and mins, unpacked
    // four at a time (ggml's get_scale_min_k4 on whole words).
    L.push(
      `    let h${c} = ${W}[rb${c} + b * 9u];`,
      `    let dm${c} = unpack2x16float(h${c}.x);`,
      `    let sc${c}a = dm${c}.x * q_b4(h${c}.y & 0x3f3f3f3fu);`,
      `    let mn${c}a = dm${c}.y * q_b4(h${c}.z & 0x3f3f3f3fu);`,
      `    let sc${c}b = dm${c}.x * q_b4((h${c}.w & 0x0f0f0f0fu) | ((h${c}.y >> 2u) & 0x30303030u));`,
      `    let mn${c}b = dm${c}.y * q_b4(((h${c}.w >> 4u) & 0x0f0f0f0fu) | ((h${c}.z >> 2u) & 0x30303030u));`,
    );
  }
  for (let p = 0; p < 4; p++) {
    const half = p < 2 ? "a" : "b";
    const lo = (2 * p) % 4, hi = (2 * p + 1) % 4; // components of the scale vectors
    L.push(`    {`);
    L.push(`      let kb = b * 64u + ${p * 16}u;`);
    for (const r of rs) {
      L.push(`      var slo${r} = vec4<f32>(0.0);`, `      var shi${r} = vec4<f32>(0.0);`);
    }
    L.push(`      for (var i = 0u; i < 8u; i++) {`);
    for (const r of rs) {
      L.push(`        slo${r} += ${a(r, "kb + i")};`, `        shi${r} += ${a(r, "kb + 8u + i")};`);
    }
    L.push(`      }`);
    for (const c of cs) {
      L.push(
        `      let q${c}0 = ${W}[rb${c} + b * 9u + ${1 + 2 * p}u];`,
        `      let q${c}1 = ${W}[rb${c} + b * 9u + ${2 + 2 * p}u];`,
      );
      for (const r of rs) {
        L.push(
          `      var dlo_${r}_${c} = vec4<f32>(0.0);`,
          `      var dhi_${r}_${c} = vec4<f32>(0.0);`,
        );
      }
      for (let i = 0; i < 8; i++) {
        const w = `q${c}${i >> 2}.${"xyzw"[i & 3]}`;
        L.push(`      { let w = ${w};`);
        L.push(`        let ql = q_nib4(w); let qh = q_nib4(w >> 4u);`);
        for (const r of rs) {
          L.push(
            `        dlo_${r}_${c} = fma(${a(r, `kb + ${i}u`)}, ql, dlo_${r}_${c});`,
            `        dhi_${r}_${c} = fma(${a(r, `kb + ${8 + i}u`)}, qh, dhi_${r}_${c});`,
          );
        }
        L.push(`      }`);
      }
      for (const r of rs) {
        L.push(
          `      acc_${r}_${c} += sc${c}${half}[${lo}] * dot(dlo_${r}_${c}, vec4<f32>(1.0))` +
            ` - mn${c}${half}[${lo}] * dot(slo${r}, vec4<f32>(1.0))` +
            ` + sc${c}${half}[${hi}] * dot(dhi_${r}_${c}, vec4<f32>(1.0))` +
            ` - mn${c}${half}[${hi}] * dot(shi${r}, vec4<f32>(1.0));`,
        );
      }
    }
    L.push(`    }`);
  }
  L.push(`  }`);
  for (const r of rs) {
    for (const c of cs) {
      const i = `${r * N}u + n0 + ${c}u`;
      const v = `${elem}(acc_${r}_${c})`;
      L.push(
        `  if (n0 + ${c}u < ${N}u) { ${
          spec.cDirect ? `${io.out(0)}[${i}] = ${v};` : `${io.store(0, i, v)};`
        } }`,
      );
    }
  }
  const code = `
// Through i32: AVX2 converts signed ints to float in one instruction, unsigned in several.
fn q_b4(w: u32) -> vec4<f32> {
  let v = vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(255u);
  return vec4<f32>(bitcast<vec4<i32>>(v));
}
fn q_nib4(w: u32) -> vec4<f32> {
  let v = vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(15u);
  return vec4<f32>(bitcast<vec4<i32>>(v));
}
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
