/**
 * Gradient checks for tests: a graph's `grad` against central finite
 * differences of its loss, both evaluated by the CPU references in float64,
 * and the same gradient graph run on the GPU against those float64 gradients.
 */

import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import type { Tensor } from "../compiler/tensor.ts";
import type { HostArray } from "../core/dtype.ts";
import { withFloat64Host } from "../core/dtype.ts";
import { numel } from "../core/shape.ts";
import { runCpu } from "../runtime/cpu_backend.ts";
import { compile } from "../runtime/executable.ts";
import { gpu, rng } from "./_util.ts";

/** One input of a checked graph. */
export interface CheckInput {
  /** Concrete shape. */
  shape: number[];
  /** Integer inputs (ids) are never differentiated. */
  dtype?: "f32" | "i32" | "u32";
  /** Data; random in [-1, 1) when absent. */
  data?: ArrayLike<number>;
}

/** Options of {@linkcode checkGrad}. */
export interface CheckOptions {
  /** Inputs differentiated (default: every float input). */
  wrt?: string[];
  /** Finite-difference step (default 1e-5). */
  h?: number;
  /** Tolerance of analytic vs finite differences, relative to the gradient's scale (1e-6). */
  tol?: number;
  /** Tolerance of the GPU's f32 gradients vs float64's, relative to the scale (2e-4). */
  gpuTol?: number;
  /** Elements checked by finite differences per input (default all, at most 24). */
  samples?: number;
  /** Seed of the random data. */
  seed?: number;
  /** Skip the GPU run. */
  cpuOnly?: boolean;
}

function scale(xs: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < xs.length; i++) m = Math.max(m, Math.abs(xs[i]));
  return Math.max(m, 1e-3);
}

/**
 * Checks `grad` of `loss = Σ f(inputs) · r` (r random, fixed) for each wanted
 * input: analytic (float64 references) vs central differences, and the GPU's.
 */
export async function checkGrad(
  what: string,
  inputs: Record<string, CheckInput>,
  f: (x: Record<string, Tensor>, g: GraphBuilder) => Tensor,
  options: CheckOptions = {},
): Promise<void> {
  const seed = options.seed ?? 7;
  const r = rng(seed);
  const wrt = options.wrt ??
    Object.keys(inputs).filter((k) => (inputs[k].dtype ?? "f32") === "f32");
  const data = new Map<string, HostArray>();
  for (const [name, spec] of Object.entries(inputs)) {
    const n = numel(spec.shape);
    const dtype = spec.dtype ?? "f32";
    const arr = dtype === "f32"
      ? new Float64Array(n) as unknown as Float32Array
      : dtype === "i32"
      ? new Int32Array(n)
      : new Uint32Array(n);
    for (let i = 0; i < n; i++) arr[i] = spec.data ? spec.data[i] : r() * 2 - 1;
    data.set(name, arr);
  }
  const build = (withGrads: boolean) => {
    const g = new GraphBuilder();
    const xs: Record<string, Tensor> = {};
    for (const [name, spec] of Object.entries(inputs)) {
      xs[name] = g.input(name, spec.shape, spec.dtype ?? "f32");
    }
    const y = f(xs, g);
    const proj = g.input("__r", [...y.shape]);
    const loss = y.mul(proj).reshape([-1]).sum(0);
    g.output("loss", loss);
    if (withGrads) {
      const grads = g.grad(loss, wrt.map((k) => xs[k]));
      wrt.forEach((k, i) => g.output(`d_${k}`, grads[i]));
    }
    return { graph: g.build(), yShape: y.shape };
  };
  const { graph: gradGraph, yShape } = build(true);
  const { graph: lossGraph } = build(false);
  const rn = numel(yShape as number[]);
  const proj = new Float64Array(rn).map(() => r() * 2 - 1) as unknown as Float32Array;
  const feed = (m: Map<string, HostArray>) => new Map([...m, ["__r", proj]]);
  const analytic = withFloat64Host(() => runCpu(gradGraph, {}, feed(data), new Map()));
  const lossAt = (name: string, i: number, delta: number) => {
    const arr = data.get(name)!;
    const keep = arr[i];
    arr[i] = keep + delta;
    const out = withFloat64Host(() => runCpu(lossGraph, {}, feed(data), new Map()));
    arr[i] = keep;
    return out.loss.data[0];
  };
  const h = options.h ?? 1e-5;
  for (const name of wrt) {
    const got = analytic[`d_${name}`].data;
    const s = scale(got);
    const n = got.length;
    const count = Math.min(n, options.samples ?? 24);
    const picks = count === n
      ? [...Array(n).keys()]
      : Array.from({ length: count }, () => Math.floor(r() * n));
    for (const i of picks) {
      const fd = (lossAt(name, i, h) - lossAt(name, i, -h)) / (2 * h);
      const err = Math.abs(fd - got[i]) / s;
      assert.ok(
        err <= (options.tol ?? 1e-6),
        `${what}: d loss/d ${name}[${i}] = ${got[i]} but finite differences give ${fd} (error ${
          err.toExponential(2)
        } of the scale ${s.toExponential(2)})`,
      );
    }
  }
  if (options.cpuOnly) return;
  const dev = await gpu();
  const exe = compile(gradGraph, dev);
  try {
    const feed32: Record<string, HostArray> = { __r: Float32Array.from(proj) };
    for (const [k, v] of data) feed32[k] = v instanceof Float64Array ? Float32Array.from(v) : v;
    const out = await exe.run(feed32);
    for (const name of wrt) {
      const want = analytic[`d_${name}`].data;
      const got = out[`d_${name}`].data;
      const s = scale(want);
      for (let i = 0; i < want.length; i++) {
        const err = Math.abs(got[i] - want[i]) / s;
        assert.ok(
          err <= (options.gpuTol ?? 2e-4),
          `${what} on the GPU: d loss/d ${name}[${i}] = ${got[i]}, float64 reference ${
            want[i]
          } (error ${err.toExponential(2)} of the scale)`,
        );
      }
    }
  } finally {
    exe.dispose();
  }
}
