/**
 * How the block-at-a-time decode GEMV (`./block_gemv.ts`) reads each of
 * llama.cpp's block formats but Q4_K (its own loop, `./q4k_loop.ts`; IQ4_NL and
 * IQ4_XS in `./block_codecs_iq4.ts`; TQ1_0, TQ2_0, Q1_0, Q2_0, MXFP4 and NVFP4
 * in `./block_codecs_low_bit.ts`; the IQ1/IQ2/IQ3 lattice formats in
 * `./block_codecs_lattice.ts`): which bytes hold a block's
 * scales, which activations each code word multiplies, and how four codes
 * become a `vec4<f32>`. The GEMV supplies the words (each loaded once, however
 * a block straddles them); a codec only names byte offsets inside its block.
 *
 * Every code is read as an unsigned field of its byte (`x = S·q − M` per
 * group; Q8_0's signed bytes biased by 128), four to a word: masked in place
 * (no shift to line it up; the byte's power of two is undone once per group)
 * and converted through i32 — AVX2 converts signed ints to float in one
 * instruction, unsigned in several — so an element costs a mask and a convert
 * (IQ4's codes then go through a polynomial to their levels).
 *
 * @module
 */

import type { QuantFormat } from "../../core/quant/formats.ts";
import { iq4_nl, iq4_xs } from "./block_codecs_iq4.ts";
import { LOW_BIT_HELPERS, mxfp4, nvfp4, q1_0, q2_0, tq1_0, tq2_0 } from "./block_codecs_low_bit.ts";
import { nibbleCodec, range, use } from "./codec_parts.ts";
import { LATTICE_CODECS, LATTICE_HELPERS } from "./block_codecs_lattice.ts";
import type { KernelTableName } from "../../core/kernel_tables.ts";

/**
 * Four codes of a block read by {@linkcode BlockBytes.codes}: each masked in
 * place inside its word (no shift to line it up), so component `i` is the code
 * times `2^(8·p)` for its byte position `p`; `sv` undoes that per component
 * (in the dot product's last step), `bias` weighs each component's activation
 * in the group's `M` term (undefined: all ones).
 *
 * @example
 * ```ts
 * import type { CodeQuad } from "./block_codecs.ts";
 * const q: CodeQuad = { q: "q0", pat: "a0", sv: "vec4<f32>(1.0)" };
 * ```
 */
export interface CodeQuad {
  /** `vec4<f32>` of the four scaled codes. */
  readonly q: string;
  /** Layout key: quads with equal keys share an accumulator (and `sv`, `bias`). */
  readonly pat: string;
  /** `vec4<f32>` per-component factors giving back the codes. */
  readonly sv: string;
  /** `vec4<f32>` per-component weights of the bias term, if not all ones. */
  readonly bias?: string;
}

/**
 * What a codec asks {@linkcode BlockBytes.codes} for: the four codes whose
 * bytes start at each of `offs` (block offsets, all alike mod 4), after `f`
 * combines those words into one (the same function of every word pair), each
 * code the low `bits` bits of its byte. With `topSigned` (8-bit codes) the
 * combined word's byte 3 is a signed code and bytes 0–2 carry a bias.
 *
 * @example
 * ```ts
 * import type { CodeRequest } from "./block_codecs.ts";
 * const r: CodeRequest = { offs: [2], key: "n", f: (w) => w, bits: 4 };
 * ```
 */
export interface CodeRequest {
  /** Block byte offsets of the source words (even, equal mod 4). */
  readonly offs: readonly number[];
  /** Names `f`, so its results are computed once per word. */
  readonly key: string;
  /** Combines the source words (u32 expressions) into one. */
  readonly f: (...w: string[]) => string;
  /** Bits of a code (≤ 7, or 8 with `topSigned`). */
  readonly bits: number;
  /** Byte 3 of the combined word is signed; bytes 0–2 are biased (bias term). */
  readonly topSigned?: boolean;
  /**
   * Top bits kept apart from the codes' bytes (Q5_0/Q5_1's `qh`, one bit an
   * element): bits `bit … bit+3` of the u32 expression `word` are the four
   * codes' bit `bits − 1`, in code order; `f` leaves that bit clear.
   */
  readonly top?: { readonly word: string; readonly bit: number };
}

