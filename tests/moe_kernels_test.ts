/**
 * MoE kernels through the compiler: every case builds a graph with the `moe` op
 * (its routing outputs on), compiles it for the test device and compares every
 * output with the float64 reference (ops/moe/reference.ts). A path is reached
 * through the op itself: T ≤ 4 takes decode, `dense: true` the dense baseline,
 * and a capacity factor of E keeps a small T on the prefill path without
 * dropping anything (capacity min(T, T·k) = T, and an expert takes at most one
 * slot per token).
 */
import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import type { Graph } from "../core/graph.ts";
import { mulberry32 } from "../core/random.ts";
import {
  MOE_NONE,
  moeCapacity,
  type MoeConfig,
  type MoePath,
  moeReference,
  type MoeRole,
  moeScratchLayout,
  type MoeWeights,
  resolveMoeConfig,
  routerHasBias,
} from "../ops/moe/mod.ts";
import { cpuDevice } from "../runtime/device.ts";
import { compile, type Executable } from "../runtime/executable.ts";
import type { GpuExecutable } from "../runtime/gpu_executor.ts";
import { gpu } from "./_util.ts";

const device = await gpu();

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

/** Outputs of one forward pass. */
interface MoeRunResult {
  y: Float32Array;
  logits: Float32Array;
  topkIdx: Uint32Array;
  topkW: Float32Array;
  counts: Uint32Array;
  keptCounts: Uint32Array;
  auxLoss: number;
  zLoss: number;
}

/** Which path a plan's MoE kernels take, by their roles. */
function pathOf(plan: ReturnType<Executable["plan"]>): MoePath {
  const roles = new Set(plan.kernels.map((k) => k.role as MoeRole | undefined));
  if (roles.has("sort")) return "prefill";
  if (roles.has("decode_gemv1")) return "decode";
  if (roles.has("dense_gemm1")) return "dense";
  throw new Error(`no MoE path in ${plan.kernels.map((k) => k.label).join(" ")}`);
}

interface LayerOptions {
  /** Path to take (default: the op's own choice for T). */
  path?: MoePath;
  /** The graph has a mask input. */
  mask?: boolean;
  /** Input 1 is given logits `[T, E]` (an input named "logits") instead of the router weight. */
  logitsIn?: boolean;
}

/** The graph of one layer: `moe` with its routing outputs, every output a graph output. */
function layerGraph(cfg: MoeConfig, o: LayerOptions): Graph {
  const { T, d, ff, E, k } = cfg;
  const path = o.path ?? (T <= 4 && cfg.capacityFactor === undefined ? "decode" : "prefill");
  if (path === "decode") assert.ok(T <= 4 && cfg.capacityFactor === undefined, "decode case");
  // A capacity of T drops nothing: it only keeps a small T on the prefill path.
  const cf = cfg.capacityFactor ?? (path === "prefill" && T <= 4 ? E : 0);
  const wdt = cfg.weightDtype ?? "f32";
  const g = new GraphBuilder();
  const inputs = [
    g.input("x", [T, d]),
    o.logitsIn ? g.input("logits", [T, E]) : g.param("router", [E, d]),
    g.param("w1", [E, ff, d], wdt),
    g.param("w3", [E, ff, d], wdt),
    g.param("w2", [E, d, ff], wdt),
  ];
  if (routerHasBias(cfg.router)) inputs.push(g.param("bias", [E]));
  if (o.mask) inputs.push(g.input("mask", [T]));
  const outs = g.apply("moe", inputs, {
    experts: E,
    topK: k,
    router: cfg.router,
    normTopk: cfg.normTopk ?? true,
    routedScaling: cfg.routedScaling ?? 1,
    capacityFactor: cf,
    dense: path === "dense",
    routing: true,
    ...(o.logitsIn ? { logitsIn: true } : {}),
  });
  ["y", "logits", "counts", "losses", "topk_idx", "topk_w", "kept"].forEach((name, j) =>
    g.output(name, outs[j])
  );
  return g.build();
}

