/**
 * WGSL readers of llama.cpp's block formats, for kernels that dequantize a
 * weight as they read it (no dequantized copy ever exists).
 *
 * Every format is read in *groups*: runs of `G` consecutive elements of a row
 * sharing one affine map `x = scale·q − min` (32 elements for the legacy
 * formats, IQ4 and the K-quants' sub-blocks; 16 for Q2_K's, Q3_K's and Q6_K's
 * scales; IQ4's "codes" are their levels). A kernel asks once per group
 * for `(scale, min)` and then for the raw codes `q` four at a time, so a dot
 * product becomes `scale·Σ a·q − min·Σ a`: the scale decode and the affine map
 * are paid once per group, not once per element (llama.cpp's vec-dot trick).
 *
 * The weight is bound as `array<u32>` holding the file's bytes; blocks of
 * 34, 18, 22 and 210 bytes are not word aligned, so reads of f16 scales and of four
 * code bytes go through `qhalf` / `qbytes4`, which handle a 2-byte offset (all
 * offsets are even: every block size and row size is).
 *
 * @module
 */

import { GGML_TYPES, type QuantFormat } from "../../core/quant/formats.ts";
import { IQ4_LEVELS } from "../../core/quant/iq4.ts";
import { latticeReaders } from "./wgsl_lattice.ts";
import { lowBitReaders } from "./wgsl_low_bit.ts";
import type { KernelTableName } from "../../core/kernel_tables.ts";

/**
 * Elements per group (one affine map) of each format.
 *
 * @example
 * ```ts
 * import { QUANT_GROUP } from "./wgsl.ts";
 * QUANT_GROUP.q6_k; // 16
 * ```
 */
export const QUANT_GROUP: Readonly<Record<QuantFormat, number>> = {
  q8_0: 32,
  q4_0: 32,
  q4_1: 32,
  q5_0: 32,
  q5_1: 32,
  q2_k: 16,
  q3_k: 16,
  q4_k: 32,
  q5_k: 32,
  q6_k: 16,
  iq4_nl: 32,
  iq4_xs: 32,
  iq2_xxs: 32,
  iq2_xs: 16,
  iq2_s: 16,
  iq3_xxs: 32,
  iq3_s: 32,
  iq1_s: 32,
  iq1_m: 16,
  tq1_0: 16,
  tq2_0: 32,
  q1_0: 32,
  q2_0: 32,
  mxfp4: 32,
  nvfp4: 16,
};

/**
 * Bytes of one row of `k` elements in `format` (a whole number of blocks).
 *
 * @example
 * ```ts
 * import { quantRowBytes } from "./wgsl.ts";
 * quantRowBytes("q8_0", 64); // 68
 * ```
 */
export function quantRowBytes(format: QuantFormat, k: number): number {
  const t = GGML_TYPES[format];
  if (k % t.blockElems !== 0) {
    throw new RangeError(
      `${format}: a row of ${k} elements is not a whole number of ${t.blockElems}-element blocks`,
    );
  }
  return (k / t.blockElems) * t.blockBytes;
}

/**
 * The WGSL functions reading `format` from the u32 words `word(i)` returns
 * (an expression of `i`: the raw binding `in1[i]`, or a segmented loader):
 * `qg(rb, g) -> vec2<f32>` gives group `g`'s `(scale, min)` of the row starting
 * at byte `rb`, and `qc(rb, g, i) -> vec4<f32>` the raw codes of its elements
 * `4i … 4i+3`. `prefix` keeps two weights' readers apart in one kernel.
 * `table` names a constant table for the kernel (`KernelIo.table`): the lattice
 * formats read their codebook from one, and throw without it.
 *
 * @example
 * ```ts
 * import { quantReaders } from "./wgsl.ts";
 * const wgsl = quantReaders("q4_k", (i) => `in1[${i}]`, "w");
 * wgsl.includes("fn w_qg("); // true
 * ```
 */
