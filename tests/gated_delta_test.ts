/**
 * The `gated_delta` op (Gated DeltaNet's recurrence) and its mixer: the WGSL
 * kernel against the CPU reference at awkward sizes (grouped value heads, an
 * initial state, padded rows, f16 activations); the reference against an
 * independent chunked form (transformers' `torch_chunk_gated_delta_rule`'s
 * algorithm: WY-transformed chunks, states between them); the mixer's
 * prefill, decode and a prompt in pieces against one stateless pass.
 */

import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { gatedDeltaNetMixer, gatedDeltaRule } from "../models/gated_delta_net.ts";
import { referenceGatedDelta } from "../ops/delta/gated_delta.ts";
import type { HostTensor } from "../core/types.ts";
import { assertClose, gpu, randomData, runBoth } from "./_util.ts";

const host = (data: Float32Array, shape: number[]): HostTensor => ({ data, shape, dtype: "f32" });

/** g and β side by side, the op's `[B, T, Hv, 2]` operand. */
function pairs(g: Float32Array, beta: Float32Array, shape: number[]): HostTensor {
  const data = new Float32Array(g.length * 2);
  g.forEach((v, i) => {
    data[2 * i] = v;
    data[2 * i + 1] = beta[i];
  });
  return host(data, [...shape, 2]);
}

/** Normalised rows of `dk` (the mixer's l2norm), so the recurrence stays bounded. */
function unitRows(n: number, dk: number, seed: number, scale = 1): Float32Array {
  const x = randomData(n * dk, "f32", seed, -1, 1) as Float32Array;
  for (let r = 0; r < n; r++) {
    let ss = 0;
    for (let i = 0; i < dk; i++) ss += x[r * dk + i] ** 2;
    for (let i = 0; i < dk; i++) x[r * dk + i] *= scale / Math.sqrt(ss + 1e-6);
  }
  return x;
}

function inputs(
  B: number,
  T: number,
  Hk: number,
  Hv: number,
  dk: number,
  dv: number,
  seed: number,
) {
  return {
    q: unitRows(B * T * Hk, dk, seed, 1 / Math.sqrt(dk)),
    k: unitRows(B * T * Hk, dk, seed + 1),
    v: randomData(B * T * Hv * dv, "f32", seed + 2, -1, 1) as Float32Array,
    g: randomData(B * T * Hv, "f32", seed + 3, -1.5, -0.01) as Float32Array,
    beta: randomData(B * T * Hv, "f32", seed + 4, 0.05, 0.95) as Float32Array,
  };
}

Deno.test("gated_delta: the kernel equals the CPU reference (grouped heads, state, padding, f16)", async () => {
  const cases = [
    { B: 2, T: 37, Hk: 3, Hv: 6, dk: 5, dv: 7, state: true, last: 30, dtype: "f32" as const },
    { B: 1, T: 1, Hk: 2, Hv: 2, dk: 16, dv: 3, state: true, last: -1, dtype: "f32" as const },
    { B: 1, T: 65, Hk: 1, Hv: 4, dk: 8, dv: 8, state: false, last: -1, dtype: "f32" as const },
    { B: 2, T: 9, Hk: 2, Hv: 4, dk: 6, dv: 5, state: true, last: -1, dtype: "f16" as const },
  ];
  for (const c of cases) {
    const { B, T, Hk, Hv, dk, dv } = c;
    const g = new GraphBuilder();
    const t = (name: string, shape: (number | string)[]) => g.input(name, shape, c.dtype);
    const q = t("q", [B, "T", Hk, dk]), k = t("k", [B, "T", Hk, dk]);
    const v = t("v", [B, "T", Hv, dv]),
      decay = t("g", [B, "T", Hv]),
      beta = t("beta", [B, "T", Hv]);
    const s0 = c.state ? g.input("s0", [B, Hv, dk, dv]) : undefined;
    const last = c.last >= 0 ? g.input("last", [1], "u32") : undefined;
    const [y, s] = gatedDeltaRule(q, k, v, decay, beta, { initialState: s0, last });
    g.output("y", y);
    g.output("s", s);
    const x: Record<string, Float32Array | Uint32Array> = inputs(B, T, Hk, Hv, dk, dv, 11 + T);
    if (s0) x.s0 = randomData(B * Hv * dk * dv, "f32", 5, -0.5, 0.5) as Float32Array;
    if (last) x.last = Uint32Array.of(c.last);
    const { gpu: got, cpu } = await runBoth(g.build(), x, {}, { T });
    const what = JSON.stringify(c);
    const tol = c.dtype === "f16" ? 2e-2 : 2e-5;
    assertClose(got.y.data, cpu.y.data, tol, tol, `${what}: y`);
    assertClose(got.s.data, cpu.s.data, tol, tol, `${what}: state`);
    if (last) {
      // Rows after `last` leave the state as it was after row `last`.
      const cut = (a: Float32Array, n: number) => a.slice(0, n);
      const sub = (name: string, per: number) => {
        const src = x[name] as Float32Array, out = new Float32Array(B * (c.last + 1) * per);
        for (let b = 0; b < B; b++) {
          out.set(src.subarray(b * T * per, (b * T + c.last + 1) * per), b * (c.last + 1) * per);
        }
        return out;
      };
      const n = c.last + 1;
      const [, sShort] = referenceGatedDelta([
        host(sub("q", Hk * dk), [B, n, Hk, dk]),
        host(sub("k", Hk * dk), [B, n, Hk, dk]),
        host(sub("v", Hv * dv), [B, n, Hv, dv]),
        pairs(sub("g", Hv), sub("beta", Hv), [B, n, Hv]),
        host(x.s0 as Float32Array, [B, Hv, dk, dv]),
      ], { initialState: true, last: false });
      assertClose(cut(got.s.data as Float32Array, sShort.length), sShort, 2e-5, 2e-5, "padding");
    }
  }
});

