import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import type { DType, HostArray } from "../core/dtype.ts";
import { attentionBlock } from "../models/attention.ts";
import { cpuDevice } from "../runtime/device.ts";
import { assertClose, gpu, largestTensor, randomData } from "./_util.ts";

// ---------------------------------------------------------------------------
// Independent float64 references, written from the HF definitions, not from the
// op's code.

/**
 * HF `apply_rotary_pos_emb` on x [T, H, D] (f32 inv_freq and angle, as torch
 * computes them); `scaled` replaces θ's frequencies and multiplies cos and sin.
 */
function refRope(
  x: ArrayLike<number>,
  T: number,
  H: number,
  D: number,
  pos: number,
  theta: number,
  scaled?: { invFreq: ArrayLike<number>; scale: number },
) {
  const half = D / 2;
  const invFreq = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    invFreq[i] = scaled ? scaled.invFreq[i] : 1 / Math.fround(theta ** Math.fround((2 * i) / D));
  }
  const m = scaled?.scale ?? 1;
  const out = new Float64Array(T * H * D);
  for (let t = 0; t < T; t++) {
    // emb = cat(freqs, freqs); cos/sin of it.
    const emb = new Float64Array(D);
    for (let i = 0; i < half; i++) emb[i] = emb[i + half] = Math.fround((pos + t) * invFreq[i]);
    for (let h = 0; h < H; h++) {
      const b = (t * H + h) * D;
      const rot = new Float64Array(D); // rotate_half: cat(-x2, x1)
      for (let i = 0; i < half; i++) {
        rot[i] = -x[b + half + i];
        rot[i + half] = x[b + i];
      }
      for (let d = 0; d < D; d++) {
        out[b + d] = x[b + d] * Math.cos(emb[d]) * m + rot[d] * Math.sin(emb[d]) * m;
      }
    }
  }
  return out;
}

interface AttnCase {
  T: number;
  S: number;
  Hq: number;
  Hkv: number;
  D: number;
  pos: number;
  causal: boolean;
  window: number;
}

/** Naive softmax(q·kᵀ/√D + mask)·v, key j at position j, query t at pos + t. */
function refAttention(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  c: AttnCase,
  scale = 1 / Math.sqrt(c.D),
) {
  const { T, S, Hq, Hkv, D, pos } = c;
  const out = new Float64Array(T * Hq * D);
  const keys = Math.min(S, pos + T); // rows past pos + T are unwritten cache
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < Hq; h++) {
      const kh = Math.floor(h / (Hq / Hkv));
      const scores: number[] = [];
      for (let j = 0; j < keys; j++) {
        const masked = (c.causal && j > pos + t) || (c.window > 0 && pos + t - j >= c.window);
        let s = 0;
        for (let d = 0; d < D; d++) s += q[(t * Hq + h) * D + d] * k[(j * Hkv + kh) * D + d];
        scores.push(masked ? -Infinity : s * scale);
      }
      const mx = Math.max(...scores);
      const e = scores.map((s) => (s === -Infinity ? 0 : Math.exp(s - mx)));
      const z = e.reduce((a, b) => a + b, 0);
      for (let j = 0; j < keys; j++) {
        for (let d = 0; d < D; d++) {
          out[(t * Hq + h) * D + d] += (e[j] / z) * v[(j * Hkv + kh) * D + d];
        }
      }
    }
  }
  return out;
}

function toDtype(a: ArrayLike<number>, dtype: DType): HostArray {
  return dtype === "f16" ? Float16Array.from(a) : Float32Array.from(a);
}

// ---------------------------------------------------------------------------

