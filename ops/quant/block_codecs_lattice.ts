/**
 * The block decode GEMV's readers of ggml's lattice formats (IQ2_XXS, IQ2_XS,
 * IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M; layouts in `core/quant/iq_lattice.ts`;
 * the codec interface in `./block_codecs.ts`). A chunk is a 32-element
 * sub-block: its index, sign and scale bytes come from the block's words
 * (each loaded once), each index picks a grid point from the kernel's constant
 * table (`core/kernel_tables.ts`: its levels as bytes; IQ1's biased by one),
 * and four level bytes become floats with a mask and a convert (`qb_b4`).
 * Signs flip the levels' float sign bits (`qb_sg`) rather than multiplying.
 * Scales are per sub-block (IQ2_XXS, IQ3_XXS, IQ3_S, IQ1_S) or per 16
 * elements (IQ2_XS, IQ2_S, IQ1_M); IQ1_S's ±1/8 shift is its group's `M`,
 * IQ1_M's (one a point) is added to the levels.
 *
 * @module
 */

import type { KernelTableName } from "../../core/kernel_tables.ts";
import { IQ_GRIDS } from "../../core/quant/iq_grids.ts";
import type { BlockBytes, BlockCodec, CodecStep } from "./block_codecs.ts";
import { range } from "./codec_parts.ts";

const ONES = "vec4<f32>(1.0)";

/** WGSL helpers of these codecs that need no table (appended to `BLOCK_HELPERS`). */
export const LATTICE_HELPERS = `
// Bits 0-3 of s flip the signs of q's components (higher bits shift out).
fn qb_sg(q: vec4<f32>, s: u32) -> vec4<f32> {
  let m = (vec4<u32>(s) << vec4<u32>(31u, 30u, 29u, 28u)) & vec4<u32>(0x80000000u);
  return bitcast<vec4<f32>>(bitcast<vec4<u32>>(q) ^ m);
}
// 7 stored sign bits and the parity bit that makes the minus signs even.
fn qb_ks(s7: u32) -> u32 { return s7 | ((countOneBits(s7) & 1u) << 7u); }`;

/**
 * `qb_pt_<grid>(idx)`: grid point `idx`'s level bytes from the table the
 * kernel names `table`: a `vec2<u32>` for the 8-level grids (one half of a
 * table vector), a `u32` for IQ3's 4-level ones.
 */
function pointFn(grid: KernelTableName, table: string): string {
  return IQ_GRIDS[grid].width === 8
    ? `
fn qb_pt_${grid}(idx: u32) -> vec2<u32> {
  let v = ${table}[idx >> 1u];
  return select(v.xy, v.zw, (idx & 1u) != 0u);
}`
    : `
fn qb_pt_${grid}(idx: u32) -> u32 { return ${table}[idx >> 2u][idx & 3u]; }`;
}

/** Levels `4h … 4h+3` of an 8-level point `p` (a `vec2<u32>` of level bytes). */
const half = (p: string, h: number) => `qb_b4(${p}.${h ? "y" : "x"})`;

/**
 * The eight quads of sub-block `ib`'s four 8-level points `p0…p3` (named with
 * `id`): point `l`'s half `h` meets activation vec4 `8·ib + 2l + h` of group
 * `group(l)`, as `q(levels, l, h)`.
 */
const pointQuads = (
  ib: number,
  id: string,
  group: (l: number) => number,
  q: (levels: string, l: number, h: number) => string,
) =>
  range(4).flatMap((l) =>
    [0, 1].map((h) => quad(group(l), 8 * ib + 2 * l + h, q(half(`p${l}${id}`, h), l, h)))
  );

/** `let <name><k><id> = <the block's word at off + 4k>;` for `k < n`. */
const words = (rd: BlockBytes, id: string, name: string, off: number, n: number) =>
  range(n).map((k) => `let ${name}${k}${id} = ${rd.bytes4(off + 4 * k)};`);

/** A quad of levels `q` meeting activation vec4 `a` of group `g`. */
const quad = (g: number, a: number, q: string) => ({ g, a, q, pat: "L", sv: ONES });

