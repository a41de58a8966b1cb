/**
 * Gradients of the S4 family: the long convolutions (FFT and direct), the DFT,
 * the Vandermonde kernel generation and the `s4` op, against central finite
 * differences in float64 at awkward sizes, and on the GPU against those
 * gradients, at L = 1024 too.
 */

import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { type DType, withFloat64Host } from "../core/dtype.ts";
import type { Dim } from "../core/shape.ts";
import type { Tensor } from "../compiler/tensor.ts";
import { s4KernelGradF64 } from "../ops/s4/grad.ts";
import { s4KernelF64 } from "../ops/s4/mod.ts";
import { checkGrad, type CheckInput } from "./grad_check.ts";
import { assertClose, rng, runBoth } from "./_util.ts";
import { initS4, s4Layer, s4ParamRecord } from "../models/s4.ts";

const H = 3, N2 = 4, L = 13;

/** S4D parameters with Re A < 0 (stable, and the bilinear denominator away from 0). */
function params(seed: number, logDt: number[]): Record<string, CheckInput> {
  const r = rng(seed);
  const A = Array.from(
    { length: H * N2 * 2 },
    (_, i) => i % 2 === 0 ? -0.1 - 0.9 * r() : 6 * r() - 3,
  );
  return {
    A: { shape: [H, N2, 2], data: A },
    B: { shape: [H, N2, 2] },
    C: { shape: [H, N2, 2] },
    log_dt: { shape: [H], data: logDt },
  };
}

// Δ from 0.08 to 2: |ΔA| on both sides of 1, where the ZOH derivative switches
// from its Taylor series to the closed form.
const LOG_DT = [-2.5, -0.5, 0.7];

Deno.test("grad: fft_conv and direct_conv, kernels shorter, equal and longer than T", async () => {
  for (const op of ["fft_conv", "direct_conv"] as const) {
    for (const Lk of [5, L, 17]) {
      await checkGrad(
        `${op} Lk ${Lk}`,
        { x: { shape: [2, L, H] }, k: { shape: [H, Lk] } },
        ({ x, k }, g) => g.apply(op, [x, k], {})[0],
      );
    }
  }
  // Leading dims beyond one batch axis, and only the kernel wanted.
  await checkGrad(
    "fft_conv [2, 2, T, H] wrt k",
    { x: { shape: [2, 2, 7, H] }, k: { shape: [H, 7] } },
    ({ x, k }, g) => g.apply("fft_conv", [x, k], {})[0],
    { wrt: ["k"] },
  );
});

Deno.test("grad: fft forward and inverse, padded and cropped", async () => {
  for (const inverse of [false, true]) {
    for (const n of [16, 8]) {
      await checkGrad(
        `fft n ${n} inverse ${inverse}`,
        { x: { shape: [2, L, 2] } },
        ({ x }, g) => g.apply("fft", [x], { n, inverse })[0],
      );
    }
  }
});

Deno.test("grad: s4_kernel through the Vandermonde product (ZOH, bilinear, conj or not)", async () => {
  for (const discretisation of ["zoh", "bilinear"] as const) {
    for (const conj of [true, false]) {
      await checkGrad(
        `s4_kernel ${discretisation} conj ${conj}`,
        params(3, LOG_DT),
        ({ A, B, C, log_dt }, g) =>
          g.apply("s4_kernel", [A, B, C, log_dt], { length: L, discretisation, conj })[0],
      );
    }
  }
  // Tiny steps: ΔA near 0, deep in the series branch (and the forward's limit 1 + z/2).
  await checkGrad(
    "s4_kernel zoh small Δ",
    params(4, [-9, -7, -5]),
    ({ A, B, C, log_dt }, g) =>
      g.apply("s4_kernel", [A, B, C, log_dt], { length: L, discretisation: "zoh", conj: true })[0],
    { tol: 1e-5 },
  );
});

Deno.test("grad: s4 (zero state) in every mode, both discretisations", async () => {
  for (const mode of ["conv", "direct", "recurrent"] as const) {
    for (const discretisation of ["zoh", "bilinear"] as const) {
      await checkGrad(
        `s4 ${mode} ${discretisation}`,
        { x: { shape: [2, L, H] }, ...params(5, LOG_DT) },
        ({ x, A, B, C, log_dt }, g) =>
          g.apply("s4", [x, A, B, C, log_dt], { mode, discretisation, conj: true, name: "s4" })[0],
      );
    }
  }
});

