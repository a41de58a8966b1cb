/**
 * `deno task demo`: first streams text from Kiln's default model
 * (assets/default_model/, a tiny Jamba-style hybrid trained on Moby-Dick by
 * examples/train_default_model.ts) when it is there; then a larger Jamba-style
 * hybrid (attention + Mamba + MoE) from a built-in config.json with seeded
 * random weights — no download. The weights are
 * written as a Hugging Face folder and loaded with `loadModel`, the path a real
 * checkpoint takes. Prints the kernel plan, parameters total vs active per token,
 * prefill and decode speed, and how the decode time per token of the attention
 * layers and of the Mamba layers changes with the context length.
 *
 * About 30 s cold (empty shader cache) and 15 s warm on the lavapipe software
 * adapter (2 cores, quiet machine).
 */
import {
  countParams,
  layerPrefix,
  loadModel,
  parseConfig,
  type PlannedKernel,
  requestDevice,
  specOf,
  STATES,
} from "../mod.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { DEMO_CONFIG as CONFIG } from "./demo_config.ts";
import { DEFAULT_MODEL_COMMAND, defaultModelPath, findDefaultModel } from "../app/default_model.ts";

const PROMPT = 256; // prefill chunk; also the prompt of the speed test
const CONTEXTS = [64, 256, 1024, 4096];
const GEN = 32;

const device = await requestDevice();

// ---------------------------------------------------------------------------
// The trained default model (assets/default_model/), when it is there: stream text

const trained = await findDefaultModel();
if (trained) {
  const lm = await loadModel(trained, { device, quiet: true, maxSeq: 256 });
  const prompt = "Call me Ishmael.";
  console.log(`Kiln's default model (${trained}, trained on Moby-Dick), from "${prompt}":\n`);
  await Deno.stdout.write(new TextEncoder().encode(prompt));
  for await (
    const piece of lm.generate(prompt, { maxTokens: 64, temperature: 0.8, topK: 40, seed: 7 })
  ) {
    await Deno.stdout.write(new TextEncoder().encode(piece));
  }
  const st = lm.lastStats!;
  console.log(
    `\n\n(${st.generatedTokens} tokens at ${
      ((st.generatedTokens - 1) / (st.decodeMs / 1000)).toFixed(0)
    } tok/s; ${(countParams(lm.prefill.graph).total / 1e6).toFixed(2)}M parameters)\n`,
  );
  lm.dispose();
} else {
  console.log(
    `(no trained default model at ${defaultModelPath()}; create it with: ${DEFAULT_MODEL_COMMAND})\n`,
  );
}

const cfg = parseConfig(CONFIG);
const pattern = cfg.pattern.map((p) =>
  `${p.mixer === "attention" ? "A" : "M"}${p.ffn === "moe" ? "e" : "f"}`
);
console.log(`Kiln demo on ${device.adapterName}: a Jamba-style hybrid with random weights\n`);
console.log(
  `config: ${cfg.layers} layers, hidden ${cfg.hidden}, vocab ${cfg.vocabSize}, ` +
    `${cfg.attention!.heads} heads / ${cfg.attention!.kvHeads} KV heads, Mamba state ${
      cfg.mamba!.stateSize
    } × inner ${cfg.mamba!.inner}, MoE ${cfg.moe!.experts} experts top-${cfg.moe!.topK}`,
);
console.log(
  `layers (A attention, M Mamba; e MoE, f dense MLP): ${pattern.join(" ")}`,
);

const dir = await Deno.makeTempDir({ prefix: "kiln_demo_" });
let t = performance.now();
const written = await writeRandomCheckpoint(dir, CONFIG, { seed: 0 });
const model = await loadModel(dir, {
  device,
  quiet: true,
  maxSeq: CONTEXTS[CONTEXTS.length - 1] + GEN + 8,
});
await Deno.remove(dir, { recursive: true }); // the weights now live on the device
console.log(
  `weights: ${(written.bytes / 2 ** 20).toFixed(1)} MiB of safetensors written and loaded in ${
    (performance.now() - t).toFixed(0)
  } ms`,
);

