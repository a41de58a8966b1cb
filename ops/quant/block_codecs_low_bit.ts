/**
 * The block decode GEMV's readers of ggml's newer one-scale formats (see
 * `./block_codecs.ts` for the codec interface; layouts in
 * `core/quant/low_bit.ts` and `core/quant/fp4.ts`): TQ2_0's crumbs are a code
 * a byte, read through {@linkcode BlockBytes.codes} like the other formats;
 * TQ1_0's trits (a byte times 3ⁿ, the top of that times 3), Q1_0's bits, Q2_0's
 * crumbs (four elements in one byte) and the FP4 nibbles (a table lookup and a
 * sign) come straight from the block's words through the `qb_tq1`, `qb_bit4`,
 * `qb_crumb4` and `qb_fp4` helpers. MXFP4's 17-byte blocks put its bytes at every
 * offset mod 4: the GEMV reads it in units of 4 or 8 blocks (word-aligned;
 * `./block_words.ts` joins words at any offset), its rows then a multiple of 128
 * elements (others are read group by group).
 *
 * @module
 */

import type { BlockBytes, BlockCodec, CodecChunk, CodecStep } from "./block_codecs.ts";
import { range, use } from "./codec_parts.ts";
import { fp4Fn } from "./wgsl_low_bit.ts";

const ONES = "vec4<f32>(1.0)";
const XYZW = "xyzw";

/** WGSL helpers of these codecs (appended to `BLOCK_HELPERS`). */
export const LOW_BIT_HELPERS = `
// TQ1_0: trit n of each byte of w, with p = 3^n: the byte times p kept to 8 bits, times 3, >> 8.
fn qb_tq1(w: u32, p: u32) -> vec4<f32> {
  let v = ((vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(255u)) * p) & vec4<u32>(255u);
  return vec4<f32>(bitcast<vec4<i32>>((v * 3u) >> vec4<u32>(8u)));
}
// Q1_0: bits 0–3 of b.
fn qb_bit4(b: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>((vec4<u32>(b) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u)));
}
// Q2_0: the four crumbs of the low byte of b.
fn qb_crumb4(b: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>((vec4<u32>(b) >> vec4<u32>(0u, 2u, 4u, 6u)) & vec4<u32>(3u)));
}
// FP4 (E2M1): the low nibbles of w's bytes as ggml's doubled values.
${fp4Fn("qb_fp4c")}
fn qb_fp4(w: u32) -> vec4<f32> {
  return qb_fp4c(vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u));
}
// MXFP4: half the E8M0 scale in the low byte of w, 2^(e − 128), from its bits.
fn qb_e8m0h(w: u32) -> f32 {
  let e = w & 255u;
  return bitcast<f32>(select(0x00200000u << e, (e - 1u) << 23u, e >= 2u));
}
// NVFP4's four UE4M3 scales (the bytes of w), halved as ggml reads them; 0x7F is 0.
fn qb_ue4m3(w: u32) -> vec4<f32> {
  let x = vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(255u);
  let e = (x >> vec4<u32>(3u)) & vec4<u32>(15u);
  let m = vec4<f32>(bitcast<vec4<i32>>(x & vec4<u32>(7u)));
  let normal = (0.5 + m * 0.0625) * bitcast<vec4<f32>>((e + vec4<u32>(120u)) << vec4<u32>(23u));
  let v = select(m * 0.0009765625, normal, e != vec4<u32>(0u));
  return select(v, vec4<f32>(0.0), x == vec4<u32>(0x7fu));
}`;

/** A use whose four codes (already plain values) are the WGSL `q`. */
function plain(g: number, a: number, q: string, pat: string): CodecStep["uses"][number] {
  return { g, a, q, pat, sv: ONES };
}

/** One step of `uses`, no extra lines. */
const step = (uses: CodecStep["uses"]): CodecStep[] => [{ lines: [], uses }];

/**
 * TQ2_0: `{u8 qs[64]; f16 d}`, `x = d·(crumb − 1)`; chunk (h, l) is the 32
 * elements of crumb l of bytes 32h … 32h+31.
 *
 * @example
 * ```ts
 * import { tq2_0 } from "./block_codecs_low_bit.ts";
 * tq2_0.chunks.length; // 8
 * ```
 */
export const tq2_0: BlockCodec = {
  bytes: 66,
  elems: 256,
  maxUnit: 2,
  columns: [16, 8, 4, 4],
  header: (id, rd) => [`let d${id} = ${rd.half(64)};`],
  chunks: range(8).map((k) => {
    const h = k >> 2, l = k & 3;
    return {
      groups: [range(8, 8 * k)],
      steps: (_id: string, rd: BlockBytes) =>
        step(
          range(8).map((i) =>
            use(rd, 0, 8 * k + i, {
              offs: [32 * h + 4 * i],
              key: `c${l}`,
              f: (w) => (l === 0 ? w : `(${w} >> ${2 * l}u)`),
              bits: 2,
            })
          ),
        ),
      affine: (hid: string) => ({ S: `d${hid}`, off: 1 }),
    };
  }),
};

/** A TQ1_0 chunk of `n` quads (see {@linkcode tq1_0}). */
function tq1Chunk(
  a0: number,
  n: number,
  off: (i: number) => number,
  trit: (i: number) => number,
): CodecChunk {
  return {
    groups: [range(n, a0)],
    steps: (_id, rd) =>
      step(
        range(n).map((i) =>
          plain(0, a0 + i, `qb_tq1(${rd.bytes4(off(i))}, ${3 ** trit(i)}u)`, "t")
        ),
      ),
    affine: (hid) => ({ S: `d${hid}`, off: 1 }),
  };
}