Deno.test("grad: s4_state through y and the final state, state included", async () => {
  for (const discretisation of ["zoh", "bilinear"] as const) {
    for (const conj of [true, false]) {
      await checkGrad(
        `s4_state ${discretisation} conj ${conj}`,
        { x: { shape: [2, L, H] }, ...params(7, LOG_DT), st: { shape: [2, H, N2, 2] } },
        ({ x, A, B, C, log_dt, st }, g) => {
          const attrs = { mode: "conv", discretisation, conj, name: "s4" } as const;
          const [y, next] = g.apply("s4_state", [x, A, B, C, log_dt, st], attrs);
          return g.concat([y.reshape([-1]), next.reshape([-1])], 0);
        },
        { samples: 12 },
      );
    }
  }
  // Only y used (the state's update feeds nothing), only the final state used.
  const ins = { x: { shape: [1, 6, H] }, ...params(8, LOG_DT), st: { shape: [1, H, N2, 2] } };
  const attrs = { mode: "recurrent", discretisation: "zoh", conj: true, name: "s4" } as const;
  for (const which of [0, 1]) {
    await checkGrad(
      `s4_state output ${which} only`,
      ins,
      ({ x, A, B, C, log_dt, st }, g) =>
        g.apply("s4_state", [x, A, B, C, log_dt, st], attrs)[which],
    );
  }
});

Deno.test("grad: s4_kernel_grad's reference is the adjoint of s4_kernel (float64)", () => {
  // Σ dK·K(p + εv) − Σ dK·K(p − εv) ≈ 2ε⟨∇, v⟩ along a random direction v.
  const r = rng(11);
  const rand = (n: number) => Array.from({ length: n }, () => r() * 2 - 1);
  const p = params(12, LOG_DT);
  const [A, B, C, dt] = ["A", "B", "C", "log_dt"].map((k) =>
    p[k].data ? Array.from(p[k].data!) : rand(k === "log_dt" ? H : H * N2 * 2)
  );
  const dK = rand(H * L);
  const v = [A, B, C, dt].map((x) => rand(x.length));
  const loss = (eps: number) => {
    const K = s4KernelF64(
      A.map((a, i) => a + eps * v[0][i]),
      B.map((a, i) => a + eps * v[1][i]),
      C.map((a, i) => a + eps * v[2][i]),
      dt.map((a, i) => a + eps * v[3][i]),
      L,
      "zoh",
      true,
    );
    return K.reduce((s, k, i) => s + k * dK[i], 0);
  };
  const grads = withFloat64Host(() => s4KernelGradF64(dK, A, B, C, dt, L, "zoh", true));
  const gs = [grads.dA, grads.dB, grads.dC, grads.dLogDt];
  const dot = gs.reduce((s, gr, j) => s + v[j].reduce((t, x, i) => t + x * gr[i], 0), 0);
  const fd = (loss(1e-6) - loss(-1e-6)) / 2e-6;
  assert.ok(Math.abs(fd - dot) <= 1e-6 * Math.max(1, Math.abs(dot)), `${fd} vs ${dot}`);
});

Deno.test("grad: long sequences on the GPU (L = 1024) against float64", async () => {
  const T = 1024;
  // The S4 cases pass at 2e-4 on lavapipe; 5e-4 leaves room for GPUs whose f32
  // exp/sin/cos are less exact (the Vandermonde terms go through them).
  await checkGrad(
    "fft_conv L 1024",
    { x: { shape: [2, T, H] }, k: { shape: [H, T] } },
    ({ x, k }, g) => g.apply("fft_conv", [x, k], {})[0],
    { samples: 2 },
  );
  await checkGrad(
    "s4 conv L 1024",
    { x: { shape: [1, T, H] }, ...params(6, [-4, -3, -2]) },
    ({ x, A, B, C, log_dt }, g) =>
      g.apply("s4", [x, A, B, C, log_dt], {
        mode: "conv",
        discretisation: "zoh",
        conj: true,
        name: "s4",
      })[0],
    { samples: 2, gpuTol: 5e-4 },
  );
  await checkGrad(
    "s4_state bilinear L 1024, y and the final state",
    { x: { shape: [1, T, H] }, ...params(9, [-4, -3, -2]), st: { shape: [1, H, N2, 2] } },
    ({ x, A, B, C, log_dt, st }, g) => {
      const attrs = { mode: "conv", discretisation: "bilinear", conj: true, name: "s4" } as const;
      const [y, next] = g.apply("s4_state", [x, A, B, C, log_dt, st], attrs);
      return g.concat([y.reshape([-1]), next.reshape([-1])], 0);
    },
    { samples: 2, gpuTol: 5e-4 },
  );
  await checkGrad(
    "direct_conv L 1024, 64 taps",
    { x: { shape: [1, T, H] }, k: { shape: [H, 64] } },
    ({ x, k }, g) => g.apply("direct_conv", [x, k], {})[0],
    { samples: 2 },
  );
});