Deno.test("rope matches HF apply_rotary_pos_emb (f32 and f16, large positions)", async () => {
  const dev = await gpu();
  const cases: [number, number, number, number, number, DType][] = [
    [7, 3, 16, 0, 10000, "f32"],
    [5, 2, 128, 5000, 1e6, "f32"],
    [3, 4, 64, 8190, 10000, "f32"],
    [9, 2, 64, 300, 1e6, "f16"],
  ];
  for (const [T, H, D, p, theta, dtype] of cases) {
    const g = new GraphBuilder();
    const x = g.input("x", ["T", H, D], dtype);
    const pos = g.input("pos", [1], "u32");
    g.output("y", x.rope(pos, theta));
    const exe = compile(g.build(), dev);
    const xs = randomData(T * H * D, dtype, T + D);
    const { y } = await exe.run({ x: xs, pos: new Uint32Array([p]) });
    const ref = refRope(xs, T, H, D, p, theta);
    const tol = dtype === "f16" ? 4e-3 : 2e-5;
    assertClose(y.data, ref, tol, tol, `rope T=${T} D=${D} pos=${p} ${dtype}`);
    exe.dispose();
  }
});

Deno.test("rope with given frequencies and a cos/sin factor (RoPE scaling) matches HF", async () => {
  const dev = await gpu();
  for (const [T, H, D, p, dtype] of [[5, 3, 12, 700, "f32"], [4, 2, 32, 33, "f16"]] as const) {
    // Arbitrary frequencies (not θ's): a kernel that ignored them would fail.
    const invFreq = Float32Array.from({ length: D / 2 }, (_, i) => 0.9 / (i + 1) ** 1.7);
    const scaled = { invFreq, scale: 1.1386 };
    const g = new GraphBuilder();
    const x = g.input("x", ["T", H, D], dtype);
    const pos = g.input("pos", [1], "u32");
    g.output("y", x.rope(pos, 1e4, scaled));
    const exe = compile(g.build(), dev);
    const xs = randomData(T * H * D, dtype, D);
    const { y } = await exe.run({ x: xs, pos: new Uint32Array([p]) });
    const ref = refRope(xs, T, H, D, p, 1e4, scaled);
    const tol = dtype === "f16" ? 4e-3 : 2e-5;
    assertClose(y.data, ref, tol, tol, `scaled rope D=${D} ${dtype}`);
    // The CPU reference of the op agrees too.
    const cpu = await compile(exe.graph, cpuDevice()).run({
      x: xs,
      pos: new Uint32Array([p]),
    });
    assertClose(cpu.y.data, ref, tol, tol, `scaled rope CPU D=${D} ${dtype}`);
    exe.dispose();
  }
  const g = new GraphBuilder();
  const q = g.input("q", [2, 2, 8]);
  const pos = g.input("pos", [1], "u32");
  assert.throws(
    () => q.rope(pos, 1e4, { invFreq: [1, 2, 3] }),
    /invFreq must hold rotaryDim \/ 2 = 4/,
  );
  assert.throws(
    () => q.rope(pos, 1e4, { invFreq: [1, 2, 3, NaN] }),
    /rope: attribute "invFreq" must be finite, got \[1, 2, 3, NaN\]/,
  );
  assert.throws(() => q.rope(pos, 1e4, { invFreq: [1, 1, 1, 1], scale: -1 }), /scale must be/);
});

