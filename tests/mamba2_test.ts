/**
 * The Mamba-2 mixer against an independent float64 recurrence
 * (`reference/mamba2_reference.ts`) at awkward sizes — groups of heads,
 * Δ limits, the grouped norm llama.cpp uses — through prefill, decode and a
 * prompt fed in pieces; and Mamba-2 configs as transformers 4 and 5 write them.
 * The transformers-written checkpoints themselves are in `hf_fixtures_test.ts`.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { mamba2Mixer } from "../models/mamba2.ts";
import { buildCausalLM } from "../models/causal_lm.ts";
import { canonicalNames } from "../compiler/codegen.ts";
import { parseConfig } from "../models/architectures/mod.ts";
import { parsePythonJson } from "../app/fs_errors.ts";
import { loadModel } from "../app/model/mod.ts";
import { assertClose, gpu, randomData } from "./_util.ts";
import { mamba2Mixer as reference, type Mamba2Weights } from "./reference/mamba2_reference.ts";

const D = 20, H = 6, P = 5, G = 3, N = 7, K = 3, I = H * P, CONV = I + 2 * G * N;
const LIMIT: [number, number] = [0.15, 0.4];

function weights(seed: number): Record<string, Float32Array> {
  const r = (n: number, s: number, lo = -0.4, hi = 0.4) =>
    randomData(n, "f32", seed * 31 + s, lo, hi) as Float32Array;
  return {
    "m.in_proj.weight": r((I + CONV + H) * D, 1),
    "m.in_proj.bias": r(I + CONV + H, 2, -0.1, 0.1),
    "m.conv1d.weight": r(CONV * K, 3, -0.6, 0.6),
    "m.conv1d.bias": r(CONV, 4, -0.1, 0.1),
    "m.dt_bias": r(H, 5, -2, 0.5),
    "m.A_log": r(H, 6, -1, 1.5),
    "m.D": r(H, 7, 0.5, 1.5),
    "m.norm.weight": r(I, 8, 0.8, 1.2),
    "m.out_proj.weight": r(D * I, 9),
    "m.out_proj.bias": r(D, 10, -0.1, 0.1),
  };
}

function graph(mode: "prefill" | "decode" | "stateless", B: number, normGroups: number) {
  const g = new GraphBuilder();
  const x = g.input("x", [B, mode === "decode" ? 1 : "L", D]);
  const y = mamba2Mixer(g, x, {
    name: "m",
    d: D,
    heads: H,
    headDim: P,
    groups: G,
    stateSize: N,
    convKernel: K,
    useBias: true,
    dtLimit: LIMIT,
    normGroups,
    mode,
  });
  g.output("y", y);
  return g.build();
}

function want(
  w: Record<string, Float32Array>,
  x: Float32Array,
  B: number,
  T: number,
  ng: number,
  limitRows = T,
) {
  const f = (n: string) => Float64Array.from(w[`m.${n}`]);
  const mw: Mamba2Weights = {
    inProj: f("in_proj.weight"),
    inProjBias: f("in_proj.bias"),
    conv: f("conv1d.weight"),
    convBias: f("conv1d.bias"),
    dtBias: f("dt_bias"),
    aLog: f("A_log"),
    d: f("D"),
    norm: f("norm.weight"),
    outProj: f("out_proj.weight"),
    outProjBias: f("out_proj.bias"),
  };
  const out = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) {
    const xb = Float64Array.from(x.subarray(b * T * D, (b + 1) * T * D));
    const dims = {
      hidden: D,
      heads: H,
      headDim: P,
      groups: G,
      state: N,
      convKernel: K,
      dtLimit: LIMIT,
      eps: 1e-5,
      normGroups: ng,
      limitRows,
    };
    out.set(reference(xb, T, mw, dims), b * T * D);
  }
  return out;
}

Deno.test("Mamba-2 mixer equals the float64 recurrence: one pass, prefill + decode, a prompt in pieces", async () => {
  const B = 2, L = 37, M = 4, T = L + M;
  const dev = await gpu();
  const w = weights(3);
  const x = randomData(B * T * D, "f32", 17, -1, 1) as Float32Array;
  const rows = (t0: number, t1: number, src: Float32Array | Float64Array) => {
    const out = new Float64Array(B * (t1 - t0) * D);
    for (let b = 0; b < B; b++) {
      out.set(src.subarray((b * T + t0) * D, (b * T + t1) * D), b * (t1 - t0) * D);
    }
    return out;
  };
  for (const ng of [1, G]) {
    const ref = want(w, x, B, T, ng);
    // The decode step leaves Δ unclamped, as transformers' and mamba_ssm's step do.
    const stepped = want(w, x, B, T, ng, L);
    const full = compile(graph("stateless", B, ng), dev, { params: w });
    assertClose((await full.run({ x })).y.data, ref, 2e-3, 2e-4, `one pass, ${ng} norm groups`);
    full.dispose();
    const pre = compile(graph("prefill", B, ng), dev, { params: w });
    const dec = compile(graph("decode", B, ng), dev, { params: w });
    try {
      const yp = (await pre.run({ x: Float32Array.from(rows(0, L, x)) })).y;
      assertClose(yp.data, rows(0, L, ref), 2e-3, 2e-4, "prefill");
      for (const s of ["m.conv_state", "m.ssm_state"]) {
        dec.writeState(s, (await pre.readState(s)).data);
      }
      for (let t = L; t < T; t++) {
        const { y } = await dec.run({ x: Float32Array.from(rows(t, t + 1, x)) });
        assertClose(y.data, rows(t, t + 1, stepped), 2e-3, 2e-4, `decode token ${t}`);
      }
      pre.resetStates();
      await pre.run({ x: Float32Array.from(rows(0, 20, x)) });
      const y2 = (await pre.run({ x: Float32Array.from(rows(20, T, x)) })).y;
      assertClose(y2.data, rows(20, T, ref), 2e-3, 2e-4, "a prompt in two pieces");
    } finally {
      pre.dispose();
      dec.dispose();
    }
  }
  // The grouped norm and the step's unclamped Δ are different functions: the test
  // above would notice a mix-up.
  const a = want(w, x, B, T, 1), b = want(w, x, B, T, G), c = want(w, x, B, T, 1, L);
  assert.ok(a.some((v, i) => Math.abs(v - b[i]) > 1e-2), "norm groups must matter");
  assert.ok(a.some((v, i) => Math.abs(v - c[i]) > 1e-2), "the limit must matter");
});

const BASE = {
  architectures: ["Mamba2ForCausalLM"],
  vocab_size: 50,
  hidden_size: 16,
  num_heads: 4,
  head_dim: 8,
  n_groups: 2,
  state_size: 4,
  num_hidden_layers: 1,
};

Deno.test("Mamba-2 configs: fields, defaults and one-line refusals", () => {
  const cfg = parseConfig(BASE);
  assert.deepEqual(cfg.mamba!.ssd, {
    heads: 4,
    headDim: 8,
    groups: 2,
    normGroups: 1,
    dtLimit: [0, Infinity],
  });
  assert.equal(cfg.mamba!.inner, 32);
  assert.equal(cfg.tieEmbeddings, false, "Mamba2Config does not tie by default");
  const limited = parseConfig({ ...BASE, time_step_limit: [0.01, { __float__: "Infinity" }] });
  assert.deepEqual(limited.mamba!.ssd!.dtLimit, [0.01, Infinity]);
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ n_groups: 3 }, /num_heads 4 must be a multiple of n_groups 3/],
    [{ expand: 3 }, /expand 3 × hidden_size 16 must equal num_heads 4 × head_dim 8 \(32\)/],
    [{ time_step_limit: [0.5, 0.1] }, /time_step_limit" \[0.5, 0.1\] must satisfy/],
    [{ time_step_limit: 3 }, /time_step_limit" must be \[min, max\], got 3/],
    [{ time_step_limit: [0, "big"] }, /time_step_limit" must hold numbers/],
    [{ hidden_act: "relu6" }, /hidden_act "relu6" is not supported/],
  ];
  for (const [edit, re] of bad) {
    assert.throws(() => parseConfig({ ...BASE, ...edit }), re, JSON.stringify(edit));
  }
});

Deno.test("config.json with Python's bare Infinity (transformers 4) loads as transformers 5's form", async () => {
  assert.deepEqual(parsePythonJson('{"a": [0.0, Infinity, -Infinity], "s": "NaN Infinity"}'), {
    a: [0, { __float__: "Infinity" }, { __float__: "-Infinity" }],
    s: "NaN Infinity",
  });
  assert.throws(() => parsePythonJson('{"a": Infinite}'), SyntaxError);
  assert.throws(() => parsePythonJson('{"a": [1,]}'), SyntaxError);
  const src = new URL("./fixtures/hf/mamba2", import.meta.url).pathname;
  const dir = await Deno.makeTempDir({ prefix: "kiln_mamba2_v4_" });
  try {
    for (const f of ["model.safetensors", "generation_config.json"]) {
      await Deno.copyFile(join(src, f), join(dir, f));
    }
    const text = (await Deno.readTextFile(join(src, "config.json")))
      .replace(/\{\s*"__float__":\s*"Infinity"\s*\}/, "Infinity");
    assert.match(text, /\[\s*0\.0,\s*Infinity\s*\]/);
    await Deno.writeTextFile(join(dir, "config.json"), text);
    const device = await gpu();
    const ids = [5, 9, 2, 40, 7];
    const a = await loadModel(src, { device, quiet: true, maxSeq: 16 });
    const b = await loadModel(dir, { device, quiet: true, maxSeq: 16 });
    try {
      assert.deepEqual(await b.forward(ids), await a.forward(ids));
    } finally {
      a.dispose();
      b.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Mamba-2 layers share their pipelines: a view's nested names are canonical too", async () => {
  // Δ and A broadcast over a head's channels are views whose producers the step kernel
  // computes inline; their names once carried node ids, so each layer compiled its own.
  const cfg = parseConfig({ ...BASE, num_hidden_layers: 3 });
  const exe = compile(buildCausalLM(cfg, { mode: "decode", maxSeq: 16, maxNew: 4 }), await gpu());
  try {
    const plan = exe.plan({});
    const step = plan.kernels.filter((k) => k.label.includes("ssm_step"));
    assert.ok(step.length >= 3 * 2, "a step kernel for each of two groups a layer");
    // One pipeline per group (their slices of x·B·C start at different offsets).
    assert.equal(
      new Set(step.map((k) => k.code)).size,
      2,
      "the layers share the groups' pipelines",
    );
    const all = new Set(plan.kernels.map((k) => k.code)).size;
    assert.ok(all * 3 <= plan.kernels.length + 6, `${all} distinct of ${plan.kernels.length}`);
  } finally {
    exe.dispose();
  }
  assert.equal(
    canonicalNames("let vn43_11 = p7_0[i]; let vn90_n3_2 = vn43_11;"),
    "let vw0 = p7_0[i]; let vw1 = vw0;",
  );
});