/** Byte `k` (0-3) of the u32 expression `w`, as an expression. */
const byteOf = (
  w: string,
  k: number,
) => (k === 0 ? `(${w} & 255u)` : `((${w} >> ${8 * k}u) & 255u)`);

/**
 * A lattice codec: `bytes` a block of 256 elements, its header, and per
 * 32-element sub-block `ib` the step (index, sign and scale words, then the
 * quads) and the affine map of each of its groups.
 */
function latticeCodec(
  grid: KernelTableName,
  bytes: number,
  header: BlockCodec["header"],
  groupsPerChunk: 1 | 2,
  step: (ib: number, id: string, hid: string, rd: BlockBytes) => CodecStep,
  affine: (ib: number, hid: string, id: string, g: number) => { S: string; M: string },
): BlockCodec {
  return {
    bytes,
    elems: 256,
    maxUnit: 1,
    // 8 rows for one token: as fast as 16 within lavapipe's noise (0.92-1.29× the
    // f16 GEMV either way, four alternating runs) and half the compile (~5.5 s).
    columns: [8, 8, 4, 4],
    helpers: (table) => pointFn(grid, table(grid)),
    header,
    chunks: range(8).map((ib) => ({
      groups: groupsPerChunk === 1 ? [range(8, 8 * ib)] : [range(4, 8 * ib), range(4, 8 * ib + 4)],
      steps: (id, rd, hid) => [step(ib, id, hid, rd)],
      affine: (hid, id, g) => affine(ib, hid, id, g),
    })),
  };
}

const dHeader: BlockCodec["header"] = (id, rd) => [`let d${id} = ${rd.half(0)};`];

/** IQ2_XXS: `{f16 d; u16 qs[32]}`: a sub-block is 4 index bytes, then 4 × 7 sign bits and a 4-bit scale. */
const iq2_xxs = latticeCodec("iq2xxs", 66, dHeader, 1, (ib, id, _hid, rd) => ({
  lines: [
    `let ix${id} = ${rd.bytes4(2 + 8 * ib)};`,
    `let au${id} = ${rd.bytes4(6 + 8 * ib)};`,
    ...range(4).flatMap((l) => [
      `let p${l}${id} = qb_pt_iq2xxs(${byteOf(`ix${id}`, l)});`,
      `let s${l}${id} = qb_ks((au${id} >> ${7 * l}u) & 127u);`,
    ]),
  ],
  uses: pointQuads(ib, id, () => 0, (v, l, h) => `qb_sg(${v}, s${l}${id} >> ${4 * h}u)`),
}), (_ib, hid, id) => ({ S: `(d${hid} * (0.5 + f32(au${id} >> 28u)) * 0.25)`, M: "0.0" }));

/** The 4-bit scale of group `g` (16 elements) of sub-block `ib`, from scale words `sc0`, `sc1`. */
const nibbleScale = (hid: string, ib: number, g: number) =>
  `f32((sc${ib >> 2}${hid} >> ${8 * (ib & 3) + 4 * g}u) & 15u)`;

/** IQ2_XS: `{f16 d; u16 qs[32]; u8 scales[8]}`: a u16 a point, 9-bit index and 7 sign bits. */
const iq2_xs = latticeCodec(
  "iq2xs",
  74,
  (id, rd) => [
    `let d${id} = ${rd.half(0)};`,
    ...words(rd, id, "sc", 66, 2),
  ],
  2,
  (ib, id, _hid, rd) => ({
    lines: [
      `let q01${id} = ${rd.bytes4(2 + 8 * ib)};`,
      `let q23${id} = ${rd.bytes4(6 + 8 * ib)};`,
      ...range(4).flatMap((l) => {
        const w = `q${l < 2 ? "01" : "23"}${id}`;
        const q = l & 1 ? `(${w} >> 16u)` : `(${w} & 0xffffu)`;
        return [
          `let p${l}${id} = qb_pt_iq2xs(${q} & 511u);`,
          `let s${l}${id} = qb_ks(${q} >> 9u);`,
        ];
      }),
    ],
    uses: pointQuads(ib, id, (l) => l >> 1, (v, l, h) => `qb_sg(${v}, s${l}${id} >> ${4 * h}u)`),
  }),
  (ib, hid, _id, g) => ({ S: `(d${hid} * (0.5 + ${nibbleScale(hid, ib, g)}) * 0.25)`, M: "0.0" }),
);