Deno.test("partial rope rotates each head's first rotaryDim values as HF does, and passes the rest", async () => {
  // HF (GLM, Bamba): q_rot, q_pass = q[..., :R], q[..., R:]; rope over R; cat again.
  const dev = await gpu();
  const cases: [number, number, number, number, number, DType][] = [
    [7, 3, 24, 8, 900, "f32"],
    [5, 2, 10, 4, 0, "f32"],
    [3, 5, 64, 32, 8191, "f32"],
    [4, 2, 12, 2, 17, "f16"],
    [6, 1, 16, 16, 5, "f32"],
  ];
  for (const [T, H, D, R, p, dtype] of cases) {
    const g = new GraphBuilder();
    const x = g.input("x", ["T", H, D], dtype);
    const pos = g.input("pos", [1], "u32");
    g.output("y", x.mul(2).rope(pos, 500, undefined, R).add(1));
    const exe = compile(g.build(), dev);
    const xs = randomData(T * H * D, dtype, T + D + R);
    const { y } = await exe.run({ x: xs, pos: new Uint32Array([p]) });
    // The reference: the rotated slice as a head of R values, the rest as it was.
    const rotIn = new Float64Array(T * H * R);
    for (let r = 0; r < T * H; r++) {
      for (let d = 0; d < R; d++) rotIn[r * R + d] = 2 * xs[r * D + d];
    }
    const rotOut = refRope(rotIn, T, H, R, p, 500);
    const want = new Float64Array(T * H * D);
    for (let r = 0; r < T * H; r++) {
      for (let d = 0; d < D; d++) {
        want[r * D + d] = 1 + (d < R ? rotOut[r * R + d] : 2 * xs[r * D + d]);
      }
    }
    const tol = dtype === "f16" ? 8e-3 : 2e-5;
    assertClose(y.data, want, tol, tol, `partial rope D=${D} R=${R} ${dtype}`);
    const cpu = await compile(exe.graph, cpuDevice()).run({ x: xs, pos: new Uint32Array([p]) });
    assertClose(cpu.y.data, want, tol, tol, `partial rope CPU D=${D} R=${R} ${dtype}`);
    exe.dispose();
  }
  const g = new GraphBuilder();
  const q = g.input("q", [2, 2, 8]);
  const pos = g.input("pos", [1], "u32");
  assert.throws(
    () => q.rope(pos, 1e4, undefined, 3),
    /rotaryDim must be an even number from 2 to headDim 8, got 3/,
  );
  assert.throws(() => q.rope(pos, 1e4, undefined, 10), /rotaryDim must be an even number/);
  assert.throws(
    () => q.rope(pos, 1e4, { invFreq: [1, 2, 3, 4] }, 4),
    /invFreq must hold rotaryDim \/ 2 = 2 finite numbers/,
  );
});

Deno.test("rope fuses an elementwise prologue and epilogue into its kernel", async () => {
  const dev = await gpu();
  const g = new GraphBuilder();
  const x = g.input("x", [4, 2, 8]);
  const b = g.input("b", [8]);
  const pos = g.input("pos", [1], "u32");
  g.output("y", x.add(b).rope(pos, 100).mul(2));
  const exe = compile(g.build(), dev);
  const xs = randomData(64, "f32", 1), bs = randomData(8, "f32", 2);
  const { y } = await exe.run({ x: xs, b: bs, pos: new Uint32Array([3]) });
  assert.equal(exe.lastPlan!.kernels.length, 1);
  const xb = Array.from(xs, (v, i) => v + bs[i % 8]);
  assertClose(y.data, refRope(xb, 4, 2, 8, 3, 100).map((v) => 2 * v), 2e-5, 2e-5, "fused rope");
  exe.dispose();
});

