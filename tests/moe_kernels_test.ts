/**
 * MoE kernels (ops/moe_kernels.ts via ops/moe_runner.ts) against the float64
 * reference (ops/moe_reference.ts) on lavapipe / any WebGPU adapter.
 */
import assert from "node:assert/strict";
import { mulberry32 } from "../core/random.ts";
import {
  declareBindings,
  emitSort,
  MOE_NONE,
  moeCapacity,
  type MoeConfig,
  moeKernels,
  type MoePath,
  resolveMoeConfig,
} from "../ops/moe_kernels.ts";
import { moeReference, type MoeWeights } from "../ops/moe_reference.ts";
import { createMoeLayer } from "./fixtures/moe_runner.ts";

const adapter = await navigator.gpu?.requestAdapter();
const hasF16 = adapter?.features.has("shader-f16") ?? false;
const device = adapter
  ? await adapter.requestDevice({ requiredFeatures: hasF16 ? ["shader-f16"] : [] })
  : undefined;
const gpu = { ignore: !device, sanitizeResources: false, sanitizeOps: false };

/** Deterministic uniform(-1, 1) generator. */
function rng(seed: number): () => number {
  const u = mulberry32(seed);
  return () => u() * 2 - 1;
}

interface F32Weights {
  wg: Float32Array;
  w1: Float32Array;
  w3: Float32Array;
  w2: Float32Array;
  bias: Float32Array;
}

function randomWeights(cfg: MoeConfig, seed: number): F32Weights {
  const r = rng(seed);
  const { d, ff, E } = cfg;
  const fill = (n: number, s: number) => Float32Array.from({ length: n }, () => r() * s);
  return {
    wg: fill(E * d, 1),
    w1: fill(E * ff * d, 1 / Math.sqrt(d)),
    w3: fill(E * ff * d, 1 / Math.sqrt(d)),
    w2: fill(E * d * ff, 1 / Math.sqrt(ff)),
    bias: fill(E, 0.3),
  };
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function assertClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  what: string,
  rtol = 2e-4,
  atol = 1e-5,
): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const scale = maxAbs(want);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    if (!(err <= atol + rtol * scale)) {
      assert.fail(`${what}[${i}]: got ${got[i]}, want ${want[i]} (scale ${scale})`);
    }
  }
}

interface CaseOptions {
  path?: MoePath;
  x?: Float32Array;
  weights?: MoeWeights;
  /** Weights the reference uses (defaults to `weights`). */
  refWeights?: MoeWeights;
  mask?: Float32Array;
  rtol?: number;
}

/** Runs one layer on the GPU and compares every output with the reference. */
async function check(cfg: MoeConfig, seed: number, o: CaseOptions = {}) {
  const w = o.weights ?? randomWeights(cfg, seed);
  const x = o.x ?? Float32Array.from({ length: cfg.T * cfg.d }, rng(seed + 1));
  const layer = createMoeLayer(device!, cfg, w, { path: o.path ?? "auto" });
  try {
    const out = await layer.run(x, o.mask);
    const ref = moeReference(cfg, o.refWeights ?? w, x, o.mask);
    const tag = `${layer.path} ${JSON.stringify(cfg)}`;
    assertClose(out.logits, ref.logits, `${tag} logits`, 1e-5, 1e-5);
    assert.deepEqual([...out.topkIdx], [...ref.topkIdx], `${tag} topk_idx`);
    assertClose(out.topkW, ref.topkW, `${tag} topk_w`, 1e-5, 1e-6);
    assert.deepEqual([...out.counts], [...ref.counts], `${tag} counts`);
    if (layer.path === "prefill") {
      assert.deepEqual([...out.keptCounts], [...ref.keptCounts], `${tag} kept counts`);
    }
    assertClose(out.y, ref.y, `${tag} y`, o.rtol ?? 2e-4, 1e-6);
    assert.ok(Math.abs(out.auxLoss - ref.auxLoss) <= 1e-5 * Math.max(1, ref.auxLoss), `${tag} aux`);
    assert.ok(Math.abs(out.zLoss - ref.zLoss) <= 2e-5 * Math.max(1, ref.zLoss), `${tag} z`);
    return { out, ref, layer };
  } finally {
    layer.destroy();
  }
}

