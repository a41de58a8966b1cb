/**
 * WGSL group readers of ggml's lattice formats (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
 * IQ3_S, IQ1_S, IQ1_M; layouts in `core/quant/iq_lattice.ts`), in the `qg` / `qc`
 * shape of `wgsl.ts`: `qg(rb, g)` the group's `(scale, min)`, `qc(rb, g, i)` its
 * elements `4i … 4i+3` as signed levels. Groups are the formats' scale runs: 32
 * elements (IQ2_XXS, IQ3_XXS, IQ3_S, IQ1_S), 16 (IQ2_XS, IQ2_S, IQ1_M). IQ1_S's
 * ±1/8 shift is a group's `min`; IQ1_M's, which changes every 8 elements, is added
 * to the codes.
 *
 * The codebook is private arrays of packed points, two a word (`iq_grids.ts`): a
 * module-scope `const` indexed at run time compiles to a copy at every use (125 s
 * of LLVM for IQ1_S's 1024 words), one private array to a copy per invocation
 * (16 s); arrays of 64 words, picked by a switch, compile in ~4 s.
 *
 * @module
 */

import { IQ_GRIDS, type IqGridName } from "../../core/quant/iq_grids.ts";
import type { LatticeFormat } from "../../core/quant/formats.ts";

const GRID_OF: Readonly<Record<LatticeFormat, IqGridName>> = {
  iq2_xxs: "iq2xxs",
  iq2_xs: "iq2xs",
  iq2_s: "iq2s",
  iq3_xxs: "iq3xxs",
  iq3_s: "iq3s",
  iq1_s: "iq1s",
  iq1_m: "iq1s",
};

/** Words a private array of the codebook holds; larger arrays compile superlinearly. */
const CHUNK = 64;

/**
 * The grid's packed points (two u16 a u32) as private arrays of {@linkcode CHUNK}
 * words, and `${p}_gw(i)` reading word `i`. A qmatmul of IQ1_S (1024 words) compiles
 * in 16 s on lavapipe as one array, ~4 s as arrays of 64; IQ2_S (512) in 4.0 s and
 * 1.2 s; run times equal.
 */
function gridWords(p: string, grid: IqGridName): string {
  const pts = IQ_GRIDS[grid].points;
  const words: string[] = [];
  for (let i = 0; i < pts.length; i += 2) words.push(`${(pts[i] | (pts[i + 1] << 16)) >>> 0}u`);
  const chunks: string[] = [];
  for (let c = 0; c * CHUNK < words.length; c++) {
    const part = words.slice(c * CHUNK, (c + 1) * CHUNK);
    chunks.push(
      `var<private> ${p}_g${c}: array<u32, ${part.length}> = array<u32, ${part.length}>(${
        part.join(",")
      });`,
    );
  }
  const n = chunks.length;
  const read = n === 1 ? `return ${p}_g0[i];` : `switch (i / ${CHUNK}u) {
${
    Array.from({ length: n - 1 }, (_, c) => `    case ${c}u: { return ${p}_g${c}[i % ${CHUNK}u]; }`)
      .join("\n")
  }
    default: { return ${p}_g${n - 1}[i % ${CHUNK}u]; }
  }`;
  return `${chunks.join("\n")}
fn ${p}_gw(i: u32) -> u32 {
  ${read}
}`;
}

/**
 * Levels of elements `4h … 4h+3` of point `idx`, as WGSL: `${p}_lv(idx, h)`.
 * IQ2 {8, 25, 43} from 2-bit indices, IQ3_XXS {4, 12, …, 52, 62} and IQ3_S
 * {1, 3, …, 15} from 3-bit ones (a whole 4-element point), IQ1 {−1, 0, 1}.
 */
function levels(p: string, grid: IqGridName): string {
  const point = `let w = ${p}_gw(idx >> 1u) >> (16u * (idx & 1u));`;
  switch (grid) {
    case "iq2xxs":
    case "iq2xs":
    case "iq2s":
      return `fn ${p}_lv(idx: u32, h: u32) -> vec4<f32> {
  ${point}
  let c = (vec4<u32>(w) >> (vec4<u32>(0u, 2u, 4u, 6u) + 8u * h)) & vec4<u32>(3u);
  return vec4<f32>(vec4<i32>(8u + 17u * c + (c >> vec4<u32>(1u))));
}`;
    case "iq3xxs":
      return `fn ${p}_lv(idx: u32, h: u32) -> vec4<f32> {
  ${point}
  let c = (vec4<u32>(w) >> vec4<u32>(0u, 3u, 6u, 9u)) & vec4<u32>(7u);
  return vec4<f32>(vec4<i32>(4u + 8u * c + 2u * (c >> vec4<u32>(2u) & c >> vec4<u32>(1u) & c & vec4<u32>(1u))));
}`;
    case "iq3s":
      return `fn ${p}_lv(idx: u32, h: u32) -> vec4<f32> {
  ${point}
  let c = (vec4<u32>(w) >> vec4<u32>(0u, 3u, 6u, 9u)) & vec4<u32>(7u);
  return vec4<f32>(vec4<i32>(2u * c + 1u));
}`;
    case "iq1s":
      return `fn ${p}_lv(idx: u32, h: u32) -> vec4<f32> {
  ${point}
  let c = (vec4<u32>(w) >> (vec4<u32>(0u, 2u, 4u, 6u) + 8u * h)) & vec4<u32>(3u);
  return vec4<f32>(vec4<i32>(c) - vec4<i32>(1));
}`;
  }
}

/**
 * The format-specific part of `quantReaders` for a lattice format; `common` holds
 * `wgsl.ts`'s byte and half readers (`${p}_w`, `_byte`, `_half`, `_bytes4`).
 *
 * @example
 * ```ts ignore
 * const wgsl = latticeReaders("iq2_xxs", "q");
 * wgsl.includes("fn q_qc("); // true
 * ```
 */
export function latticeReaders(format: LatticeFormat, p: string): string {
  const grid = GRID_OF[format];
  const shared = `
${gridWords(p, grid)}
${levels(p, grid)}
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
