/**
 * A model at Mixtral-8x7B's true widths (hidden 4096, expert width 14336,
 * 32 / 8 heads of 128, 8 experts top-2, vocab 32000) with few layers, seeded
 * random f16 weights written as a Hugging Face folder: loaded with
 * `loadModel(dir, { dtype: "f16" })` on this adapter — on lavapipe every
 * expert stack, the embedding and the LM head exceed the 128 MiB storage
 * binding and are bound in segments — then its logits on a short prompt are
 * compared with Kiln's CPU reference device running the same graph, and
 * prefill and decode are timed. Not part of `deno task test` (≈ 3 GB of
 * weights a layer):
 *
 *     deno run -A bench/true_width_bench.ts [--layers 1] [--tokens 8] [--hidden 4096]
 *     deno run -A bench/true_width_bench.ts --arch gpt-oss   # GPT-OSS-20B's widths
 *
 * @module
 */
import { GPT_OSS_20B_CONFIG, MIXTRAL_8X7B_CONFIG } from "../tests/fixtures/published_configs.ts";
import { parseArgs } from "node:util";
import { cpuDevice, loadModel, requestDevice } from "../mod.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: Object.fromEntries(
    ["layers", "tokens", "hidden", "ff", "keep", "arch"].map((k) => [
      k,
      { type: "string" as const },
    ]),
  ),
});
const layers = Number(args.layers ?? 1);
const tokens = Number(args.tokens ?? 8);
const gptOss = args.arch === "gpt-oss";
if (args.arch !== undefined && !gptOss && args.arch !== "mixtral") {
  throw new TypeError(`--arch must be mixtral or gpt-oss, got ${JSON.stringify(args.arch)}`);
}
// GPT-OSS-20B: hidden and expert width 2880, 64 / 8 heads of 64 with sinks, 32 experts
// top-4 with biases, vocab 201088 (its experts here f16, not the published MXFP4).
const hidden = Number(args.hidden ?? (gptOss ? 2880 : 4096));
const ff = Number(args.ff ?? (gptOss ? 2880 : 14336));
const { quantization_config: _, ...gptOssBase } = GPT_OSS_20B_CONFIG;
const config: Record<string, unknown> = gptOss
  ? { ...gptOssBase, hidden_size: hidden, intermediate_size: ff, num_hidden_layers: layers }
  : {
    ...MIXTRAL_8X7B_CONFIG,
    hidden_size: hidden,
    intermediate_size: ff,
    num_hidden_layers: layers,
    head_dim: hidden / 32,
  };
config.torch_dtype = "float16";
if (gptOss) {
  config.layer_types = Array.from(
    { length: layers },
    (_, i) => (i % 2 === 0 ? "sliding_attention" : "full_attention"),
  );
}
const PROMPT = [1, 415, 2936, 9060, 285, 1142, 28705, 13];
const mb = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;

const dir = args.keep ?? await Deno.makeTempDir({ prefix: "kiln_true_width_" });
let t = performance.now();
const written = await writeRandomCheckpoint(dir, config, { seed: 1, dtype: "F16" });
console.log(
  `checkpoint: ${layers} layer(s) at hidden ${hidden}, ff ${ff}: ` +
    `${(written.parameters / 1e9).toFixed(2)}B parameters, ${mb(written.bytes)} f16 ` +
    `(written in ${((performance.now() - t) / 1000).toFixed(1)} s)`,
);
try {
  const device = await requestDevice();
  console.log(
    `adapter: ${device.adapterName}, storage binding ${mb(device.caps.maxBindingSize)}`,
  );
  t = performance.now();
  const model = await loadModel(dir, { device, dtype: "f16", maxSeq: 64, quiet: true });
  const loadS = (performance.now() - t) / 1000;
  console.log(`load: ${loadS.toFixed(1)} s (read, convert, upload, build)`);
  t = performance.now();
  const gpuLogits = (await model.forward(PROMPT)).slice();
  console.log(`first forward (compiles): ${((performance.now() - t) / 1000).toFixed(1)} s`);
  t = performance.now();
  await model.forward(PROMPT);
  const prefillS = (performance.now() - t) / 1000;
  const ids: number[] = [];
  for await (const id of model.generateIds(PROMPT, { maxTokens: tokens, readEvery: 1 })) {
    ids.push(id);
  }
  const s = model.lastStats!;
  const decodeTps = (s.generatedTokens - 1) / (s.decodeMs / 1000);
  console.log(
    `prefill: ${(PROMPT.length / prefillS).toFixed(2)} tok/s (${PROMPT.length} tokens, ` +
      `${(prefillS * 1000).toFixed(0)} ms); decode: ${decodeTps.toFixed(2)} tok/s ` +
      `(${s.generatedTokens} tokens: ${ids.join(" ")})`,
  );
  model.dispose();
  device.destroy();

  // The same graph on Kiln's CPU reference device, from the same f16 weights.
  t = performance.now();
  const ref = await loadModel(dir, { device: cpuDevice(), dtype: "f16", maxSeq: 64, quiet: true });
  const cpuLogits = await ref.forward(PROMPT);
  ref.dispose();
  let scale = 0, err = 0, worstRow = 0;
  const V = config.vocab_size as number;
  for (let r = 0; r < PROMPT.length; r++) {
    let rowScale = 0, rowErr = 0;
    for (let i = r * V; i < (r + 1) * V; i++) {
      rowScale = Math.max(rowScale, Math.abs(cpuLogits[i]));
      rowErr = Math.max(rowErr, Math.abs(gpuLogits[i] - cpuLogits[i]));
    }
    scale = Math.max(scale, rowScale);
    err = Math.max(err, rowErr);
    worstRow = Math.max(worstRow, rowErr / rowScale);
  }
  const argmax = (a: Float32Array, r: number) => {
    let best = r * V;
    for (let i = r * V; i < (r + 1) * V; i++) if (a[i] > a[best]) best = i;
    return best - r * V;
  };
  const same = PROMPT.filter((_, r) => argmax(gpuLogits, r) === argmax(cpuLogits, r)).length;
  console.log(
    `CPU reference: ${((performance.now() - t) / 1000).toFixed(1)} s; max |GPU − CPU| ` +
      `${err.toExponential(2)} over logits of max |·| ${scale.toFixed(3)}: ` +
      `max relative logit error ${(err / scale).toExponential(2)} ` +
      `(worst row ${worstRow.toExponential(2)}); argmax equal on ${same}/${PROMPT.length} rows`,
  );
} finally {
  if (args.keep === undefined) await Deno.remove(dir, { recursive: true });
}