/**
 * IQ2_S: `{f16 d; u8 qs[32], signs[32]; u8 qh[8]; u8 scales[8]}`: an index byte
 * and 2 bits of qh a point, a sign byte a point.
 */
const iq2_s = latticeCodec(
  "iq2s",
  82,
  (id, rd) => [
    `let d${id} = ${rd.half(0)};`,
    ...words(rd, id, "qh", 66, 2),
    ...words(rd, id, "sc", 74, 2),
  ],
  2,
  (ib, id, hid, rd) => ({
    lines: [
      `let ix${id} = ${rd.bytes4(2 + 4 * ib)};`,
      `let sg${id} = ${rd.bytes4(34 + 4 * ib)};`,
      `let qh${id} = ${byteOf(`qh${ib >> 2}${hid}`, ib & 3)};`,
      ...range(4).map((l) =>
        `let p${l}${id} = qb_pt_iq2s(${byteOf(`ix${id}`, l)} | ((qh${id} << ${
          8 - 2 * l
        }u) & 0x300u));`
      ),
    ],
    uses: pointQuads(
      ib,
      id,
      (l) => l >> 1,
      (v, l, h) => `qb_sg(${v}, sg${id} >> ${8 * l + 4 * h}u)`,
    ),
  }),
  (ib, hid, _id, g) => ({ S: `(d${hid} * (0.5 + ${nibbleScale(hid, ib, g)}) * 0.25)`, M: "0.0" }),
);

/** IQ3_XXS: `{f16 d; u8 qs[64]; u32 aux[8]}`: an index byte a 4-element point, signs and scale in aux. */
const iq3_xxs = latticeCodec("iq3xxs", 98, dHeader, 1, (ib, id, _hid, rd) => ({
  lines: [
    `let i0${id} = ${rd.bytes4(2 + 8 * ib)};`,
    `let i1${id} = ${rd.bytes4(6 + 8 * ib)};`,
    `let au${id} = ${rd.bytes4(66 + 4 * ib)};`,
    ...range(4).map((l) => `let s${l}${id} = qb_ks((au${id} >> ${7 * l}u) & 127u);`),
  ],
  uses: range(8).map((i) =>
    quad(
      0,
      8 * ib + i,
      `qb_sg(qb_b4(qb_pt_iq3xxs(${byteOf(`i${i >> 2}${id}`, i & 3)})), s${i >> 1}${id} >> ${
        4 * (i & 1)
      }u)`,
    )
  ),
}), (_ib, hid, id) => ({ S: `(d${hid} * (0.5 + f32(au${id} >> 28u)) * 0.5)`, M: "0.0" }));

/**
 * IQ3_S: `{f16 d; u8 qs[64]; u8 qh[8]; u8 signs[32]; u8 scales[4]}`: an index
 * byte and a ninth bit a point, a sign nibble a point, `x = d·(1 + 2s)·±level`.
 */
const iq3_s = latticeCodec(
  "iq3s",
  110,
  (id, rd) => [
    `let d${id} = ${rd.half(0)};`,
    ...words(rd, id, "qh", 66, 2),
    `let sc${id} = ${rd.bytes4(106)};`,
  ],
  1,
  (ib, id, hid, rd) => ({
    lines: [
      `let i0${id} = ${rd.bytes4(2 + 8 * ib)};`,
      `let i1${id} = ${rd.bytes4(6 + 8 * ib)};`,
      `let sg${id} = ${rd.bytes4(74 + 4 * ib)};`,
      `let qh${id} = ${byteOf(`qh${ib >> 2}${hid}`, ib & 3)};`,
    ],
    uses: range(8).map((i) =>
      quad(
        0,
        8 * ib + i,
        `qb_sg(qb_b4(qb_pt_iq3s(${byteOf(`i${i >> 2}${id}`, i & 3)} | ((qh${id} << ${
          8 - i
        }u) & 256u))), sg${id} >> ${4 * i}u)`,
      )
    ),
  }),
  (ib, hid) => ({ S: `(d${hid} * f32(1u + 2u * ((sc${hid} >> ${4 * ib}u) & 15u)))`, M: "0.0" }),
);