interface Layer {
  readonly path: MoePath;
  readonly exe: Executable;
  run(x: Float32Array, mask?: Float32Array, logits?: Float32Array): Promise<MoeRunResult>;
  dispose(): void;
}

/** Compiles one layer for the test device with weights `w`. */
function createLayer(cfg: MoeConfig, w: MoeWeights, o: LayerOptions = {}): Layer {
  const f32 = (a: ArrayLike<number>) => Float32Array.from(a);
  const params: Record<string, Float32Array> = { w1: f32(w.w1), w3: f32(w.w3), w2: f32(w.w2) };
  if (!o.logitsIn) params.router = f32(w.wg);
  if (routerHasBias(cfg.router)) params.bias = f32(w.bias ?? new Float32Array(cfg.E));
  const exe = compile(layerGraph(cfg, o), device, { params });
  const path = pathOf(exe.plan());
  if (o.path) assert.equal(path, o.path, "the layer takes the path asked for");
  return {
    path,
    exe,
    async run(x, mask, logits) {
      const inputs: Record<string, Float32Array> = { x };
      if (o.mask) inputs.mask = mask ?? new Float32Array(cfg.T).fill(1);
      if (o.logitsIn) inputs.logits = logits!;
      const r = await exe.run(inputs);
      const losses = r.losses.data;
      return {
        y: r.y.data as Float32Array,
        logits: r.logits.data as Float32Array,
        topkIdx: r.topk_idx.data as Uint32Array,
        topkW: r.topk_w.data as Float32Array,
        counts: r.counts.data as Uint32Array,
        keptCounts: r.kept.data as Uint32Array,
        auxLoss: losses[0],
        zLoss: losses[1],
      };
    },
    dispose: () => exe.dispose(),
  };
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
  const layer = createLayer(cfg, w, { path: o.path, mask: o.mask !== undefined });
  try {
    const out = await layer.run(x, o.mask);
    const ref = moeReference(cfg, o.refWeights ?? w, x, o.mask);
    const tag = `${layer.path} ${JSON.stringify(cfg)}`;
    assertClose(out.logits, ref.logits, `${tag} logits`, 1e-5, 1e-5);
    assert.deepEqual([...out.topkIdx], [...ref.topkIdx], `${tag} topk_idx`);
    assertClose(out.topkW, ref.topkW, `${tag} topk_w`, 1e-5, 1e-6);
    assert.deepEqual([...out.counts], [...ref.counts], `${tag} counts`);
    assert.deepEqual([...out.keptCounts], [...ref.keptCounts], `${tag} kept counts`);
    assertClose(out.y, ref.y, `${tag} y`, o.rtol ?? 2e-4, 1e-6);
    assert.ok(Math.abs(out.auxLoss - ref.auxLoss) <= 1e-5 * Math.max(1, ref.auxLoss), `${tag} aux`);
    assert.ok(Math.abs(out.zLoss - ref.zLoss) <= 2e-5 * Math.max(1, ref.zLoss), `${tag} z`);
    return { out, ref, layer };
  } finally {
    layer.dispose();
  }
}