export function quantReaders(
  format: QuantFormat,
  word: (i: string) => string,
  prefix = "q",
  table?: (name: KernelTableName) => string,
): string {
  const p = prefix;
  const common = `
fn ${p}_w(i: u32) -> u32 { return ${word("i")}; }
fn ${p}_byte(o: u32) -> u32 { return (${p}_w(o >> 2u) >> ((o & 3u) * 8u)) & 0xffu; }
fn ${p}_half(o: u32) -> f32 {
  let h = unpack2x16float(${p}_w(o >> 2u));
  return select(h.x, h.y, (o & 2u) != 0u);
}
// Four bytes from an even offset: one word, or the halves of two.
fn ${p}_bytes4(o: u32) -> u32 {
  let w0 = ${p}_w(o >> 2u);
  if ((o & 2u) == 0u) { return w0; }
  return (w0 >> 16u) | (${p}_w((o >> 2u) + 1u) << 16u);
}
// Through i32: AVX2 converts signed ints to float in one instruction, unsigned in several.
fn ${p}_bytes4f(w: u32) -> vec4<f32> {
  let v = vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(255u);
  return vec4<f32>(bitcast<vec4<i32>>(v));
}
fn ${p}_nib4(w: u32) -> vec4<f32> {
  let v = vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(15u);
  return vec4<f32>(bitcast<vec4<i32>>(v));
}`;
  // The K-quants' 6-bit scale and min of sub-block s (ggml's get_scale_min_k4).
  const k4Scales = `
fn ${p}_scmin(sb: u32, s: u32) -> vec2<f32> {
  if (s < 4u) {
    return vec2<f32>(vec2<i32>(bitcast<i32>(${p}_byte(sb + s) & 63u), bitcast<i32>(${p}_byte(sb + s + 4u) & 63u)));
  }
  let b = ${p}_byte(sb + s + 4u);
  let sc = (b & 15u) | ((${p}_byte(sb + s - 4u) >> 6u) << 4u);
  let mn = (b >> 4u) | ((${p}_byte(sb + s) >> 6u) << 4u);
  return vec2<f32>(vec2<i32>(bitcast<i32>(sc), bitcast<i32>(mn)));
}`;
  switch (format) {
    case "iq2_xxs":
    case "iq2_xs":
    case "iq2_s":
    case "iq3_xxs":
    case "iq3_s":
    case "iq1_s":
    case "iq1_m":
      if (!table) throw new Error(`internal: ${format} readers need the kernel's codebook table`);
      return common + latticeReaders(format, p, table);
    case "tq1_0":
    case "tq2_0":
    case "q1_0":
    case "q2_0":
    case "mxfp4":
    case "nvfp4":
      return common + lowBitReaders(format, p);
    case "q8_0":
      return `${common}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> { return vec2<f32>(${p}_half(rb + 34u * g), 0.0); }
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let w = bitcast<i32>(${p}_bytes4(rb + 34u * g + 2u + 4u * i));
  return vec4<f32>(vec4<i32>(extractBits(w, 0u, 8u), extractBits(w, 8u, 8u),
    extractBits(w, 16u, 8u), extractBits(w, 24u, 8u)));
}`;
    case "q4_0":
      // Elements 0–15 are the low nibbles of the 16 code bytes, 16–31 the high ones.
      return `${common}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let d = ${p}_half(rb + 18u * g);
  return vec2<f32>(d, 8.0 * d);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let w = ${p}_bytes4(rb + 18u * g + 2u + 4u * (i & 3u)) >> (4u * (i >> 2u));
  return ${p}_nib4(w);
}`;
    case "q4_1":
      // As Q4_0 after a second f16, the min m: x = d·q + m.
      return `${common}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let dm = unpack2x16float(${p}_w((rb + 20u * g) >> 2u));
  return vec2<f32>(dm.x, -dm.y);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let w = ${p}_w((rb + 20u * g + 4u + 4u * (i & 3u)) >> 2u) >> (4u * (i >> 2u));
  return ${p}_nib4(w);
}`;
    case "q5_0":
    case "q5_1": {
      // Q4_0 / Q4_1 nibbles plus fifth bits: bit j of the u32 qh is element j's.
      const [size, qh, qs] = format === "q5_0" ? [22, 2, 6] : [24, 4, 8];
      const qg = format === "q5_0"
        ? `let d = ${p}_half(rb + 22u * g);
  return vec2<f32>(d, 16.0 * d);`
        : `let dm = unpack2x16float(${p}_w((rb + 24u * g) >> 2u));
  return vec2<f32>(dm.x, -dm.y);`;
      return `${common}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  ${qg}
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let bb = rb + ${size}u * g;
  let lo = ${p}_bytes4(bb + ${qs}u + 4u * (i & 3u)) >> (4u * (i >> 2u));
  let h = ${p}_bytes4(bb + ${qh}u) >> (4u * i);
  return ${p}_nib4(lo) + 16.0 * vec4<f32>(vec4<u32>(h, h >> 1u, h >> 2u, h >> 3u) & vec4<u32>(1u));
}`;
    }
    case "q2_k":
      // 84-byte super-blocks: 16 scale bytes (scale low nibble, min high), 64 code
      // bytes, f16 d and dmin. Group s (16 elements) = half s >> 3, crumb pair
      // (s & 7) >> 1 of bytes 32h + 16(s & 1) + l.
      return `${common}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let bb = rb + 84u * (g >> 4u);
  let sc = ${p}_byte(bb + (g & 15u));
  let dm = unpack2x16float(${p}_w((bb + 80u) >> 2u));
  return vec2<f32>(dm.x * f32(bitcast<i32>(sc & 15u)), dm.y * f32(bitcast<i32>(sc >> 4u)));
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let s = g & 15u;
  let o = rb + 84u * (g >> 4u) + 16u + 32u * (s >> 3u) + 16u * (s & 1u) + 4u * i;
  return ${p}_bytes4f((${p}_w(o >> 2u) >> (2u * ((s & 7u) >> 1u))) & 0x03030303u);
}`;
    case "q3_k":
      // 110-byte super-blocks: hmask[32] (third bits), qs[64] (low crumbs as
      // Q2_K's), 12 bytes of 6-bit scales biased by 32, f16 d; q = low + 4·third − 4.
      return `${common}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let bb = rb + 110u * (g >> 4u);
  let s = g & 15u;
  let low = (${p}_byte(bb + 96u + (s & 7u)) >> (4u * (s >> 3u))) & 15u;
  let top = (${p}_byte(bb + 104u + (s & 3u)) >> (2u * (s >> 2u))) & 3u;
  let d = ${p}_half(bb + 108u) * f32(bitcast<i32>(low | (top << 4u)) - 32);
  return vec2<f32>(d, 4.0 * d);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let s = g & 15u;
  let bb = rb + 110u * (g >> 4u);
  let l = 16u * (s & 1u) + 4u * i;
  let lo = (${p}_bytes4(bb + 32u + 32u * (s >> 3u) + l) >> (2u * ((s & 7u) >> 1u))) & 0x03030303u;
  let hi = (${p}_bytes4(bb + l) >> ((s >> 1u))) & 0x01010101u;
  return ${p}_bytes4f(lo) + 4.0 * ${p}_bytes4f(hi);
}`;
    case "q4_k":
      // 144-byte super-blocks of 8 sub-blocks: d, dmin (f16), 12 scale bytes, then
      // 4 chunks of 32 code bytes: sub-block 2c in the low nibbles, 2c+1 the high.
      return `${common}${k4Scales}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let bb = rb + 144u * (g >> 3u);
  let dm = unpack2x16float(${p}_w(bb >> 2u));
  let sm = ${p}_scmin(bb + 4u, g & 7u);
  return vec2<f32>(dm.x * sm.x, dm.y * sm.y);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let s = g & 7u;
  let o = rb + 144u * (g >> 3u) + 16u + 32u * (s >> 1u) + 4u * i;
  return ${p}_nib4(${p}_w(o >> 2u) >> (4u * (s & 1u)));
}`;
    case "q5_k":
      // As Q4_K, with a 32-byte plane of fifth bits: bit 2c (low nibble) or
      // 2c+1 (high) of qh[l] adds 16 to element l of chunk c.
      return `${common}${k4Scales}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let bb = rb + 176u * (g >> 3u);
  let dm = unpack2x16float(${p}_w(bb >> 2u));
  let sm = ${p}_scmin(bb + 4u, g & 7u);
  return vec2<f32>(dm.x * sm.x, dm.y * sm.y);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let s = g & 7u;
  let bb = rb + 176u * (g >> 3u);
  let lo = ${p}_w((bb + 48u + 32u * (s >> 1u) + 4u * i) >> 2u) >> (4u * (s & 1u));
  let hi = (${p}_w((bb + 16u + 4u * i) >> 2u) >> s) & 0x01010101u;
  return ${p}_nib4(lo) + 16.0 * ${p}_bytes4f(hi);
}`;
    case "iq4_nl":
    case "iq4_xs": {
      // Codes index ggml's 16 levels (kvalues_iq4nl): IQ4_NL 18-byte blocks
      // {d; qs[16]}, IQ4_XS 136-byte super-blocks {d; scales_h; scales_l[4];
      // qs[128]} of eight 32-element groups with 6-bit scales (biased by 32).
      const qg = format === "iq4_nl"
        ? `return vec2<f32>(${p}_half(rb + 18u * g), 0.0);`
        : `let bb = rb + 136u * (g >> 3u);
  let s = g & 7u;
  let lo = (${p}_byte(bb + 4u + (s >> 1u)) >> (4u * (s & 1u))) & 15u;
  let hi = (${p}_byte(bb + 2u + (s >> 2u)) >> (2u * (s & 3u))) & 3u;
  return vec2<f32>(${p}_half(bb) * f32(bitcast<i32>(lo | (hi << 4u)) - 32), 0.0);`;
      const qs = format === "iq4_nl"
        ? "rb + 18u * g + 2u"
        : "rb + 136u * (g >> 3u) + 8u + 16u * (g & 7u)";
      return `${common}
// Indexed at run time: a private copy (one per invocation), not a constant.
var<private> ${p}_levels: array<f32, 16> = array<f32, 16>(${
        IQ4_LEVELS.map((v) => `${v}.0`).join(", ")
      });
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  ${qg}
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let w = ${p}_bytes4(${qs} + 4u * (i & 3u)) >> (4u * (i >> 2u));
  return vec4<f32>(${p}_levels[w & 15u], ${p}_levels[(w >> 8u) & 15u],
    ${p}_levels[(w >> 16u) & 15u], ${p}_levels[(w >> 24u) & 15u]);
}`;
    }
    case "q6_k":
      // 210-byte super-blocks: ql[128] low nibbles, qh[64] two high bits, 16
      // signed scale bytes, f16 d. Group s (16 elements) uses scale s.
      return `${common}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let bb = rb + 210u * (g >> 4u);
  let s = g & 15u;
  let sc = f32(extractBits(bitcast<i32>(${p}_byte(bb + 192u + s)), 0u, 8u));
  let d = ${p}_half(bb + 208u) * sc;
  return vec2<f32>(d, 32.0 * d);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let bb = rb + 210u * (g >> 4u);
  let s = g & 15u;
  let h = s >> 3u;
  let q = (s & 7u) >> 1u;
  let l = 16u * (s & 1u) + 4u * i;
  let lo = ${p}_bytes4(bb + 64u * h + l + 32u * (q & 1u)) >> (4u * (q >> 1u));
  let hi = (${p}_bytes4(bb + 128u + 32u * h + l) >> (2u * q)) & 0x03030303u;
  return ${p}_nib4(lo) + 16.0 * ${p}_bytes4f(hi);
}`;
  }
}