/**
 * IQ1_S: `{f16 d; u8 qs[32]; u16 qh[8]}`: an index byte a point, and a u16 a
 * sub-block with 3 high index bits a point, a 3-bit scale and the shift's sign.
 */
const iq1_s = latticeCodec(
  "iq1s",
  50,
  (
    id,
    rd,
  ) => [
    `let d${id} = ${rd.half(0)};`,
    ...words(rd, id, "qw", 34, 4),
  ],
  1,
  (ib, id, hid, rd) => ({
    lines: [
      `let ix${id} = ${rd.bytes4(2 + 4 * ib)};`,
      `let qh${id} = ${ib & 1 ? `qw${ib >> 1}${hid} >> 16u` : `qw${ib >> 1}${hid} & 0xffffu`};`,
      `let dl${id} = d${hid} * f32(2u * ((qh${id} >> 12u) & 7u) + 1u);`,
      ...range(4).map((l) =>
        `let p${l}${id} = qb_pt_iq1s(${byteOf(`ix${id}`, l)} | (((qh${id} >> ${
          3 * l
        }u) & 7u) << 8u));`
      ),
    ],
    uses: pointQuads(ib, id, () => 0, (v) => v),
  }),
  (_ib, _hid, id) => ({
    S: `dl${id}`,
    // x = dl·(b − 1 + δ) for level bytes b = level + 1, δ = ∓1/8: M = dl·(1 − δ).
    M: `(select(0.875, 1.125, (qh${id} & 0x8000u) != 0u) * dl${id})`,
  }),
);

/**
 * IQ1_M: `{u8 qs[32]; u8 qh[16]; u16 scales[4]}`: an index byte a point, a
 * qh nibble a point (3 high index bits, the shift's sign), 3-bit scales a
 * 16-element group; the f16 `d` is the scale words' top nibbles.
 */
const iq1_m = latticeCodec(
  "iq1s",
  56,
  (id, rd) => [
    `let sa${id} = ${rd.bytes4(48)};`,
    `let sb${id} = ${rd.bytes4(52)};`,
    `let d${id} = unpack2x16float(((sa${id} >> 12u) & 0xfu) | ((sa${id} >> 24u) & 0xf0u) | ((sb${id} >> 4u) & 0xf00u) | ((sb${id} >> 16u) & 0xf000u)).x;`,
  ],
  2,
  (ib, id, _hid, rd) => ({
    lines: [
      `let ix${id} = ${rd.bytes4(4 * ib)};`,
      `let qh${id} = ${rd.bytes4(32 + 2 * ib)};`,
      ...range(4).flatMap((l) => {
        const qh = byteOf(`qh${id}`, l >> 1);
        const hi = l & 1 ? `(${qh} << 4u)` : `(${qh} << 8u)`;
        return [
          `let p${l}${id} = qb_pt_iq1s(${byteOf(`ix${id}`, l)} | (${hi} & 0x700u));`,
          `let e${l}${id} = vec4<f32>(select(-0.875, -1.125, (${qh} & ${
            l & 1 ? "0x80u" : "0x08u"
          }) != 0u));`,
        ];
      }),
    ],
    uses: pointQuads(ib, id, (l) => l >> 1, (v, l) => `(${v} + e${l}${id})`),
  }),
  (ib, hid, _id, g) => {
    // Sub-block ib's scales: u16 ib >> 1 (word ib >> 2 of sa, sb), bits 6·(ib & 1) + 3g.
    const w = `${ib >> 2 ? "sb" : "sa"}${hid}`;
    const shift = 16 * ((ib >> 1) & 1) + 6 * (ib & 1) + 3 * g;
    return { S: `(d${hid} * f32(2u * ((${w} >> ${shift}u) & 7u) + 1u))`, M: "0.0" };
  },
);

/**
 * The lattice formats' block codecs, by format.
 *
 * @example
 * ```ts
 * import { LATTICE_CODECS } from "./block_codecs_lattice.ts";
 * LATTICE_CODECS.iq2_xxs.bytes; // 66
 * ```
 */
export const LATTICE_CODECS = { iq2_xxs, iq2_xs, iq2_s, iq3_xxs, iq3_s, iq1_s, iq1_m } as const;