Deno.test(
  "moe: softmax top-k, k = 1, 2, 4, 8, E up to 64, T not a multiple of the tile",
  gpu,
  async () => {
    const cases: [number, number, number][] = [[8, 1, 37], [8, 2, 37], [16, 4, 29], [64, 8, 19], [
      64,
      2,
      45,
    ]];
    for (const [E, k, T] of cases) {
      await check({ T, d: 32, ff: 24, E, k, router: "softmax_topk" }, E * 100 + k);
    }
    // Widths that are not multiples of 4 take the scalar (non-vec4) paths.
    await check({ T: 13, d: 18, ff: 10, E: 6, k: 2, router: "softmax_topk" }, 3);
    await check({ T: 3, d: 18, ff: 10, E: 6, k: 2, router: "softmax_topk" }, 4, {
      path: "decode",
    });
  },
);

Deno.test("moe: T = 1 on the prefill path and the decode path", gpu, async () => {
  const cfg: MoeConfig = { T: 1, d: 16, ff: 20, E: 8, k: 2, router: "softmax_topk" };
  await check(cfg, 5, { path: "prefill" });
  await check(cfg, 5, { path: "decode" });
});

Deno.test("moe: decode path, T = 1..4, every router kind", gpu, async () => {
  await check({ T: 4, d: 32, ff: 48, E: 16, k: 4, router: "softmax_topk" }, 6);
  await check({ T: 3, d: 32, ff: 48, E: 8, k: 2, router: "sigmoid_bias", routedScaling: 2.5 }, 7);
  await check({ T: 2, d: 32, ff: 48, E: 8, k: 1, router: "switch" }, 8);
  await check({ T: 2, d: 32, ff: 48, E: 8, k: 2, router: "softmax_topk", normTopk: false }, 9);
});

Deno.test(
  "moe: Qwen2-MoE (no renormalisation), DeepSeek-V3 sigmoid + bias, Switch",
  gpu,
  async () => {
    await check({ T: 33, d: 32, ff: 40, E: 8, k: 2, router: "softmax_topk", normTopk: false }, 11);
    const ds: MoeConfig = {
      T: 41,
      d: 32,
      ff: 40,
      E: 16,
      k: 4,
      router: "sigmoid_bias",
      routedScaling: 2.5,
    };
    const { ref } = await check(ds, 12);
    // The bias changes the selection but not the weights: each token's weights sum to 2.5.
    for (let t = 0; t < ds.T; t++) {
      let s = 0;
      for (let j = 0; j < ds.k; j++) s += ref.topkW[t * ds.k + j];
      assert.ok(Math.abs(s - 2.5) < 1e-12);
    }
    await check({ T: 30, d: 32, ff: 40, E: 4, k: 1, router: "switch" }, 13);
  },
);

Deno.test("moe: ties go to the lower expert index", gpu, async () => {
  const cfg: MoeConfig = { T: 9, d: 8, ff: 8, E: 8, k: 3, router: "softmax_topk" };
  const w = randomWeights(cfg, 21);
  // Duplicate router rows: experts 1, 4 and 6 always tie exactly (same f32 dot products).
  for (const e of [4, 6]) w.wg.set(w.wg.subarray(8, 16), e * 8);
  const { out } = await check(cfg, 21, { weights: w });
  // x = 0 for the first token: every logit is 0, so the choice is experts 0, 1, 2.
  const x = Float32Array.from({ length: cfg.T * cfg.d }, rng(22));
  x.fill(0, 0, cfg.d);
  const r2 = await check(cfg, 21, { weights: w, x });
  assert.deepEqual([...r2.out.topkIdx.slice(0, 3)], [0, 1, 2]);
  assert.ok(out.topkIdx.length === cfg.T * cfg.k);
  // Same on the decode path.
  const dec: MoeConfig = { ...cfg, T: 1 };
  const r3 = await check(dec, 21, { weights: w, x: new Float32Array(cfg.d), path: "decode" });
  assert.deepEqual([...r3.out.topkIdx], [0, 1, 2]);
});

