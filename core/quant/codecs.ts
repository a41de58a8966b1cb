/**
 * CPU reference codecs for ggml's block-quantized formats: {@linkcode quantize}
 * writes the bytes llama.cpp's reference quantizers (`quantize_row_*_ref`)
 * write, and {@linkcode dequantize} reads them as `dequantize_row_*` does. They
 * are the ground truth the GPU dequantization kernels are tested against, and
 * what `kiln quantize` and quantize-on-load write (on every core through the
 * app's worker pool; the encoders skip only work that cannot change a byte).
 *
 * Bit-exactness assumes llama.cpp's float arithmetic is plain float32 with no
 * fused multiply-add, as ggml-base is built on x86-64; a build that contracts
 * `a*b + c` into FMAs (the default for GCC on AArch64) may round a scale
 * differently in rare blocks.
 *
 * @module
 */

import { GGML_TYPES, quantBytes, type QuantFormat } from "./formats.ts";
import {
  dequantizeBlockIQ1_M,
  dequantizeBlockIQ1_S,
  dequantizeBlockIQ2_S,
  dequantizeBlockIQ2_XS,
  dequantizeBlockIQ2_XXS,
  dequantizeBlockIQ3_S,
  dequantizeBlockIQ3_XXS,
} from "./iq_lattice.ts";
import {
  dequantizeBlockQ4_0,
  dequantizeBlockQ8_0,
  quantizeBlockQ4_0,
  quantizeBlockQ8_0,
} from "./legacy.ts";
import {
  dequantizeBlockQ2_K,
  dequantizeBlockQ4_K,
  dequantizeBlockQ5_K,
  quantizeBlockQ2_K,
  quantizeBlockQ4_K,
  quantizeBlockQ5_K,
} from "./k_quants.ts";
import { dequantizeBlockQ3_K, quantizeBlockQ3_K } from "./q3_k.ts";
import {
  dequantizeBlockIQ4_NL,
  dequantizeBlockIQ4_XS,
  quantizeBlockIQ4_NL,
  quantizeBlockIQ4_XS,
} from "./iq4.ts";
import { dequantizeBlockQ6_K, quantizeBlockQ6_K } from "./q6_k.ts";
import { quantizeBlockIQ3_S, quantizeBlockIQ3_XXS } from "./iq3_encode.ts";
import { quantizeBlockIQ1_M } from "./iq1_encode.ts";
import {
  dequantizeBlockMXFP4,
  dequantizeBlockNVFP4,
  quantizeBlockMXFP4,
  quantizeBlockNVFP4,
} from "./fp4.ts";
import {
  dequantizeBlockQ1_0,
  dequantizeBlockQ2_0,
  dequantizeBlockTQ1_0,
  dequantizeBlockTQ2_0,
  quantizeBlockQ1_0,
  quantizeBlockQ2_0,
  quantizeBlockTQ1_0,
  quantizeBlockTQ2_0,
} from "./low_bit.ts";
import {
  dequantizeBlockQ4_1,
  dequantizeBlockQ5_0,
  dequantizeBlockQ5_1,
  quantizeBlockQ4_1,
  quantizeBlockQ5_0,
  quantizeBlockQ5_1,
} from "./legacy_affine.ts";

/** One block's encoder: the floats at `x[xo]` into the block at `y[yo]`. */
export type Encode = (x: Float32Array, xo: number, y: Uint8Array, yo: number) => void;
type Decode = (b: Uint8Array, bo: number, out: Float32Array, oo: number) => void;

// IQ2 and IQ1_S have no encoder here: ggml writes them only with an importance matrix,
// and Kiln does so through `quantizeWithImportance` (IQ2_XXS/XS/S, IQ1_S, IQ1_M).
const CODECS: Record<QuantFormat, { encode?: Encode; decode: Decode }> = {
  q8_0: { encode: quantizeBlockQ8_0, decode: dequantizeBlockQ8_0 },
  q4_0: { encode: quantizeBlockQ4_0, decode: dequantizeBlockQ4_0 },
  q4_1: { encode: quantizeBlockQ4_1, decode: dequantizeBlockQ4_1 },
  q5_0: { encode: quantizeBlockQ5_0, decode: dequantizeBlockQ5_0 },
  q5_1: { encode: quantizeBlockQ5_1, decode: dequantizeBlockQ5_1 },
  q2_k: { encode: quantizeBlockQ2_K, decode: dequantizeBlockQ2_K },
  q3_k: { encode: quantizeBlockQ3_K, decode: dequantizeBlockQ3_K },
  q4_k: { encode: quantizeBlockQ4_K, decode: dequantizeBlockQ4_K },
  q5_k: { encode: quantizeBlockQ5_K, decode: dequantizeBlockQ5_K },
  q6_k: { encode: quantizeBlockQ6_K, decode: dequantizeBlockQ6_K },
  iq4_nl: { encode: quantizeBlockIQ4_NL, decode: dequantizeBlockIQ4_NL },
  iq4_xs: { encode: quantizeBlockIQ4_XS, decode: dequantizeBlockIQ4_XS },
  iq2_xxs: { decode: dequantizeBlockIQ2_XXS },
  iq2_xs: { decode: dequantizeBlockIQ2_XS },
  iq2_s: { decode: dequantizeBlockIQ2_S },
  iq3_xxs: { encode: quantizeBlockIQ3_XXS, decode: dequantizeBlockIQ3_XXS },
  iq3_s: { encode: quantizeBlockIQ3_S, decode: dequantizeBlockIQ3_S },
  iq1_s: { decode: dequantizeBlockIQ1_S },
  // ggml quantizes IQ1_M without a matrix too (weights x²); llama-quantize does not.
  iq1_m: {
    encode: (x, xo, y, yo) => quantizeBlockIQ1_M(x, xo, y, yo, undefined, 0),
    decode: dequantizeBlockIQ1_M,
  },
  tq1_0: { encode: quantizeBlockTQ1_0, decode: dequantizeBlockTQ1_0 },
  tq2_0: { encode: quantizeBlockTQ2_0, decode: dequantizeBlockTQ2_0 },
  q1_0: { encode: quantizeBlockQ1_0, decode: dequantizeBlockQ1_0 },
  q2_0: { encode: quantizeBlockQ2_0, decode: dequantizeBlockQ2_0 },
  mxfp4: { encode: quantizeBlockMXFP4, decode: dequantizeBlockMXFP4 },
  nvfp4: { encode: quantizeBlockNVFP4, decode: dequantizeBlockNVFP4 },
};

