/**
 * Attention sinks (GPT-OSS): a learned logit per query head joins every row's
 * softmax and takes its share of the probability without a value. Kiln scales
 * the fused attention's output by σ(lse − sink) instead of a second pass; this
 * checks that against an independent float64 softmax over [scores, sink], at
 * prefill, through the KV cache at decode (where long caches split the keys
 * over workgroups, flash-decoding), with a sliding window, f32 and f16, on the
 * CPU-rasteriser kernels and the GPU-shaped ones.
 */

import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { requestDevice } from "../runtime/device.ts";
import { attentionBlock } from "../models/attention.ts";
import type { DType } from "../core/dtype.ts";
import { assertClose, gpu, randomData } from "./_util.ts";

/** softmax([q·k·scale over visible keys, sink])[keys] · v, then o_proj; float64. */
function reference(
  x: ArrayLike<number>,
  N: number,
  p: Record<string, ArrayLike<number>>,
  s: { hidden: number; H: number; Hkv: number; D: number; window: number },
): Float64Array {
  const { hidden, H, Hkv, D, window } = s;
  const proj = (w: ArrayLike<number>, out: number) => {
    const r = new Float64Array(N * out);
    for (let t = 0; t < N; t++) {
      for (let o = 0; o < out; o++) {
        let acc = 0;
        for (let i = 0; i < hidden; i++) acc += x[t * hidden + i] * w[o * hidden + i];
        r[t * out + o] = acc;
      }
    }
    return r;
  };
  const q = proj(p["attn.q_proj.weight"], H * D);
  const k = proj(p["attn.k_proj.weight"], Hkv * D);
  const v = proj(p["attn.v_proj.weight"], Hkv * D);
  const ctx = new Float64Array(N * H * D);
  for (let t = 0; t < N; t++) {
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / (H / Hkv));
      const first = window > 0 ? Math.max(0, t - window + 1) : 0;
      const scores: number[] = [];
      for (let j = first; j <= t; j++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[(t * H + h) * D + d] * k[(j * Hkv + kh) * D + d];
        scores.push(dot / Math.sqrt(D));
      }
      const sink = p["attn.sinks"][h];
      const mx = Math.max(sink, ...scores);
      const e = scores.map((z) => Math.exp(z - mx));
      const z = e.reduce((a, b) => a + b, 0) + Math.exp(sink - mx);
      e.forEach((w, i) => {
        for (let d = 0; d < D; d++) {
          ctx[(t * H + h) * D + d] += (w / z) * v[((first + i) * Hkv + kh) * D + d];
        }
      });
    }
  }
  const out = new Float64Array(N * hidden);
  for (let t = 0; t < N; t++) {
    for (let o = 0; o < hidden; o++) {
      let acc = 0;
      for (let i = 0; i < H * D; i++) {
        acc += ctx[t * H * D + i] * p["attn.o_proj.weight"][o * H * D + i];
      }
      out[t * hidden + o] = acc;
    }
  }
  return out;
}