Deno.test(
  "moe: softmax top-k, k = 1, 2, 4, 8, E up to 64, T not a multiple of the tile",
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

Deno.test("moe: T = 1 on the prefill path and the decode path", async () => {
  const cfg: MoeConfig = { T: 1, d: 16, ff: 20, E: 8, k: 2, router: "softmax_topk" };
  await check(cfg, 5, { path: "prefill" });
  await check(cfg, 5, { path: "decode" });
});

Deno.test("moe: decode path, T = 1..4, every router kind", async () => {
  await check({ T: 4, d: 32, ff: 48, E: 16, k: 4, router: "softmax_topk" }, 6);
  await check({ T: 3, d: 32, ff: 48, E: 8, k: 2, router: "sigmoid_bias", routedScaling: 2.5 }, 7);
  await check({ T: 2, d: 32, ff: 48, E: 8, k: 1, router: "switch" }, 8);
  await check({ T: 2, d: 32, ff: 48, E: 8, k: 2, router: "softmax_topk", normTopk: false }, 9);
  await check({ T: 3, d: 32, ff: 48, E: 8, k: 2, router: "softmax_bias" }, 10);
});

Deno.test("moe: ERNIE 4.5's softmax + bias selects by the biased probabilities, weighs by the plain", async () => {
  const cfg: MoeConfig = { T: 37, d: 32, ff: 40, E: 8, k: 3, router: "softmax_bias" };
  const { ref } = await check(cfg, 14);
  const x = Float32Array.from({ length: cfg.T * cfg.d }, rng(15));
  const plain = moeReference({ ...cfg, router: "softmax_topk" }, randomWeights(cfg, 14), x);
  let moved = 0;
  for (let t = 0; t < cfg.T; t++) {
    const chosen = [...ref.topkIdx.subarray(t * 3, t * 3 + 3)];
    const unbiased = [...plain.topkIdx.subarray(t * 3, t * 3 + 3)];
    if (chosen.some((e, j) => e !== unbiased[j])) moved++;
    // Renormalised over the chosen probabilities, whichever they are.
    const p = chosen.map((e) => ref.probs[t * cfg.E + e]);
    const s = p.reduce((a, b) => a + b, 0);
    for (let j = 0; j < 3; j++) {
      assert.ok(Math.abs(ref.topkW[t * 3 + j] - p[j] / s) < 1e-12, `token ${t} slot ${j}`);
    }
  }
  assert.ok(moved > 0 && moved < cfg.T, `the bias moved the choice of ${moved} of ${cfg.T} tokens`);
  await check({ ...cfg, T: 20, normTopk: false, routedScaling: 1.5, capacityFactor: 0.6 }, 15);
});

Deno.test("moe: Qwen2-MoE (no renormalisation), DeepSeek-V3 sigmoid + bias, Switch", async () => {
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
});

Deno.test("moe: ties go to the lower expert index", async () => {
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

Deno.test("moe: all tokens on one expert, unused experts never read (NaN-poisoned)", async () => {
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
});

Deno.test("moe: experts with zero tokens (k = 2, 4 of 16 experts used)", async () => {
  const cfg: MoeConfig = { T: 23, d: 16, ff: 16, E: 16, k: 2, router: "softmax_topk" };
  const w = randomWeights(cfg, 41);
  const x = Float32Array.from({ length: cfg.T * cfg.d }, rng(42));
  for (let t = 0; t < cfg.T; t++) x[t * cfg.d] = 4;
  for (let e = 0; e < cfg.E; e++) w.wg[e * cfg.d] = e % 4 === 1 ? 5 : -5;
  const { out } = await check(cfg, 41, { x, weights: w });
  assert.equal([...out.counts].filter((n) => n > 0).length, 4);
});

Deno.test("moe: capacity dropping keeps the first tokens per expert", async () => {
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

Deno.test("moe: dense baseline equals the routed layer", async () => {
  await check({ T: 21, d: 32, ff: 24, E: 8, k: 2, router: "softmax_topk" }, 61, { path: "dense" });
});

Deno.test("moe: f16 expert weights", { ignore: !device.caps.f16 }, async () => {
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

Deno.test("moe: results are bit-reproducible", async () => {
  const cfg: MoeConfig = { T: 70, d: 32, ff: 24, E: 8, k: 2, router: "softmax_topk" };
  const layer = createLayer(cfg, randomWeights(cfg, 81));
  const x = Float32Array.from({ length: cfg.T * cfg.d }, rng(82));
  const a = await layer.run(x);
  const b = await layer.run(x);
  layer.dispose();
  assert.deepEqual(new Uint8Array(a.y.buffer.slice(0)), new Uint8Array(b.y.buffer.slice(0)));
});

/**
 * Runs `layer` once and reads scratch buffers `names` as the sort kernel left
 * them: a host barrier right after the sort copies them out before the GEMMs run.
 */
async function runReadingSort(
  layer: Layer,
  inputs: Record<string, Float32Array>,
  names: readonly string[],
): Promise<Record<string, Uint32Array>> {
  const plan = layer.exe.plan();
  const at = plan.kernels.findIndex((k) => k.role === "sort");
  assert.ok(at >= 0, "a sort kernel");
  const sort = plan.kernels[at];
  // Binding index of each scratch buffer, from the declarations the compiler wrote.
  const bindingOf = new Map<string, number>();
  for (const m of sort.code.matchAll(/@binding\((\d+)\) var<storage, [a-z_]+> (\w+):/g)) {
    bindingOf.set(m[2], Number(m[1]));
  }
  const order = moeScratchLayout("prefill", true);
  const got: Record<string, Uint32Array> = {};
  const dev = device.device;
  await layer.exe.run(inputs, {
    barriers: () =>
      new Map([[at + 1, async (gexe: GpuExecutable) => {
        const bs = names.map((n) => {
          const j = order.indexOf(n as typeof order[number]);
          const b = sort.bindings[bindingOf.get(`scratch${j}`)!];
          assert.ok(b, `the sort kernel binds ${n}`);
          return b;
        });
        const total = bs.reduce((s, b) => s + b.size, 0);
        const rd = dev.createBuffer({
          size: total,
          usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        });
        const enc = dev.createCommandEncoder();
        let off = 0;
        for (const b of bs) {
          enc.copyBufferToBuffer(gexe.buffer(b.slot), b.offset, rd, off, b.size);
          off += b.size;
        }
        dev.queue.submit([enc.finish()]);
        await rd.mapAsync(GPUMapMode.READ);
        const data = rd.getMappedRange().slice(0);
        rd.unmap();
        rd.destroy();
        off = 0;
        names.forEach((n, i) => {
          got[n] = new Uint32Array(data, off, bs[i].size / 4);
          off += bs[i].size;
        });
      }]]),
  });
  return got;
}

Deno.test("moe: sort kernel orders each expert's rows by token and pads to the tile", async () => {
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
  // Given logits that make the router choose exactly idx: 2 for the first
  // choice, 1 for the second, 0 for the rest.
  const logits = new Float32Array(cfg.T * cfg.E);
  for (let t = 0; t < cfg.T; t++) {
    logits[t * cfg.E + idx[t * 2]] = 2;
    logits[t * cfg.E + idx[t * 2 + 1]] = 1;
  }
  const layer = createLayer(cfg, randomWeights(cfg, 91), { logitsIn: true });
  let got: Record<string, Uint32Array>;
  let out: MoeRunResult;
  try {
    const x = new Float32Array(cfg.T * cfg.d);
    got = await runReadingSort(layer, { x, logits }, ["sorted_token", "tile_expert", "slot_pos"]);
    out = await layer.run(x, undefined, logits);
  } finally {
    layer.dispose();
  }
  assert.deepEqual([...out.topkIdx], [...idx], "the given logits route as intended");
  const sorted = got.sorted_token.slice(0, c.rowsMax);
  const tiles = got.tile_expert.slice(0, c.tilesMax);
  const slotPos = got.slot_pos.slice(0, cfg.T * cfg.k);
  const counts = [...out.counts, ...out.keptCounts];

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
});

Deno.test("moe: aux and z losses against a hand computation", async () => {
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

Deno.test("moe: routing outputs agree with the CPU reference device, T = 0 included", async () => {
  const d = 16, ff = 8, E = 6, k = 2;
  const g = new GraphBuilder();
  const outs = g.apply("moe", [
    g.input("x", ["T", d]),
    g.param("router", [E, d]),
    g.param("w1", [E, ff, d]),
    g.param("w3", [E, ff, d]),
    g.param("w2", [E, d, ff]),
  ], {
    experts: E,
    topK: k,
    router: "softmax_topk",
    normTopk: true,
    routedScaling: 1,
    capacityFactor: 0,
    dense: false,
    routing: true,
  });
  const names = ["y", "logits", "counts", "losses", "topk_idx", "topk_w", "kept"];
  names.forEach((name, j) => g.output(name, outs[j]));
  assert.deepEqual(outs.slice(4).map((t) => [t.shape, t.dtype]), [
    [["T", k], "u32"],
    [["T", k], "f32"],
    [[E], "u32"],
  ]);
  const w = randomWeights({ T: 1, d, ff, E, k, router: "softmax_topk" }, 111);
  const params = { router: w.wg, w1: w.w1, w3: w.w3, w2: w.w2 };
  const graph = g.build();
  const eg = compile(graph, device, { params });
  const ec = compile(graph, cpuDevice(), { params });
  try {
    for (const T of [0, 3, 20]) {
      const x = Float32Array.from({ length: T * d }, rng(112 + T));
      const a = await eg.run({ x }), b = await ec.run({ x });
      for (const name of ["topk_idx", "counts", "kept"]) {
        assert.deepEqual([...a[name].data], [...b[name].data], `T=${T} ${name}`);
      }
      assertClose(a.topk_w.data, b.topk_w.data, `T=${T} topk_w`, 1e-5, 1e-6);
      assertClose(a.y.data, b.y.data, `T=${T} y`);
      if (T === 0) assert.deepEqual([...a.kept.data], new Array(E).fill(0));
    }
  } finally {
    eg.dispose();
  }
});

/** Roles of the kernels of a layer of `cfg` that outputs y, plus the losses when `losses`. */
function planRoles(cfg: MoeConfig, losses: boolean): (string | undefined)[] {
  const g = new GraphBuilder();
  const { T, d, ff, E, k } = cfg;
  const [y, , , l] = g.apply("moe", [
    g.input("x", ["T", d]),
    g.param("router", [E, d]),
    g.param("w1", [E, ff, d]),
    g.param("w3", [E, ff, d]),
    g.param("w2", [E, d, ff]),
  ], {
    experts: E,
    topK: k,
    router: cfg.router,
    normTopk: true,
    routedScaling: 1,
    capacityFactor: cfg.capacityFactor ?? 0,
    dense: false,
  });
  g.output("y", y);
  if (losses) g.output("losses", l);
  const exe = compile(g.build(), device);
  try {
    return exe.plan({ T }).kernels.map((kn) => kn.role);
  } finally {
    exe.dispose();
  }
}

Deno.test("moe: kernel count is independent of E; bad configs fail early", () => {
  for (const E of [8, 64]) {
    const cfg: MoeConfig = { T: 512, d: 64, ff: 64, E, k: 2, router: "softmax_topk" };
    assert.equal(planRoles(cfg, true).length, 6);
    assert.equal(planRoles(cfg, false).length, 5);
    assert.equal(planRoles({ ...cfg, T: 2 }, true).length, 4);
  }
  assert.throws(
    () => resolveMoeConfig({ T: 4, d: 8, ff: 8, E: 4, k: 2, router: "switch" }),
    RangeError,
  );
  assert.throws(
    () => resolveMoeConfig({ T: 4, d: 8, ff: 8, E: 4, k: 5, router: "softmax_topk" }),
    RangeError,
  );
  // The same configurations fail when the graph is built.
  const cfg = { T: 4, d: 8, ff: 8, E: 4, k: 2 };
  assert.throws(() => planRoles({ ...cfg, router: "switch" }, true), RangeError);
  assert.throws(() => planRoles({ ...cfg, k: 5, router: "softmax_topk" }, true), RangeError);
  // The decode GEMVs are dropless: a capacity keeps even T = 2 on the prefill path.
  const roles = planRoles({
    T: 2,
    d: 8,
    ff: 8,
    E: 4,
    k: 2,
    router: "softmax_topk",
    capacityFactor: 1,
  }, true);
  assert.ok(roles.includes("sort") && !roles.includes("decode_gemv1"), roles.join());
  assert.equal(moeCapacity(512, 2, 8, 1.25), 160);
  assert.equal(moeCapacity(10, 1, 4, 1), 2); // floor(2.5)
});
