/**
 * The training core on the device: SGD/AdamW, global-norm clipping, the
 * warmup-cosine schedule and gradient accumulation against a float64 CPU
 * reference; an MLP language model overfitting one batch; the same seed
 * giving the same loss curve bit for bit; a run resumed from its saved states
 * equal to the uninterrupted run bit for bit.
 */

import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { TrainableBuilder } from "../compiler/train/trainable.ts";
import { buildTrainStep, TRAIN_STATES, type TrainStep } from "../compiler/train/step.ts";
import { adamw, sgd } from "../compiler/train/optimizers.ts";
import { learningRate, learningRateAt, type LrSchedule } from "../compiler/train/schedule.ts";
import { softmaxCrossEntropy } from "../compiler/train/cross_entropy.ts";
import type { Optimizer } from "../compiler/train/types.ts";
import { compile, type Executable } from "../runtime/executable.ts";
import { assertClose, gpu, randomData, rng } from "./_util.ts";

// ---------- optimizers against a float64 reference: least squares y ≈ x·w + b ----------

const N = 6, K = 5, M = 3;

interface RefOpt {
  kind: "sgd" | "adamw";
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
}

/** Loss ½·mean((x·w + b − y)²)·M and its gradients, in float64. */
function lossGrad(w: Float64Array, b: Float64Array, x: Float32Array, y: Float32Array) {
  const dw = new Float64Array(K * M), db = new Float64Array(M);
  let loss = 0;
  for (let n = 0; n < N; n++) {
    for (let m = 0; m < M; m++) {
      let r = b[m] - y[n * M + m];
      for (let k = 0; k < K; k++) r += x[n * K + k] * w[k * M + m];
      loss += r * r / (2 * N);
      db[m] += r / N;
      for (let k = 0; k < K; k++) dw[k * M + m] += x[n * K + k] * r / N;
    }
  }
  return { loss, grads: [dw, db] };
}

/** The same run on the host: PyTorch's update rules, float64. */
function reference(
  o: RefOpt,
  schedule: LrSchedule,
  clip: number | undefined,
  accumulate: number,
  init: Float64Array[],
  data: { x: Float32Array; y: Float32Array }[],
  updates: number,
) {
  const p = init.map((a) => a.slice());
  const s1 = p.map((a) => new Float64Array(a.length)),
    s2 = p.map((a) => new Float64Array(a.length));
  const losses: number[] = [];
  let k = 0;
  for (let t = 0; t < updates; t++) {
    const g = p.map((a) => new Float64Array(a.length));
    let loss = 0;
    for (let m = 0; m < accumulate; m++, k++) {
      const r = lossGrad(p[0], p[1], data[k % data.length].x, data[k % data.length].y);
      loss += r.loss / accumulate;
      r.grads.forEach((d, i) => d.forEach((v, j) => (g[i][j] += v / accumulate)));
    }
    losses.push(loss);
    if (clip !== undefined) {
      const norm = Math.sqrt(g.reduce((a, d) => a + d.reduce((s, v) => s + v * v, 0), 0));
      const c = Math.min(1, clip / (norm + 1e-6));
      g.forEach((d) => d.forEach((v, j) => (d[j] = v * c)));
    }
    const lr = learningRateAt(schedule, t), step = t + 1;
    p.forEach((a, i) => {
      const d = g[i], decay = i === 0; // w is a matrix, b a vector
      for (let j = 0; j < a.length; j++) {
        if (o.kind === "sgd") {
          let q = d[j] + (o.weightDecay ?? 0) * a[j];
          const mu = o.momentum ?? 0;
          if (mu) {
            s1[i][j] = step === 1 ? q : mu * s1[i][j] + (1 - (o.dampening ?? 0)) * q;
            q = o.nesterov ? q + mu * s1[i][j] : s1[i][j];
          }
          a[j] -= lr * q;
        } else {
          const b1 = o.beta1 ?? 0.9, b2 = o.beta2 ?? 0.999, eps = o.eps ?? 1e-8;
          if (decay) a[j] *= 1 - lr * (o.weightDecay ?? 0.01);
          s1[i][j] = b1 * s1[i][j] + (1 - b1) * d[j];
          s2[i][j] = b2 * s2[i][j] + (1 - b2) * d[j] * d[j];
          const denom = Math.sqrt(s2[i][j]) / Math.sqrt(1 - b2 ** step) + eps;
          a[j] -= lr / (1 - b1 ** step) * s1[i][j] / denom;
        }
      }
    });
  }
  return { params: p, losses };
}

function regression(
  optimizer: Optimizer,
  schedule: LrSchedule,
  clip: number | undefined,
  accumulate: number,
  logEvery: number,
) {
  const g = new TrainableBuilder();
  const x = g.input("x", [N, K]);
  const y = g.input("y", [N, M]);
  const w = g.param("w", [K, M]);
  const b = g.param("b", [M]);
  const r = x.matmul(w).add(b).sub(y);
  const loss = r.mul(r).sum(1).mean(0).mul(0.5);
  const step = buildTrainStep(g, loss, {
    optimizer,
    schedule,
    clipNorm: clip,
    accumulate,
    logEvery,
  });
  return { graph: g.build(), step };
}