Deno.test("fused attention matches naive softmax attention", async () => {
  const dev = await gpu();
  const cases: (AttnCase & { dtype?: DType; splits?: number })[] = [
    { T: 37, S: 37, Hq: 4, Hkv: 4, D: 16, pos: 0, causal: true, window: 0 },
    { T: 100, S: 100, Hq: 8, Hkv: 2, D: 64, pos: 0, causal: true, window: 16 },
    { T: 20, S: 20, Hq: 2, Hkv: 1, D: 16, pos: 0, causal: false, window: 0 },
    { T: 9, S: 9, Hq: 3, Hkv: 1, D: 20, pos: 0, causal: true, window: 0 }, // D % 4 ≠ 0
    { T: 130, S: 1000, Hq: 8, Hkv: 1, D: 128, pos: 700, causal: true, window: 0 },
    { T: 1, S: 1000, Hq: 8, Hkv: 2, D: 64, pos: 900, causal: true, window: 0 },
    { T: 1, S: 1000, Hq: 8, Hkv: 2, D: 64, pos: 0, causal: true, window: 0 },
    { T: 1, S: 1000, Hq: 4, Hkv: 4, D: 128, pos: 900, causal: true, window: 64 },
    { T: 3, S: 500, Hq: 8, Hkv: 8, D: 16, pos: 400, causal: true, window: 0, splits: 7 },
    { T: 2, S: 500, Hq: 4, Hkv: 1, D: 64, pos: 3, causal: true, window: 0, splits: 16 },
    { T: 50, S: 50, Hq: 8, Hkv: 2, D: 64, pos: 0, causal: true, window: 0, dtype: "f16" },
    { T: 1, S: 400, Hq: 8, Hkv: 1, D: 64, pos: 300, causal: true, window: 0, dtype: "f16" },
    { T: 2, S: 90, Hq: 3, Hkv: 1, D: 20, pos: 60, causal: true, window: 0, dtype: "f16" },
  ];
  for (const [n, c] of cases.entries()) {
    const dtype = c.dtype ?? "f32";
    const g = new GraphBuilder();
    const q = g.input("q", [c.T, c.Hq, c.D], dtype);
    const k = g.input("k", [c.S, c.Hkv, c.D], dtype);
    const v = g.input("v", [c.S, c.Hkv, c.D], dtype);
    const pos = g.input("pos", [1], "u32");
    g.output("o", g.attention(q, k, v, pos, c));
    const exe = compile(g.build(), dev);
    const qs = randomData(c.T * c.Hq * c.D, dtype, 10 * n + 1);
    const ks = randomData(c.S * c.Hkv * c.D, dtype, 10 * n + 2);
    const vs = randomData(c.S * c.Hkv * c.D, dtype, 10 * n + 3);
    // Unwritten cache rows hold garbage that must not leak into the result.
    for (let i = (c.pos + c.T) * c.Hkv * c.D; i < ks.length; i++) ks[i] = vs[i] = 1000;
    const { o } = await exe.run({ q: qs, k: ks, v: vs, pos: new Uint32Array([c.pos]) });
    const ref = refAttention(qs, ks, vs, c);
    const tol = dtype === "f16" ? 1e-2 : 2e-5;
    const what = `case ${n} ${JSON.stringify(c)} [${exe.lastPlan!.kernels.map((k) => k.label)}]`;
    assertClose(o.data, toDtype(ref, "f32"), tol, tol, what);
    exe.dispose();
  }
});

Deno.test("attention never materialises a score matrix at prefill", () => {
  const g = new GraphBuilder();
  const T = 1024, Hq = 2, D = 16;
  const q = g.input("q", ["T", Hq, D]);
  const k = g.input("k", ["T", 1, D]);
  const v = g.input("v", ["T", 1, D]);
  g.output("o", g.attention(q, k, v));
  return gpu().then((dev) => {
    const exe = compile(g.build(), dev);
    const plan = exe.plan({ T });
    const biggest = largestTensor(plan);
    assert.ok(biggest < T * T * 4, `a tensor of ${biggest} B ≥ T·S·4 = ${T * T * 4} B`);
    assert.deepEqual(plan.kernels.map((k) => k.label), ["attention"]);
    exe.dispose();
  });
});

