/**
 * Expert weights larger than one storage binding: on a device whose binding
 * size is lowered, `w1`, `w3`, `w2` are bound in segments and read through the
 * segment accessors on every MoE path (prefill grouped GEMMs, dense baseline,
 * decode GEMVs), checked against the CPU reference; the embedding gather and
 * the LM-head matmul / GEMV with a segmented weight too.
 */
import assert from "node:assert/strict";
import { compile, cpuDevice, GraphBuilder, type Plan } from "../mod.ts";
import { moe, moeDense } from "../mod.ts";
import { requestDevice } from "../runtime/device.ts";
import { assertClose, rng } from "./_util.ts";

function uniform(n: number, scale: number, r: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

interface Case {
  T: number;
  d: number;
  ff: number;
  E: number;
  k: number;
  dtype: "f32" | "f16";
  dense?: boolean;
  seed: number;
  /** Lowered storage-buffer count: kernels over the experts split into launches. */
  buffers?: number;
}

const LIMIT = 16384;

/** Bindings of param slots per kernel label (weights only). */
function paramBindings(plan: Plan, label: RegExp): number[] {
  return plan.kernels.filter((k) => label.test(k.label)).map((k) =>
    k.bindings.filter((b) => plan.slots[b.slot].kind === "param").length
  );
}

async function check(c: Case): Promise<Plan> {
  const { T, d, ff, E, k } = c;
  const r = rng(c.seed);
  const params = {
    "m.router": uniform(E * d, 1, r),
    "m.w1": uniform(E * ff * d, 1 / Math.sqrt(d), r),
    "m.w3": uniform(E * ff * d, 1 / Math.sqrt(d), r),
    "m.w2": uniform(E * d * ff, 1 / Math.sqrt(ff), r),
  };
  const g = new GraphBuilder();
  const x = g.input("x", [T, d]);
  const m = (c.dense ? moeDense : moe)(g, x, {
    name: "m",
    experts: E,
    topK: k,
    ff,
    weightDtype: c.dtype,
  });
  g.output("y", m.y.add(x));
  g.output("counts", m.counts);
  const graph = g.build();
  const inputs = { x: uniform(T * d, 1, rng(c.seed + 100)) };
  const limits = { maxBindingSize: LIMIT, ...(c.buffers ? { maxStorageBuffers: c.buffers } : {}) };
  const dev = await requestDevice({ limits });
  const eg = compile(graph, dev, { params });
  try {
    const a = await eg.run(inputs);
    const b = await compile(graph, cpuDevice(), { params }).run(inputs);
    const tol = c.dtype === "f16" ? 3e-3 : 2e-4;
    const what = JSON.stringify(c);
    assertClose(a.y.data, b.y.data, tol, tol, `${what}: y`);
    assert.deepEqual(Array.from(a.counts.data), Array.from(b.counts.data), `${what}: counts`);
    return eg.lastPlan!;
  } finally {
    eg.dispose();
    dev.destroy();
  }
}

Deno.test("moe: expert weights over one binding are read in segments (prefill, dense, decode)", async () => {
  // 8 experts of [36, 100] f32: 115 200 bytes a weight, 16 KiB bindings: 8 segments, rows
  // straddling segment ends (4096 elements is not a multiple of 100).
  const base = { d: 100, ff: 36, E: 8, k: 2 };
  for (const dtype of ["f32", "f16"] as const) {
    const pre = await check({ ...base, T: 6, dtype, seed: 1 });
    assert.match(pre.kernels.map((k) => k.label).join(" "), /grouped_gemm/);
    // w1 and w3 in GEMM 1, each in ⌈bytes / 16 KiB⌉ segments.
    const segs = Math.ceil((8 * 36 * 100 * (dtype === "f16" ? 2 : 4)) / LIMIT);
    assert.deepEqual(paramBindings(pre, /gemm1/), [2 * segs]);
    const dec = await check({ ...base, T: 3, dtype, seed: 2 });
    assert.match(dec.kernels.map((k) => k.label).join(" "), /decode_gemv/);
    assert.deepEqual(paramBindings(dec, /gemv2/), [segs]);
    await check({ ...base, T: 7, dtype, dense: true, seed: 3 });
  }
});

Deno.test("moe: segmented expert weights at widths that are not multiples of 4 (scalar reads)", async () => {
  const base = { d: 99, ff: 37, E: 7, k: 2 };
  for (const dtype of ["f32", "f16"] as const) {
    await check({ ...base, T: 5, dtype, seed: 4 });
    await check({ ...base, T: 1, dtype, seed: 5 });
    await check({ ...base, T: 5, dtype, dense: true, seed: 6 });
  }
});

Deno.test("moe: too many segments for one launch: the expert kernels split by slabs", async () => {
  const base = { d: 100, ff: 36, E: 8, k: 2, buffers: 10 };
  const labels = (p: Plan) => p.kernels.map((k) => k.label);
  // f32: 8 segments a weight; GEMM 1 has room for 6 weight bindings, GEMM 2 for 6.
  const pre = labels(await check({ ...base, T: 8, dtype: "f32", seed: 8 }));
  assert.ok(pre.filter((l) => /grouped_gemm1.*_slabs/.test(l)).length > 1, pre.join());
  assert.ok(pre.filter((l) => /grouped_gemm2.*_slabs/.test(l)).length > 1, pre.join());
  await check({ ...base, T: 6, dtype: "f16", seed: 9 });
  // f16 decode: GEMV 2 (never split) binds 4 segments; GEMV 1 needs 8 of 7 and splits.
  const dec = labels(await check({ ...base, T: 2, dtype: "f16", seed: 10 }));
  assert.ok(dec.filter((l) => /decode_gemv1.*_slabs/.test(l)).length > 1, dec.join());
  await check({ ...base, T: 5, dtype: "f16", dense: true, seed: 11 });
  // Scalar reads (widths not multiples of 4), f32: 7 segments a weight.
  const odd = { d: 99, ff: 37, E: 7, k: 2, buffers: 10, dtype: "f32" as const };
  const sc = labels(await check({ ...odd, T: 5, seed: 12 }));
  assert.ok(sc.filter((l) => /grouped_gemm2.*_slabs/.test(l)).length > 1, sc.join());
  await check({ ...odd, T: 3, buffers: 12, seed: 13 });
});

Deno.test("an f16 embedding and LM head over one binding: gather and matmul / GEMV in segments", async () => {
  const V = 1000, H = 36;
  const r = rng(7);
  const emb = Float16Array.from(uniform(V * H, 1, r));
  const head = Float16Array.from(uniform(V * H, 1 / 6, r));
  const g = new GraphBuilder();
  const ids = g.input("ids", ["T"], "u32");
  const e = g.param("emb", [V, H], "f16");
  const w = g.param("head", [V, H], "f16");
  const h = e.gather(ids).cast("f32");
  g.output("h", h);
  g.output("logits", h.cast("f16").matmul(w, { transB: true }).cast("f32"));
  const graph = g.build();
  const params = { emb, head };
  const dev = await requestDevice({ limits: { maxBindingSize: 8192 } }); // weights 72 000 bytes
  try {
    const eg = compile(graph, dev, { params });
    const ec = compile(graph, cpuDevice(), { params });
    for (const T of [1, 6]) {
      const inputs = { ids: Uint32Array.from({ length: T }, (_, i) => (i * 389 + 11) % V) };
      const a = await eg.run(inputs);
      const b = await ec.run(inputs);
      assertClose(a.h.data, b.h.data, 0, 0, `gather T=${T}`);
      assertClose(a.logits.data, b.logits.data, 1e-2, 1e-2, `head T=${T}`);
      const plan = eg.lastPlan!;
      const head = plan.kernels.find((k) => /gemv|matmul/.test(k.label))!;
      assert.ok(
        head.bindings.filter((b) => plan.slots[b.slot].kind === "param").length > 1,
        `T=${T}: ${head.label} binds the head in segments`,
      );
    }
    eg.dispose();
  } finally {
    dev.destroy();
  }
});

Deno.test("a model whose stacked experts and slot pools exceed one binding: resident and scheduled", async () => {
  const { loadModel } = await import("../app/model/mod.ts");
  const { writeTinyMixtral } = await import("./fixtures/tiny_checkpoints.ts");
  const { gpu } = await import("./_util.ts");
  const dir = await Deno.makeTempDir({ prefix: "kiln_seg_" });
  // 8 experts of [256, 32] f32: 256 KiB a stacked weight, 2 segments of 128 KiB (the
  // intermediates of a 32-token prefill stay within one binding).
  const config = { num_local_experts: 8, intermediate_size: 256, num_hidden_layers: 2 };
  await writeTinyMixtral(dir, { config, seed: 5 });
  const dev = await requestDevice({ limits: { maxBindingSize: 131072 } });
  const prompt = [5, 17, 3, 99, 42, 7, 250, 11, 0, 64, 31, 8, 120];
  try {
    const base = { quiet: true, maxSeq: 32 };
    const ref = await loadModel(dir, { ...base, device: await gpu() });
    const want = await ref.forward(prompt);
    const wantStep = (await ref.step(3, prompt.length)).slice();
    ref.dispose();
    const seg = await loadModel(dir, { ...base, device: dev });
    const got = await seg.forward(prompt);
    assertClose(got, want, 1e-5, 1e-5, "segmented experts: prefill logits");
    assertClose(await seg.step(3, prompt.length), wantStep, 1e-5, 1e-5, "decode logits");
    const plan = seg.expertPlan;
    seg.dispose();
    void plan;
    const probe = await loadModel(dir, { ...base, device: dev, memoryBudget: "64GiB" });
    const p0 = probe.expertPlan!;
    probe.dispose();
    // Pools of 10 slots (320 KiB a weight) under a budget: the scheduler's slot table over segments.
    const budget = p0.fixedBytes + 10 * p0.expertBytes;
    for (const policy of ["lru", "stream"] as const) {
      const m = await loadModel(dir, {
        ...base,
        device: dev,
        memoryBudget: budget,
        expertPolicy: policy,
      });
      try {
        assert.ok(!m.expertPlan!.allResident, "a scheduler runs");
        assertClose(await m.forward(prompt), want, 1e-5, 1e-5, `${policy}: prefill logits`);
        const ids: number[] = [];
        for await (const id of m.generateIds(prompt, { maxTokens: 6, readEvery: 2 })) ids.push(id);
        assert.equal(ids.length, 6);
      } finally {
        m.dispose();
      }
    }
  } finally {
    dev.destroy();
    await Deno.remove(dir, { recursive: true });
  }
});