const CASES: { name: string; ref: RefOpt; opt: Optimizer; clip?: number; acc: number }[] = [
  { name: "sgd", ref: { kind: "sgd" }, opt: sgd(), acc: 1 },
  {
    name: "sgd momentum dampening decay",
    ref: { kind: "sgd", momentum: 0.9, dampening: 0.2, weightDecay: 0.05 },
    opt: sgd({ momentum: 0.9, dampening: 0.2, weightDecay: 0.05 }),
    acc: 1,
  },
  {
    name: "sgd nesterov, clipped, 3 micro-batches",
    ref: { kind: "sgd", momentum: 0.8, nesterov: true },
    opt: sgd({ momentum: 0.8, nesterov: true }),
    clip: 0.3,
    acc: 3,
  },
  {
    name: "sgd momentum, 4 micro-batches",
    ref: { kind: "sgd", momentum: 0.5 },
    opt: sgd({ momentum: 0.5 }),
    acc: 4,
  },
  {
    name: "adamw",
    ref: { kind: "adamw", weightDecay: 0.1, beta2: 0.95 },
    opt: adamw({ weightDecay: 0.1, beta2: 0.95 }),
    acc: 1,
  },
  {
    name: "adamw clipped, 2 micro-batches",
    ref: { kind: "adamw", eps: 1e-6 },
    opt: adamw({ eps: 1e-6 }),
    clip: 0.5,
    acc: 2,
  },
];

Deno.test("train: SGD, AdamW, clipping, schedule and accumulation match a float64 reference", async () => {
  const dev = await gpu();
  const schedule: LrSchedule = { peak: 0.05, warmup: 2, total: 7, minRatio: 0.1 };
  const updates = 6;
  const data = Array.from({ length: 4 }, (_, i) => ({
    x: randomData(N * K, "f32", 10 + i) as Float32Array,
    y: randomData(N * M, "f32", 20 + i) as Float32Array,
  }));
  const w0 = randomData(K * M, "f32", 1, -0.5, 0.5) as Float32Array;
  const b0 = randomData(M, "f32", 2, -0.5, 0.5) as Float32Array;
  for (const c of CASES) {
    const { graph } = regression(c.opt, schedule, c.clip, c.acc, updates);
    const exe = compile(graph, dev);
    exe.writeState("w", w0);
    exe.writeState("b", b0);
    for (let k = 0; k < updates * c.acc; k++) await exe.submit(data[k % data.length]);
    const st = await exe.readStates(["w", "b", TRAIN_STATES.losses, TRAIN_STATES.step]);
    const ref = reference(
      c.ref,
      schedule,
      c.clip,
      c.acc,
      [
        Float64Array.from(w0),
        Float64Array.from(b0),
      ],
      data,
      updates,
    );
    assert.equal(st[TRAIN_STATES.step].data[0], updates, `${c.name}: update count`);
    assertClose(st[TRAIN_STATES.losses].data, ref.losses, 1e-4, 1e-6, `${c.name}: losses`);
    assertClose(st.w.data, ref.params[0], 2e-4, 1e-6, `${c.name}: w`);
    assertClose(st.b.data, ref.params[1], 2e-4, 1e-6, `${c.name}: b`);
    // The parameters moved: the comparison is not of two unchanged copies.
    assert.ok(Math.abs(st.w.data[0] - w0[0]) > 1e-4, `${c.name}: w did not move`);
    exe.dispose();
  }
});

Deno.test("train: the device schedule matches learningRateAt", async () => {
  const s: LrSchedule = { peak: 3e-3, warmup: 5, total: 40, minRatio: 0.05 };
  const g = new GraphBuilder();
  const step = g.input("step", [1]);
  g.output("lr", learningRate(g, step, s));
  g.output("flat", learningRate(g, step, { peak: 2, warmup: 3, decay: "constant" }));
  const exe = compile(g.build(), await gpu());
  for (const t of [0, 1, 4, 5, 6, 17, 22, 39, 40, 55]) {
    const r = await exe.run({ step: [t] });
    assertClose(r.lr.data, [learningRateAt(s, t)], 1e-5, 1e-9, `lr at ${t}`);
    assertClose(r.flat.data, [t < 3 ? 2 * t / 3 : 2], 1e-6, 0, `flat at ${t}`);
  }
  exe.dispose();
  assert.throws(() => learningRateAt({ peak: 1, warmup: 5 }, 0), /total/);
  assert.throws(() => sgd({ momentum: 1.5 }), /momentum/);
});

// ---------- an MLP language model: overfitting, determinism, resume ----------

const V = 41, D = 24, F = 48, T = 24;

