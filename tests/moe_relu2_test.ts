/**
 * The ungated `relu2` experts of `moe` (Nemotron-H's routed experts,
 * `down(relu(up·x)²)`): the float64 reference against a naive layer; the
 * portable kernels (decode GEMVs, grouped GEMMs, the dense baseline, slot
 * tables, f16, Q8_0 and Q4_K experts) and the `gpu` target's against the
 * reference at awkward sizes; no kernel binds a W3 and the graph declares
 * none; a shared expert is ungated too. Gradients are in
 * `moe_grad_bias_act_test.ts`.
 */
import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { moe } from "../models/moe.ts";
import { moeGated } from "../ops/moe/mod.ts";
import { runCpu } from "../runtime/cpu_backend.ts";
import { loadModel } from "../app/model/mod.ts";
import { writeSafetensors } from "../app/train/safetensors_write.ts";
import { gpu } from "./_util.ts";
import { gpuTarget } from "./fixtures/gpu_target.ts";
import {
  assertMoeRefuses,
  type BiasActCase,
  checkNaive,
  runCase,
} from "./fixtures/moe_bias_act.ts";

const activation = "relu2" as const;

/** No kernel of the run's plan binds a buffer of the layer's W3. */
function assertNoW3(run: Awaited<ReturnType<typeof runCase>>, what: string): void {
  assert.ok(!Object.keys(run.params).some((n) => n.endsWith(".w3")), `${what}: a w3 param`);
  // GEMM 1's labels count the matrices it reads ("…x1_" here, "…x2_" when gated).
  for (const k of run.plan.kernels) {
    assert.ok(!/(gemm1|gemv1)_[\dx]*x2_/.test(k.label), `${what}: ${k.label}`);
  }
}

Deno.test("moe relu2: the reference equals a naive layer; portable decode, prefill, dense", async () => {
  assert.equal(moeGated("relu2"), false);
  assert.equal(moeGated("reglu"), true);
  const dev = await gpu();
  let seed = 700;
  for (const [T, d, ff, k] of [[1, 20, 12, 2], [3, 20, 12, 2], [13, 20, 12, 2], [33, 20, 12, 2]]) {
    const c: BiasActCase = { T, d, ff, E: 5, k, activation, bias: false, seed: seed++ };
    const run = await runCase(c, dev, activation);
    checkNaive(c, run);
    assertNoW3(run, JSON.stringify(c));
    const decode = run.labels.some((l) => /decode_gemv1_\d+x1_/.test(l));
    assert.equal(decode, T <= 4, run.labels.join(", "));
    assert.ok(
      decode || run.labels.some((l) => /grouped_gemm1_\d+x\d+x1_/.test(l)),
      run.labels.join(),
    );
  }
  // Widths not multiples of 4 (scalar loads), top-3, the dense baseline, a mask, group routing.
  const more: Omit<BiasActCase, "seed">[] = [
    { T: 2, d: 18, ff: 10, E: 5, k: 3, activation, bias: false },
    { T: 9, d: 18, ff: 10, E: 5, k: 3, activation, bias: false },
    { T: 7, d: 20, ff: 12, E: 4, k: 2, activation, bias: false, dense: true },
    { T: 9, d: 20, ff: 12, E: 4, k: 2, activation, bias: false, mask: true },
    { T: 11, d: 20, ff: 12, E: 6, k: 2, activation, bias: false, router: "sigmoid_bias" },
    { T: 10, d: 20, ff: 12, E: 4, k: 2, activation, bias: false, residual: true },
  ];
  for (const c of more) assertNoW3(await runCase({ ...c, seed: seed++ }, dev), JSON.stringify(c));
});