const count = countParams(model.prefill.graph);
const M = (n: number) => `${(n / 1e6).toFixed(2)}M`;
console.log(
  `parameters: ${M(count.total)} total, ${M(count.activePerToken)} active per token ` +
    `(${(100 * count.activePerToken / count.total).toFixed(0)}%: each token runs 2 of 8 experts)`,
);

// ---------------------------------------------------------------------------
// Kernel plan, grouped by what each kernel belongs to

type Kind = "attention" | "mamba" | "ffn" | "other";
/**
 * Attributes each kernel to a layer part by the scope it was built in (the model
 * builds each part in a scope named like its module: `model.layers.3.self_attn`,
 * `model.layers.3.mamba`, `model.layers.3.feed_forward`).
 */
const spec = specOf(cfg).layout;
const partOf = new Map<string, Kind>();
cfg.pattern.forEach((p, i) => {
  const prefix = layerPrefix(cfg, i);
  partOf.set(`${prefix}.${spec.attention}`, "attention");
  partOf.set(`${prefix}.${spec.mamba}`, "mamba");
  partOf.set(`${prefix}.${p.ffn === "moe" ? spec.moe : spec.mlp}`, "ffn");
});
const classify = (kernels: readonly PlannedKernel[]): Kind[] =>
  kernels.map((k) => (k.scope && partOf.get(k.scope)) || "other");
const decodePlan = model.decode.plan({});
const prefillPlan = model.prefill.plan({ T: PROMPT });
const kinds = classify(decodePlan.kernels);
const tally = (k: Kind) => kinds.filter((x) => x === k).length;
const nAttn = cfg.pattern.filter((p) => p.mixer === "attention").length;
const nMamba = cfg.layers - nAttn;
console.log(
  `\nkernel plan: ${decodePlan.kernels.length} kernels per decode step, ` +
    `${prefillPlan.kernels.length} per prefill of ${PROMPT} tokens ` +
    `(decode peak ${(decodePlan.peakBytes / 1024).toFixed(0)} KiB of activations)`,
);
console.log(
  `  per decode step: attention ${tally("attention")} (${nAttn} layers), Mamba ${
    tally("mamba")
  } (${nMamba} layers), MLP/MoE ${tally("ffn")}, embedding/final norm/LM head/sampling ${
    tally("other")
  }`,
);
const firstOf = (k: Kind) => {
  const i = kinds.indexOf(k);
  let j = i;
  while (j < kinds.length && kinds[j] === k) j++;
  return decodePlan.kernels.slice(i, j).map((x) => x.label.replace(/^prologue\+/, "")).join(", ");
};
console.log(`  one Mamba layer:     ${firstOf("mamba")}`);
console.log(`  one attention layer: ${firstOf("attention")}`);
console.log(`  (full listing: model.decode.inspect(); WGSL: model.decode.plan().kernels[i].code)`);

// ---------------------------------------------------------------------------
// Speed: generate with the GPU-resident decode loop

const ids = Array.from({ length: CONTEXTS[CONTEXTS.length - 1] }, (_, i) => (i * 7919 + 1) % 4096);
const compiled = device.pipelines.size;
for await (const _ of model.generateIds(ids.slice(0, PROMPT), { maxTokens: 2 })) { /* compile */ }
console.log(
  `\n${
    device.pipelines.size - compiled
  } distinct pipelines (the decode step and the ${PROMPT}-token ` +
    `prefill chunk) compiled in ${(model.lastStats!.compileMs / 1000).toFixed(1)} s`,
);
async function rate(readEvery: number) {
  let n = 0;
  for await (
    const _ of model.generateIds(ids.slice(0, PROMPT), { maxTokens: GEN + 1, readEvery })
  ) {
    n++;
  }
  return model.lastStats!;
}
const s = await rate(16);
const s1 = await rate(1);
const tps = (st: typeof s) => (st.generatedTokens - 1) / (st.decodeMs / 1000);
console.log(
  `prefill: ${PROMPT} tokens in ${s.prefillMs.toFixed(0)} ms = ${
    (PROMPT / s.prefillMs * 1000).toFixed(0)
  } tok/s`,
);
console.log(
  `decode:  ${
    tps(s).toFixed(1)
  } tok/s reading ids back every 16 tokens (${s.readbacks} round trips); ` +
    `${tps(s1).toFixed(1)} tok/s reading back every token`,
);

