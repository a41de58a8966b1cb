/**
 * Lecture experiment 1 — selection needs input-dependent parameters.
 *
 * The Mamba paper's synthetic tasks (§4.1), scaled down: selective copying
 * (data tokens scattered at random positions among noise, to be recalled in
 * order at the markers) and associative recall (key–value pairs, then a key:
 * emit its value). Three small causal LMs of about the same parameter count,
 * differing only in the sequence mixer, are trained from scratch on fresh
 * batches (infinite data, as in the paper) and scored by argmax accuracy on
 * held-out batches drawn from other seeds:
 *
 * - Mamba: the selective scan, Δ, B and C computed from each token;
 * - S4D: the same block with a time-invariant S4D layer in the scan's place
 *   (the paper's "S4 in the Mamba architecture" ablation);
 * - attention: causal softmax attention with RoPE and a SwiGLU MLP.
 *
 * Run: `deno run -A examples/lecture/selection.ts [--quick] [--out DIR]`
 *
 * @module
 */

import { requestDevice } from "../../mod.ts";
import { lineChartSvg, panelsSvg } from "../../app/plot/svg.ts";
import { experimentArgs, markdownTable, writeResults } from "./report.ts";
import { type MixerKind, SmallLMRun } from "./small_lm.ts";
import { associativeRecallBatch, selectiveCopyBatch, type TaskBatch } from "./tasks.ts";

const args = experimentArgs();
const quick = args.quick;
const device = await requestDevice();

/** One synthetic task: batches by seed and the fixed positions it scores. */
interface Task {
  key: string;
  title: string;
  vocab: number;
  sizes: string;
  batch: (n: number, seed: number) => TaskBatch;
  scored: (length: number) => [number, number];
  steps: number;
  lr: number;
}

const copy = { vocab: 16, span: 32, data: 4 };
// 4 pairs: with 8, no model passed 30% within the budget (16 examples per update, one scored
// token each).
const recall = { vocab: 20, pairs: 4 };
const tasks: Task[] = [
  {
    key: "copying",
    title: "selective copying",
    vocab: copy.vocab,
    sizes: `vocab ${copy.vocab}, ${copy.data} data tokens in ${copy.span} positions ` +
      `(${copy.span + copy.data} tokens)`,
    batch: (n, seed) => selectiveCopyBatch(copy, n, seed),
    scored: (len) => [len - copy.data, len],
    steps: quick ? 30 : 1200,
    lr: 5e-3,
  },
  {
    key: "recall",
    title: "associative recall",
    vocab: recall.vocab,
    sizes: `vocab ${recall.vocab}, ${recall.pairs} key–value pairs then a query ` +
      `(${2 * recall.pairs + 1} tokens)`,
    batch: (n, seed) => associativeRecallBatch(recall, n, seed),
    scored: (len) => [len - 1, len],
    steps: quick ? 30 : 2000,
    lr: 5e-3,
  },
];

// Width 64: at width 32 Mamba reached only ~70% on copying in the same budget.
const d = quick ? 32 : 64, layers = 2, batch = 16;
const models: { mixer: MixerKind; label: string; mlp: number }[] = [
  { mixer: "mamba", label: "Mamba (selective)", mlp: 0 },
  { mixer: "s4d", label: "S4D (time-invariant)", mlp: 0 },
  // Attention has fewer weights per block than the SSM blocks (4d² against about 6d² + 2d(2N +
  // 23 + 2⌈d/16⌉)): a SwiGLU MLP of width 3d·ff ≈ the difference evens the count.
  { mixer: "attention", label: "attention", mlp: d === 64 ? 88 : 64 },
];
const evalEvery = quick ? 15 : 100;
const evalBatches = quick ? 1 : 4, evalSize = quick ? 32 : 64;

const rows: string[][] = [];
const curves = new Map<string, { label: string; points: [number, number][] }[]>();
for (const task of tasks) {
  const length = task.batch(1, 0).length;
  const scored = task.scored(length);
  // Held-out batches: seeds the training stream (1, 2, …) never reaches.
  const heldOut = Array.from({ length: evalBatches }, (_, i) => task.batch(evalSize, 1e6 + i));
  const series: { label: string; points: [number, number][] }[] = [];
  for (const m of models) {
    const t0 = performance.now();
    const run = new SmallLMRun(
      device,
      // The direct causal sum beats the FFT convolution at these lengths (same result).
      {
        mixer: m.mixer,
        vocab: task.vocab,
        d,
        layers,
        stateSize: 16,
        heads: 4,
        mlp: m.mlp,
        s4Mode: "direct",
      },
      { batch, seq: length, scored },
      {
        schedule: { peak: task.lr, warmup: Math.ceil(task.steps / 20), total: task.steps },
        seed: 1,
        logEvery: evalEvery,
      },
    );
    const points: [number, number][] = [[0, (await run.evaluate(heldOut)).accuracy]];
    let final = { accuracy: 0, loss: 0 };
    for (let s = 1; s <= task.steps; s++) {
      await run.step(task.batch(batch, s));
      if (s % evalEvery === 0 || s === task.steps) {
        final = await run.evaluate(heldOut);
        points.push([s, final.accuracy]);
      }
    }
    await run.readLosses();
    const mean = (xs: [number, number][]) => xs.reduce((a, [, l]) => a + l, 0) / xs.length;
    const window = Math.min(10, run.losses.length);
    const first = mean(run.losses.slice(0, window)), last = mean(run.losses.slice(-window));
    const seconds = (performance.now() - t0) / 1000;
    const best = Math.max(...points.map(([, a]) => a));
    console.log(
      `${task.key} ${m.mixer}: ${run.paramCount} params, accuracy ${final.accuracy.toFixed(3)} ` +
        `(best ${best.toFixed(3)}), loss ${first.toFixed(3)} → ${last.toFixed(3)}, ${
          seconds.toFixed(0)
        } s`,
    );
    rows.push([
      task.key,
      m.mixer,
      String(run.paramCount),
      String(task.steps),
      final.accuracy.toFixed(3),
      best.toFixed(3),
      first.toFixed(3),
      last.toFixed(3),
      final.loss.toFixed(3),
      seconds.toFixed(0),
    ]);
    series.push({ label: m.label, points });
    run.dispose();
  }
  curves.set(task.key, series);
}