/**
 * A block's bytes as WGSL expressions (each a `let` the GEMV emitted once).
 *
 * @example
 * ```ts
 * import type { BlockBytes } from "./block_codecs.ts";
 * const rd: BlockBytes = {
 *   bytes4: (o) => `w${o >> 2}`,
 *   half: (o) => `h${o}`,
 *   codes: () => ({ q: "q", pat: "a0", sv: "vec4<f32>(1.0)" }),
 * };
 * ```
 */
export interface BlockBytes {
  /**
   * The u32 of the block's bytes `off … off+3`, little-endian (`off` even, but in
   * a block of an odd size, whose units the GEMV keeps word-aligned).
   */
  bytes4(off: number): string;
  /** The f16 at the block's even byte `off`, as f32. */
  half(off: number): string;
  /** Four codes, each masked in place; see {@linkcode CodeQuad}. */
  codes(req: CodeRequest): CodeQuad;
}

/**
 * One decoded code word: lines declaring the codes, then which activations
 * (vec4 index `a` inside the block, of group `g`) each `vec4<f32>` `q` meets.
 *
 * @example
 * ```ts
 * import type { CodecStep } from "./block_codecs.ts";
 * const s: CodecStep = { lines: [], uses: [{ g: 0, a: 0, q: "q", pat: "a0", sv: "vec4<f32>(1.0)" }] };
 * ```
 */
export interface CodecStep {
  /** WGSL lines computing the step's codes. */
  readonly lines: readonly string[];
  /** Each code quad and the activation vector (group `g`, index `a`) it multiplies. */
  readonly uses: readonly ({ g: number; a: number } & CodeQuad)[];
}

/**
 * A group's affine map: `x = S·q − M`, or `x = S·(q − off)` with a constant
 * offset (whose `off·Σa` the GEMV then shares between weight rows).
 *
 * @example
 * ```ts
 * import type { Affine } from "./block_codecs.ts";
 * const a: Affine = { S: "d", off: 8 };
 * ```
 */
export type Affine = { readonly S: string; readonly M: string } | {
  readonly S: string;
  readonly off: number;
};

/**
 * A run of a block whose activations are loaded once for every weight row.
 *
 * @example
 * ```ts
 * import type { CodecChunk } from "./block_codecs.ts";
 * const c: CodecChunk = { groups: [[0]], steps: () => [], affine: () => ({ S: "1.0", off: 0 }) };
 * ```
 */
export interface CodecChunk {
  /** Activation vec4 indices (inside the block) of each affine group. */
  readonly groups: readonly (readonly number[])[];
  /**
   * The code words of one weight row; `id` makes its names unique, `hid` names
   * the row's header (as in {@linkcode BlockCodec.header}).
   */
  steps(id: string, rd: BlockBytes, hid: string): CodecStep[];
  /**
   * Group `g`'s map `x = S·q − M` (or `x = S·(q − off)`) for the row whose
   * header used `hid` and steps `id`.
   */
  affine(hid: string, id: string, g: number): Affine;
}

/**
 * One format, a block at a time.
 *
 * @example
 * ```ts
 * import { BLOCK_CODECS } from "./block_codecs.ts";
 * BLOCK_CODECS.q6_k?.bytes; // 210
 * ```
 */
export interface BlockCodec {
  /** Bytes of a block. */
  readonly bytes: number;
  /** Elements of a block (a multiple of 4). */
  readonly elems: number;
  /**
   * Most blocks the GEMV unrolls in one iteration for one activation row (one
   * a block for more: the activations' loads then dominate its code).
   */
  readonly maxUnit: number;
  /**
   * Weight rows an invocation owns on a CPU adapter, for 1–4 activation rows:
   * more share each activation load, the unrolled code (and compile time)
   * grows with them.
   */
  readonly columns: readonly number[];
  /** Load a unit's words for every weight row before decoding any (faster for Q6_K only). */
  readonly prefetch?: boolean;
  /**
   * WGSL helpers the codec's code calls that read constant tables, given the
   * names the kernel binds them under (`KernelIo.table`); see
   * {@linkcode codecHelpers}.
   */
  readonly helpers?: (table: (name: KernelTableName) => string) => string;
  /** Lines decoding a weight row's scales of a block, once (names end in `id`). */
  header(id: string, rd: BlockBytes): string[];
  /** The block's chunks, in order. */
  readonly chunks: readonly CodecChunk[];
}

