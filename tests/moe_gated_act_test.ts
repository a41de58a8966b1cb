/**
 * The GEGLU and ReGLU experts of `moe` (`activation` "geglu", "geglu_tanh",
 * "reglu", "quick_geglu": what a Hugging Face config's `hidden_act` of gelu,
 * gelu_pytorch_tanh, relu and quick_gelu make of a Mixtral-style layer). The reference's
 * gate functions against textbook values and central differences; the
 * float64 reference against a naive layer whose GELU integrates the normal
 * density itself; the portable kernels (decode GEMVs, grouped GEMMs, the
 * dense baseline, biases, slot tables, f16, Q8_0 and Q4_K experts) and the
 * `gpu` target's against the reference at awkward sizes; a shared expert
 * takes the same gate. Gradients are in `moe_grad_bias_act_test.ts`.
 */
import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { moe } from "../models/moe.ts";
import { gateFunction } from "../ops/moe/reference.ts";
import { runCpu } from "../runtime/cpu_backend.ts";
import { gpu } from "./_util.ts";
import { gpuTarget } from "./fixtures/gpu_target.ts";
import {
  assertMoeRefuses,
  type BiasActCase,
  checkNaive,
  naiveGate,
  runCase,
} from "./fixtures/moe_bias_act.ts";
import { normalCdf } from "./reference/activation_reference.ts";

const KINDS = ["geglu", "geglu_tanh", "reglu", "quick_geglu"] as const;

Deno.test("moe gated act: the reference's gates against textbook values and central differences", () => {
  // Φ(1) = 0.8413447460685429, Φ(−0.5) = 0.3085375387259869 (tables of the normal CDF).
  assert.ok(Math.abs(normalCdf(1) - 0.8413447460685429) < 1e-12);
  assert.ok(Math.abs(normalCdf(-0.5) - 0.3085375387259869) < 1e-12);
  const points = [-7.5, -3, -1.2, -0.3, -1e-3, 0.2, 0.9, 2.5, 6, 11];
  for (const kind of [...KINDS, "swiglu"] as const) {
    const g = gateFunction(kind)!;
    for (const x of points) {
      const want = naiveGate(kind, x);
      // The reference's erf is Abramowitz–Stegun 7.1.26 (|error| ≤ 1.5e-7).
      assert.ok(Math.abs(g.f(x) - want) <= 1e-7 * Math.max(1, Math.abs(x)), `${kind}(${x})`);
      const h = 1e-5, fd = (naiveGate(kind, x + h) - naiveGate(kind, x - h)) / (2 * h);
      assert.ok(Math.abs(g.df(x) - fd) < 2e-6, `${kind}'(${x}): ${g.df(x)} vs ${fd}`);
    }
  }
  assert.equal(gateFunction("reglu")!.df(0), 0); // PyTorch's relu gradient at 0
  assert.equal(gateFunction("swiglu_oai"), undefined);
});

Deno.test("moe gated act: the reference equals a naive layer; portable decode, prefill, dense", async () => {
  const dev = await gpu();
  let seed = 200;
  for (const activation of KINDS) {
    for (
      const [T, extra] of [[1, {}], [3, { bias: false }], [13, {}], [33, { bias: false }]] as const
    ) {
      const c: BiasActCase = { T, d: 20, ff: 12, E: 5, k: 2, activation, seed: seed++, ...extra };
      const run = await runCase(c, dev, activation);
      checkNaive(c, run);
      const decode = run.labels.some((l) => /decode_gemv1/.test(l));
      assert.equal(decode, T <= 4, run.labels.join(", "));
    }
    // Widths not multiples of 4 (scalar loads), top-3, the dense baseline, a mask.
    await runCase({ T: 2, d: 18, ff: 10, E: 5, k: 3, activation, seed: seed++ }, dev);
    await runCase({ T: 9, d: 18, ff: 10, E: 5, k: 3, activation, seed: seed++ }, dev);
    await runCase({ T: 7, d: 20, ff: 12, E: 4, k: 2, activation, dense: true, seed: seed++ }, dev);
    await runCase({ T: 9, d: 20, ff: 12, E: 4, k: 2, activation, mask: true, seed: seed++ }, dev);
  }
});

Deno.test("moe gated act: slot tables, f16, Q8_0 and Q4_K experts, the gpu target", async () => {
  const dev = await gpu();
  let seed = 300;
  for (const activation of KINDS) {
    for (const T of [2, 13]) {
      await runCase({ T, d: 20, ff: 12, E: 5, k: 2, activation, slots: 3, seed: seed++ }, dev);
      if (dev.caps.f16) {
        await runCase(
          { T, d: 24, ff: 16, E: 4, k: 2, activation, dtype: "f16", seed: seed++ },
          dev,
        );
      }
      for (const format of ["q8_0", "q4_k"] as const) {
        const d = format === "q4_k" ? 256 : 64, ff = format === "q4_k" ? 256 : 32;
        await runCase({ T, d, ff, E: 4, k: 2, activation, format, bias: false, seed: seed++ }, dev);
      }
    }
    for (const subgroups of [false, true]) {
      const target = await gpuTarget(subgroups);
      for (const T of [1, 3, 7, 33]) {
        const c = { T, d: 36, ff: 24, E: 6, k: 3, activation, seed: seed++ };
        const { labels } = await runCase(c, target, `gpu target${subgroups ? " subgroups" : ""}`);
        const want = T <= 4 ? /moe_gpu_decode_gemv1_/ : /moe_gpu_grouped_gemm1_/;
        assert.ok(labels.some((l) => want.test(l)), labels.join(", "));
      }
    }
  }
});

Deno.test("moe gated act: a shared expert applies the experts' gate; swiglu_oai refuses one", () => {
  const d = 8, ff = 6;
  for (const activation of [...KINDS, "swiglu"] as const) {
    const g = new GraphBuilder();
    const x = g.input("x", [3, d]);
    g.output("y", moe(g, x, { name: "m", experts: 4, topK: 2, ff, activation, shared: { ff } }).y);
    const graph = g.build();
    const ops = graph.nodes.map((n) => n.op);
    // quick_gelu is x·σ(1.702·x): a mul and a sigmoid.
    const gate = {
      geglu: "gelu_erf",
      geglu_tanh: "gelu",
      reglu: "relu",
      swiglu: "silu",
      quick_geglu: "sigmoid",
    }[activation];
    assert.ok(ops.includes(gate), `${activation}: ${ops.join(", ")}`);
    for (const other of ["gelu_erf", "gelu", "relu", "silu", "sigmoid"].filter((o) => o !== gate)) {
      assert.ok(!ops.includes(other), `${activation}: ${other} in ${ops.join(", ")}`);
    }
    // And the graph runs on the CPU reference (shapes and attributes accepted).
    const params = new Map<string, Float32Array>();
    for (const [name, id] of graph.params) {
      const n = graph.values[id].shape.reduce((a: number, b) => a * Number(b), 1);
      params.set(name, Float32Array.from({ length: n }, (_, i) => Math.sin(i + 1) * 0.5));
    }
    const inputs = new Map([["x", new Float32Array(3 * d).fill(0.7)]]);
    const out = runCpu(graph, {}, inputs, params);
    assert.ok(Array.from(out.y.data as Float32Array).every(Number.isFinite));
  }
  assertMoeRefuses(
    { activation: "swiglu_oai", shared: { ff } },
    /shared expert needs a gated activation/,
  );
  assertMoeRefuses(
    { activation: "geglu", alpha: 1 },
    /alpha applies to activation "swiglu_oai" only/,
  );
});