Deno.test(
  "moe: all tokens on one expert, unused experts never read (NaN-poisoned)",
  gpu,
  async () => {
    for (const path of ["prefill", "decode"] as const) {
      const cfg: MoeConfig = {
        T: path === "decode" ? 3 : 50,
        d: 16,
        ff: 24,
        E: 16,
        k: 1,
        router: "softmax_topk",
      };
      const w = randomWeights(cfg, 31);
      const x = Float32Array.from({ length: cfg.T * cfg.d }, rng(32));
      for (let t = 0; t < cfg.T; t++) x[t * cfg.d] = 4; // a constant feature
      for (let e = 0; e < cfg.E; e++) w.wg[e * cfg.d] = e === 11 ? 10 : -10;
      const poisoned = { ...w, w1: w.w1.slice(), w3: w.w3.slice(), w2: w.w2.slice() };
      const per = cfg.ff * cfg.d;
      for (let e = 0; e < cfg.E; e++) {
        if (e === 11) continue;
        poisoned.w1.fill(NaN, e * per, (e + 1) * per);
        poisoned.w3.fill(NaN, e * per, (e + 1) * per);
        poisoned.w2.fill(NaN, e * per, (e + 1) * per);
      }
      const { out } = await check(cfg, 31, { x, weights: poisoned, refWeights: w, path });
      assert.equal(out.counts[11], cfg.T);
      assert.ok(out.y.every(Number.isFinite));
    }
  },
);

Deno.test("moe: experts with zero tokens (k = 2, 4 of 16 experts used)", gpu, async () => {
  const cfg: MoeConfig = { T: 23, d: 16, ff: 16, E: 16, k: 2, router: "softmax_topk" };
  const w = randomWeights(cfg, 41);
  const x = Float32Array.from({ length: cfg.T * cfg.d }, rng(42));
  for (let t = 0; t < cfg.T; t++) x[t * cfg.d] = 4;
  for (let e = 0; e < cfg.E; e++) w.wg[e * cfg.d] = e % 4 === 1 ? 5 : -5;
  const { out } = await check(cfg, 41, { x, weights: w });
  assert.equal([...out.counts].filter((n) => n > 0).length, 4);
});

Deno.test("moe: capacity dropping keeps the first tokens per expert", gpu, async () => {
  // Skewed router so that experts overflow.
  for (
    const [router, k, cf] of [["switch", 1, 1], ["switch", 1, 0.5], [
      "softmax_topk",
      2,
      1.25,
    ]] as const
  ) {
    const cfg: MoeConfig = { T: 40, d: 16, ff: 16, E: 4, k, router, capacityFactor: cf };
    const w = randomWeights(cfg, 51);
    const x = Float32Array.from({ length: cfg.T * cfg.d }, rng(53));
    for (let t = 0; t < cfg.T; t++) x[t * cfg.d] = 1; // a constant feature…
    w.wg[0] = 2; // …that expert 0 likes, so it overflows
    const { out, ref } = await check(cfg, 52, { weights: w, x });
    const cap = moeCapacity(cfg.T, k, cfg.E, cf)!;
    assert.equal(cap, Math.floor((cf * cfg.T * k) / cfg.E));
    assert.ok(ref.counts.some((n) => n > cap), "the case must overflow");
    for (let e = 0; e < cfg.E; e++) assert.equal(out.keptCounts[e], Math.min(out.counts[e], cap));
    // A dropped slot contributes 0: tokens with every slot dropped give y = 0.
    for (let t = 0; t < cfg.T; t++) {
      let kept = 0;
      for (let j = 0; j < k; j++) kept += ref.keptSlot[t * k + j];
      if (kept === 0) assert.ok(out.y.slice(t * cfg.d, (t + 1) * cfg.d).every((v) => v === 0));
    }
  }
});

Deno.test("moe: dense baseline equals the routed layer", gpu, async () => {
  await check({ T: 21, d: 32, ff: 24, E: 8, k: 2, router: "softmax_topk" }, 61, { path: "dense" });
});

Deno.test("moe: f16 expert weights", { ...gpu, ignore: gpu.ignore || !hasF16 }, async () => {
  const cfg: MoeConfig = {
    T: 19,
    d: 32,
    ff: 24,
    E: 8,
    k: 2,
    router: "softmax_topk",
    weightDtype: "f16",
  };
  const w = randomWeights(cfg, 71);
  // The reference sees the same f16-rounded weights the GPU reads.
  const round = (a: Float32Array) => Float32Array.from(new Float16Array(a));
  const ref = { ...w, w1: round(w.w1), w3: round(w.w3), w2: round(w.w2) };
  await check(cfg, 71, { weights: w, refWeights: ref });
  await check({ ...cfg, T: 2 }, 72, { weights: w, refWeights: ref, path: "decode" });
});

