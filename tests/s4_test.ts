import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { cpuDevice } from "../runtime/device.ts";
import {
  discretise,
  fft,
  hippoLegS,
  hippoLegSDiagonal,
  hippoLegSNplr,
  initS4,
  longConv,
  s4Choice,
  type S4Init,
  s4Kernel,
  s4KernelF64,
  s4Layer,
  type S4Mode,
  s4ParamRecord,
  type S4Params,
  storedStates,
} from "../models/s4.ts";
import { gpu, randomData } from "./_util.ts";

/** max |a − b| / max |b|: errors relative to the signal's scale. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let e = 0, m = 1e-30;
  for (let i = 0; i < a.length; i++) {
    e = Math.max(e, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return e / m;
}

/** y = K̄ ∗ x by the direct sum in float64 (x [B, T, H]). */
function directSumF64(
  p: S4Params,
  x: ArrayLike<number>,
  Bt: number,
  T: number,
  H: number,
  init: S4Init,
  disc: "zoh" | "bilinear",
) {
  const { conj } = storedStates(init, 2);
  const K = s4KernelF64(p.A, p.B, p.C, p.log_dt, T, disc, conj);
  const y = new Float64Array(Bt * T * H);
  for (let b = 0; b < Bt; b++) {
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        let acc = 0;
        for (let s = 0; s <= t; s++) acc += K[h * T + s] * x[(b * T + t - s) * H + h];
        y[(b * T + t) * H + h] = acc;
      }
    }
  }
  return y;
}

function s4Graph(
  H: number,
  N: number,
  init: S4Init,
  mode: S4Mode,
  disc: "zoh" | "bilinear",
  Bt: number | string = 2,
) {
  const g = new GraphBuilder();
  const x = g.input("x", [Bt, "T", H]);
  g.output("y", s4Layer(g, x, { name: "s4", H, N, init, mode, discretisation: disc, skip: false }));
  return g.build();
}

Deno.test("HiPPO-LegS matrix matches its formula; NPLR and diagonal forms are consistent", () => {
  const N = 8;
  const { A, B } = hippoLegS(N);
  for (let n = 0; n < N; n++) {
    assert.ok(Math.abs(B[n] - Math.sqrt(2 * n + 1)) < 1e-15);
    for (let k = 0; k < N; k++) {
      const want = n > k ? -Math.sqrt((2 * n + 1) * (2 * k + 1)) : n === k ? -(n + 1) : 0;
      assert.ok(Math.abs(A[n * N + k] - want) < 1e-12, `A[${n},${k}]`);
    }
  }
  assert.deepEqual([A[0], A[1], A[N], A[N + 1]].map((v) => +v.toFixed(6)), [-1, 0, -1.732051, -2]);
  const { S, P } = hippoLegSNplr(N);
  for (let n = 0; n < N; n++) {
    assert.ok(Math.abs(S[n * N + n] + 0.5) < 1e-12); // normal part: −½ on the diagonal
    for (let k = 0; k < N; k++) {
      assert.ok(Math.abs(S[n * N + k] - P[n] * P[k] - A[n * N + k]) < 1e-12); // A = S − PPᵀ
      if (n !== k) assert.ok(Math.abs(S[n * N + k] + S[k * N + n]) < 1e-12); // skew off-diagonal
    }
  }
  const lam = hippoLegSDiagonal(N);
  // Σ ω² over all N eigenvalues ±iω equals ‖K‖²_F / 1 (trace of KᵀK).
  let fro = 0;
  for (let n = 0; n < N; n++) for (let k = 0; k < N; k++) if (n !== k) fro += S[n * N + k] ** 2;
  let sw = 0;
  for (let k = 0; k < N / 2; k++) {
    assert.equal(lam[2 * k], -0.5);
    assert.ok(lam[2 * k + 1] > 0 && (k === 0 || lam[2 * k + 1] >= lam[2 * k - 1]));
    sw += 2 * lam[2 * k + 1] ** 2;
  }
  assert.ok(Math.abs(sw - fro) / fro < 1e-9, `${sw} vs ${fro}`);
  const lin = initS4({ H: 1, N: 4, init: "lin" });
  assert.deepEqual([...lin.A], [-0.5, 0, -0.5, Math.fround(Math.PI)]);
  const real = initS4({ H: 1, N: 3, init: "real" });
  assert.deepEqual([...real.A], [-1, 0, -2, 0, -3, 0]);
});

