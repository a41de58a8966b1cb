/**
 * Quantizing with an importance matrix (`quantizeWithImportance`, what
 * `kiln quantize --imatrix` runs; IQ2 and IQ1 only so) against ggml's
 * `ggml_quantize_chunk` with the
 * same importance vector: 24 rows of 1536 values in nine styles (so a row's
 * mean square, which the 32-element formats weigh with, mixes styles), an
 * importance vector spanning six decades with every 13th column zero. Also the
 * checks' errors, and that the matrix changes the bytes where ggml's does.
 */
import assert from "node:assert/strict";
import { dequantize, quantize } from "../core/quant/codecs.ts";
import { IMPORTANCE_FORMATS, quantizeWithImportance } from "../core/quant/importance.ts";
import { IMATRIX_ONLY_FORMATS, type QuantFormat } from "../core/quant/formats.ts";
import { mulberry32 } from "../core/random.ts";
import { styledValues } from "./fixtures/quant_blocks.ts";

// SHA-256 of ggml d99724f2's ggml_quantize_chunk(type, x, …, qw) for
// `importanceInput()` (tools/ggml_reference.ts's `wquantize`, gcc 12 -O2, x86-64).
const GGML: Record<string, string> = {
  iq2_xxs: "28e4f45450b4e178ce37fda5d19648c44bf6600155f0f143766be0f6c8daa1d3",
  iq2_xs: "90c1a11b52921d0d7f9973f2021d0ab73922a82174b8a0f7fd0ab4d1a47355da",
  iq2_s: "e049a6fb7986ba69909c74799105301c72c118aa28c01fc84d2a7434370a681c",
  iq1_s: "f66abd812b95974a47cdc838045139d4ecdd1ffd53564de26950b8071446abb2",
  iq1_m: "3cc955f9b1f28cebfa415567ea844382941e90e0d45b90ad9242993307999003",
  q4_0: "af34974414011785148fad6074ad9686a66aca035fdeca7ff166e1cf2826ccb9",
  q4_1: "71742415c1182ddb87f16fd8d933f87cb2879d48782708028fa5309ce6ca527b",
  q5_0: "60104fc8fa6be776604c2e357e833c46f26e711d2af0bf35ec9ed5dd815c6cef",
  q5_1: "348ac7f27722c0faa962bd2378aff64d44b37009e39a96b86fa471121de80080",
  q2_k: "381ab458ae0891d664e8e888d9e2171d00c39d6761a8825b3deea38f5e4d5582",
  q3_k: "f2999718e85dba21556b00c5473605b7ff32671cea54f5163a76688424ee0caa",
  q4_k: "8cf8bcb4014a4b410578f35c81f7d7d4fd0bde35b175250c8a95e2ac9dcb4f42",
  q5_k: "f778894dff4648d76bab433dca0737ae048a95248e7d6258ceb964c767c984d1",
  q6_k: "e5c9d586f9ac81950a72a4b22df5998e7ba8991988c3c1e94e527ecd7ded2fd1",
  iq3_xxs: "2b248e6b3b9e357bb2a7655acfb506f8175e43d913cd496c7e8871749370112f",
  iq4_nl: "86f2463f21b7f09f5ffe59ab92616c485265d52e1613c3f55c7b460a9d155df8",
  iq3_s: "b65096814de8b004471be0fb37a46bf9ba49f46facfda18fa178fedb09f7d0a4",
  iq4_xs: "f128e25a8096d4b7feb6a44581b5cd88ec4daecda5d120c93843a47fd35ba370",
};

/**
 * The test's rows and importance vector (also what `wquantize` is run on).
 *
 * @example
 * ```ts
 * const { rows, rowLength } = importanceInput(); // 24, 1536
 * ```
 */