Deno.test("prefill then decode through the KV cache equals one forward over all tokens", async () => {
  const dev = await gpu();
  const hidden = 64, H = 4, Hkv = 2, D = 16, L = 21, M = 6, maxSeq = 64, theta = 1e6;
  const build = (window: number) => {
    const g = new GraphBuilder();
    const x = g.input("x", ["T", hidden]);
    const pos = g.input("pos", [1], "u32");
    g.output(
      "y",
      attentionBlock(g, x, pos, {
        name: "attn",
        heads: H,
        kvHeads: Hkv,
        ropeTheta: theta,
        slidingWindow: window,
        maxSeq,
      }),
    );
    return g.build();
  };
  const params = {
    "attn.q_proj.weight": randomData(H * D * hidden, "f32", 1, -0.3, 0.3),
    "attn.k_proj.weight": randomData(Hkv * D * hidden, "f32", 2, -0.3, 0.3),
    "attn.v_proj.weight": randomData(Hkv * D * hidden, "f32", 3, -0.3, 0.3),
    "attn.o_proj.weight": randomData(hidden * H * D, "f32", 4, -0.3, 0.3),
  };
  const xs = randomData((L + M) * hidden, "f32", 5);
  for (const window of [0, 8]) {
    const graph = build(window);
    // One forward over L + M tokens.
    const full = compile(graph, dev, { params });
    const { y: yFull } = await full.run({ x: xs, pos: new Uint32Array([0]) });
    // Independent reference of the whole block.
    const proj = (w: ArrayLike<number>, out: number, rows: number) => {
      const r = new Float64Array(rows * out);
      for (let t = 0; t < rows; t++) {
        for (let o = 0; o < out; o++) {
          let s = 0;
          for (let i = 0; i < hidden; i++) s += xs[t * hidden + i] * w[o * hidden + i];
          r[t * out + o] = s;
        }
      }
      return r;
    };
    const N = L + M;
    const qr = refRope(proj(params["attn.q_proj.weight"], H * D, N), N, H, D, 0, theta);
    const kr = refRope(proj(params["attn.k_proj.weight"], Hkv * D, N), N, Hkv, D, 0, theta);
    const vr = proj(params["attn.v_proj.weight"], Hkv * D, N);
    const a = refAttention(qr, kr, vr, { T: N, S: N, Hq: H, Hkv, D, pos: 0, causal: true, window });
    const yRef = new Float64Array(N * hidden);
    for (let t = 0; t < N; t++) {
      for (let o = 0; o < hidden; o++) {
        let s = 0;
        for (let i = 0; i < H * D; i++) {
          s += a[t * H * D + i] * params["attn.o_proj.weight"][o * H * D + i];
        }
        yRef[t * hidden + o] = s;
      }
    }
    assertClose(yFull.data, yRef, 1e-4, 1e-4, `full forward vs reference, window ${window}`);
    full.dispose();

    // Prefill L, then M single-token decode steps.
    const inc = compile(graph, dev, { params });
    const { y: yPre } = await inc.run({ x: xs.slice(0, L * hidden), pos: new Uint32Array([0]) });
    assertClose(yPre.data, yFull.data.slice(0, L * hidden), 1e-5, 1e-5, "prefill");
    for (let s = 0; s < M; s++) {
      const t = L + s;
      const { y } = await inc.run({
        x: xs.slice(t * hidden, (t + 1) * hidden),
        pos: new Uint32Array([t]),
      });
      assertClose(y.data, yFull.data.slice(t * hidden, (t + 1) * hidden), 1e-5, 1e-5, `step ${s}`);
    }
    const plan = inc.lastPlan!;
    // The decode plan appends in place: no copy of the cache before, between or after kernels.
    assert.equal(plan.after.length, 0);
    assert.ok(plan.kernels.every((k) => k.before.every((op) => op.kind !== "copy")));
    const kc = await inc.readState("attn.k_cache");
    assert.equal(kc.data.length, maxSeq * Hkv * D);
    assert.ok(Array.from(kc.data.slice((L + M) * Hkv * D)).every((v) => v === 0));
    inc.dispose();
  }
});

Deno.test("attention and rope reject bad shapes with precise errors", () => {
  const g = new GraphBuilder();
  const q = g.input("q", ["T", 6, 16]);
  const k = g.input("k", ["T", 4, 16]);
  const k8 = g.input("k8", ["T", 2, 8]);
  const v = g.input("v", ["T", 2, 16]);
  const pos = g.input("pos", [1], "u32");
  const posf = g.input("posf", [1]);
  assert.throws(
    () => g.attention(q, k, k),
    /query heads \(6\) must be a multiple of key\/value heads \(4\)/,
  );
  assert.throws(() => g.attention(q, k8, v), /headDim differs between q \(16\), k \(8\)/);
  assert.throws(() => g.attention(q, v, v, posf), /pos must be u32 \[1\]/);
  assert.throws(() => g.attention(q, v, v, pos, { causal: false, window: 4 }), /needs causal/);
  assert.throws(
    () => g.attention(q.reshape(["T", 96]), v, v),
    /q must be \[rows, heads, headDim\]/,
  );
  assert.throws(() => g.attention(q, v.cast("f16"), v), /dtypes differ/);
  assert.throws(
    () => q.slice(2, 0, 15).rope(pos),
    /headDim must be a concrete even number, got 15/,
  );
  assert.throws(() => q.rope(posf), /pos must be u32 \[1\]/);
  const x = g.input("x", ["T", 48]);
  assert.throws(
    () => attentionBlock(g, x, pos, { name: "a", heads: 6, kvHeads: 4 }),
    /attentionBlock "a": heads \(6\) must be a multiple of kvHeads \(4\)/,
  );
});