/**
 * The chunked form of the gated delta rule (Yang et al.'s WY representation, the
 * algorithm of transformers' `torch_chunk_gated_delta_rule`), in float64: one
 * head, q already scaled. Returns y `[T, dv]`.
 */
function chunkedDelta(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  g: Float64Array,
  beta: Float64Array,
  T: number,
  dk: number,
  dv: number,
  C: number,
): Float64Array {
  const S = new Float64Array(dk * dv), y = new Float64Array(T * dv);
  const dot = (a: Float64Array, ai: number, b: Float64Array, bi: number) => {
    let s = 0;
    for (let i = 0; i < dk; i++) s += a[ai + i] * b[bi + i];
    return s;
  };
  for (let c0 = 0; c0 < T; c0 += C) {
    const n = Math.min(C, T - c0);
    const G = new Float64Array(n); // cumulative log-decay within the chunk
    for (let i = 0; i < n; i++) G[i] = (i ? G[i - 1] : 0) + g[c0 + i];
    // A = −(β_i k_i·k_j e^{G_i−G_j}) strictly below the diagonal, then (I − A)⁻¹ by substitution.
    const A = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < i; j++) {
        A[i * n + j] = -beta[c0 + i] * dot(k, (c0 + i) * dk, k, (c0 + j) * dk) *
          Math.exp(G[i] - G[j]);
      }
    }
    for (let i = 1; i < n; i++) {
      for (let j = 0; j < i; j++) {
        let s = A[i * n + j];
        for (let m = j + 1; m < i; m++) s += A[i * n + m] * A[m * n + j];
        A[i * n + j] = s;
      }
    }
    for (let i = 0; i < n; i++) A[i * n + i] = 1;
    // u = A·(β v), w = A·(β k e^{G}); v' = u − w·S.
    const vNew = new Float64Array(n * dv), kDec = new Float64Array(n * dk);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        const a = A[i * n + j], bj = beta[c0 + j];
        for (let e = 0; e < dv; e++) vNew[i * dv + e] += a * bj * v[(c0 + j) * dv + e];
        for (let e = 0; e < dk; e++) {
          kDec[i * dk + e] += a * bj * Math.exp(G[j]) * k[(c0 + j) * dk + e];
        }
      }
      for (let e = 0; e < dv; e++) {
        let s = 0;
        for (let f = 0; f < dk; f++) s += kDec[i * dk + f] * S[f * dv + e];
        vNew[i * dv + e] -= s;
      }
    }
    for (let i = 0; i < n; i++) {
      for (let e = 0; e < dv; e++) {
        let s = 0;
        for (let f = 0; f < dk; f++) s += q[(c0 + i) * dk + f] * Math.exp(G[i]) * S[f * dv + e];
        for (let j = 0; j <= i; j++) {
          s += dot(q, (c0 + i) * dk, k, (c0 + j) * dk) * Math.exp(G[i] - G[j]) * vNew[j * dv + e];
        }
        y[(c0 + i) * dv + e] = s;
      }
    }
    const Gn = G[n - 1];
    for (let f = 0; f < dk; f++) {
      for (let e = 0; e < dv; e++) {
        let s = S[f * dv + e] * Math.exp(Gn);
        for (let j = 0; j < n; j++) {
          s += k[(c0 + j) * dk + f] * Math.exp(Gn - G[j]) * vNew[j * dv + e];
        }
        S[f * dv + e] = s;
      }
    }
  }
  return y;
}

Deno.test("gated_delta: the step-by-step reference equals the chunked (WY) form at several chunk sizes", () => {
  const T = 23, dk = 6, dv = 4;
  const x = inputs(1, T, 1, 1, dk, dv, 3);
  const [y] = referenceGatedDelta(
    [
      host(x.q, [1, T, 1, dk]),
      host(x.k, [1, T, 1, dk]),
      host(x.v, [1, T, 1, dv]),
      pairs(x.g, x.beta, [1, T, 1]),
    ],
    { initialState: false, last: false },
  );
  const f = (a: Float32Array) => Float64Array.from(a);
  for (const C of [1, 4, 8, 64]) {
    const want = chunkedDelta(f(x.q), f(x.k), f(x.v), f(x.g), f(x.beta), T, dk, dv, C);
    assertClose(y, want, 1e-6, 1e-6, `chunk ${C}`);
  }
  // The delta term matters: without it (β = 0) the output is the decayed zero state.
  assert.ok(Array.from(y).some((v) => Math.abs(v) > 1e-2));
});

