/**
 * WGSL group readers of ggml's low-bit formats (TQ1_0, TQ2_0, Q1_0, Q2_0, MXFP4,
 * NVFP4; layouts in `core/quant/low_bit.ts` and `core/quant/fp4.ts`), in the
 * `qg` / `qc` shape of `wgsl.ts`: `qg(rb, g)` a group's `(scale, min)` with
 * `x = scale·q − min`, `qc(rb, g, i)` its elements `4i … 4i+3` as codes.
 *
 * Groups: TQ1_0 16 elements (its trits come in runs of 32, 16 and 4 bytes),
 * NVFP4 16 (one E4M3 scale each), the others 32. The ternary and two-bit codes
 * are `q` with `x = d·q − d`, Q1_0's bits `x = 2d·b − d`; the FP4 codes are
 * ggml's doubled E2M1 values, under a scale that is already halved.
 *
 * MXFP4's 17-byte blocks put its code bytes at every offset mod 4, so it reads
 * them through `${p}_bytes4u`, which joins two words at any offset (the other
 * formats' offsets are even). Its E8M0 and NVFP4's E4M3 scales are built from
 * their bits (exact powers of two), not with `exp2`, which llvmpipe approximates.
 *
 * @module
 */

import type { LowBitFormat } from "../../core/quant/formats.ts";

/**
 * WGSL `fn name(c: vec4<u32>) -> vec4<f32>`: four FP4 (E2M1) codes (their low
 * nibbles) as ggml's doubled values (`kvalues_fp4`: 0 1 2 3 4 6 8 12, negated
 * for codes 8–15). The block GEMV's `qb_fp4` (`block_codecs_low_bit.ts`) calls it too.
 *
 * @example
 * ```ts
 * import { fp4Fn } from "./wgsl_low_bit.ts";
 * fp4Fn("q_fp4").startsWith("fn q_fp4("); // true
 * ```
 */
export function fp4Fn(name: string): string {
  return `fn ${name}(c: vec4<u32>) -> vec4<f32> {
  // The magnitude is a nibble of 0xC8643210; the sign bit is OR-ed into the float.
  let v = (vec4<u32>(0xc8643210u) >> ((c & vec4<u32>(7u)) << vec4<u32>(2u))) & vec4<u32>(15u);
  let f = bitcast<vec4<u32>>(vec4<f32>(bitcast<vec4<i32>>(v)));
  return bitcast<vec4<f32>>(f | ((c & vec4<u32>(8u)) << vec4<u32>(28u)));
}`;
}

/** The FP4 formats' group-reader helpers: `${p}_fp4` and `${p}_nibbles`. */
function fp4Values(p: string): string {
  return `
${fp4Fn(`${p}_fp4`)}
fn ${p}_nibbles(w: u32) -> vec4<u32> {
  return vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(15u);
}`;
}

/**
 * The format-specific part of `quantReaders` for a low-bit format; `common` holds
 * `wgsl.ts`'s byte and half readers (`${p}_w`, `_byte`, `_half`, `_bytes4`,
 * `_bytes4f`).
 *
 * @example
 * ```ts ignore
 * const wgsl = lowBitReaders("mxfp4", "q");
 * wgsl.includes("fn q_qc("); // true
 * ```
 */