// ---------------------------------------------------------------------------
// Decode cost vs context, attention vs Mamba (GPU timestamps per kernel)

// Fill the caches with a real 4096-token prompt, in chunks that reuse the compiled
// T = 256 prefill. A decode step at position C then attends over C cached rows.
t = performance.now();
model.prefill.resetStates();
for (let p = 0; p < ids.length; p += PROMPT) {
  await model.prefill.submit({
    ids: ids.slice(p, p + PROMPT),
    pos: [p],
    last: [PROMPT - 1],
    seed: [0],
    step: [0],
  });
}
await model.prefill.readState(STATES.generated);
console.log(
  `\ncaches filled with a ${ids.length}-token prompt in ${(performance.now() - t).toFixed(0)} ms`,
);
console.log(
  "decode GPU time per token by layer kind (kernel timestamps, median of 3; kernels are" +
    "\nattributed to layers by the weights and caches they bind; a step at context C attends" +
    "\nover C cached rows, a Mamba layer updates a fixed-size state):\n",
);
const row = (cells: string[]) => console.log(`| ${cells.map((c) => c.padEnd(12)).join(" | ")} |`);
row([
  "context",
  `attn ×${nAttn} ms`,
  "per attn",
  `Mamba ×${nMamba} ms`,
  "per Mamba",
  "MLP/MoE ms",
  "other ms",
]);
row(Array(7).fill("-".repeat(12)));
const perLayer: Record<number, [number, number]> = {};
for (const C of CONTEXTS) {
  const runs: Record<Kind, number>[] = [];
  for (let r = 0; r < 3; r++) {
    const { kernels } = await model.decode.profile({ pos: [C], seed: [0], step: [1] });
    const sum: Record<Kind, number> = { attention: 0, mamba: 0, ffn: 0, other: 0 };
    kernels.forEach((k, i) => sum[kinds[i]] += k.ns / 1e6);
    runs.push(sum);
  }
  const med = (k: Kind) => runs.map((r) => r[k]).sort((a, b) => a - b)[1];
  perLayer[C] = [med("attention") / nAttn, med("mamba") / nMamba];
  row([
    String(C),
    med("attention").toFixed(2),
    perLayer[C][0].toFixed(3),
    med("mamba").toFixed(2),
    perLayer[C][1].toFixed(3),
    med("ffn").toFixed(2),
    med("other").toFixed(2),
  ]);
}
const [lo, hi] = [CONTEXTS[0], CONTEXTS[CONTEXTS.length - 1]];
// Least-squares line through the attention layer's times: a fixed part (projections,
// dispatch) plus a part proportional to the cached rows it reads.
const xs = CONTEXTS, ys = CONTEXTS.map((c) => perLayer[c][0]);
const mx = xs.reduce((a, b) => a + b) / xs.length, my = ys.reduce((a, b) => a + b) / ys.length;
const slope = xs.reduce((a, x, i) => a + (x - mx) * (ys[i] - my), 0) /
  xs.reduce((a, x) => a + (x - mx) ** 2, 0);
const mambaMs = CONTEXTS.map((c) => perLayer[c][1]).reduce((a, b) => a + b) / CONTEXTS.length;
console.log(
  `\nfrom context ${lo} to ${hi}: an attention layer's decode time × ${
    (perLayer[hi][0] / perLayer[lo][0]).toFixed(2)
  }, a Mamba layer's × ${(perLayer[hi][1] / perLayer[lo][1]).toFixed(2)}`,
);
console.log(
  `attention: +${(slope * 1000).toFixed(2)} ms per layer for every 1000 cached tokens ` +
    `(it re-reads the KV cache each step); Mamba: ${mambaMs.toFixed(2)} ms per layer at any ` +
    `context (a fixed-size state)${
      slope > 0
        ? `; an attention layer costs more than a Mamba layer beyond ~${
          Math.round((mambaMs - (my - slope * mx)) / slope / 100) * 100
        } tokens`
        : ""
    }`,
);
model.dispose();
device.destroy();