const D = 20, HK = 2, HV = 4, DK = 6, DV = 5, CONV = 3;

function mixerWeights(seed: number): Record<string, Float32Array> {
  const r = (n: number, s: number, lo = -0.4, hi = 0.4) =>
    randomData(n, "f32", seed * 31 + s, lo, hi) as Float32Array;
  const conv = 2 * HK * DK + HV * DV;
  return {
    "m.in_proj_qkvz.weight": r((2 * HK * DK + 2 * HV * DV) * D, 1),
    "m.in_proj_ba.weight": r(2 * HV * D, 2),
    "m.conv1d.weight": r(conv * CONV, 3, -0.6, 0.6),
    "m.dt_bias": r(HV, 4, -1, 1),
    "m.A_log": r(HV, 5, -1, 1),
    "m.norm.weight": r(DV, 6, 0.8, 1.2),
    "m.out_proj.weight": r(D * HV * DV, 7),
  };
}

function mixerGraph(mode: "prefill" | "decode" | "stateless", B: number) {
  const g = new GraphBuilder();
  const x = g.input("x", [B, mode === "decode" ? 1 : "L", D]);
  g.output(
    "y",
    gatedDeltaNetMixer(g, x, {
      name: "m",
      d: D,
      keyHeads: HK,
      valueHeads: HV,
      keyDim: DK,
      valueDim: DV,
      convKernel: CONV,
      mode,
    }),
  );
  return g.build();
}

Deno.test("Gated DeltaNet mixer: prefill, decode and a prompt in pieces equal one stateless pass", async () => {
  const B = 2, L = 19, M = 4, T = L + M;
  const dev = await gpu();
  const w = mixerWeights(2);
  const x = randomData(B * T * D, "f32", 9, -1, 1) as Float32Array;
  const rows = (t0: number, t1: number, src: Float32Array) => {
    const out = new Float32Array(B * (t1 - t0) * D);
    for (let b = 0; b < B; b++) {
      out.set(src.subarray((b * T + t0) * D, (b * T + t1) * D), b * (t1 - t0) * D);
    }
    return out;
  };
  const full = compile(mixerGraph("stateless", B), dev, { params: w });
  const want = (await full.run({ x })).y.data as Float32Array;
  full.dispose();
  const pre = compile(mixerGraph("prefill", B), dev, { params: w });
  const dec = compile(mixerGraph("decode", B), dev, { params: w });
  try {
    const yp = (await pre.run({ x: rows(0, L, x) })).y;
    assertClose(yp.data, rows(0, L, want), 1e-4, 1e-5, "prefill");
    for (const s of ["m.conv_state", "m.ssm_state"]) {
      dec.writeState(s, (await pre.readState(s)).data);
    }
    for (let t = L; t < T; t++) {
      const { y } = await dec.run({ x: rows(t, t + 1, x) });
      assertClose(y.data, rows(t, t + 1, want), 1e-4, 1e-5, `decode token ${t}`);
    }
    pre.resetStates();
    await pre.run({ x: rows(0, 7, x) });
    const y2 = (await pre.run({ x: rows(7, T, x) })).y;
    assertClose(y2.data, rows(7, T, want), 1e-4, 1e-5, "a prompt in two pieces");
  } finally {
    pre.dispose();
    dec.dispose();
  }
});

Deno.test("gated_delta: bad operands are refused by name", () => {
  const g = new GraphBuilder();
  const q = g.input("q", [1, "T", 2, 4]), v = g.input("v", [1, "T", 3, 4]);
  const gg = g.input("g", [1, "T", 3]), b = g.input("b", [1, "T", 3]);
  assert.throws(
    () => gatedDeltaRule(q, q, v, gg, b),
    /value heads 3 must be a multiple of key heads 2/,
  );
  const v4 = g.input("v4", [1, "T", 4, 4]);
  assert.throws(() => gatedDeltaRule(q, q, v4, gg, b), /g must be \[B, T, 4\] \(v's heads\)/);
  const g4 = g.input("g4", [1, "T", 4]);
  const s = g.input("s", [1, 4, 4, 5]);
  assert.throws(
    () => gatedDeltaRule(q, q, v4, g4, g4, { initialState: s }),
    /state must be f32 \[1, 4, 4, 4\]/,
  );
  assert.throws(
    () => gatedDeltaRule(q, q, v4, g4, g4, { last: g.input("l", [1]) }),
    /last must be u32 \[1\]/,
  );
});
