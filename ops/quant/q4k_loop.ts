/**
 * The Q4_K dot-product loop a super-block at a time, shared by the decode
 * GEMV (`./gemv_q4k.ts`) and the MoE expert kernels: per 256-element block and
 * weight row, one `vec4<u32>` load of the header (d, dmin and the twelve bytes
 * of 6-bit scales and mins, unpacked four at a time) and two per pair of
 * sub-blocks (32 code bytes: low nibbles one sub-block, high nibbles the next);
 * the pair's 64 activations of each row are loaded once for every column.
 * On llvmpipe a weight element then costs 0.14 words gathered (f16: 0.5).
 *
 * @module
 */

/**
 * WGSL helpers the loop's code calls (`q4k_b4`, `q4k_nib4`): bytes and nibbles
 * of a word as floats, converted through i32 (one instruction on AVX2;
 * unsigned needs several).
 *
 * @example
 * ```ts
 * import { Q4K_HELPERS } from "./q4k_loop.ts";
 * Q4K_HELPERS.includes("fn q4k_nib4("); // true
 * ```
 */
export const Q4K_HELPERS = `
fn q4k_b4(w: u32) -> vec4<f32> {
  let v = vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(255u);
  return vec4<f32>(bitcast<vec4<i32>>(v));
}
fn q4k_nib4(w: u32) -> vec4<f32> {
  let v = vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(15u);
  return vec4<f32>(bitcast<vec4<i32>>(v));
}`;

/**
 * One Q4_K weight matrix of the loop.
 *
 * @example
 * ```ts
 * import type { Q4kMatrix } from "./q4k_loop.ts";
 * const m: Q4kMatrix = { read: (i) => `in1[${i}]`, row: (j) => `rb${j}` };
 * ```
 */
export interface Q4kMatrix {
  /** WGSL expression of the matrix's `vec4<u32>` at vec4 index `i`. */
  readonly read: (i: string) => string;
  /** WGSL vec4 index where weight row `j` (an output column) starts. */
  readonly row: (j: number) => string;
}

/**
 * Lines computing `acc_<m>_<r>_<j> = Σ_k A[r, k] · W_m[j, k]` (declared as f32
 * here) over `blocks` super-blocks: `R` activation rows (`a(r, i)` is vec4 `i`
 * of row r as `vec4<f32>`), `N` columns of each matrix in `mats`. The caller
 * adds {@linkcode Q4K_HELPERS} to the shader once.
 *
 * @example
 * ```ts
 * import { q4kLoop } from "./q4k_loop.ts";
 * const lines = q4kLoop(1, 4, 16, (r, i) => `vec4<f32>(in0[${i}])`, [{ read: (i) => `in1[${i}]`, row: (j) => `rb${j}` }]);
 * ```
 */
export function q4kLoop(
  R: number,
  N: number,
  blocks: number,
  a: (r: number, i: string) => string,
  mats: readonly Q4kMatrix[],
): string[] {
  const rs = Array.from({ length: R }, (_, r) => r);
  const cols: [number, number, Q4kMatrix][] = mats.flatMap((m, mi) =>
    Array.from({ length: N }, (_, j) => [mi, j, m] as [number, number, Q4kMatrix])
  );
  const id = (m: number, j: number) => `${m}_${j}`;
  const L: string[] = [];
  for (const [m, j, mat] of cols) L.push(`  let rb${id(m, j)} = ${mat.row(j)};`);
  for (const [m, j] of cols) for (const r of rs) L.push(`  var acc_${m}_${r}_${j} = 0.0;`);
  L.push(`  for (var b = 0u; b < ${blocks}u; b++) {`);
  for (const [m, j, mat] of cols) {
    const c = id(m, j);
    // ggml's get_scale_min_k4 on whole words: scales 0–3 and mins 0–3 are the low
    // six bits of bytes 0–3 and 4–7; 4–7 take their low four bits from bytes 8–11
    // and their top two from the top of bytes 0–3 / 4–7.
    L.push(
      `    let h${c} = ${mat.read(`rb${c} + b * 9u`)};`,
      `    let dm${c} = unpack2x16float(h${c}.x);`,
      `    let sa${c} = dm${c}.x * q4k_b4(h${c}.y & 0x3f3f3f3fu);`,
      `    let ma${c} = dm${c}.y * q4k_b4(h${c}.z & 0x3f3f3f3fu);`,
      `    let sb${c} = dm${c}.x * q4k_b4((h${c}.w & 0x0f0f0f0fu) | ((h${c}.y >> 2u) & 0x30303030u));`,
      `    let mb${c} = dm${c}.y * q4k_b4(((h${c}.w >> 4u) & 0x0f0f0f0fu) | ((h${c}.z >> 2u) & 0x30303030u));`,
    );
  }
  for (let p = 0; p < 4; p++) {
    const half = p < 2 ? "a" : "b";
    const lo = (2 * p) % 4, hi = (2 * p + 1) % 4; // components of the scale vectors
    L.push(`    {`);
    L.push(`      let kb = b * 64u + ${p * 16}u;`);
    for (const r of rs) {
      for (let i = 0; i < 16; i++) L.push(`      let x${r}_${i} = ${a(r, `kb + ${i}u`)};`);
      const sum = (from: number) =>
        Array.from({ length: 8 }, (_, i) => `x${r}_${from + i}`).join(" + ");
      L.push(
        `      let slo${r} = dot(${sum(0)}, vec4<f32>(1.0));`,
        `      let shi${r} = dot(${sum(8)}, vec4<f32>(1.0));`,
      );
    }
    for (const [m, j, mat] of cols) {
      const c = id(m, j);
      L.push(`      {`);
      L.push(
        `      let q${c}a = ${mat.read(`rb${c} + b * 9u + ${1 + 2 * p}u`)};`,
        `      let q${c}b = ${mat.read(`rb${c} + b * 9u + ${2 + 2 * p}u`)};`,
      );
      for (const r of rs) {
        L.push(`      var dlo${r} = vec4<f32>(0.0);`, `      var dhi${r} = vec4<f32>(0.0);`);
      }
      for (let i = 0; i < 8; i++) {
        L.push(`      { let w = q${c}${"ab"[i >> 2]}.${"xyzw"[i & 3]};`);
        L.push(`        let ql = q4k_nib4(w); let qh = q4k_nib4(w >> 4u);`);
        for (const r of rs) {
          L.push(
            `        dlo${r} = fma(x${r}_${i}, ql, dlo${r});`,
            `        dhi${r} = fma(x${r}_${8 + i}, qh, dhi${r});`,
          );
        }
        L.push(`      }`);
      }
      for (const r of rs) {
        L.push(
          `      acc_${m}_${r}_${j} += s${half}${c}[${lo}] * dot(dlo${r}, vec4<f32>(1.0))` +
            ` - m${half}${c}[${lo}] * slo${r} + s${half}${c}[${hi}] * dot(dhi${r}, vec4<f32>(1.0))` +
            ` - m${half}${c}[${hi}] * shi${r};`,
        );
      }
      L.push(`      }`);
    }
    L.push(`    }`);
  }
  L.push(`  }`);
  return L;
}
