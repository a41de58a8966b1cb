/**
 * WGSL group readers of ggml's lattice formats (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
 * IQ3_S, IQ1_S, IQ1_M; layouts in `core/quant/iq_lattice.ts`), in the `qg` / `qc`
 * shape of `wgsl.ts`: `qg(rb, g)` the group's `(scale, min)`, `qc(rb, g, i)` its
 * elements `4i … 4i+3` as signed levels. Groups are the formats' scale runs: 32
 * elements (IQ2_XXS, IQ3_XXS, IQ3_S, IQ1_S), 16 (IQ2_XS, IQ2_S, IQ1_M). IQ1_S's
 * ±1/8 shift is a group's `min`; IQ1_M's, which changes every 8 elements, is added
 * to the codes.
 *
 * The codebook is a constant table bound to the kernel (`core/kernel_tables.ts`:
 * each point's levels as bytes). As WGSL constants it cost LLVM 1.6-5.5 s a kernel on
 * lavapipe (private arrays picked by a switch; a run-time-indexed module `const`
 * compiled to a copy at every use: 125 s for IQ1_S's 1024 words) and looked up
 * 3-16× slower than the uniform buffer it is now.
 *
 * @module
 */

import { IQ_GRIDS, type IqGridName } from "../../core/quant/iq_grids.ts";
import type { LatticeFormat } from "../../core/quant/formats.ts";
import type { KernelTableName } from "../../core/kernel_tables.ts";

const GRID_OF: Readonly<Record<LatticeFormat, IqGridName>> = {
  iq2_xxs: "iq2xxs",
  iq2_xs: "iq2xs",
  iq2_s: "iq2s",
  iq3_xxs: "iq3xxs",
  iq3_s: "iq3s",
  iq1_s: "iq1s",
  iq1_m: "iq1s",
};

/**
 * Levels of elements `4h … 4h+3` of point `idx`, as WGSL: `${p}_lv(idx, h)`,
 * from the table's level bytes (eight a point for the IQ2 and IQ1 grids, four
 * for IQ3's, where `h` is 0; IQ1's biased by one).
 */
function levels(p: string, grid: IqGridName, table: string): string {
  const i = IQ_GRIDS[grid].width === 8 ? "2u * idx + h" : "idx";
  const bias = grid === "iq1s" ? " - vec4<f32>(1.0)" : "";
  return `fn ${p}_lv(idx: u32, h: u32) -> vec4<f32> {
  let i = ${i};
  let w = ${table}[i >> 2u][i & 3u];
  return vec4<f32>(bitcast<vec4<i32>>((vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u)))${bias};
}`;
}

/**
 * The format-specific part of `quantReaders` for a lattice format; `common` holds
 * `wgsl.ts`'s byte and half readers (`${p}_w`, `_byte`, `_half`, `_bytes4`).
 *
 * @example
 * ```ts ignore
 * const wgsl = latticeReaders("iq2_xxs", "q", (name) => `table_${name}`);
 * wgsl.includes("fn q_qc("); // true
 * ```
 */