export function importanceInput(): {
  x: Float32Array;
  qw: Float32Array;
  rows: number;
  rowLength: number;
} {
  const rows = 24, rowLength = 1536;
  const r = mulberry32(20261207);
  const x = styledValues(r, rows * rowLength);
  const qw = Float32Array.from(
    { length: rowLength },
    (_, i) => i % 13 === 0 ? 0 : (r() * 3) ** 3 + 1e-4,
  );
  return { x, qw, rows, rowLength };
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(h, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test("importance: every weighted format writes ggml's bytes on nine styles of rows", async () => {
  const { x, qw, rowLength } = importanceInput();
  assert.deepEqual(Object.keys(GGML).sort(), [...IMPORTANCE_FORMATS].sort());
  for (const [format, want] of Object.entries(GGML)) {
    const q = quantizeWithImportance(format as QuantFormat, x, rowLength, qw);
    assert.equal(await sha256(q), want, format);
  }
});

Deno.test("importance: the matrix moves the fit where it weighs; Q8_0 and FP4 ignore it", () => {
  const { x, qw, rowLength } = importanceInput();
  // (The IQ2 formats are written only with a matrix, as llama-quantize writes them.)
  for (const format of IMPORTANCE_FORMATS.filter((f) => !IMATRIX_ONLY_FORMATS.includes(f))) {
    const plain = quantize(format, x);
    const weighted = quantizeWithImportance(format, x, rowLength, qw);
    assert.equal(weighted.length, plain.length, format);
    assert.notDeepEqual(weighted, plain, `${format}: the importance changed nothing`);
  }
  for (const format of ["q8_0", "mxfp4", "tq2_0"] as const) {
    assert.deepEqual(quantizeWithImportance(format, x, rowLength, qw), quantize(format, x), format);
  }
});

Deno.test("importance: IQ1_M without a matrix writes ggml's bytes (weights x²)", async () => {
  // ggml_quantize_chunk(GGML_TYPE_IQ1_M, x, …, NULL): ggml fits IQ1_M without a
  // matrix, though llama-quantize refuses to but for the embeddings and output.
  const { x } = importanceInput();
  assert.equal(
    await sha256(quantize("iq1_m", x)),
    "ffb956a8197a5754f88db44c31b3206adc9380cb75657d7eecf064e5b346da40",
  );
});

Deno.test("importance: a heavier column is reproduced more closely", () => {
  // One row, the importance of column 5 raised 10⁴×: its error must fall.
  const r = mulberry32(3);
  const x = Float32Array.from({ length: 256 }, () => r() - 0.5);
  const flat = new Float32Array(256).fill(1);
  const heavy = flat.slice();
  heavy[5] = 1e4;
  for (const format of ["q4_k", "q3_k", "q2_k"] as const) {
    const err = (qw: Float32Array) => {
      const q = quantizeWithImportance(format, x, 256, qw);
      return Math.abs(dequantize(format, q, 256)[5] - x[5]);
    };
    assert.ok(err(heavy) <= err(flat), `${format}: ${err(heavy)} > ${err(flat)}`);
  }
});

Deno.test("importance: bad rows or vectors are RangeErrors naming the format", () => {
  const x = new Float32Array(512);
  assert.throws(
    () => quantizeWithImportance("q4_k", x, 256, new Float32Array(128)),
    /q4_k: the importance vector has 128 values for rows of 256/,
  );
  assert.throws(
    () => quantizeWithImportance("q4_k", x, 384, new Float32Array(384)),
    /q4_k: rows of 384 elements must be whole 256-element blocks dividing the 512 values/,
  );
  const nan = new Float32Array(256);
  nan[7] = NaN;
  assert.throws(
    () => quantizeWithImportance("q5_0", x, 256, nan),
    /q5_0: importance value 7 is NaN/,
  );
  const bad = x.slice();
  bad[300] = Infinity;
  assert.throws(
    () => quantizeWithImportance("q6_k", bad, 256, new Float32Array(256)),
    /q6_k: element 300 is Infinity/,
  );
  assert.throws(
    () => quantizeWithImportance("iq1_m", bad, 256, new Float32Array(256)),
    /iq1_m: element 300 is Infinity/,
  );
  assert.throws(
    () => quantize("iq2_xs", x),
    /iq2_xs: Kiln writes this format only with an importance matrix/,
  );
});
