/**
 * Gradients of RoPE and attention: the rules against central finite differences
 * (float64 CPU references) at awkward sizes, the backward kernels against the
 * CPU references at a larger size, and the plan of a backward pass, which must
 * hold no [T, T] buffer.
 */

import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import type { HostArray } from "../core/dtype.ts";
import { runCpu } from "../runtime/cpu_backend.ts";
import { compile } from "../runtime/executable.ts";
import { type GpuDevice, requestDevice } from "../runtime/device.ts";
import { checkGrad } from "./grad_check.ts";
import { assertClose, gpu, largestTensor, randomData } from "./_util.ts";

Deno.test("grad: rope is the inverse rotation (theta, scaled frequencies, position offset)", async () => {
  const pos = { shape: [1], dtype: "u32" as const, data: [3] };
  await checkGrad(
    "rope",
    { x: { shape: [5, 3, 6] }, pos },
    ({ x, pos }) => x.rope(pos, 10000).mul(x),
  );
  await checkGrad(
    "rope with scaling",
    { x: { shape: [4, 2, 8] }, pos },
    ({ x, pos }) => x.exp().rope(pos, 1e6, { invFreq: [1, 0.3, 0.05, 0.001], scale: 1.3 }),
  );
  await checkGrad(
    "partial rope",
    { x: { shape: [4, 2, 10] }, pos },
    ({ x, pos }) => x.rope(pos, 500, undefined, 4).mul(x.exp()),
  );
  // The inverse undoes the rotation (up to scale²).
  await checkGrad("rope ∘ inverse", { x: { shape: [3, 1, 4] }, pos }, ({ x, pos }, g) => {
    const y = x.rope(pos, 100);
    return g.apply("rope", [y, pos], { theta: 100, inverse: true })[0].mul(y);
  });
});

interface Case {
  T: number;
  S: number;
  pos: number;
  causal: boolean;
  window: number;
}

Deno.test("grad: attention at awkward sizes (GQA, causal or not, windows, a KV cache)", async () => {
  const [Hq, Hkv, D] = [4, 2, 6];
  const cases: Case[] = [
    { T: 5, S: 5, pos: 0, causal: true, window: 0 },
    { T: 5, S: 5, pos: 0, causal: false, window: 0 },
    { T: 5, S: 5, pos: 0, causal: true, window: 3 },
    // Cache of 9 rows, 7 written: keys 7 and 8 must get no gradient.
    { T: 5, S: 9, pos: 2, causal: true, window: 0 },
    { T: 3, S: 9, pos: 2, causal: false, window: 0 },
    // Rows at positions 4..6 in a 4-row cache with a window of 2: the last sees no key.
    { T: 5, S: 4, pos: 2, causal: true, window: 2 },
  ];
  for (const c of cases) {
    await checkGrad(
      `attention ${JSON.stringify(c)}`,
      {
        q: { shape: [c.T, Hq, D] },
        k: { shape: [c.S, Hkv, D] },
        v: { shape: [c.S, Hkv, D] },
        pos: { shape: [1], dtype: "u32", data: [c.pos] },
      },
      ({ q, k, v, pos }, g) =>
        g.attention(q.mul(2), k, v, pos, { causal: c.causal, window: c.window }),
    );
  }
  // Gradients of one operand only, through a product that uses the output twice.
  await checkGrad(
    "attention, k only",
    {
      q: { shape: [4, 2, 5] },
      k: { shape: [4, 1, 5] },
      v: { shape: [4, 1, 5] },
    },
    ({ q, k, v }, g) => {
      const o = g.attention(q, k, v, undefined, { causal: true });
      return o.mul(o);
    },
    { wrt: ["k"] },
  );
});