Deno.test("moe relu2: slot tables, f16, Q8_0 and Q4_K experts, the gpu target", async () => {
  const dev = await gpu();
  let seed = 800;
  for (const T of [2, 13]) {
    const base = { T, E: 5, k: 2, activation, bias: false } as const;
    await runCase({ ...base, d: 20, ff: 12, slots: 3, seed: seed++ }, dev);
    if (dev.caps.f16) {
      await runCase({ ...base, E: 4, d: 24, ff: 16, dtype: "f16", seed: seed++ }, dev);
    }
    for (const format of ["q8_0", "q4_k"] as const) {
      const d = format === "q4_k" ? 256 : 64, ff = format === "q4_k" ? 256 : 32;
      const run = await runCase({ ...base, E: 4, d, ff, format, seed: seed++ }, dev);
      assertNoW3(run, `${format} T=${T}`);
    }
  }
  for (const subgroups of [false, true]) {
    const target = await gpuTarget(subgroups);
    for (const T of [1, 3, 7, 33]) {
      const c = { T, d: 36, ff: 24, E: 6, k: 3, activation, bias: false, seed: seed++ };
      const run = await runCase(c, target, `gpu target${subgroups ? " subgroups" : ""}`);
      const want = T <= 4 ? /moe_gpu_decode_gemv1_/ : /moe_gpu_grouped_gemm1_/;
      assert.ok(run.labels.some((l) => want.test(l)), run.labels.join(", "));
      assertNoW3(run, `gpu target T=${T}`);
    }
  }
});

Deno.test("moe relu2: a shared expert is ungated; expert biases are refused", () => {
  const d = 8, ff = 6;
  const g = new GraphBuilder();
  const x = g.input("x", [3, d]);
  g.output("y", moe(g, x, { name: "m", experts: 4, topK: 2, ff, activation, shared: { ff } }).y);
  const graph = g.build();
  const names = [...graph.params.keys()];
  assert.deepEqual(names.filter((n) => /w3/.test(n)), [], names.join(", "));
  assert.ok(names.includes("m.shared.w1") && names.includes("m.shared.w2"), names.join(", "));
  // The shared expert: relu(x·W1ᵀ)², then W2 — no sigmoid or gate ops.
  const ops = graph.nodes.map((n) => n.op);
  assert.ok(ops.includes("relu") && !ops.includes("silu"), ops.join(", "));
  // Against a hand computation on the CPU backend: zero routed weights leave the shared expert.
  const params = new Map<string, Float32Array>();
  const w1 = Float32Array.from({ length: ff * d }, (_, i) => Math.sin(i + 1) * 0.5);
  const w2 = Float32Array.from({ length: d * ff }, (_, i) => Math.cos(i + 2) * 0.5);
  for (const [name, id] of graph.params) {
    const n = graph.values[id].shape.reduce((a: number, b) => a * Number(b), 1);
    params.set(name, new Float32Array(n));
  }
  params.set("m.shared.w1", w1);
  params.set("m.shared.w2", w2);
  const xs = Float32Array.from({ length: 3 * d }, (_, i) => Math.sin(3 * i) * 0.9);
  const out = runCpu(graph, {}, new Map([["x", xs]]), params).y.data as Float32Array;
  for (let t = 0; t < 3; t++) {
    const h = Array.from({ length: ff }, (_, n) => {
      let a = 0;
      for (let i = 0; i < d; i++) a += w1[n * d + i] * xs[t * d + i];
      return Math.max(a, 0) ** 2;
    });
    for (let o = 0; o < d; o++) {
      const want = h.reduce((s, v, n) => s + v * w2[o * ff + n], 0);
      assert.ok(Math.abs(out[t * d + o] - want) < 1e-5, `t${t} o${o}: ${out[t * d + o]} ${want}`);
    }
  }
  assertMoeRefuses(
    { activation, expertBias: true },
    /expertBias needs a gated activation, not relu2/,
  );
});