/** A builder that remembers its params, to differentiate a layer that declares its own. */
class Recording extends GraphBuilder {
  readonly seen = new Map<string, Tensor>();
  override param(name: string, shape: readonly Dim[], dtype?: DType): Tensor {
    const t = super.param(name, shape, dtype);
    this.seen.set(name, t);
    return t;
  }
}

Deno.test("grad: an s4Layer (stateful, D skip) differentiates; GPU equals the CPU reference", async () => {
  for (const stateful of [true, false]) {
    const g = new Recording();
    // A symbolic length: the rules' kernel length and the ops follow T.
    const x = g.input("x", [2, "T", 4]);
    const y = s4Layer(g, x, { name: "s4", H: 4, N: 8, init: "legs", stateful });
    const loss = y.mul(y).sum(2).sum(1).sum(0);
    const names = ["A", "B", "C", "log_dt", "D"];
    const grads = g.grad(loss, [x, ...names.map((k) => g.seen.get(`s4.${k}`)!)]);
    grads.forEach((d, i) => g.output(`d${i}`, d));
    const params = s4ParamRecord("s4", initS4({ H: 4, N: 8, init: "legs", seed: 3 }));
    const xs = Float32Array.from({ length: 2 * 37 * 4 }, (_, i) => Math.sin(i * 0.37));
    const { gpu, cpu, labels } = await runBoth(g.build(), { x: xs }, params, { T: 37 });
    // The state is only assigned: no gradient reaches it, so no dx pass over the state's terms.
    assert.equal(labels.some((l) => l.includes("s4_state_grad_dx")), false);
    assert.equal(labels.some((l) => l.includes("s4_state_grad")), stateful);
    for (let i = 0; i <= names.length; i++) {
      assertClose(gpu[`d${i}`].data, cpu[`d${i}`].data, 1e-3, 1e-3, `stateful ${stateful} d${i}`);
    }
  }
});

Deno.test("grad: bad operands of the gradient ops are named", () => {
  const g = new GraphBuilder();
  const dy = g.input("dy", [2, 5, 3]);
  assert.throws(
    () => g.apply("conv_grad_input", [dy, g.input("k", [4, 5])], { method: "fft" }),
    (e: Error) => e instanceof RangeError && /k must be \[H, Lk\] with H = 3/.test(e.message),
  );
  assert.throws(
    () => g.apply("conv_grad_kernel", [dy, dy], { length: 5, method: "slow" as "fft" }),
    (e: Error) => e instanceof TypeError && /method must be "fft" or "direct"/.test(e.message),
  );
  const [A, B, C] = ["A", "B", "C"].map((k) => g.input(k, [3, 4, 2]));
  const dt = g.input("dt", [3]);
  assert.throws(
    () =>
      g.apply("s4_kernel_grad", [g.input("dK", [2, 7]), A, B, C, dt], {
        discretisation: "zoh",
        conj: true,
      }),
    (e: Error) => e instanceof RangeError && /dK must be \[H, L\] with H = 3/.test(e.message),
  );
  assert.throws(
    () =>
      g.apply("s4_state_grad", [dy, dy, dy, A, B, C, dt, dy], {
        discretisation: "zoh",
        conj: true,
        final: true,
      }),
    (e: Error) => e instanceof RangeError && /dstate must be f32\[2, 3, 4, 2\]/.test(e.message),
  );
});