Deno.test("moe: results are bit-reproducible", gpu, async () => {
  const cfg: MoeConfig = { T: 70, d: 32, ff: 24, E: 8, k: 2, router: "softmax_topk" };
  const layer = createMoeLayer(device!, cfg, randomWeights(cfg, 81));
  const x = Float32Array.from({ length: cfg.T * cfg.d }, rng(82));
  const a = await layer.run(x);
  const b = await layer.run(x);
  layer.destroy();
  assert.deepEqual(new Uint8Array(a.y.buffer.slice(0)), new Uint8Array(b.y.buffer.slice(0)));
});

Deno.test(
  "moe: sort kernel orders each expert's rows by token and pads to the tile",
  gpu,
  async () => {
    const cfg: MoeConfig = {
      T: 300,
      d: 4,
      ff: 4,
      E: 5,
      k: 2,
      router: "softmax_topk",
      capacityFactor: 1.1,
    };
    const c = resolveMoeConfig(cfg);
    const r = rng(91);
    const idx = new Uint32Array(cfg.T * cfg.k);
    for (let t = 0; t < cfg.T; t++) {
      const a = Math.min(4, Math.floor((r() + 1) * 2.5 * (r() > 0 ? 1 : 0.3)));
      idx[t * 2] = a;
      idx[t * 2 + 1] = (a + 1 + Math.floor((r() + 1) * 1.99)) % 5;
    }
    const topkW = Float32Array.from(idx, (_, i) => i);
    const kn = emitSort(cfg);
    const dev = device!;
    const inputs: Record<string, Uint32Array<ArrayBuffer> | Float32Array<ArrayBuffer>> = {
      topk_idx: idx,
      topk_w: topkW,
    };
    const sizes: Record<string, number> = {
      sorted_token: c.rowsMax,
      sorted_w: c.rowsMax,
      tile_expert: c.tilesMax,
      slot_pos: cfg.T * cfg.k,
      counts: 2 * cfg.E,
    };
    const bufs = kn.bindings.map((b) => {
      const data = inputs[b.name];
      const size = data ? data.byteLength : sizes[b.name] * 4;
      const buf = dev.createBuffer({
        size,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
      if (data) dev.queue.writeBuffer(buf, 0, data);
      return buf;
    });
    const module = dev.createShaderModule({ code: declareBindings(kn) + kn.code });
    const pipeline = dev.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: "main" },
    });
    const bg = dev.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: bufs.map((buffer, i) => ({ binding: i, resource: { buffer } })),
    });
    const enc = dev.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(...kn.workgroups);
    pass.end();
    const names = ["sorted_token", "tile_expert", "slot_pos", "counts"];
    const total = names.reduce((s, n) => s + sizes[n] * 4, 0);
    const rd = dev.createBuffer({
      size: total,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    let off = 0;
    const offs: Record<string, number> = {};
    for (const n of names) {
      offs[n] = off;
      enc.copyBufferToBuffer(
        bufs[kn.bindings.findIndex((b) => b.name === n)],
        0,
        rd,
        off,
        sizes[n] * 4,
      );
      off += sizes[n] * 4;
    }
    dev.queue.submit([enc.finish()]);
    await rd.mapAsync(GPUMapMode.READ);
    const data = rd.getMappedRange().slice(0);
    rd.unmap();
    for (const b of [...bufs, rd]) b.destroy();
    const sorted = new Uint32Array(data, offs.sorted_token, c.rowsMax);
    const tiles = new Uint32Array(data, offs.tile_expert, c.tilesMax);
    const slotPos = new Uint32Array(data, offs.slot_pos, cfg.T * cfg.k);
    const counts = new Uint32Array(data, offs.counts, 2 * cfg.E);

    // Expected layout, computed independently on the host.
    const cap = moeCapacity(cfg.T, cfg.k, cfg.E, cfg.capacityFactor)!;
    const TM = c.tile.rows;
    let row = 0;
    const expectRow = new Map<number, number>(); // pair → row
    const expectSorted = new Array<number>(c.rowsMax).fill(MOE_NONE);
    const expectTiles = new Array<number>(c.tilesMax).fill(MOE_NONE);
    for (let e = 0; e < cfg.E; e++) {
      const pairs: number[] = [];
      for (let i = 0; i < idx.length; i++) if (idx[i] === e) pairs.push(i);
      assert.equal(counts[e], pairs.length);
      const kept = pairs.slice(0, cap);
      assert.equal(counts[cfg.E + e], kept.length);
      kept.forEach((p, n) => {
        expectRow.set(p, row + n);
        expectSorted[row + n] = Math.floor(p / cfg.k);
      });
      const padded = Math.ceil(kept.length / TM) * TM;
      for (let q = 0; q < padded / TM; q++) expectTiles[row / TM + q] = e;
      row += padded;
    }
    assert.deepEqual([...sorted], expectSorted);
    assert.deepEqual([...tiles], expectTiles);
    for (let i = 0; i < idx.length; i++) assert.equal(slotPos[i], expectRow.get(i) ?? MOE_NONE);
  },
);