Deno.test("ZOH and bilinear discretisation of one state match hand-computed values, on the GPU too", async () => {
  const close = (a: readonly number[], b: readonly number[]) =>
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < 1e-12, `${a} vs ${b}`));
  // a = −1, b = 1, Δ = 0.5
  let z = discretise([-1, 0], [1, 0], 0.5, "zoh");
  close([...z.abar, ...z.bbar], [Math.exp(-0.5), 0, 1 - Math.exp(-0.5), 0]);
  z = discretise([-1, 0], [1, 0], 0.5, "bilinear");
  close([...z.abar, ...z.bbar], [0.6, 0, 0.4, 0]);
  // a = 2i, b = 1, Δ = 0.25: ZOH Ā = e^{i/2}, B̄ = (e^{i/2} − 1)/(2i)
  z = discretise([0, 2], [1, 0], 0.25, "zoh");
  close([...z.abar, ...z.bbar], [
    Math.cos(0.5),
    Math.sin(0.5),
    Math.sin(0.5) / 2,
    (1 - Math.cos(0.5)) / 2,
  ]);
  z = discretise([0, 2], [1, 0], 0.25, "bilinear"); // (1 + i/4)/(1 − i/4), (1/4)/(1 − i/4)
  close([...z.abar, ...z.bbar], [0.9375 / 1.0625, 0.5 / 1.0625, 0.25 / 1.0625, 0.0625 / 1.0625]);

  // K̄ₗ = Re(C·B̄·Āˡ) on the GPU for the same state (C = 1, no conjugate pair).
  for (const disc of ["zoh", "bilinear"] as const) {
    const g = new GraphBuilder();
    const [A, B, C] = ["A", "B", "C"].map((k) => g.param(k, [1, 1, 2]));
    g.output(
      "K",
      s4Kernel(g, A, B, C, g.param("log_dt", [1]), {
        length: 3,
        discretisation: disc,
        conj: false,
      }),
    );
    const exe = compile(g.build(), await gpu(), {
      params: { A: [-1, 0], B: [1, 0], C: [1, 0], log_dt: [Math.log(0.5)] },
    });
    const { K } = await exe.run({});
    const d = discretise([-1, 0], [1, 0], 0.5, disc);
    const want = [0, 1, 2].map((l) => d.bbar[0] * d.abar[0] ** l);
    [...K.data].forEach((v, l) =>
      assert.ok(Math.abs(v - want[l]) < 1e-6, `${disc} K[${l}] = ${v}, want ${want[l]}`)
    );
    exe.dispose();
  }
});

Deno.test("fft op matches a CPU DFT, forward and inverse, including non-power-of-two lengths", async () => {
  const dev = await gpu();
  for (const [L, n] of [[1, 1], [5, 8], [100, 128], [100, 256], [1000, 1024], [3000, 4096]]) {
    for (const inverse of [false, true]) {
      const lines = 3;
      const g = new GraphBuilder();
      g.output("X", fft(g, g.input("x", [lines, L, 2]), { n, inverse }));
      const x = randomData(lines * L * 2, "f32", L + n);
      const exe = compile(g.build(), dev);
      const { X } = await exe.run({ x });
      const want = new Float64Array(lines * n * 2);
      const sign = inverse ? 1 : -1;
      const cos = Float64Array.from({ length: n }, (_, j) => Math.cos((2 * Math.PI * j) / n));
      const sin = Float64Array.from(
        { length: n },
        (_, j) => sign * Math.sin((2 * Math.PI * j) / n),
      );
      for (let l = 0; l < lines; l++) {
        for (let k = 0; k < n; k++) {
          let re = 0, im = 0;
          for (let t = 0; t < L; t++) {
            const j = (k * t) % n;
            const [xr, xi] = [x[(l * L + t) * 2], x[(l * L + t) * 2 + 1]];
            re += xr * cos[j] - xi * sin[j];
            im += xr * sin[j] + xi * cos[j];
          }
          want[(l * n + k) * 2] = inverse ? re / n : re;
          want[(l * n + k) * 2 + 1] = inverse ? im / n : im;
        }
      }
      const e = relErr(X.data, want);
      assert.ok(e < 2e-6, `L=${L} n=${n} inverse=${inverse}: rel err ${e}`);
      exe.dispose();
    }
  }
});

