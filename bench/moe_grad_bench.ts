/**
 * One MoE layer's training step (forward + backward: gradients of x, the
 * router and the three expert weights) through the routed `moe` op and its
 * `moe_grad` backward, side by side with the same layer computed densely over
 * all experts from matmuls (every expert on every token, weighted by the
 * renormalised top-k gate, differentiated by the matmul / softmax / topk
 * rules). Target: routed ≤ 1.5·k/E of dense.
 *
 * Run: `deno run -A bench/moe_grad_bench.ts [T d ff E k]` (default 256 256
 * 512 8 2). Times are GPU-only (encode + submit + wait, no readback), medians
 * of interleaved runs.
 */
import { compile, type Executable, GraphBuilder, requestDevice, type Tensor } from "../mod.ts";
import { interleavedMedians } from "./_timing.ts";

const [T, d, ff, E, k] = (Deno.args.length ? Deno.args : ["256", "256", "512", "8", "2"]).map(
  Number,
);
const device = await requestDevice();
const dev = device.device;

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a * 1664525 + 1013904223) >>> 0;
    return (a / 4294967296) * 2 - 1;
  };
}
const fill = (n: number, s: number, r: () => number) =>
  Float32Array.from({ length: n }, () => r() * s);

/** loss = Σ y ⊙ r, and the gradients of x, the router and the expert weights. */
function step(
  build: (g: GraphBuilder, x: Tensor) => { y: Tensor; wrt: Tensor[] },
  params: Record<string, Float32Array>,
): Executable {
  const g = new GraphBuilder();
  const x = g.input("x", [T, d]);
  const { y, wrt } = build(g, x);
  const loss = y.mul(g.input("r", [T, d])).reshape([-1]).sum(0);
  g.output("loss", loss);
  g.grad(loss, [x, ...wrt]).forEach((t, i) => g.output(`g${i}`, t));
  return compile(g.build(), device, { params });
}

const r = rng(7);
const router = fill(E * d, 1, r);
const w1 = fill(E * ff * d, 1 / Math.sqrt(d), r);
const w3 = fill(E * ff * d, 1 / Math.sqrt(d), r);
const w2 = fill(E * d * ff, 1 / Math.sqrt(ff), r);

const params = { router, w1, w3, w2 };
const weights = (g: GraphBuilder) => ({
  wg: g.param("router", [E, d]),
  w1: g.param("w1", [E, ff, d]),
  w3: g.param("w3", [E, ff, d]),
  w2: g.param("w2", [E, d, ff]),
});

const routed = step((g, x) => {
  const w = weights(g);
  const [y] = g.apply("moe", [x, w.wg, w.w1, w.w3, w.w2], {
    experts: E,
    topK: k,
    router: "softmax_topk",
    normTopk: true,
    routedScaling: 1,
    capacityFactor: 0,
    dense: false,
  });
  return { y, wrt: [w.wg, w.w1, w.w3, w.w2] };
}, params);

// Dense: gate = renormalised top-k of softmax(x·Wgᵀ) as a [T, E] matrix, then
// all E experts as three [T, E·ff] GEMMs (W2 used as [E·ff, d] through a transpose).
const dense = step((g, x) => {
  const w = weights(g);
  // Renormalised top-k softmax = softmax over the logits with the unchosen masked out.
  const z = x.matmul(w.wg, { transB: true });
  const [vals] = z.topk(k);
  const gate = z.where(z.greaterEqual(vals.slice(1, k - 1, k)), -1e30).softmax(-1);
  const a = x.matmul(w.w1.reshape([E * ff, d]), { transB: true });
  const b = x.matmul(w.w3.reshape([E * ff, d]), { transB: true });
  const h = a.silu().mul(b).reshape([T, E, ff]).mul(gate.reshape([T, E, 1]));
  const w2t = w.w2.transpose([0, 2, 1]).reshape([E * ff, d]);
  return { y: h.reshape([T, E * ff]).matmul(w2t), wrt: [w.wg, w.w1, w.w3, w.w2] };
}, params);

const feed = { x: fill(T * d, 1, rng(11)), r: fill(T * d, 1, rng(12)) };
const runs = [await routed.prepare(feed), await dense.prepare(feed)];
const gpuOnly = (run: (typeof runs)[number]) => async () => {
  const enc = dev.createCommandEncoder();
  run.encode(enc);
  dev.queue.submit([enc.finish()]);
  await dev.queue.onSubmittedWorkDone();
};

// Same gradients from both graphs (the dense one is the check of the routed one).
const [ro, de] = [await routed.run(feed), await dense.run(feed)];
const names = ["x", "router", "w1", "w3", "w2"];
const agree = names.map((n, i) => {
  const a = ro[`g${i}`].data, b = de[`g${i}`].data;
  let s = 1e-6, e = 0;
  for (let j = 0; j < b.length; j++) s = Math.max(s, Math.abs(b[j]));
  for (let j = 0; j < b.length; j++) e = Math.max(e, Math.abs(a[j] - b[j]) / s);
  return `${n} ${e.toExponential(1)}`;
});

if (Deno.env.get("PROFILE")) {
  for (const [name, exe] of [["routed", routed], ["dense", dense]] as const) {
    const p = await exe.profile(feed);
    const rows = p.kernels.map((t) => `    ${(t.ns / 1e6).toFixed(1).padStart(8)} ms  ${t.label}`);
    console.log(`${name} kernels (GPU timestamps):\n${rows.join("\n")}`);
  }
}
const reps = Number(Deno.env.get("REPS") ?? 5);
const [tr, td] = await interleavedMedians(runs.map(gpuOnly), reps);
const load = new TextDecoder().decode((await new Deno.Command("uptime").output()).stdout).trim();
const target = (1.5 * k) / E;
console.log(
  `MoE training step, T=${T} d=${d} ff=${ff} E=${E} k=${k} (${device.adapterName ?? "GPU"}):\n` +
    `  routed moe + moe_grad ${tr.toFixed(1)} ms, dense over all experts ${td.toFixed(1)} ms, ` +
    `ratio ${(tr / td).toFixed(3)} (target ≤ ${target.toFixed(3)})\n` +
    `  gradients routed vs dense, max error / scale: ${agree.join(", ")}\n` +
    `  routed kernels: ${routed.plan({}).kernels.length}, dense kernels: ${
      dense.plan({}).kernels.length
    }\n  load: ${load}`,
);
