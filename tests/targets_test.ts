/**
 * Kernel targets and planned-kernel metadata: the device class picks each op's
 * kernels from its table (GPU shapes where the gpu table has them, the op's
 * portable kernels elsewhere); a table without a fallback names the missing op
 * and target; planned kernels say which op, node, role, choice and target they
 * came from.
 */

import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { requestDevice } from "../runtime/device.ts";
import { emitterOf, TARGET_TABLES, targetOf } from "../ops/targets.ts";
import { opDef } from "../ops/registry.ts";
import { moe } from "../models/moe.ts";
import { selectiveScan } from "../models/mamba.ts";
import { gpu, randomData } from "./_util.ts";

Deno.test("targetOf: CPU rasterisers and GPUs", () => {
  assert.equal(targetOf({ cpuCores: 2 }), "cpu_raster");
  assert.equal(targetOf({ cpuCores: 0 }), "gpu");
});

Deno.test("emitterOf: a target's own kernels, the portable ones, or an error naming op and target", () => {
  const portable = opDef("selective_scan").lower;
  assert.equal(portable.kind, "kernel");
  if (portable.kind !== "kernel") return;
  assert.equal(emitterOf("selective_scan", "cpu_raster"), portable.emit);
  assert.notEqual(emitterOf("selective_scan", "gpu"), portable.emit); // GPU-shaped scan
  const mm = opDef("matmul").lower;
  assert.equal(emitterOf("matmul", "cpu_raster"), mm.kind === "kernel" ? mm.emit : undefined);
  assert.notEqual(emitterOf("matmul", "gpu"), mm.kind === "kernel" ? mm.emit : undefined);
  const cs = opDef("cumsum").lower; // no GPU-shaped kernel: the portable one
  assert.equal(emitterOf("cumsum", "gpu"), cs.kind === "kernel" ? cs.emit : undefined);
  const strict = { ...TARGET_TABLES, gpu: { emitters: {}, fallback: "none" as const } };
  assert.throws(
    () => emitterOf("matmul", "gpu", strict),
    /op "matmul" has no kernel for target "gpu"/,
  );
  assert.throws(
    () => emitterOf("silu", "gpu"),
    /op "silu" is not a kernel op \(its lowering is elementwise\)/,
  );
  assert.throws(() => emitterOf("no_such_op", "gpu"), /Unknown op "no_such_op"/);
});

Deno.test("planned kernels carry op, node, target, role, layer name and algorithm choice", async () => {
  const build = () => {
    const g = new GraphBuilder();
    const x = g.input("x", ["T", 16]);
    const m = moe(g, x, { name: "layer3.moe", experts: 4, topK: 2, ff: 8 });
    g.output("y", m.y.add(x));
    const u = g.input("u", [1, "T", 8]);
    const delta = g.input("delta", [1, "T", 8]);
    const B = g.input("B", [1, "T", 4]);
    const C = g.input("C", [1, "T", 4]);
    g.output("s", selectiveScan(u, delta, g.param("A", [8, 4]), B, C, g.param("D", [8]))[0]);
    return g.build();
  };
  for (
    const [device, target] of [
      [await gpu(), "cpu_raster"],
      [await requestDevice({ limits: { cpuCores: 0 } }), "gpu"],
    ] as const
  ) {
    const exe = compile(build(), device);
    const plan = exe.plan({ T: 24 });
    for (const k of plan.kernels) assert.equal(k.target, target, k.label);
    const router = plan.kernels.filter((k) => k.op === "moe" && k.role === "router");
    assert.equal(router.length, 1);
    assert.equal(router[0].name, "layer3.moe");
    assert.equal(exe.graph.nodes[router[0].node].op, "moe");
    const scan = plan.kernels.find((k) => k.op === "selective_scan" && k.choice);
    assert.ok(scan, plan.kernels.map((k) => k.label).join());
    assert.ok(["sequential", "one pass", "chunked"].includes(scan.choice!.algorithm));
    assert.ok(scan.choice!.reason.length > 10);
    // Every kernel still computes: run it once.
    const T = 24;
    exe.setParams({
      "layer3.moe.router": randomData(4 * 16, "f32", 1),
      "layer3.moe.w1": randomData(4 * 8 * 16, "f32", 2),
      "layer3.moe.w3": randomData(4 * 8 * 16, "f32", 3),
      "layer3.moe.w2": randomData(4 * 16 * 8, "f32", 4),
      A: randomData(32, "f32", 5, -1, -0.1),
      D: randomData(8, "f32", 6),
    });
    const out = await exe.run({
      x: randomData(T * 16, "f32", 7),
      u: randomData(T * 8, "f32", 8),
      delta: randomData(T * 8, "f32", 9, 0.01, 0.2),
      B: randomData(T * 4, "f32", 10),
      C: randomData(T * 4, "f32", 11),
    });
    assert.ok(out.y.data.every(Number.isFinite) && out.s.data.every(Number.isFinite));
    exe.dispose();
  }
});

Deno.test("scopes: nested names reach the graph's nodes and the planned kernels, through the passes", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", 8]);
  const y = g.scope(
    "model.layers.0",
    () => g.scope("mlp", () => x.matmul(g.param("w", [8, 8]), { transB: true }).silu()),
  );
  const z = g.scope("model.norm", () => y.mul(2).add(1));
  g.output("z", z);
  const graph = g.build();
  assert.equal(graph.nodes.find((n) => n.op === "matmul")!.scope, "model.layers.0.mlp");
  assert.equal(graph.nodes.find((n) => n.op === "mul")!.scope, "model.norm");
  assert.equal(graph.nodes.find((n) => n.op === "input")!.scope, undefined);
  assert.throws(() => g.scope("", () => 0), /scope name must be a non-empty string/);
  const exe = compile(graph, await gpu(), { fusion: false });
  const plan = exe.plan({ T: 4 });
  assert.equal(plan.kernels.find((k) => k.op === "matmul")!.scope, "model.layers.0.mlp");
  assert.ok(plan.kernels.filter((k) => k.scope === "model.norm").length >= 1);
  exe.dispose();
});

Deno.test("a model's kernels say which layer part they belong to", async () => {
  const { parseConfig } = await import("../models/architectures/mod.ts");
  const { buildCausalLM } = await import("../models/causal_lm.ts");
  const cfg = parseConfig({
    architectures: ["JambaForCausalLM"],
    vocab_size: 64,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    attn_layer_period: 2,
    attn_layer_offset: 1,
    expert_layer_period: 2,
    expert_layer_offset: 1,
    num_experts: 4,
    mamba_d_state: 4,
  });
  const exe = compile(buildCausalLM(cfg, { mode: "decode", maxSeq: 16, maxNew: 4 }), await gpu());
  const scopes = new Set(exe.plan().kernels.map((k) => k.scope));
  for (const s of ["0.mamba", "0.feed_forward", "1.self_attn", "1.feed_forward"]) {
    assert.ok(
      scopes.has(`model.layers.${s}`),
      `${s}: ${[...scopes].join(", ")}`,
    );
  }
  exe.dispose();
});