Deno.test("grad: attention whose log-sum-exp is used too (GPT-OSS sinks)", async () => {
  // o·σ(lse − s): the gradient reaches q and k through both results, and s.
  for (const c of [{ T: 5, S: 5, pos: 0, window: 0 }, { T: 5, S: 4, pos: 2, window: 2 }]) {
    await checkGrad(
      `attention with sinks ${JSON.stringify(c)}`,
      {
        q: { shape: [c.T, 4, 6] },
        k: { shape: [c.S, 2, 6] },
        v: { shape: [c.S, 2, 6] },
        s: { shape: [4] },
        pos: { shape: [1], dtype: "u32", data: [c.pos] },
      },
      ({ q, k, v, s, pos }, g) => {
        const [o, lse] = g.apply("attention", [q.mul(2), k, v, pos], {
          scale: 0.4,
          causal: true,
          window: c.window,
          splits: 0,
          lse: true,
        });
        return o.mul(lse.sub(s).sigmoid().reshape([c.T, 4, 1]));
      },
    );
  }
  // Only the log-sum-exp used: the output's gradient is absent.
  await checkGrad(
    "attention, lse only",
    { q: { shape: [4, 2, 5] }, k: { shape: [4, 1, 5] }, v: { shape: [4, 1, 5] } },
    ({ q, k, v }, g) => {
      const pos = g.constant([0], [1], "u32");
      return g.apply("attention", [q, k, v, pos], {
        scale: 1,
        causal: true,
        window: 0,
        splits: 0,
        lse: true,
      })[1].exp();
    },
  );
});

interface Sized extends Case {
  Hq: number;
  Hkv: number;
  D: number;
  dtype?: "f32" | "f16";
  /** Run on this device instead of the shared one. */
  device?: GpuDevice;
}

/**
 * Attention's backward on the GPU against the CPU references (float64 inside,
 * rounded to the storage type); runs it twice, which must agree bit for bit.
 */
async function gpuVsCpu(c: Sized, seed: number) {
  const { T, S, Hq, Hkv, D } = c;
  const dtype = c.dtype ?? "f32";
  const g = new GraphBuilder();
  const q = g.input("q", [T, Hq, D], dtype);
  const k = g.input("k", [S, Hkv, D], dtype);
  const v = g.input("v", [S, Hkv, D], dtype);
  const pos = g.input("pos", [1], "u32");
  const r = g.input("r", [T, Hq, D], dtype);
  const o = g.attention(q, k, v, pos, { causal: c.causal, window: c.window });
  const loss = o.mul(r).reshape([-1]).sum(0);
  const [dq, dk, dv] = g.grad(loss, [q, k, v]);
  g.output("dq", dq);
  g.output("dk", dk);
  g.output("dv", dv);
  const graph = g.build();
  const feed: Record<string, HostArray> = {
    q: randomData(T * Hq * D, dtype, seed, -1, 1),
    k: randomData(S * Hkv * D, dtype, seed + 1, -1, 1),
    v: randomData(S * Hkv * D, dtype, seed + 2, -1, 1),
    r: randomData(T * Hq * D, dtype, seed + 3, -1, 1),
    pos: new Uint32Array([c.pos]),
  };
  const want = runCpu(graph, {}, new Map(Object.entries(feed)), new Map());
  const dev = c.device ?? await gpu();
  const exe = compile(graph, dev);
  try {
    const got = await exe.run(feed);
    const labels = exe.lastPlan!.kernels.map((k) => k.label);
    if (c.device) assert.ok(labels.some((l) => l.startsWith("attention_gpu")), `[${labels}]`);
    for (const name of ["attention_dq", "attention_dkv"]) {
      assert.ok(labels.includes(name), `${name} missing from [${labels}]`);
    }
    // The forward saved the log-sum-exp: no kernel recomputes it.
    assert.ok(!labels.includes("attention_lse"), `[${labels}]`);
    const tol = dtype === "f16" ? 1e-2 : 1e-3;
    const again = await exe.run(feed);
    for (const name of ["dq", "dk", "dv"]) {
      assertClose(got[name].data, want[name].data, tol, tol / 10, `${name} ${JSON.stringify(c)}`);
      assert.deepEqual(again[name].data, got[name].data, `${name} differs between two runs`);
    }
  } finally {
    exe.dispose();
  }
}