Deno.test("moe: aux and z losses against a hand computation", gpu, async () => {
  // T = 3, E = 2, k = 1, d = 2. Wg = [[ln 3, 0], [0, ln 3]]:
  //   x0 = [1, 0] → z = [ln 3, 0]   → p = [3/4, 1/4],  lse = ln 4,  top-1 = expert 0
  //   x1 = [0, 1] → z = [0, ln 3]   → p = [1/4, 3/4],  lse = ln 4,  top-1 = expert 1
  //   x2 = [2, 0] → z = [2 ln 3, 0] → p = [9/10, 1/10], lse = ln 10, top-1 = expert 0
  // No mask: f = [2/3, 1/3]; P = [(3/4 + 1/4 + 9/10)/3, (1/4 + 3/4 + 1/10)/3] = [1.9/3, 1.1/3]
  //   L_aux = 2·(2/3·1.9/3 + 1/3·1.1/3) = 2·4.9/9 = 9.8/9
  //   L_z = ((ln 4)² + (ln 4)² + (ln 10)²) / 3
  // mask = [1, 1, 0]: f = [1/2, 1/2]; P = [1/2, 1/2] → L_aux = 2·(1/4 + 1/4) = 1; L_z = (ln 4)².
  const ln3 = Math.log(3);
  const cfg: MoeConfig = { T: 3, d: 2, ff: 4, E: 2, k: 1, router: "softmax_topk" };
  const w = randomWeights(cfg, 101);
  w.wg.set([ln3, 0, 0, ln3]);
  const x = new Float32Array([1, 0, 0, 1, 2, 0]);
  for (const router of ["softmax_topk", "switch"] as const) {
    for (const path of ["prefill", "decode"] as const) {
      const c2 = { ...cfg, router };
      const a = await check(c2, 101, { weights: w, x, path });
      assert.ok(Math.abs(a.out.auxLoss - 9.8 / 9) < 1e-6);
      const z = (2 * Math.log(4) ** 2 + Math.log(10) ** 2) / 3;
      assert.ok(Math.abs(a.out.zLoss - z) < 1e-5);
      const b = await check(c2, 101, { weights: w, x, path, mask: new Float32Array([1, 1, 0]) });
      assert.ok(Math.abs(b.out.auxLoss - 1) < 1e-6);
      assert.ok(Math.abs(b.out.zLoss - Math.log(4) ** 2) < 1e-5);
    }
  }
});

Deno.test("moe: kernel count is independent of E; bad configs fail early", () => {
  for (const E of [8, 64]) {
    const cfg: MoeConfig = { T: 512, d: 64, ff: 64, E, k: 2, router: "softmax_topk" };
    assert.equal(moeKernels(cfg, "prefill").length, 6);
    assert.equal(moeKernels(cfg, "prefill", false).length, 5);
    assert.equal(moeKernels(cfg, "decode").length, 4);
  }
  assert.throws(
    () => resolveMoeConfig({ T: 4, d: 8, ff: 8, E: 4, k: 2, router: "switch" }),
    RangeError,
  );
  assert.throws(
    () => resolveMoeConfig({ T: 4, d: 8, ff: 8, E: 4, k: 5, router: "softmax_topk" }),
    RangeError,
  );
  assert.throws(
    () =>
      moeKernels(
        { T: 2, d: 8, ff: 8, E: 4, k: 2, router: "softmax_topk", capacityFactor: 1 },
        "decode",
      ),
    RangeError,
  );
  assert.equal(moeCapacity(512, 2, 8, 1.25), 160);
  assert.equal(moeCapacity(10, 1, 4, 1), 2); // floor(2.5)
});