/**
 * WGSL helper the codecs' code calls: `qb_b4(w)`, the four bytes of `w` as
 * floats.
 *
 * @example
 * ```ts
 * import { BLOCK_HELPERS } from "./block_codecs.ts";
 * BLOCK_HELPERS.includes("fn qb_b4("); // true
 * ```
 */
export const BLOCK_HELPERS = `
fn qb_b4(w: u32) -> vec4<f32> {
  let v = vec4<u32>(w, w >> 8u, w >> 16u, w >> 24u) & vec4<u32>(255u);
  return vec4<f32>(bitcast<vec4<i32>>(v));
}
// ggml's 16 IQ4 levels (kvalues_iq4nl) of codes 0–15: a degree-4 polynomial within
// 0.48 of every level, rounded — four FMAs instead of four table lookups.
fn qb_iq4(t: vec4<f32>) -> vec4<f32> {
  let p = fma(fma(vec4<f32>(0.0013247202), t, vec4<f32>(0.041216824)), t, vec4<f32>(-1.5001836));
  return round(fma(fma(p, t, vec4<f32>(24.743246)), t, vec4<f32>(-127.0436)));
}${LOW_BIT_HELPERS}${LATTICE_HELPERS}`;

const XYZW = "xyzw";

/**
 * Q8_0: `{f16 d; i8 q[32]}`, `x = d·q`. Bytes 0–2 of a word are read as
 * `q + 128` (one xor a word), byte 3 as the signed top byte of an i32.
 */
const q8_0: BlockCodec = {
  bytes: 34,
  elems: 32,
  maxUnit: 4,
  columns: [16, 8, 8, 8],
  header: (id, rd) => [`let d${id} = ${rd.half(0)};`],
  chunks: [{
    groups: [range(8)],
    steps: (_id, rd) => [{
      lines: [],
      uses: range(8).map((i) =>
        use(rd, 0, i, {
          offs: [2 + 4 * i],
          key: "x",
          f: (w) => `${w} ^ 0x00808080u`,
          bits: 8,
          topSigned: true,
        })
      ),
    }],
    affine: (hid) => ({ S: `d${hid}`, off: 128 }),
  }],
};

/** Q4_0: `{f16 d; u8 qs[16]}`, `x = d·(q − 8)`: elements 0–15 low nibbles, 16–31 high. */
const q4_0 = nibbleCodec(
  18,
  (id, rd) => [`let d${id} = ${rd.half(0)};`],
  2,
  (hid) => ({ S: `d${hid}`, off: 8 }),
);

/** Q4_1: `{f16 d, m; u8 qs[16]}`, `x = d·q + m`: Q4_0's nibbles after a second f16. */
const q4_1 = nibbleCodec(
  20,
  (id, rd) => [`let d${id} = ${rd.half(0)};`, `let m${id} = ${rd.half(2)};`],
  4,
  (hid) => ({ S: `d${hid}`, M: `(-m${hid})` }),
);

/**
 * Q5_0 `{f16 d; u32 qh; u8 qs[16]}` (`x = d·(q − 16)`) and Q5_1
 * `{f16 d, m; u32 qh; u8 qs[16]}` (`x = d·q + m`): Q4_0's nibbles with the fifth
 * bit of element j as bit j of `qh`, joined to each code's byte as it is read.
 */