Deno.test("attention backward kernels on the GPU equal the CPU references (T = 128, D = 64)", async () => {
  await gpuVsCpu({ T: 128, S: 128, pos: 0, Hq: 4, Hkv: 2, D: 64, causal: true, window: 0 }, 1);
  // Smaller heads from here on: each D = 64 shape costs seconds of shader compilation.
  await gpuVsCpu({ T: 130, S: 150, pos: 7, Hq: 2, Hkv: 1, D: 32, causal: true, window: 40 }, 2);
  await gpuVsCpu({ T: 129, S: 129, pos: 0, Hq: 3, Hkv: 3, D: 20, causal: false, window: 0 }, 3);
  if ((await gpu()).caps.f16) {
    const c = { T: 64, S: 70, pos: 6, Hq: 4, Hkv: 1, D: 32, causal: true, window: 0 };
    await gpuVsCpu({ ...c, dtype: "f16" }, 4);
  }
  // On the GPU target (lavapipe reporting itself as a GPU) the forward is the tiled
  // GPU kernel; the backward's O and delta come from it.
  const device = await requestDevice({ limits: { cpuCores: 0 } });
  const c = { T: 100, S: 100, pos: 0, Hq: 4, Hkv: 2, D: 32, causal: true, window: 0 };
  await gpuVsCpu({ ...c, device }, 5);
});

Deno.test("attention's backward ops name what is wrong with their operands", () => {
  const g = new GraphBuilder();
  const q = g.input("q", [5, 4, 8]);
  const kv = g.input("kv", [6, 2, 8]);
  const pos = g.input("pos", [1], "u32");
  const rows = g.input("rows", [5, 4]);
  const attrs = { scale: 0.5, causal: true, window: 0, splits: 0 };
  const call = (op: "attention_dq" | "attention_dkv", dO = q, lse = rows, delta = rows) =>
    g.apply(op, [q, kv, kv, pos, dO, lse, delta], attrs);
  assert.deepEqual(call("attention_dkv").map((t) => t.shape), [[6, 2, 8], [6, 2, 8]]);
  assert.throws(() => call("attention_dq", kv), /attention_dq: dO must match q/);
  assert.throws(() => call("attention_dkv", q, q), /attention_dkv: lse must be f32\[5, 4\]/);
  assert.throws(() => call("attention_dq", q, rows, g.input("d", [4, 5])), /delta must be/);
  assert.throws(
    () => g.apply("attention_lse", [q, g.input("k3", [6, 3, 8]), pos], attrs),
    /attention_lse: .*multiple of key\/value heads/,
  );
  const empty = g.input("e", [5, 4, 0]);
  assert.throws(() => g.apply("attention_lse", [empty, empty, pos], attrs), /headDim must be at/);
});