Deno.test("fft_conv and direct_conv agree with the float64 causal sum (linear, not circular)", async () => {
  const dev = await gpu();
  for (const [T, Lk] of [[1, 1], [7, 7], [100, 30], [1000, 1000], [777, 1000]]) {
    const [Bt, H] = [2, 3];
    const x = randomData(Bt * T * H, "f32", T);
    const k = randomData(H * Lk, "f32", Lk + 1);
    const want = new Float64Array(Bt * T * H);
    for (let b = 0; b < Bt; b++) {
      for (let t = 0; t < T; t++) {
        for (let h = 0; h < H; h++) {
          let acc = 0;
          for (let s = 0; s <= Math.min(t, Lk - 1); s++) {
            acc += k[h * Lk + s] * x[(b * T + t - s) * H + h];
          }
          want[(b * T + t) * H + h] = acc;
        }
      }
    }
    for (const method of ["fft", "direct"] as const) {
      const g = new GraphBuilder();
      g.output("y", longConv(g, g.input("x", [Bt, T, H]), g.input("k", [H, Lk]), method));
      const exe = compile(g.build(), dev);
      const { y } = await exe.run({ x, k });
      const e = relErr(y.data, want);
      assert.ok(e < 1e-5, `${method} T=${T} Lk=${Lk}: rel err ${e}`);
      exe.dispose();
    }
  }
});

Deno.test("S4: FFT convolution, recurrence and direct sum agree with the float64 direct sum", async () => {
  const dev = await gpu();
  const cases: [number, S4Init, "zoh" | "bilinear"][] = [
    [1, "lin", "zoh"],
    [7, "lin", "bilinear"],
    [64, "legs", "zoh"],
    [64, "real", "bilinear"],
    [1000, "lin", "zoh"],
    [4099, "lin", "zoh"],
  ];
  for (const [T, init, disc] of cases) {
    const [Bt, H, N] = [2, 4, 8];
    const p = initS4({ H, N, init, seed: T });
    const x = randomData(Bt * T * H, "f32", T + 7);
    const want = directSumF64(p, x, Bt, T, H, init, disc);
    for (const mode of ["conv", "recurrent", "direct"] as const) {
      const exe = compile(s4Graph(H, N, init, mode, disc), dev, {
        params: s4ParamRecord("s4", p, false),
      });
      const { y } = await exe.run({ x });
      const e = relErr(y.data, want);
      assert.ok(e < 2e-4, `T=${T} ${init}/${disc} ${mode}: rel err ${e}`);
      exe.dispose();
    }
  }
});