export function latticeReaders(
  format: LatticeFormat,
  p: string,
  table: (name: KernelTableName) => string,
): string {
  const grid = GRID_OF[format];
  const shared = `
${levels(p, grid, table(grid))}
fn ${p}_u16(o: u32) -> u32 { return (${p}_w(o >> 2u) >> (8u * (o & 2u))) & 0xffffu; }
// Sign bits j of s as ±1, for j = 4h … 4h+3.
fn ${p}_sg(s: u32, h: u32) -> vec4<f32> {
  let b = (vec4<u32>(s) >> (vec4<u32>(0u, 1u, 2u, 3u) + 4u * h)) & vec4<u32>(1u);
  return vec4<f32>(1.0) - 2.0 * vec4<f32>(vec4<i32>(b));
}
// 7 stored sign bits and the parity bit that makes the minus signs even.
fn ${p}_ks(s7: u32) -> u32 { return s7 | ((countOneBits(s7) & 1u) << 7u); }`;
  switch (format) {
    case "iq2_xxs":
      // 66 bytes: d, then per 32-element block 4 grid bytes and a u32 of 4 × 7
      // sign bits under a 4-bit scale.
      return `${shared}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let bb = rb + 66u * (g >> 3u);
  let aux = ${p}_bytes4(bb + 6u + 8u * (g & 7u));
  return vec2<f32>(${p}_half(bb) * (0.5 + f32(aux >> 28u)) * 0.25, 0.0);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let o = rb + 66u * (g >> 3u) + 2u + 8u * (g & 7u);
  let l = i >> 1u;
  let s = ${p}_ks((${p}_bytes4(o + 4u) >> (7u * l)) & 127u);
  return ${p}_lv(${p}_byte(o + l), i & 1u) * ${p}_sg(s, i & 1u);
}`;
    case "iq2_xs":
    case "iq2_s": {
      // Groups of 16: a 4-bit scale each (nibble g & 1 of the block's scale byte).
      // IQ2_XS: u16 qs = 9-bit index, 7 sign bits; IQ2_S: index byte + 2 bits of
      // qh, a sign byte.
      const [size, scales] = format === "iq2_xs" ? [74, 66] : [82, 74];
      const point = format === "iq2_xs"
        ? `let q = ${p}_u16(bb + 2u + 2u * (4u * ib + l));
  let idx = q & 511u;
  let s = ${p}_ks(q >> 9u);`
        : `let idx = ${p}_byte(bb + 2u + 4u * ib + l) | ((${p}_byte(bb + 66u + ib) << (8u - 2u * l)) & 0x300u);
  let s = ${p}_byte(bb + 34u + 4u * ib + l);`;
      return `${shared}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let bb = rb + ${size}u * (g >> 4u);
  let sc = (${p}_byte(bb + ${scales}u + ((g & 15u) >> 1u)) >> (4u * (g & 1u))) & 15u;
  return vec2<f32>(${p}_half(bb) * (0.5 + f32(sc)) * 0.25, 0.0);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let bb = rb + ${size}u * (g >> 4u);
  let ib = (g & 15u) >> 1u;
  let l = 2u * (g & 1u) + (i >> 1u);
  ${point}
  return ${p}_lv(idx, i & 1u) * ${p}_sg(s, i & 1u);
}`;
    }
    case "iq3_xxs":
      // 98 bytes: d, 64 index bytes (two 4-element points a run of 8), then a
      // u32 per 32-element block of 4 × 7 sign bits under a 4-bit scale.
      return `${shared}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let bb = rb + 98u * (g >> 3u);
  let aux = ${p}_bytes4(bb + 66u + 4u * (g & 7u));
  return vec2<f32>(${p}_half(bb) * (0.5 + f32(aux >> 28u)) * 0.5, 0.0);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let bb = rb + 98u * (g >> 3u);
  let ib = g & 7u;
  let s = ${p}_ks((${p}_bytes4(bb + 66u + 4u * ib) >> (7u * (i >> 1u))) & 127u);
  return ${p}_lv(${p}_byte(bb + 2u + 8u * ib + i), 0u) * ${p}_sg(s, i & 1u);
}`;
    case "iq3_s":
      // 110 bytes: d, 64 index bytes, qh[8] (ninth bits), signs[32], scales[4]
      // (a nibble a 32-element block); x = d·(1 + 2s)·±level.
      return `${shared}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let bb = rb + 110u * (g >> 3u);
  let ib = g & 7u;
  let sc = (${p}_byte(bb + 106u + (ib >> 1u)) >> (4u * (ib & 1u))) & 15u;
  return vec2<f32>(${p}_half(bb) * f32(1u + 2u * sc), 0.0);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let bb = rb + 110u * (g >> 3u);
  let ib = g & 7u;
  let qh = ${p}_byte(bb + 66u + ib);
  let idx = ${p}_byte(bb + 2u + 8u * ib + i) | ((qh << (8u - i)) & 256u);
  return ${p}_lv(idx, 0u) * ${p}_sg(${p}_byte(bb + 74u + 4u * ib + (i >> 1u)), i & 1u);
}`;
    case "iq1_s":
      // 50 bytes: d, 32 index bytes, a u16 qh a 32-element block (3 high index
      // bits a point, 3-bit scale, shift sign); x = dl·level + dl·(±1/8).
      return `${shared}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let bb = rb + 50u * (g >> 3u);
  let qh = ${p}_u16(bb + 34u + 2u * (g & 7u));
  let dl = ${p}_half(bb) * f32(2u * ((qh >> 12u) & 7u) + 1u);
  return vec2<f32>(dl, select(-0.125, 0.125, (qh & 0x8000u) != 0u) * dl);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let bb = rb + 50u * (g >> 3u);
  let ib = g & 7u;
  let l = i >> 1u;
  let qh = ${p}_u16(bb + 34u + 2u * ib);
  return ${p}_lv(${p}_byte(bb + 2u + 4u * ib + l) | (((qh >> (3u * l)) & 7u) << 8u), i & 1u);
}`;
    case "iq1_m":
      // 56 bytes: 32 index bytes, qh[16] (3 high bits and a shift sign a point),
      // four u16 scale words (3-bit scales a 16-element group; the f16 d in
      // their top nibbles).
      return `${shared}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let bb = rb + 56u * (g >> 4u);
  let bits = (${p}_u16(bb + 48u) >> 12u) | ((${p}_u16(bb + 50u) >> 8u) & 0xf0u) |
    ((${p}_u16(bb + 52u) >> 4u) & 0xf00u) | (${p}_u16(bb + 54u) & 0xf000u);
  let d = unpack2x16float(bits).x;
  let ib = (g & 15u) >> 1u;
  let sc = ${p}_u16(bb + 48u + 2u * (ib >> 1u));
  return vec2<f32>(d * f32(2u * ((sc >> (6u * (ib & 1u) + 3u * (g & 1u))) & 7u) + 1u), 0.0);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let bb = rb + 56u * (g >> 4u);
  let ib = (g & 15u) >> 1u;
  let l = 2u * (g & 1u) + (i >> 1u);
  let qh = ${p}_byte(bb + 32u + 2u * ib + (l >> 1u));
  let odd = (l & 1u) == 1u;
  let idx = ${p}_byte(bb + 4u * ib + l) | (select(qh << 8u, qh << 4u, odd) & 0x700u);
  let delta = select(0.125, -0.125, (qh & select(0x08u, 0x80u, odd)) != 0u);
  return ${p}_lv(idx, i & 1u) + vec4<f32>(delta);
}`;
  }
}