Deno.test("the log-sum-exp: attention_lse and the forward's saved one (portable and GPU target)", async () => {
  const cases: (Sized & { splits?: number })[] = [
    { T: 5, S: 9, pos: 2, Hq: 4, Hkv: 2, D: 6, causal: true, window: 0 },
    { T: 7, S: 7, pos: 0, Hq: 2, Hkv: 2, D: 8, causal: false, window: 0, splits: 3 },
    { T: 5, S: 4, pos: 2, Hq: 2, Hkv: 1, D: 4, causal: true, window: 2 }, // a row sees no key
    { T: 1, S: 300, pos: 299, Hq: 4, Hkv: 1, D: 16, causal: true, window: 0 }, // decode, split
    { T: 40, S: 40, pos: 0, Hq: 2, Hkv: 1, D: 32, causal: true, window: 9 },
  ];
  const devices = [await gpu(), await requestDevice({ limits: { cpuCores: 0 } })];
  for (const [n, c] of cases.entries()) {
    const attrs = { scale: 0.4, causal: c.causal, window: c.window, splits: c.splits ?? 0 };
    const build = (saved: boolean) => {
      const g = new GraphBuilder();
      const q = g.input("q", [c.T, c.Hq, c.D]);
      const k = g.input("k", [c.S, c.Hkv, c.D]);
      const pos = g.input("pos", [1], "u32");
      const lse = saved
        ? g.apply("attention", [q, k, k, pos], { ...attrs, lse: true })[1]
        : g.apply("attention_lse", [q, k, pos], attrs)[0];
      g.output("lse", lse);
      return g.build();
    };
    const feed = {
      q: randomData(c.T * c.Hq * c.D, "f32", 20 + n, -1, 1),
      k: randomData(c.S * c.Hkv * c.D, "f32", 40 + n, -1, 1),
      pos: new Uint32Array([c.pos]),
    };
    const want = runCpu(build(false), {}, new Map(Object.entries(feed)), new Map()).lse.data;
    const ref = runCpu(build(true), {}, new Map(Object.entries(feed)), new Map()).lse.data;
    assertClose(ref, want, 1e-6, 1e-6, `reference of the saved lse, case ${n}`);
    for (const [d, dev] of devices.entries()) {
      for (const saved of [false, true]) {
        const exe = compile(build(saved), dev);
        try {
          const got = (await exe.run(feed)).lse.data;
          const labels = exe.lastPlan!.kernels.map((k) => k.label);
          assertClose(got, want, 2e-5, 2e-5, `case ${n} device ${d} saved ${saved} [${labels}]`);
        } finally {
          exe.dispose();
        }
      }
    }
  }
});

Deno.test("attention's backward without keys: zero dQ on the GPU, as on the CPU", async () => {
  const g = new GraphBuilder();
  const q = g.input("q", [3, 2, 4]);
  const k = g.input("k", [0, 1, 4]);
  const o = g.attention(q, k, k, undefined, { causal: false });
  const lse = g.apply("attention_lse", [q, k, g.constant([0], [1], "u32")], {
    scale: 1,
    causal: false,
    window: 0,
    splits: 0,
  })[0];
  g.output("lse", lse);
  g.output("dq", g.grad(o.add(q).reshape([-1]).sum(0), [q])[0]);
  const graph = g.build();
  const feed = { q: randomData(24, "f32", 5), k: new Float32Array(0) };
  const exe = compile(graph, await gpu());
  try {
    const got = await exe.run(feed);
    const want = runCpu(graph, {}, new Map(Object.entries(feed)), new Map());
    assert.deepEqual([...got.dq.data], new Array(24).fill(1)); // only the q term
    assert.deepEqual(got.dq.data, want.dq.data);
    assertClose(got.lse.data, want.lse.data, 1e-6, 0, "lse of rows without keys");
  } finally {
    exe.dispose();
  }
});

Deno.test("attention's backward plan holds no [T, T] buffer (T = 512)", async () => {
  const T = 512, Hq = 4, Hkv = 2, D = 16;
  const g = new GraphBuilder();
  const q = g.input("q", [T, Hq, D]);
  const k = g.input("k", [T, Hkv, D]);
  const v = g.input("v", [T, Hkv, D]);
  const o = g.attention(q, k, v, undefined, { causal: true });
  const [dq, dk, dv] = g.grad(o.mul(o).reshape([-1]).sum(0), [q, k, v]);
  g.output("dq", dq);
  g.output("dk", dk);
  g.output("dv", dv);
  const exe = compile(g.build(), await gpu());
  try {
    const plan = exe.plan();
    const biggest = largestTensor(plan);
    // Element size at least 2 (f16), so fewer bytes than T·T·2 means fewer than T·T elements.
    assert.ok(biggest < T * T * 2, `a tensor of ${biggest} B holds T·T = ${T * T} elements`);
    const labels = plan.kernels.map((k) => k.label);
    // The forward may carry a fused epilogue ("attention+…"); it also saves the lse.
    for (const name of ["attention", "attention_dq", "attention_dkv"]) {
      assert.ok(labels.some((l) => l.split("+")[0] === name), `${name} missing from [${labels}]`);
    }
    assert.ok(!labels.includes("attention_lse"), `[${labels}]`);
  } finally {
    exe.dispose();
  }
});