Deno.test("attention sinks: prefill and decode through the cache match softmax over [scores, sink]", async () => {
  const devices = [await gpu(), await requestDevice({ limits: { cpuCores: 0 } })];
  const hidden = 24, H = 6, Hkv = 2, D = 12, maxSeq = 640;
  for (const device of devices) {
    for (
      const [L, M, window, dtype] of [[37, 3, 0, "f32"], [301, 4, 0, "f32"], [
        45,
        3,
        9,
        "f16",
      ]] as const
    ) {
      const g = new GraphBuilder();
      const dt = dtype as DType;
      g.output(
        "y",
        attentionBlock(g, g.input("x", ["T", hidden], dt), g.input("pos", [1], "u32"), {
          name: "attn",
          heads: H,
          kvHeads: Hkv,
          headDim: D,
          ropeTheta: null,
          slidingWindow: window,
          maxSeq,
          sinks: true,
        }),
      );
      const f32 = {
        "attn.q_proj.weight": randomData(H * D * hidden, "f32", 1, -0.5, 0.5),
        "attn.k_proj.weight": randomData(Hkv * D * hidden, "f32", 2, -0.5, 0.5),
        "attn.v_proj.weight": randomData(Hkv * D * hidden, "f32", 3, -0.5, 0.5),
        "attn.o_proj.weight": randomData(hidden * H * D, "f32", 4, -0.5, 0.5),
        // Sinks from far below to above the scores: from no effect to most of the mass.
        "attn.sinks": Float32Array.from({ length: H }, (_, h) => -6 + 2.5 * h),
      };
      const cast = (
        a: ArrayLike<number>,
      ) => (dt === "f16" ? Float16Array.from(a) : Float32Array.from(a));
      const params = Object.fromEntries(
        Object.entries(f32).map(([n, a]) => [n, n === "attn.sinks" ? a : cast(a)]),
      );
      const N = L + M;
      const xs = randomData(N * hidden, dt, 5);
      const want = reference(
        Array.from(xs, Number),
        N,
        Object.fromEntries(Object.entries(params).map(([n, a]) => [n, Array.from(a, Number)])),
        { hidden, H, Hkv, D, window },
      );
      const tol = dt === "f16" ? 2e-2 : 1e-4;
      const what = `${
        device.caps.cpuCores === 0 ? "GPU-shaped" : "CPU"
      } L=${L} window=${window} ${dtype}`;
      const exe = compile(g.build(), device, { params });
      const { y: pre } = await exe.run({ x: xs.slice(0, L * hidden), pos: new Uint32Array([0]) });
      assertClose(pre.data, want.slice(0, L * hidden), tol, tol, `prefill, ${what}`);
      for (let s = 0; s < M; s++) {
        const t = L + s;
        const { y } = await exe.run({
          x: xs.slice(t * hidden, (t + 1) * hidden),
          pos: new Uint32Array([t]),
        });
        assertClose(
          y.data,
          want.slice(t * hidden, (t + 1) * hidden),
          tol,
          tol,
          `step ${s}, ${what}`,
        );
      }
      exe.dispose();
    }
  }
});

Deno.test("attention sinks: the sink changes the output, and its shape is checked", async () => {
  // The same block without sinks differs by far more than the tolerance above.
  const hidden = 16, H = 2;
  const build = (sinks: boolean) => {
    const g = new GraphBuilder();
    g.output(
      "y",
      attentionBlock(g, g.input("x", ["T", hidden]), g.input("pos", [1], "u32"), {
        name: "attn",
        heads: H,
        ropeTheta: null,
        sinks,
      }),
    );
    return g.build();
  };
  const params = {
    "attn.q_proj.weight": randomData(hidden * hidden, "f32", 1, -0.5, 0.5),
    "attn.k_proj.weight": randomData(hidden * hidden, "f32", 2, -0.5, 0.5),
    "attn.v_proj.weight": randomData(hidden * hidden, "f32", 3, -0.5, 0.5),
    "attn.o_proj.weight": randomData(hidden * hidden, "f32", 4, -0.5, 0.5),
  };
  const device = await gpu();
  const x = randomData(5 * hidden, "f32", 6);
  const plain = compile(build(false), device, { params });
  const sunk = compile(build(true), device, {
    params: { ...params, "attn.sinks": Float32Array.of(0.5, 1) },
  });
  const a = (await plain.run({ x, pos: new Uint32Array([0]) })).y.data;
  const b = (await sunk.run({ x, pos: new Uint32Array([0]) })).y.data;
  const diff = Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));
  assert.ok(diff > 1e-2, `sinks moved the output by only ${diff}`);
  assert.throws(
    () => sunk.setParams({ "attn.sinks": new Float32Array(3) }),
    /attn\.sinks/,
  );
  plain.dispose();
  sunk.dispose();
});