/**
 * TQ1_0: `{u8 qs[48]; u8 qh[4]; f16 d}`, `x = d·(trit − 1)`: chunks of trit n of
 * qs[0 … 31] (elements 32n …), of qs[32 … 47] (160 + 16n …), and qh's four trits
 * (240 …).
 *
 * @example
 * ```ts
 * import { tq1_0 } from "./block_codecs_low_bit.ts";
 * tq1_0.chunks.length; // 11
 * ```
 */
export const tq1_0: BlockCodec = {
  bytes: 54,
  elems: 256,
  maxUnit: 2,
  columns: [16, 8, 4, 4],
  header: (id, rd) => [`let d${id} = ${rd.half(52)};`],
  chunks: [
    // Quad i of a chunk: trit `trit(i)` of the word at byte `off(i)`, activation vec4 a0 + i.
    ...range(5).map((n) => tq1Chunk(8 * n, 8, (i) => 4 * i, () => n)),
    ...range(5).map((n) => tq1Chunk(40 + 4 * n, 4, (i) => 32 + 4 * i, () => n)),
    tq1Chunk(60, 4, () => 48, (i) => i),
  ],
};

/**
 * Q1_0: `{f16 d; u8 qs[16]}`, 128 elements, `x = 2d·bit − d`: four chunks of 32.
 *
 * @example
 * ```ts
 * import { q1_0 } from "./block_codecs_low_bit.ts";
 * q1_0.elems; // 128
 * ```
 */
export const q1_0: BlockCodec = {
  bytes: 18,
  elems: 128,
  maxUnit: 4,
  columns: [16, 8, 8, 8],
  header: (id, rd) => [`let d${id} = ${rd.half(0)};`],
  chunks: range(4).map((c) => ({
    groups: [range(8, 8 * c)],
    // Quad k of the chunk: bits 4(k & 1) … of byte 4c + k/2, in the word at 2 + 4c.
    steps: (_id: string, rd: BlockBytes) =>
      step(
        range(8).map((k) => {
          const shift = 8 * (k >> 1) + 4 * (k & 1);
          return plain(0, 8 * c + k, `qb_bit4(${rd.bytes4(2 + 4 * c)} >> ${shift}u)`, "b");
        }),
      ),
    affine: (hid: string) => ({ S: `(2.0 * d${hid})`, M: `d${hid}` }),
  })),
};

/**
 * Q2_0: `{f16 d; u8 qs[16]}`, 64 elements, `x = d·(crumb − 1)`: two chunks of 32.
 *
 * @example
 * ```ts
 * import { q2_0 } from "./block_codecs_low_bit.ts";
 * q2_0.elems; // 64
 * ```
 */
export const q2_0: BlockCodec = {
  bytes: 18,
  elems: 64,
  maxUnit: 4,
  columns: [16, 8, 8, 8],
  header: (id, rd) => [`let d${id} = ${rd.half(0)};`],
  chunks: range(2).map((c) => ({
    groups: [range(8, 8 * c)],
    // Quad k of the chunk: the crumbs of byte 8c + k, in the word at 2 + 8c + 4(k/4).
    steps: (_id: string, rd: BlockBytes) =>
      step(
        range(8).map((k) => {
          const w = rd.bytes4(2 + 8 * c + 4 * (k >> 2));
          return plain(0, 8 * c + k, `qb_crumb4(${w} >> ${8 * (k & 3)}u)`, "c");
        }),
      ),
    affine: (hid: string) => ({ S: `d${hid}`, off: 1 }),
  })),
};

/**
 * MXFP4: `{u8 e; u8 qs[16]}`, `x = 2^(e − 128)·kv[q]`: elements 0–15 the low
 * nibbles of the code bytes, 16–31 the high ones.
 *
 * @example
 * ```ts
 * import { mxfp4 } from "./block_codecs_low_bit.ts";
 * mxfp4.bytes; // 17
 * ```
 */
export const mxfp4: BlockCodec = {
  bytes: 17,
  elems: 32,
  maxUnit: 8,
  columns: [16, 8, 8, 8],
  header: (id, rd) => [`let d${id} = qb_e8m0h(${rd.bytes4(0)});`],
  chunks: [{
    groups: [range(8)],
    steps: (_id: string, rd: BlockBytes) =>
      step(
        range(8).map((q) => {
          const w = rd.bytes4(1 + 4 * (q & 3));
          return plain(0, q, `qb_fp4(${q >> 2 ? `${w} >> 4u` : w})`, "F");
        }),
      ),
    affine: (hid: string) => ({ S: `d${hid}`, M: "0.0" }),
  }],
};

/**
 * NVFP4: `{u8 d[4]; u8 qs[32]}`, run s of 16 elements under `qb_ue4m3`'s scale
 * s: its low nibbles (elements 0–7) and high ones (8–15) of bytes 8s … 8s+7.
 *
 * @example
 * ```ts
 * import { nvfp4 } from "./block_codecs_low_bit.ts";
 * nvfp4.chunks.length; // 4
 * ```
 */
export const nvfp4: BlockCodec = {
  bytes: 36,
  elems: 64,
  maxUnit: 4,
  columns: [16, 8, 8, 8],
  header: (id, rd) => [`let s${id} = qb_ue4m3(${rd.bytes4(0)});`],
  chunks: range(4).map((s) => ({
    groups: [range(4, 4 * s)],
    steps: (_id: string, rd: BlockBytes) =>
      step(
        range(4).map((q) => {
          const w = rd.bytes4(4 + 8 * s + 4 * (q & 1));
          return plain(0, 4 * s + q, `qb_fp4(${q >> 1 ? `${w} >> 4u` : w})`, "F");
        }),
      ),
    affine: (hid: string) => ({ S: `s${hid}.${XYZW[s]}`, M: "0.0" }),
  })),
};
