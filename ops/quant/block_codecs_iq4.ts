/**
 * The block decode GEMV's readers of ggml's IQ4_NL and IQ4_XS blocks (see
 * `./block_codecs.ts` for the codec interface): their codes index 16
 * non-uniform levels, mapped four at a time by `qb_iq4` (a degree-4
 * polynomial of the code, rounded, in `BLOCK_HELPERS`) instead of table
 * lookups, each group's affine map a bare scale.
 *
 * @module
 */

import type { BlockBytes, BlockCodec, CodeRequest } from "./block_codecs.ts";
import { nibbleCodec, nibbleUses, range } from "./codec_parts.ts";

const XYZW = "xyzw";

/**
 * An IQ4 quad: the four codes of `req` (undone to plain 0–15 by their layout
 * factors) mapped to their levels by `qb_iq4`.
 */
function iq4Use(rd: BlockBytes, g: number, a: number, req: CodeRequest) {
  const c = rd.codes(req);
  return { g, a, q: `qb_iq4(${c.q} * ${c.sv})`, pat: `L${c.pat}`, sv: "vec4<f32>(1.0)" };
}

/**
 * IQ4_NL: `{f16 d; u8 qs[16]}`, `x = d·T[q]` (see `core/quant/iq4.ts`).
 *
 * @example
 * ```ts
 * import { iq4_nl } from "./block_codecs_iq4.ts";
 * iq4_nl.bytes; // 18
 * ```
 */
export const iq4_nl: BlockCodec = nibbleCodec(
  18,
  (id, rd) => [`let d${id} = ${rd.half(0)};`],
  2,
  (hid) => ({ S: `d${hid}`, M: "0.0" }),
  iq4Use,
);

/**
 * IQ4_XS: `{f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]}`, block ib's
 * `x = d·(ls − 32)·T[q]`, a chunk a 32-element block.
 *
 * @example
 * ```ts
 * import { iq4_xs } from "./block_codecs_iq4.ts";
 * iq4_xs.chunks.length; // 8
 * ```
 */
export const iq4_xs: BlockCodec = {
  bytes: 136,
  elems: 256,
  maxUnit: 2,
  // 8 rows for one token, not 16: 0.93-0.94× against 0.82-0.86× the f16 GEMV
  // (alternating runs) and half the first compile (7 s against 15 s).
  columns: [8, 8, 4, 4],
  header: (id, rd) => {
    const sh = `(${rd.bytes4(0)} >> 16u)`, sl = rd.bytes4(4);
    return [
      `let d${id} = ${rd.half(0)};`,
      ...[0, 1].map((v) => {
        const lo = `(vec4<u32>(${sl}) >> vec4<u32>(${[0, 4, 8, 12].map((s) => `${s + 16 * v}u`)}))`;
        const hi = `(vec4<u32>(${sh}) >> vec4<u32>(${[0, 2, 4, 6].map((s) => `${s + 8 * v}u`)}))`;
        return `let s${v}${id} = d${id} * (vec4<f32>(bitcast<vec4<i32>>((${lo} & vec4<u32>(15u)) | ((${hi} & vec4<u32>(3u)) << vec4<u32>(4u)))) - vec4<f32>(32.0));`;
      }),
    ];
  },
  chunks: range(8).map((ib) => ({
    groups: [range(8, 8 * ib)],
    steps: (_id, rd) => [{ lines: [], uses: nibbleUses(rd, 8 + 16 * ib, 8 * ib, iq4Use) }],
    affine: (hid) => ({ S: `s${ib >> 2}${hid}.${XYZW[ib & 3]}`, M: "0.0" }),
  })),
};