Deno.test("attention's backward at T = 1536 keeps the invariances of attention", async () => {
  // Too long for the naive graph to be a cheap oracle, so the check is what attention
  // cannot change: per KV head, shifting every key by one vector shifts each row's
  // scores by a constant (Σ_j dK_j = 0); every row's probabilities sum to 1
  // (Σ_j dV_j = Σ dO of the group's rows); q·α with k/α keeps the scores
  // (Σ q·dQ = Σ k·dK).
  const T = 1536, Hq = 4, Hkv = 2, D = 16, G = Hq / Hkv;
  const g = new GraphBuilder();
  const q = g.input("q", [T, Hq, D]);
  const k = g.input("k", [T, Hkv, D]);
  const v = g.input("v", [T, Hkv, D]);
  const r = g.input("r", [T, Hq, D]);
  const o = g.attention(q, k, v, undefined, { causal: true, window: 700 });
  const [dq, dk, dv] = g.grad(o.mul(r).reshape([-1]).sum(0), [q, k, v]);
  g.output("dq", dq);
  g.output("dk", dk);
  g.output("dv", dv);
  const exe = compile(g.build(), await gpu());
  const feed = {
    q: randomData(T * Hq * D, "f32", 11, -1, 1),
    k: randomData(T * Hkv * D, "f32", 12, -1, 1),
    v: randomData(T * Hkv * D, "f32", 13, -1, 1),
    r: randomData(T * Hq * D, "f32", 14, -1, 1),
  };
  try {
    const out = await exe.run(feed);
    const plan = exe.plan();
    assert.ok(largestTensor(plan) < T * T * 2);
    const [gq, gk, gv] = [out.dq.data, out.dk.data, out.dv.data];
    // |a − b| within 1e-6 of the sum of the magnitudes that made them (f32 sums of a
    // few thousand terms stay near 1e-7; dK off by 0.1% fails).
    const near = (a: number, b: number, mag: number, what: string) =>
      assert.ok(Math.abs(a - b) <= 1e-6 * mag, `${what}: ${a} vs ${b} (scale ${mag})`);
    for (let kh = 0; kh < Hkv; kh++) {
      let qdq = 0, kdk = 0, mag = 0;
      for (let d = 0; d < D; d++) {
        let sk = 0, sv = 0, so = 0, mk = 0, mv = 0;
        for (let j = 0; j < T; j++) {
          const i = (j * Hkv + kh) * D + d;
          sk += gk[i], sv += gv[i], mk += Math.abs(gk[i]), mv += Math.abs(gv[i]);
          kdk += feed.k[i] * gk[i], mag += Math.abs(feed.k[i] * gk[i]);
        }
        for (let t = 0; t < T; t++) {
          for (let h = kh * G; h < (kh + 1) * G; h++) {
            const i = (t * Hq + h) * D + d;
            so += feed.r[i], mv += Math.abs(feed.r[i]);
            qdq += feed.q[i] * gq[i], mag += Math.abs(feed.q[i] * gq[i]);
          }
        }
        near(sk, 0, mk, `Σ dK[:, ${kh}, ${d}]`);
        near(sv, so, mv, `Σ dV[:, ${kh}, ${d}] against Σ dO`);
      }
      near(qdq, kdk, mag, `Σ q·dQ against Σ k·dK of KV head ${kh}`);
    }
  } finally {
    exe.dispose();
  }
});