export function lowBitReaders(format: LowBitFormat, p: string): string {
  switch (format) {
    case "tq2_0":
      // 66 bytes: qs[64], f16 d. Group s (32 elements) is crumb s & 3 of bytes
      // 32·(s >> 2) … +31.
      return `
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let d = ${p}_half(rb + 66u * (g >> 3u) + 64u);
  return vec2<f32>(d, d);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let s = g & 7u;
  let w = ${p}_bytes4(rb + 66u * (g >> 3u) + 32u * (s >> 2u) + 4u * i);
  return ${p}_bytes4f((w >> (2u * (s & 3u))) & 0x03030303u);
}`;
    case "tq1_0":
      // 54 bytes: qs[48], qh[4], f16 d. Groups 0–9: trit s >> 1 of qs[16·(s & 1) …];
      // 10–14: trit s − 10 of qs[32 …]; 15: trit i of qh[0 … 3].
      return `
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let d = ${p}_half(rb + 54u * (g >> 4u) + 52u);
  return vec2<f32>(d, d);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let bb = rb + 54u * (g >> 4u);
  let s = g & 15u;
  var o = bb + 48u;
  var n = i;
  if (s < 10u) {
    o = bb + 16u * (s & 1u) + 4u * i;
    n = s >> 1u;
  } else if (s < 15u) {
    o = bb + 32u + 4u * i;
    n = s - 10u;
  }
  let w = ${p}_bytes4(o);
  let pow3 = select(select(select(select(1u, 3u, n == 1u), 9u, n == 2u), 27u, n == 3u), 81u, n == 4u);
  let q = ((vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) * pow3) & vec4<u32>(255u)) * 3u;
  return vec4<f32>(vec4<i32>(q >> vec4<u32>(8u)));
}`;
    case "q1_0":
      // 18 bytes, 128 elements: f16 d, one bit each (set: +d, clear: −d).
      return `
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let d = ${p}_half(rb + 18u * (g >> 2u));
  return vec2<f32>(2.0 * d, d);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let b = ${p}_byte(rb + 18u * (g >> 2u) + 2u + 4u * (g & 3u) + (i >> 1u)) >> (4u * (i & 1u));
  return vec4<f32>(vec4<i32>((vec4<u32>(b) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u)));
}`;
    case "q2_0":
      // 18 bytes, 64 elements: f16 d, four crumbs a byte; x = d·(crumb − 1).
      return `
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let d = ${p}_half(rb + 18u * (g >> 1u));
  return vec2<f32>(d, d);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let b = ${p}_byte(rb + 18u * (g >> 1u) + 2u + 8u * (g & 1u) + i);
  return vec4<f32>(vec4<i32>((vec4<u32>(b) >> vec4<u32>(0u, 2u, 4u, 6u)) & vec4<u32>(3u)));
}`;
    case "mxfp4":
      // 17 bytes: E8M0 e, qs[16]; elements 0–15 the low nibbles, 16–31 the high.
      // Half the scale, 2^(e − 128), from its bits (ggml's e8m0_to_fp32_half).
      return `${fp4Values(p)}
fn ${p}_bytes4u(o: u32) -> u32 {
  let w0 = ${p}_w(o >> 2u);
  let sh = 8u * (o & 3u);
  if (sh == 0u) { return w0; }
  return (w0 >> sh) | (${p}_w((o >> 2u) + 1u) << (32u - sh));
}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let e = ${p}_byte(rb + 17u * g);
  return vec2<f32>(bitcast<f32>(select(0x00200000u << e, (e - 1u) << 23u, e >= 2u)), 0.0);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let w = ${p}_bytes4u(rb + 17u * g + 1u + 4u * (i & 3u)) >> (4u * (i >> 2u));
  return ${p}_fp4(${p}_nibbles(w));
}`;
    case "nvfp4":
      // 36 bytes: four UE4M3 scales, qs[32]; run s of 16 elements: 0–7 the low
      // nibbles of qs[8s …], 8–15 the high. Half the scale, as ggml_ue4m3_to_fp32.
      return `${fp4Values(p)}
fn ${p}_qg(rb: u32, g: u32) -> vec2<f32> {
  let x = ${p}_byte(rb + 36u * (g >> 2u) + (g & 3u));
  let e = (x >> 3u) & 15u;
  let m = f32(x & 7u);
  let v = select(m * 0.0009765625, (0.5 + m * 0.0625) * bitcast<f32>((e + 120u) << 23u), e != 0u);
  return vec2<f32>(select(v, 0.0, x == 0x7fu), 0.0);
}
fn ${p}_qc(rb: u32, g: u32, i: u32) -> vec4<f32> {
  let w = ${p}_bytes4(rb + 36u * (g >> 2u) + 4u + 8u * (g & 3u) + 4u * (i & 1u)) >> (4u * (i >> 1u));
  return ${p}_fp4(${p}_nibbles(w));
}`;
  }
}