function q5Legacy(affine: boolean): BlockCodec {
  const [qh, qs] = affine ? [4, 8] : [2, 6];
  return {
    bytes: affine ? 24 : 22,
    elems: 32,
    maxUnit: 8,
    columns: [16, 8, 8, 8],
    header: (id, rd) => [
      `let d${id} = ${rd.half(0)};`,
      ...(affine ? [`let m${id} = ${rd.half(2)};`] : []),
    ],
    chunks: [{
      groups: [range(8)],
      steps: (_id, rd) => {
        const word = rd.bytes4(qh);
        return [{
          lines: [],
          uses: range(4).flatMap((i) => [
            use(rd, 0, i, {
              offs: [qs + 4 * i],
              key: "",
              f: (w) => `(${w} & 0x0f0f0f0fu)`,
              bits: 5,
              top: { word, bit: 4 * i },
            }),
            use(rd, 0, 4 + i, {
              offs: [qs + 4 * i],
              key: "h",
              f: (w) => `((${w} >> 4u) & 0x0f0f0f0fu)`,
              bits: 5,
              top: { word, bit: 16 + 4 * i },
            }),
          ]),
        }];
      },
      affine: (hid) => affine ? { S: `d${hid}`, M: `(-m${hid})` } : { S: `d${hid}`, off: 16 },
    }],
  };
}

/**
 * Q5_K: `{f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}`; per pair `p` of
 * sub-blocks, 32 code bytes (low nibbles sub-block 2p, high 2p+1) and bits 2p,
 * 2p+1 of `qh` as the fifth bits; scales and mins packed as Q4_K's.
 */
const q5_k: BlockCodec = {
  bytes: 176,
  elems: 256,
  maxUnit: 1,
  columns: [16, 8, 4, 4],
  header: (id, rd) => {
    const [x, y, z, w] = [0, 4, 8, 12].map((o) => rd.bytes4(o));
    // ggml's get_scale_min_k4 on whole words (see ./q4k_loop.ts).
    return [
      `let dm${id} = unpack2x16float(${x});`,
      `let sa${id} = dm${id}.x * qb_b4(${y} & 0x3f3f3f3fu);`,
      `let ma${id} = dm${id}.y * qb_b4(${z} & 0x3f3f3f3fu);`,
      `let sb${id} = dm${id}.x * qb_b4((${w} & 0x0f0f0f0fu) | ((${y} >> 2u) & 0x30303030u));`,
      `let mb${id} = dm${id}.y * qb_b4(((${w} >> 4u) & 0x0f0f0f0fu) | ((${z} >> 2u) & 0x30303030u));`,
    ];
  },
  chunks: range(4).map((p) => ({
    groups: [range(8, 16 * p), range(8, 16 * p + 8)],
    steps: (_id, rd) => {
      // Fifth bit `bit` of each qh byte moved to bit 4.
      const hb = (h: string, bit: number) =>
        bit >= 4
          ? `((${h} >> ${bit - 4}u) & 0x10101010u)`
          : `((${h} << ${4 - bit}u) & 0x10101010u)`;
      return [{
        lines: [],
        uses: range(8).flatMap((i) => {
          const offs = [48 + 32 * p + 4 * i, 16 + 4 * i];
          return [
            use(rd, 0, 16 * p + i, {
              offs,
              key: `l${p}`,
              f: (w, h) => `(${w} & 0x0f0f0f0fu) | ${hb(h, 2 * p)}`,
              bits: 5,
            }),
            use(rd, 1, 16 * p + 8 + i, {
              offs,
              key: `h${p}`,
              f: (w, h) => `((${w} >> 4u) & 0x0f0f0f0fu) | ${hb(h, 2 * p + 1)}`,
              bits: 5,
            }),
          ];
        }),
      }];
    },
    affine: (hid, _id, g) => {
      const s = 2 * p + g;
      const half = s < 4 ? "a" : "b";
      return { S: `s${half}${hid}.${XYZW[s & 3]}`, M: `m${half}${hid}.${XYZW[s & 3]}` };
    },
  })),
};

/**
 * The chunk of Q2_K / Q3_K's half `h`, byte run `s` (`qs[32h + 16s …]`): its
 * four 16-element groups `j = 8h + 2k + s` (crumb k of the run's 16 bytes)
 * share the run's four words, each shifted once per group.
 */