// 8 experts of w1 [24, X] and w2 [X, 24] f32 (X: the model's width 32, or nemotron_h_moe_latent's
// latent width 16); a w3 would add half again.
const STREAMED = [["nemotron_h_moe", 340_000, 32], ["nemotron_h_moe_latent", 270_000, 16]] as const;
for (const [name, budget, X] of STREAMED) {
  Deno.test(`moe relu2: ${name} streams its experts (no w3 slab) with the same logits`, async () => {
    const dir = new URL(`./fixtures/hf/${name}/`, import.meta.url).pathname;
    const device = await gpu();
    const { ids } = JSON.parse(await Deno.readTextFile(`${dir}ref.json`)) as { ids: number[] };
    const resident = await loadModel(dir, { device, quiet: true, maxSeq: 64 });
    const want = await resident.forward(ids);
    resident.dispose();
    for (const extra of [{}, { hostMemoryBudget: 20_000 }]) {
      const m = await loadModel(dir, {
        device,
        quiet: true,
        maxSeq: 64,
        memoryBudget: budget,
        ...extra,
      });
      try {
        const plan = m.expertPlan!;
        assert.equal(plan.expertBytes, 2 * 24 * X * 4);
        assert.ok(plan.slots < plan.layers * plan.experts, `${plan.slots} slots`);
        assert.deepEqual(await m.forward(ids), want, JSON.stringify(extra));
        const out: number[] = [];
        for await (const id of m.generateIds(ids, { maxTokens: 6 })) out.push(id);
        assert.ok(m.experts!.stats.misses > 0, m.experts!.report());
      } finally {
        m.dispose();
      }
    }
  });
}

Deno.test("moe relu2: kiln inspect names ungated relu² and latent experts", async () => {
  const dir = new URL("./fixtures/hf/nemotron_h_moe_latent/", import.meta.url).pathname;
  const cli = new URL("../cli.ts", import.meta.url).pathname;
  const r = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", cli, "inspect", dir] })
    .output();
  const out = new TextDecoder().decode(r.stdout);
  assert.ok(r.success, new TextDecoder().decode(r.stderr));
  assert.match(
    out,
    /moe: 8 experts, top-2 \(renormalised\), expert width 24, shared expert width 40, .*within the best 2 of 4 expert groups, ungated relu² experts, latent experts of width 16 \(of 32\)/,
  );
});

Deno.test("moe relu2: expert parallelism is refused by name, before any device is used", async () => {
  const dir = new URL("./fixtures/hf/nemotron_h_moe/", import.meta.url).pathname;
  await assert.rejects(
    loadModel(dir, { devices: 2, quiet: true }),
    /NemotronHForCausalLM's ungated relu² experts do not run split across several devices/,
  );
});

Deno.test("moe relu2: a Nemotron 3 checkpoint's multi-token-prediction tensors are skipped, as transformers skips them", async () => {
  const src = new URL("./fixtures/hf/nemotron_h_moe/", import.meta.url).pathname;
  const device = await gpu();
  const { ids } = JSON.parse(await Deno.readTextFile(`${src}ref.json`)) as { ids: number[] };
  const base = await loadModel(src, { device, quiet: true, maxSeq: 64 });
  const want = await base.forward(ids);
  base.dispose();
  const dir = await Deno.makeTempDir({ prefix: "kiln_nemotron_mtp_" });
  try {
    const config = JSON.parse(await Deno.readTextFile(`${src}config.json`));
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({ ...config, num_nextn_predict_layers: 1 }),
    );
    await Deno.copyFile(`${src}model.safetensors`, `${dir}/model.safetensors`);
    // A second shard holding MTP tensors only, as the published checkpoints ship them.
    await writeSafetensors(`${dir}/mtp.safetensors`, [
      { name: "mtp.layers.0.norm.weight", shape: [32], data: new Float32Array(32).fill(1) },
      { name: "mtp.layers.0.mixer.q_proj.weight", shape: [4, 32], data: new Float32Array(128) },
    ]);
    const m = await loadModel(dir, { device, quiet: true, maxSeq: 64 });
    try {
      assert.deepEqual(await m.forward(ids), want);
    } finally {
      m.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
