/**
 * Test helpers: one shared WebGPU device, seeded random data, and comparison of a
 * GPU run against the CPU reference of the same graph.
 */

import { compile } from "../runtime/executable.ts";
import type { Graph } from "../core/graph.ts";
import type { Plan } from "../compiler/plan_types.ts";
import type { DType, HostArray } from "../core/dtype.ts";
import { cpuDevice, type GpuDevice, requestDevice } from "../runtime/device.ts";
import type { HostTensor } from "../core/types.ts";
import type { TensorData } from "../core/host.ts";

let shared: Promise<GpuDevice> | undefined;

/** The test device. A missing adapter is a failure, never a skip. */
export function gpu(): Promise<GpuDevice> {
  shared ??= requestDevice();
  return shared;
}

import { mulberry32 } from "../core/random.ts";
import { loadModel, type LoadOptions, type Model } from "../app/model/mod.ts";

/** Seeded PRNG (mulberry32) so failures reproduce. */
export const rng: (seed: number) => () => number = mulberry32;

/** Random values in [lo, hi) for a dtype (integers for i32/u32). */
export function randomData(n: number, dtype: DType, seed: number, lo = -2, hi = 2): HostArray {
  const r = rng(seed);
  const out = dtype === "f32"
    ? new Float32Array(n)
    : dtype === "f16"
    ? new Float16Array(n)
    : dtype === "i32"
    ? new Int32Array(n)
    : new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const v = lo + (hi - lo) * r();
    out[i] = dtype === "i32" || dtype === "u32" ? Math.floor(dtype === "u32" ? Math.abs(v) : v) : v;
  }
  return out;
}

/** Max |a−b| / (atol + rtol·|b|) over all elements; ≤ 1 means within tolerance. */
export function closeness(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  rtol: number,
  atol: number,
): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i];
    if (Number.isNaN(x) || Number.isNaN(y)) {
      if (Number.isNaN(x) && Number.isNaN(y)) continue;
      return Infinity;
    }
    if (x === y) continue;
    worst = Math.max(worst, Math.abs(x - y) / (atol + rtol * Math.abs(y)));
  }
  return worst;
}

/** Asserts elementwise closeness with a message that shows the worst element. */
export function assertClose(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  rtol: number,
  atol: number,
  what = "",
): void {
  if (a.length !== b.length) throw new Error(`${what}: length ${a.length} vs ${b.length}`);
  let worst = 0, at = -1;
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i];
    if (Number.isNaN(x) && Number.isNaN(y)) continue;
    const e = x === y ? 0 : Math.abs(x - y) / (atol + rtol * Math.abs(y));
    if (!(e <= worst)) {
      worst = e;
      at = i;
    }
  }
  if (!(worst <= 1)) {
    throw new Error(
      `${what}: element ${at}: got ${a[at]}, expected ${b[at]} (rtol ${rtol}, atol ${atol})`,
    );
  }
}

/** Runs a graph on the GPU and on the CPU reference with the same inputs and params. */
export async function runBoth(
  graph: Graph,
  inputs: Record<string, TensorData>,
  params: Record<string, TensorData> = {},
  dims: Record<string, number> = {},
): Promise<
  {
    gpu: Record<string, HostTensor>;
    cpu: Record<string, HostTensor>;
    kernels: number;
    labels: string[];
  }
> {
  const dev = await gpu();
  const g = compile(graph, dev, { params });
  const c = compile(graph, cpuDevice(), { params });
  try {
    const gr = await g.run(inputs, { dims });
    const cr = await c.run(inputs, { dims });
    const plan = g.lastPlan!;
    return {
      gpu: gr,
      cpu: cr,
      kernels: plan.kernels.length,
      labels: plan.kernels.map((k) => k.label),
    };
  } finally {
    g.dispose();
  }
}

/** Fails unless two float arrays are equal bit for bit (naming the first differing element). */
export function assertBitsEqual(a: Float32Array, b: Float32Array, what: string): void {
  if (a.length !== b.length) throw new Error(`${what}: lengths ${a.length} and ${b.length}`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) {
    if (ua[i] !== ub[i]) throw new Error(`${what}: element ${i} differs: ${a[i]} vs ${b[i]}`);
  }
}