/**
 * Quantizes `data` to `format`, block after block, byte for byte as llama.cpp's
 * reference quantizer for that format. `data.length` must be a whole number of
 * blocks (32 elements for `q8_0`, `q4_0`, `q4_1`, `q5_0`, `q5_1`, `mxfp4`; 64 for `q2_0`,
 * `nvfp4`; 128 for `q1_0`; 256 for the K-quants, `iq4_xs`, `iq3_xxs`, `iq3_s`, `tq1_0`,
 * `tq2_0`, `iq1_m`) and every value finite; otherwise a RangeError names the format and
 * the length, or the index of the first non-finite value. The IQ2 formats and IQ1_S,
 * which ggml writes only with an importance matrix (`quantizeWithImportance`), are a
 * RangeError naming the format; IQ1_M is fitted with weights x², as ggml fits it
 * without a matrix.
 *
 * @example
 * ```ts
 * import { quantize } from "./mod.ts";
 * const x = new Float32Array(32).map((_, i) => i - 16);
 * const q = quantize("q8_0", x);
 * q.length; // 34
 * q[2]; // 0x81: −16 / (16/127) = −127
 * ```
 */
export function quantize(format: QuantFormat, data: Float32Array): Uint8Array<ArrayBuffer> {
  const encode = checkQuantizable(format, data);
  const out = new Uint8Array(quantBytes(format, data.length));
  const { blockElems, blockBytes } = GGML_TYPES[format];
  for (let b = 0, x = 0; x < data.length; b += blockBytes, x += blockElems) {
    encode(data, x, out, b);
  }
  return out;
}

/**
 * The checks {@linkcode quantize} makes before it writes a byte, with the same
 * RangeErrors: a format Kiln writes, a whole number of blocks, every value
 * finite. For callers that split the work (a worker pool encoding parts of one
 * tensor): checked once over the whole, an error names the element's index in
 * the whole tensor, not in a part.
 *
 * @example
 * ```ts
 * import { checkQuantizable } from "./codecs.ts";
 * checkQuantizable("q8_0", new Float32Array(64)); // fine: two blocks
 * try {
 *   checkQuantizable("q8_0", new Float32Array([...new Array(31).fill(0), NaN]));
 * } catch (e) {
 *   (e as Error).message; // "q8_0: element 31 is NaN; only finite values quantize"
 * }
 * ```
 */
export function checkQuantizable(format: QuantFormat, data: Float32Array): Encode {
  const codec = CODECS[format];
  if (codec === undefined) throw new RangeError(`unknown quantized format ${format}`);
  const encode = codec.encode;
  if (encode === undefined) {
    throw new RangeError(
      `${format}: Kiln writes this format only with an importance matrix, as llama-quantize ` +
        `does (kiln quantize --imatrix); quantize to another format without one`,
    );
  }
  checkValues(format, data);
  return encode;
}

/**
 * The checks on the values that {@linkcode checkQuantizable} makes, for a
 * format encoded another way (the IQ2 formats, written only with an importance
 * matrix): a whole number of blocks, every value finite.
 *
 * @example
 * ```ts
 * import { checkValues } from "./codecs.ts";
 * checkValues("iq2_xxs", new Float32Array(256)); // fine: one block
 * ```
 */
export function checkValues(format: QuantFormat, data: Float32Array): void {
  quantBytes(format, data.length); // a whole number of blocks, or its RangeError
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new RangeError(`${format}: element ${i} is ${data[i]}; only finite values quantize`);
    }
  }
}

/**
 * Decodes `elems` elements of `format` from `bytes`, as llama.cpp's
 * `dequantize_row_*` does (each value rounded to float32 the same way).
 * `elems` must be a whole number of blocks and `bytes.length` exactly
 * {@linkcode quantBytes}`(format, elems)`; otherwise a RangeError says which.
 *
 * @example
 * ```ts
 * import { dequantize, quantize } from "./mod.ts";
 * const x = new Float32Array(256).map((_, i) => Math.sin(i));
 * const y = dequantize("q6_k", quantize("q6_k", x), 256);
 * Math.abs(y[3] - x[3]) < 0.02; // true
 * ```
 */
export function dequantize(
  format: QuantFormat,
  bytes: Uint8Array,
  elems: number,
): Float32Array<ArrayBuffer> {
  const codec = CODECS[format];
  if (codec === undefined) throw new RangeError(`unknown quantized format ${format}`);
  const need = quantBytes(format, elems);
  if (bytes.length !== need) {
    throw new RangeError(
      `${format}: ${elems} elements take ${need} bytes, but ${bytes.length} were given`,
    );
  }
  const out = new Float32Array(elems);
  const { blockElems, blockBytes } = GGML_TYPES[format];
  for (let b = 0, o = 0; o < elems; b += blockBytes, o += blockElems) {
    codec.decode(bytes, b, out, o);
  }
  return out;
}
