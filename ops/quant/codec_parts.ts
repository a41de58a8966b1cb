/**
 * Pieces the block codecs (`./block_codecs.ts`, `./block_codecs_iq4.ts`)
 * share: a code quad as a step's use, and the 32-element blocks whose 16 code
 * bytes hold elements 0–15 in their low nibbles and 16–31 in their high ones
 * (Q4_0, Q4_1, IQ4_NL, and each 32-element block of IQ4_XS).
 *
 * @module
 */

import type { Affine, BlockBytes, BlockCodec, CodecStep, CodeRequest } from "./block_codecs.ts";

/**
 * `[from, from + 1, …, from + n − 1]`.
 *
 * @example
 * ```ts
 * import { range } from "./codec_parts.ts";
 * range(3, 4); // [4, 5, 6]
 * ```
 */
export const range = (n: number, from = 0): number[] =>
  Array.from({ length: n }, (_, i) => from + i);

/** One use of a step: a code quad, its activation vec4 `a` and group `g`. */
type Use = CodecStep["uses"][number];

/**
 * The four codes of `req` as a step's use of activation vec4 `a` in group `g`.
 *
 * @example
 * ```ts ignore
 * import { use } from "./codec_parts.ts";
 * const u = use(rd, 0, 3, { offs: [2], key: "", f: (w) => w, bits: 4 });
 * ```
 */
export function use(rd: BlockBytes, g: number, a: number, req: CodeRequest): Use {
  return { g, a, ...rd.codes(req) };
}

/**
 * The uses of 16 nibble code bytes at block offset `o` (group 0, activation
 * vec4s `a0 … a0+7`), each quad made by `make` (default {@linkcode use}).
 *
 * @example
 * ```ts ignore
 * import { nibbleUses } from "./codec_parts.ts";
 * const uses = nibbleUses(rd, 2, 0); // Q4_0's codes
 * ```
 */
export function nibbleUses(rd: BlockBytes, o: number, a0: number, make = use): Use[] {
  return range(4).flatMap((i) => [
    make(rd, 0, a0 + i, { offs: [o + 4 * i], key: "", f: (w) => w, bits: 4 }),
    make(rd, 0, a0 + 4 + i, { offs: [o + 4 * i], key: "h", f: (w) => `${w} >> 4u`, bits: 4 }),
  ]);
}

/**
 * A 32-element nibble format: `bytes` a block, its header lines, the code
 * bytes at `qs`, each block's affine map, and how a quad is made.
 *
 * @example
 * ```ts
 * import { nibbleCodec } from "./codec_parts.ts";
 * const q4_0 = nibbleCodec(18, (id, rd) => [`let d${id} = ${rd.half(0)};`], 2, (hid) => ({ S: `d${hid}`, off: 8 }));
 * q4_0.maxUnit; // 8
 * ```
 */
export function nibbleCodec(
  bytes: number,
  header: BlockCodec["header"],
  qs: number,
  affine: (hid: string) => Affine,
  make = use,
): BlockCodec {
  return {
    bytes,
    elems: 32,
    maxUnit: 8,
    columns: [16, 8, 8, 8],
    header,
    chunks: [{
      groups: [range(8)],
      steps: (_id, rd) => [{ lines: [], uses: nibbleUses(rd, qs, 0, make) }],
      affine,
    }],
  };
}