const table = markdownTable(
  [
    "task",
    "model",
    "parameters",
    "updates",
    "held-out accuracy",
    "best held-out accuracy",
    "train loss, first 10 updates",
    "train loss, last 10 updates",
    "held-out loss",
    "seconds",
  ],
  rows,
);
console.log(`\n${table}`);

const svg = panelsSvg(tasks.map((task) =>
  lineChartSvg({
    title: `${task.title}: held-out accuracy`,
    xLabel: "training updates",
    yLabel: "accuracy",
    width: 600,
    height: 380,
    series: curves.get(task.key)!.map((s) => ({ ...s, markers: true })),
  })
));

const acc = (task: string, mixer: string) =>
  Number(rows.find((r) => r[0] === task && r[1] === mixer)![4]);
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const points = (x: number) => `${Math.abs(100 * x).toFixed(0)} points`;
const reading = tasks.map((task) => {
  const [ma, s4, at] = ["mamba", "s4d", "attention"].map((m) => acc(task.key, m));
  const mamba = ma > 0.95
    ? "Mamba passes the paper's 95%"
    : "Mamba stops short of the paper's > 95% in this budget";
  const gap = ma - s4 > 0.1
    ? `the time-invariant S4D trails it by ${points(ma - s4)}`
    : s4 - ma > 0.1
    ? `the time-invariant S4D beats it by ${points(s4 - ma)}`
    : `the time-invariant S4D is within ${
      points(ma - s4)
    } of it: this scale does not separate them`;
  const attn = at - Math.max(ma, s4) > 0.05
    ? `attention beats both SSMs by ${points(at - Math.max(ma, s4))}`
    : `attention reaches ${pct(at)}`;
  return `- **${task.title}**: Mamba ${pct(ma)}, S4D ${pct(s4)}, attention ${pct(at)}. ` +
    `${mamba}; ${gap}; ${attn}.`;
}).join("\n");
// performance.now() counts from the process's start: the wall time includes compiling.
const wall = performance.now() / 1000;
const quickNote = quick
  ? "; `--quick` is the test suite's smoke run, far too short to learn the tasks"
  : "";

const md = `### Selection needs input-dependent parameters

Run: \`deno run -A examples/lecture/selection.ts${quick ? " --quick" : ""}\`
(${
  wall.toFixed(0)
} s wall, WebGPU adapter "${device.adapterName}", ${navigator.hardwareConcurrency} CPU
threads${quickNote}). The first run on a machine also compiles the kernels (Mesa keeps them in its
shader cache): a few minutes more on a software adapter.

**Scale.** The Mamba paper trains 2-layer models on selective copying with vocabulary 16, 4096
positions and 16 data tokens, and on induction heads with vocabulary 16 and 256 positions, for
hundreds of thousands of steps. Here, per task: ${
  tasks.map((t) => `${t.title} — ${t.sizes}`).join("; ")
}. Every model has ${layers} residual blocks of width ${d} (SSM state 16, inner width ${2 * d};
attention: 4 heads of ${d / 4}, RoPE, and a SwiGLU MLP of ${models[2].mlp} so that the parameter
counts match), AdamW (peak learning rate ${tasks.map((t) => t.lr).join(" / ")}, warmup 5%, cosine
decay, weight decay 0.1 on matrices, clip 1), batch ${batch} fresh sequences per update (training
seeds 1, 2, …), ${tasks.map((t) => t.steps).join(" / ")} updates (${
  tasks.map((t) => (t.steps * batch).toLocaleString("en"))
    .join(" / ")
} training sequences), one initialisation seed (1). Accuracy is greedy (argmax) over the scored
positions of ${evalBatches * evalSize} held-out sequences (seeds 1 000 000 and up), measured every
${evalEvery} updates. Loss and accuracy count only the scored positions (the ${copy.data} markers;
the query). Train losses are means over the first and the last 10 updates.

${table}
![accuracy vs training updates](selection.svg)

**Reading.**
${reading}

The three models differ only in the mixer. Mamba's Δ, B and C are projections of the current
token, so it decides per token what to write into its state and what to let decay; the S4D
block's A, B, C and Δ are fixed once trained, so it applies the same convolution to every
sequence wherever the data sits (it keeps the block's local convolution and SiLU(z) gate, which
is why it is far above chance, 1/${copy.vocab - 2} on copying). The paper's Table 1 reports, on
selective copying at full scale, 99.8% for Mamba and 56.4% for S4 in the Mamba architecture.

The recall task here is multi-query associative recall with one query (${recall.pairs} pairs in
context), not the paper's single-pair induction-heads task: attention solves it by looking the
key up, while an SSM must compress every pair into a fixed state. Zoology (Arora et al., 2023)
found this is where small SSMs and gated convolutions trail attention, the gap closing with
width; one seed and ${tasks[1].steps} updates of ${batch} sequences are too few to say more.
`;
await writeResults(args, "selection", { svg, md });