function mlpLM(logEvery: number): { graph: ReturnType<GraphBuilder["build"]>; step: TrainStep } {
  const g = new TrainableBuilder();
  const ids = g.input("ids", [T], "u32");
  const targets = g.input("targets", [T], "u32");
  let h = g.param("embed", [V, D]).gather(ids);
  const x = h.rmsnorm(g.param("norm1", [D]), 1e-5);
  const up = x.matmul(g.param("up", [F, D]), { transB: true }).silu();
  h = h.add(up.matmul(g.param("down", [D, F]), { transB: true }));
  const logits = h.rmsnorm(g.param("norm_f", [D]), 1e-5).matmul(g.param("head", [V, D]), {
    transB: true,
  });
  const step = buildTrainStep(g, softmaxCrossEntropy(logits, targets), {
    optimizer: adamw({ weightDecay: 0.01 }),
    schedule: { peak: 2e-2, warmup: 3, total: 200, minRatio: 0.1 },
    clipNorm: 1,
    logEvery,
  });
  return { graph: g.build(), step };
}

function mlpInit(exe: Executable, seed: number): void {
  const r = rng(seed);
  const u = (n: number, s: number) => Float32Array.from({ length: n }, () => (2 * r() - 1) * s);
  exe.writeState("embed", u(V * D, 1));
  exe.writeState("norm1", new Float32Array(D).fill(1));
  exe.writeState("norm_f", new Float32Array(D).fill(1));
  exe.writeState("up", u(F * D, 1 / Math.sqrt(D)));
  exe.writeState("down", u(D * F, 1 / Math.sqrt(F)));
  exe.writeState("head", u(V * D, 1 / Math.sqrt(D)));
}

// Distinct inputs, so a token-wise model can fit any targets.
const r0 = rng(7);
const IDS = Uint32Array.from(
  Array.from({ length: V }, (_, i) => i).sort(() => r0() - 0.5).slice(0, T),
);
const TARGETS = Uint32Array.from({ length: T }, () => Math.floor(r0() * V));

Deno.test("train: an MLP language model overfits one batch, the same seed gives the same curve, resume equals the uninterrupted run", async () => {
  const dev = await gpu();
  const L = 20;
  const { graph, step } = mlpLM(L);
  const batch = { ids: IDS, targets: TARGETS };
  const run = async (exe: Executable, updates: number) => {
    const curve: number[] = [];
    for (let s = 0; s < updates; s++) {
      await exe.submit(batch);
      if ((s + 1) % L === 0) curve.push(...(await exe.readState(TRAIN_STATES.losses)).data);
    }
    return curve;
  };
  const a = compile(graph, dev);
  mlpInit(a, 3);
  const curveA = await run(a, 60);
  assert.ok(curveA[0] > 2, `initial loss ${curveA[0]}`);
  assert.ok(curveA.at(-1)! < 0.05, `loss after 60 updates: ${curveA.at(-1)} nats`);

  // Same seed, a second executable: the same curve, bit for bit.
  const b = compile(graph, dev);
  mlpInit(b, 3);
  const curveB = await run(b, 60);
  assert.deepEqual(curveB, curveA);

  // Interrupted after 20 updates: every state saved and written into a new executable.
  const c = compile(graph, dev);
  mlpInit(c, 3);
  await run(c, 20);
  const names = [...step.params, ...step.optimizerStates, ...step.counterStates];
  const saved = await c.readStates(names);
  c.dispose();
  const d = compile(graph, dev);
  for (const n of names) d.writeState(n, saved[n].data);
  const rest = await run(d, 40);
  assert.deepEqual(rest, curveA.slice(20));
  const [pa, pd] = [await a.readStates(step.params), await d.readStates(step.params)];
  for (const n of step.params) assert.deepEqual(pd[n].data, pa[n].data, `param ${n}`);
  for (const e of [a, b, d]) e.dispose();
});

Deno.test("train: bad settings are errors naming them", () => {
  const g = new TrainableBuilder();
  const w = g.param("w", [2, 3]);
  assert.equal(g.param("w", [2, 3]), w);
  assert.throws(() => g.param("w", [3, 2]), /Param "w" is declared as f32\[2, 3\]/);
  assert.throws(() => g.param("v", ["T"]), /Param "v" must have a concrete shape/);
  const loss = w.mul(w).sum(1).sum(0);
  const opts = { optimizer: sgd(), schedule: { peak: 0.1, decay: "constant" as const } };
  assert.throws(
    () => buildTrainStep(g, loss, { ...opts, params: ["nope"] }),
    /no parameter "nope"/,
  );
  assert.throws(() => buildTrainStep(g, loss, { ...opts, accumulate: 0 }), /accumulate/);
  assert.throws(() => buildTrainStep(g, w, opts), /loss must be a scalar/);
  assert.throws(() => buildTrainStep(g, loss, { ...opts, clipNorm: -1 }), /maxNorm/);
  assert.throws(() => adamw({ beta1: 1.5 }), /beta1/);
  assert.throws(() => sgd({ nesterov: true }), /Nesterov/);
  assert.throws(() => learningRateAt({ peak: -1, decay: "constant" }, 0), /peak/);
});