function crumbChunk(
  h: number,
  s: number,
  code: (k: number, i: number) => CodeRequest,
  affine: (hid: string, j: number) => Affine,
): CodecChunk {
  return {
    groups: range(4).map((k) => range(4, 4 * (8 * h + 2 * k + s))),
    steps: (_id, rd) => [{
      lines: [],
      uses: range(4).flatMap((i) =>
        range(4).map((k) => use(rd, k, 4 * (8 * h + 2 * k + s) + i, code(k, i)))
      ),
    }],
    affine: (hid, _id, k) => affine(hid, 8 * h + 2 * k + s),
  };
}

/**
 * Q2_K: `{u8 scales[16]; u8 qs[64]; f16 d, dmin}`, group j (16 elements)
 * `x = d·(sc_j & 15)·q − dmin·(sc_j >> 4)`, 2-bit codes (see `core/quant/k_quants.ts`).
 */
const q2_k: BlockCodec = {
  bytes: 84,
  elems: 256,
  maxUnit: 1,
  columns: [16, 8, 4, 4],
  header: (id, rd) => [
    `let d${id} = ${rd.half(80)};`,
    `let dm${id} = ${rd.half(82)};`,
    ...range(4).flatMap((w) => [
      `let s${w}${id} = d${id} * qb_b4(${rd.bytes4(4 * w)} & 0x0f0f0f0fu);`,
      `let m${w}${id} = dm${id} * qb_b4((${rd.bytes4(4 * w)} >> 4u) & 0x0f0f0f0fu);`,
    ]),
  ],
  chunks: [0, 1].flatMap((h) =>
    [0, 1].map((s) =>
      crumbChunk(h, s, (k, i) => ({
        offs: [16 + 32 * h + 16 * s + 4 * i],
        key: `c${k}`,
        f: (w) => `(${w} >> ${2 * k}u)`,
        bits: 2,
      }), (hid, j) => ({
        S: `s${j >> 2}${hid}.${XYZW[j & 3]}`,
        M: `m${j >> 2}${hid}.${XYZW[j & 3]}`,
      }))
    )
  ),
};

/**
 * Q3_K: `{u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}`, group j
 * `x = d·sc_j·(q − 4)` with q = the two low bits (Q2_K's crumbs) plus the hmask
 * bit `j >> 1` of the same byte position as bit 2 (see `core/quant/q3_k.ts`).
 */
const q3_k: BlockCodec = {
  bytes: 110,
  elems: 256,
  maxUnit: 1,
  columns: [16, 8, 4, 4],
  header: (id, rd) => {
    const [a, b, c] = [96, 100, 104].map((o) => rd.bytes4(o));
    // Scales 0–3, 4–7, 8–11, 12–15: a nibble of a or b, two top bits of c's bytes.
    const lows = [`${a}`, `${b}`, `(${a} >> 4u)`, `(${b} >> 4u)`];
    const tops = [`(${c} << 4u)`, `(${c} << 2u)`, c, `(${c} >> 2u)`];
    return [
      `let d${id} = ${rd.half(108)};`,
      ...range(4).map((v) =>
        `let s${v}${id} = d${id} * (qb_b4((${lows[v]} & 0x0f0f0f0fu) | (${
          tops[v]
        } & 0x30303030u)) - vec4<f32>(32.0));`
      ),
    ];
  },
  chunks: [0, 1].flatMap((h) =>
    [0, 1].map((s) =>
      crumbChunk(h, s, (k, i) => ({
        offs: [32 + 32 * h + 16 * s + 4 * i, 16 * s + 4 * i],
        key: `c${h}${k}`,
        f: (w, m) =>
          `((${w} >> ${2 * k}u) & 0x03030303u) | (((${m} >> ${4 * h + k}u) & 0x01010101u) << 2u)`,
        bits: 3,
      }), (hid, j) => ({ S: `s${j >> 2}${hid}.${XYZW[j & 3]}`, off: 4 }))
    )
  ),
};

/** Q6_K: bits 2k, 2k+1 of each byte of the qh word `q` moved to bits 4–5 (other bits left). */
const q6kTop = (k: number, q: string) => [`(${q} << 4u)`, `(${q} << 2u)`, q, `(${q} >> 2u)`][k];