Deno.test("S4 prefill by FFT convolution then decode by recurrence equals one convolution over L+M", async () => {
  const dev = await gpu();
  const [Bt, H, N, L, M] = [2, 3, 16, 200, 6];
  const p = initS4({ H, N, init: "lin", seed: 3 });
  const params = s4ParamRecord("s4", p);
  const g = new GraphBuilder();
  const x = g.input("x", [Bt, "T", H]);
  g.output("y", s4Layer(g, x, { name: "s4", H, N })); // auto, with D skip
  const exe = compile(g.build(), dev, { params });
  const full = randomData(Bt * (L + M) * H, "f32", 11);
  const slice = (t0: number, t1: number) => {
    const out = new Float32Array(Bt * (t1 - t0) * H);
    for (let b = 0; b < Bt; b++) {
      out.set(full.subarray((b * (L + M) + t0) * H, (b * (L + M) + t1) * H), b * (t1 - t0) * H);
    }
    return out;
  };
  const got = new Float32Array(Bt * (L + M) * H);
  const put = (y: ArrayLike<number>, t0: number, t1: number) => {
    for (let b = 0; b < Bt; b++) {
      for (let t = t0; t < t1; t++) {
        for (let h = 0; h < H; h++) {
          got[(b * (L + M) + t) * H + h] = y[(b * (t1 - t0) + t - t0) * H + h];
        }
      }
    }
  };
  put((await exe.run({ x: slice(0, L) })).y.data, 0, L);
  for (let t = L; t < L + M; t++) put((await exe.run({ x: slice(t, t + 1) })).y.data, t, t + 1);

  // One conv over L+M from a fresh state, and the float64 direct sum (+ D·x).
  exe.resetStates();
  const once = (await exe.run({ x: full })).y.data;
  const want = directSumF64(p, full, Bt, L + M, H, "lin", "zoh").map((v, i) =>
    v + p.D[i % H] * full[i]
  );
  assert.ok(relErr(got, want) < 2e-4, `prefill+decode: ${relErr(got, want)}`);
  assert.ok(relErr(once, want) < 2e-4, `full: ${relErr(once, want)}`);

  // The plan says which representation was chosen and why.
  const prefill = exe.inspect({ T: L });
  const decode = exe.inspect({ T: 1 });
  assert.match(prefill, /\[fft\] "s4" auto: T = 200 > 1 is prefill, FFT convolution \(n = 512\)/);
  assert.match(decode, /\[recurrent\] "s4" auto: T = 1 is decode/);
  assert.ok(!/fft_x/.test(decode));
  // Decode is one kernel that updates the state buffer in place.
  const plan = exe.plan({ T: 1 });
  const stateSlot = plan.states.get("s4.state")!.slot;
  assert.equal(plan.after.length, 0);
  assert.ok(
    plan.kernels[0].bindings.some((b) => b.slot === stateSlot && b.access === "read_write"),
  );
  assert.equal(s4Choice("auto", 1).representation, "recurrent");
  exe.dispose();

  // The CPU interpreter runs the same graph to the same numbers.
  const cpu = compile(g.build(), cpuDevice(), { params });
  assert.ok(relErr((await cpu.run({ x: full })).y.data, want) < 1e-5);
});

Deno.test("S4 and FFT ops raise clear errors for bad shapes and modes", () => {
  const g = new GraphBuilder();
  const x = g.input("x", [2, "T", 4]);
  assert.throws(
    () => s4Layer(g, x, { name: "a", H: 5, N: 8 }),
    /s4Layer "a": x must be \[B, T, H\] with H = 5/,
  );
  assert.throws(() => s4Layer(g, x, { name: "b", H: 4, N: 7 }), /N must be an even integer/);
  assert.throws(
    () => s4Layer(g, x, { name: "c", H: 4, N: 8, mode: "fast" as S4Mode }),
    /mode must be "auto", "conv", "recurrent" or "direct", got "fast"/,
  );
  assert.throws(
    () => s4Layer(g, x, { name: "d", H: 4, N: 8, discretisation: "euler" as "zoh" }),
    /discretisation must be "zoh" or "bilinear", got "euler"/,
  );
  const [A, B] = [g.param("A", [4, 4, 2]), g.param("B", [4, 3, 2])];
  const dt = g.param("dt", [4]);
  assert.throws(
    () =>
      g.apply("s4", [x, A, B, A, dt], {
        mode: "auto",
        discretisation: "zoh",
        conj: true,
        name: "",
      }),
    /B must have A's shape \[4, 4, 2\]/,
  );
  const st = g.state("st", [2, 4, 3, 2]);
  assert.throws(
    () =>
      g.apply("s4_state", [x, A, A, A, dt, st], {
        mode: "auto",
        discretisation: "zoh",
        conj: true,
        name: "",
      }),
    /state must be f32\[2, 4, 4, 2\] \(\[B, H, N2, 2\]\), got f32\[2, 4, 3, 2\]/,
  );
  assert.throws(
    () => fft(g, g.input("c", [3, 5, 2]), { n: 6 }),
    /fft: n must be a power of two, got 6/,
  );
  assert.throws(
    () => fft(g, g.input("r", [3, 5]), { n: 8 }),
    /complex pairs \[\.\.\., L, 2\], got \[3, 5\]/,
  );
  assert.throws(
    () => longConv(g, x, g.input("k", [3, 10])),
    /channels differ \(x has H = 4, k has 3\)/,
  );
  assert.throws(
    () => longConv(g, x, g.input("k2", [4, 10]), "slow" as "fft"),
    /method must be "fft" or "direct"/,
  );
  assert.throws(() => initS4({ H: 0, N: 4, init: "lin" }), /H must be >= 1, got 0/);
});