/** The prompt of the expert scheduler tests. */
export const MOE_PROMPT: readonly number[] = [5, 17, 3, 99, 42, 7, 250, 11, 0, 64, 31, 8, 120];

/** Loads a tiny test model quietly with maxSeq 64 on the shared device (unless `extra` says otherwise). */
export async function openTiny(dir: string, extra: LoadOptions = {}): Promise<Model> {
  const device = extra.devices === undefined ? await gpu() : undefined;
  return await loadModel(dir, { device, quiet: true, maxSeq: 64, ...extra });
}

/** The ids `generateIds` streams for `MOE_PROMPT`. */
export async function collectIds(model: Model, n: number, readEvery = 4): Promise<number[]> {
  const ids: number[] = [];
  for await (const id of model.generateIds(MOE_PROMPT, { maxTokens: n, readEvery })) ids.push(id);
  return ids;
}

/**
 * Prefills `prompt[0, L)` and decodes the rest one token at a time; each step's
 * logits must equal the full forward's row within `tol` of that row's scale.
 */
export async function assertDecodeMatchesForward(
  model: Model,
  prompt: readonly number[],
  L: number,
  tol = 1e-4,
): Promise<void> {
  const full = await model.forward(prompt);
  const V = model.config.vocabSize;
  await model.forward(prompt.slice(0, L));
  for (let t = L; t < prompt.length; t++) {
    const row = await model.step(prompt[t], t);
    const want = full.subarray(t * V, (t + 1) * V);
    let err = 0, scale = 0;
    for (let i = 0; i < V; i++) {
      err = Math.max(err, Math.abs(row[i] - want[i]));
      scale = Math.max(scale, Math.abs(want[i]));
    }
    if (!(err / scale < tol)) {
      throw new Error(`${model.config.architecture} position ${t}: ${err / scale} of scale`);
    }
  }
}

/** Max |got − want| over all elements, relative to the largest |want| (the logits' scale). */
export function relMaxError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) throw new Error(`length ${got.length} vs ${want.length}`);
  let err = 0, scale = 0;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return err / scale;
}

/**
 * Writes a tiny checkpoint with `write` into a temporary folder (its config.json
 * passed through `editConfig` when given), loads it on the test device and runs
 * `fn`; everything is disposed and removed afterwards.
 */
export async function withTinyModel<O>(
  write: (dir: string, options: O) => Promise<{ config: Record<string, unknown> }>,
  options: O,
  fn: (model: Model, dir: string) => Promise<void>,
  editConfig?: (config: Record<string, unknown>) => Record<string, unknown>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kiln_tiny_" });
  try {
    const written = await write(dir, options);
    if (editConfig) {
      await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(editConfig(written.config)));
    }
    const model = await loadModel(dir, { device: await gpu(), quiet: true, maxSeq: 64 });
    try {
      await fn(model, dir);
    } finally {
      model.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * The largest range any kernel binds or any copy/clear touches in a plan: the
 * largest single tensor it works on (a buffer may hold several tensors side
 * by side, so slot sizes overstate it).
 */
export function largestTensor(plan: Plan): number {
  let most = 0;
  const ops = [...plan.after];
  for (const k of plan.kernels) {
    for (const b of k.bindings) most = Math.max(most, b.size);
    ops.push(...k.before);
  }
  for (const o of ops) most = Math.max(most, o.size);
  return most;
}

/** Runs `fn` with a fresh temporary folder (named with `prefix`), removed afterwards. */
export async function withTmp(
  fn: (dir: string) => Promise<void>,
  prefix = "kiln_test_",
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Asserts `p` rejects with class `cls` and a one-line message containing every
 * one of `parts`; returns the message.
 */
export async function rejectsWith(
  p: Promise<unknown>,
  cls: new (...args: never[]) => Error,
  parts: readonly string[],
): Promise<string> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  if (!(err instanceof cls)) throw new Error(`expected ${cls.name}, got ${String(err)}`);
  if (err.message.includes("\n")) throw new Error(`message is not one line: ${err.message}`);
  for (const part of parts) {
    if (!err.message.includes(part)) {
      throw new Error(`message ${JSON.stringify(err.message)} lacks ${JSON.stringify(part)}`);
    }
  }
  return err.message;
}
