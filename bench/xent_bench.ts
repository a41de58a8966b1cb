/**
 * Cross-entropy fused with the LM head vs the unfused graph, forward and
 * backward (one training step's loss head), side by side in one run:
 *
 * - fused: `crossEntropy(h, W, targets)` — `lm_head_xent` streaming the
 *   vocabulary with an online log-sum-exp, and `lm_head_xent_grad`
 *   recomputing logits from the saved log-sum-exp (no `[T, V]` buffer);
 * - unfused: `logits = h·Wᵀ`, `logsumexp`, the target's logit picked by a
 *   one-hot mask, the mean over counted tokens, and autodiff's gradient of
 *   that graph (`[T, V]` logits and probabilities stored).
 *
 * Prints, per variant: wall ms per step (submit and wait, no readback; medians
 * of interleaved rounds), the GPU time of each kernel (timestamp queries, one
 * profiled run), peak plan memory, and the largest temporary buffer; then checks the two
 * agree on the loss and gradients.
 *
 * Run: `deno run -A bench/xent_bench.ts` (XENT_T, XENT_D, XENT_V, XENT_REPS override
 * the sizes, 512 / 512 / 32000, and the rounds, 3).
 *
 * @module
 */

import {
  compile,
  crossEntropy,
  type Executable,
  GraphBuilder,
  requestDevice,
  type Tensor,
} from "../mod.ts";
import { interleavedMedians } from "./_timing.ts";

const env = (k: string, d: number) => Number(Deno.env.get(k) ?? d);
const T = env("XENT_T", 512), d = env("XENT_D", 512), V = env("XENT_V", 32000);
const reps = env("XENT_REPS", 3);
const dev = await requestDevice();

function rand(n: number, seed: number, scale: number): Float32Array {
  let a = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    a = (a * 1664525 + 1013904223) >>> 0;
    return ((a / 4294967296) * 2 - 1) * scale;
  });
}

/** The unfused loss: every logit stored, then log-softmax and a one-hot pick. */
function unfusedLoss(h: Tensor, w: Tensor, targets: Tensor): Tensor {
  const g = h.builder;
  const logits = h.matmul(w, { transB: true }); // [T, V]
  const lse = logits.logsumexp(-1, true); // [T, 1]
  const iota = g.constant(Array.from({ length: V }, (_, i) => i), [V], "i32");
  const hit = targets.reshape([-1, 1]).equal(iota); // [T, V] u32
  const picked = logits.where(hit, 0).sum(-1, true);
  const ok = targets.greaterEqual(0).mul(targets.less(V)).cast("f32").reshape([-1, 1]);
  const total = lse.sub(picked).mul(ok).reshape([-1]).sum(0);
  // 1 / (tokens counted), fed from the host: dividing by the mask's own sum in
  // the graph trips "fusion produced a dependency cycle" in the fuser (a
  // compiler bug at this commit, reported), and the step costs the same.
  return total.mul(g.input("inv_count", [1]).reshape([]));
}

function build(fused: boolean): Executable {
  const g = new GraphBuilder();
  const h = g.input("h", [T, d]);
  const w = g.param("lm_head.weight", [V, d]);
  const targets = g.input("targets", [T], "i32");
  const loss = fused ? crossEntropy(h, w, targets) : unfusedLoss(h, w, targets);
  if (fused) g.input("inv_count", [1]); // same inputs for both variants
  const [dh, dw] = g.grad(loss, [h, w]);
  g.output("loss", loss);
  g.output("dh", dh);
  g.output("dw", dw);
  return compile(g.build(), dev, { params: { "lm_head.weight": rand(V * d, 2, 0.05) } });
}

const targets = Int32Array.from({ length: T }, (_, i) => (i * 7919) % V);
targets[3] = -100;
const counted = targets.filter((t) => t >= 0 && t < V).length;
const inputs = { h: rand(T * d, 1, 1), targets, inv_count: new Float32Array([1 / counted]) };
const variants = [
  { name: "fused", exe: build(true) },
  { name: "unfused", exe: build(false) },
];

console.log(`adapter: ${dev.adapterName}; T = ${T}, d = ${d}, V = ${V}; load ${loadAvg()}`);
const outs: Record<string, { data: ArrayLike<number> }>[] = [];
for (const v of variants) {
  const plan = v.exe.plan();
  const t0 = performance.now();
  const prof = await v.exe.profile(inputs);
  const first = performance.now() - t0;
  outs.push(prof.outputs);
  const biggest = Math.max(...plan.slots.filter((s) => s.kind === "temp").map((s) => s.bytes));
  console.log(
    `${v.name}: first run (pipelines compiled) ${first.toFixed(0)} ms; peak plan memory ${
      mib(plan.peakBytes)
    }, largest temporary ${mib(biggest)} (T·V·4 = ${mib(T * V * 4)})`,
  );
  const ms = prof.kernels.reduce((a, k) => a + k.ns, 0) / 1e6;
  console.log(
    `  GPU ${ms.toFixed(0)} ms: ${
      prof.kernels.map((k) => `${k.label} ${(k.ns / 1e6).toFixed(1)}`).join(", ")
    }`,
  );
}
// `submit` only queues the work: wait for it, or the time is the encoding's.
const walls = await interleavedMedians(
  variants.map((v) => async () => {
    await v.exe.submit(inputs);
    await dev.device.queue.onSubmittedWorkDone();
  }),
  reps,
);
const flops = 2 * T * V * d;
for (const [i, v] of variants.entries()) {
  console.log(
    `${v.name.padEnd(8)} step ${walls[i].toFixed(0).padStart(6)} ms (median of ${reps}), ${
      (3 * flops / walls[i] / 1e6).toFixed(2)
    } GFLOP/s of the 3 unfused GEMMs' work`,
  );
}
console.log(`speed-up fused/unfused: ${(walls[1] / walls[0]).toFixed(2)}×`);
const diff = (k: string) => {
  const a = outs[0][k].data, b = outs[1][k].data;
  let m = 0, s = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return `${k} max |Δ| ${m.toExponential(2)} (scale ${s.toExponential(2)})`;
};
console.log(
  `loss ${outs[0].loss.data[0].toFixed(6)} vs ${outs[1].loss.data[0].toFixed(6)}; ${diff("dh")}; ${
    diff("dw")
  }`,
);
for (const v of variants) v.exe.dispose();

function mib(b: number): string {
  return `${(b / 2 ** 20).toFixed(1)} MiB`;
}

function loadAvg(): string {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
}