/**
 * The Q6_K chunk of quarter `(h, s)`: half `h`, positions `l = 16s … 16s+15`
 * of its four 32-element rows `k` (group k); a word of `ql` rows 0/2 (low/high
 * nibbles), one of rows 1/3 and one of `qh` (bits 2k, 2k+1) give 16 codes.
 */
function q6kChunk(h: number, s: number): CodecChunk {
  return {
    groups: range(4).map((k) => range(4, 32 * h + 8 * k + 4 * s)),
    steps: (id, rd) => {
      // The quarter's four scales sc[8h + 2k + s], signed: bytes s, s+2 of two words.
      const w0 = rd.bytes4(192 + 8 * h), w1 = rd.bytes4(196 + 8 * h);
      const up = `vec4<u32>(${24 - 8 * s}u, ${8 - 8 * s}u, ${24 - 8 * s}u, ${8 - 8 * s}u)`;
      return [{
        lines: [
          `let sc${id} = vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(${w0}, ${w0}, ${w1}, ${w1}) << ${up}) >> vec4<u32>(24u));`,
        ],
        uses: range(4).flatMap((j) => {
          const o = 16 * s + 4 * j;
          const lo = 64 * h + o, hi = 128 + 32 * h + o;
          // Row k: low nibbles (k < 2) or high (k ≥ 2) of ql[64h + 32(k & 1) + l],
          // top bits 2k, 2k+1 of qh[32h + l], joined at bits 0–5.
          return range(4).map((k) =>
            use(rd, k, 32 * h + 8 * k + 4 * s + j, {
              offs: [lo + 32 * (k & 1), hi],
              key: `q${k}`,
              f: (a, q) =>
                `(${k < 2 ? a : `(${a} >> 4u)`} & 0x0f0f0f0fu) | (${q6kTop(k, q)} & 0x30303030u)`,
              bits: 6,
            })
          );
        }),
      }];
    },
    affine: (hid, id, k) => ({ S: `d${hid} * sc${id}.${XYZW[k]}`, off: 32 }),
  };
}

/**
 * Q6_K: `{u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}`, `x = d·sc·(q − 32)`,
 * a quarter of a block a chunk.
 */
const q6_k: BlockCodec = {
  bytes: 210,
  elems: 256,
  maxUnit: 1,
  columns: [12, 8, 4, 4],
  prefetch: true,
  header: (id, rd) => [`let d${id} = ${rd.half(208)};`],
  chunks: [0, 1].flatMap((h) => [0, 1].map((s) => q6kChunk(h, s))),
};

/**
 * The codecs of the formats the block GEMV reads (Q4_K has its own loop,
 * `./q4k_loop.ts`).
 *
 * @example
 * ```ts
 * import { BLOCK_CODECS } from "./block_codecs.ts";
 * BLOCK_CODECS.q8_0?.elems; // 32
 * ```
 */
export const BLOCK_CODECS: Readonly<Partial<Record<QuantFormat, BlockCodec>>> = {
  q8_0,
  q4_0,
  q4_1,
  q5_0: q5Legacy(false),
  q5_1: q5Legacy(true),
  q2_k,
  q3_k,
  q5_k,
  q6_k,
  iq4_nl,
  iq4_xs,
  tq1_0,
  tq2_0,
  q1_0,
  q2_0,
  mxfp4,
  nvfp4,
  ...LATTICE_CODECS,
};

/**
 * The WGSL helpers a kernel reading `format` a block at a time needs:
 * {@linkcode BLOCK_HELPERS} and the codec's own table readers, whose tables
 * the kernel names through `table` (e.g. `(t) => io.table(t)`).
 *
 * @example
 * ```ts
 * import { codecHelpers } from "./block_codecs.ts";
 * codecHelpers("iq2_xxs", (t) => `table_${t}`).includes("table_iq2xxs"); // true
 * ```
 */
export function codecHelpers(
  format: QuantFormat,
  table: (name: KernelTableName) => string,
): string {
  return BLOCK_HELPERS + (BLOCK_CODECS[format]?.helpers?.(table) ?? "");
}
