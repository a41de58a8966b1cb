/**
 * The differential oracle: runs a graph on the GPU and on the CPU reference
 * (`cpuDevice()`, each op's `reference`) with the same seeded inputs, and says
 * which outputs disagree beyond what floating point explains.
 *
 * Tolerances, per output element:
 *
 *     |gpu − cpu| ≤ rtol(dtype, depth) · scale + K · |cpu' − cpu|
 *
 * - `scale` is the output's largest |cpu| value (the brief's "relative to the
 *   output scale"), so an element that cancels to near zero is judged against
 *   the magnitudes around it, not against itself.
 * - `rtol` is {@linkcode RTOL} of the least precise float on the output's path
 *   (f32 1e-4, f16 looser), growing with the number of arithmetic ops on the
 *   path (views count nothing).
 * - `cpu'` is the reference run again as another device might round: inputs
 *   perturbed by about one rounding error (only `uniform` data: grid and integer
 *   data stay exact) and every op that rounds nudged by a few ulps (see
 *   {@linkcode interpret}). Where the graph amplifies rounding (a cancellation,
 *   a norm of a nearly constant row), the reference itself moves, and the
 *   tolerance moves with it. A real bug moves the GPU by O(1) of the scale,
 *   far beyond both terms.
 * - Integer outputs compare exactly, except the indices of `argmax` and `topk`:
 *   those may differ where the values they index tie within the key's own
 *   tolerance (the values, not the indices, are compared there).
 *
 * The same graph is also interpreted without the optimiser's passes; the CPU
 * device (which runs the optimised graph) must agree with it, so a folding or CSE
 * bug shows up as an `optimizer` failure.
 *
 * @module
 */

import { allocHost, type DType, type HostArray, isFloat } from "../../core/dtype.ts";
import type { Graph } from "../../core/graph.ts";
import { mulberry32 } from "../../core/random.ts";
import type { HostTensor } from "../../core/types.ts";
import { normAxis, numel } from "../../core/shape.ts";
import { opDef } from "../../ops/registry.ts";
import { cpuDevice, type GpuDevice } from "../../runtime/device.ts";
import { compile, type Executable } from "../../runtime/executable.ts";
import { bind, type DataSpec, drawData, tensorSeed } from "./spec.ts";

/** Relative tolerance (of the output scale) per float precision, for up to four ops. */
export const RTOL: Readonly<Record<"f32" | "f16", number>> = { f32: 1e-4, f16: 5e-3 };

/** Multiplier on the reference's own movement under perturbed rounding. */
export const PERTURB_FACTOR = 4;

/** What went wrong in one check. */
export interface Failure {
  /**
   * `mismatch`: GPU and CPU outputs differ; `gpu-error`: compiling or running on
   * the GPU threw or raised a WebGPU error; `cpu-error`: the reference threw;
   * `optimizer`: the CPU device (optimised graph) differs from the graph
   * interpreted as built; `invalid`: the builder refused the graph (a generator
   * bug, or a builder that refuses what its ops accept); `refused`: the planner
   * refused the graph with the RangeError of a device limit (more storage
   * buffers than the device allows): a limit, not a bug.
   */
  readonly kind: "mismatch" | "gpu-error" | "cpu-error" | "optimizer" | "invalid" | "refused";
  /** Run index (0-based) in the row of runs. */
  readonly run: number;
  /** Output or state name, or the stage. */
  readonly what: string;
  /** Human-readable detail (worst element, message). */
  readonly detail: string;
}

/** Options of {@linkcode checkGraph}. */
export interface CheckOptions {
  /** How each input's and parameter's values are drawn, by name. */
  readonly data: Readonly<Record<string, DataSpec>>;
  /** Seed of the input values (run r draws from `inputsSeed + r`, params from `inputsSeed`). */
  readonly inputsSeed: number;
  /** Symbol sizes per run; the graph runs once per entry, in a row (states carry over). */
  readonly runs: readonly { readonly dims: Readonly<Record<string, number>> }[];
}

/** Result of {@linkcode checkGraph}. */
export interface CheckResult {
  /** Everything that disagreed; empty when the GPU matched. */
  readonly failures: Failure[];
  /** Kernels of the last GPU plan (0 if none ran). */
  readonly kernels: number;
  /** Labels of every planned kernel of every run (which kernel variants ran). */
  readonly labels: readonly string[];
}

/** Per value: arithmetic depth and whether an f16 value lies on its path. */
function pathInfo(graph: Graph): { depth: number[]; half: boolean[] } {
  const depth = new Array<number>(graph.values.length).fill(0);
  const half = graph.values.map((v) => v.dtype === "f16");
  for (const n of graph.nodes) {
    const kind = n.op === "input" || n.op === "param" || n.op === "state" || n.op === "const"
      ? "leaf"
      : opDef(n.op).lower.kind;
    const view = kind === "leaf" || kind === "view" || kind === "alias" || n.op === "concat" ||
      n.op === "gather" || n.op === "write_rows";
    let d = 0, h = false;
    for (const v of n.inputs) {
      d = Math.max(d, depth[v]);
      h ||= half[v];
    }
    for (const v of n.outputs) {
      depth[v] = d + (view ? 0 : 1);
      half[v] ||= h;
    }
  }
  return { depth, half };
}

/** The relative tolerance of a float value. *
 * @example
 * ```ts ignore
 * rtolOf(false, 3); // 1e-4 (f32, up to four ops)
 * ```
 */
export function rtolOf(half: boolean, depth: number): number {
  return (half ? RTOL.f16 : RTOL.f32) * (1 + Math.floor(Math.max(0, depth - 1) / 4));
}

/** Ops whose results round (beyond moving or selecting values) even from exact operands. */
const ROUNDING = new Set([
  "exp",
  "log",
  "sqrt",
  "rsqrt",
  "tanh",
  "sigmoid",
  "silu",
  "gelu",
  "gelu_erf",
  "softplus",
  "div",
  "pow",
  "mean",
  "logsumexp",
  "softmax",
  "rmsnorm",
  "layernorm",
  "rope",
  "attention",
]);

/** Ops that only move or select values: they never round. */
const MOVING = new Set([
  "reshape",
  "transpose",
  "slice",
  "concat",
  "gather",
  "write_rows",
  "topk",
  "max",
  "min",
  "argmax",
  "maximum",
  "minimum",
  "relu",
  "abs",
  "neg",
  "where",
]);

/**
 * Every value of `graph` computed by the ops' references, as built (no passes).
 *
 * With `noise`, a model of another device's rounding: the float results of an op
 * that rounds (or that reads a value already noisy) are nudged by a relative
 * `noise()` (about a few ulps); exact subgraphs (grid and integer data through
 * ops that do not round) stay untouched, so comparisons and casts downstream of
 * them never flip.
 *
 * @example
 * ```ts ignore
 * const vals = interpret(graph, { T: 3 }, drawLeaves(graph, options, 0), new Map());
 * vals[graph.outputs.get("y")!].data; // the reference of output "y"
 * ```
 */
export function interpret(
  graph: Graph,
  dims: Readonly<Record<string, number>>,
  leaves: ReadonlyMap<string, HostArray>,
  states: Map<string, HostArray>,
  noise?: { readonly rand: () => number; readonly noisy: Set<string> },
): HostTensor[] {
  const vals: HostTensor[] = [];
  const noisy = new Set<number>();
  const typeOf = (id: number) => ({
    shape: bind(graph.values[id].shape, dims),
    dtype: graph.values[id].dtype as DType,
  });
  for (const n of graph.nodes) {
    if (n.op === "input" || n.op === "param" || n.op === "state" || n.op === "const") {
      const id = n.outputs[0];
      const t = typeOf(id);
      const name = n.attrs.name as string;
      let data: HostArray;
      if (n.op === "const") {
        data = allocHost(t.dtype, numel(t.shape));
        data.set(graph.constants.get(id)! as never);
      } else if (n.op === "state") {
        data = states.get(name) ?? allocHost(t.dtype, numel(t.shape));
      } else data = leaves.get(name)!;
      if (noise?.noisy.has(name)) noisy.add(id);
      vals[id] = { data, ...t };
      continue;
    }
    const outs = n.outputs.map(typeOf);
    const res = opDef(n.op).reference(n.inputs.map((v) => vals[v]), n.attrs, outs);
    const fed = n.inputs.some((v) => noisy.has(v));
    const rounds = noise && (ROUNDING.has(n.op) || (fed && !MOVING.has(n.op)));
    n.outputs.forEach((id, i) => {
      if (isFloat(outs[i].dtype) && (fed || rounds)) noisy.add(id);
      if (rounds && isFloat(outs[i].dtype)) {
        const eps = outs[i].dtype === "f16" ? 2 ** -10 : 2 ** -21;
        // A copy: a reference may hand back an operand's own array.
        const d = res[i] = res[i].slice();
        for (let k = 0; k < d.length; k++) d[k] = d[k] * (1 + eps * (2 * noise.rand() - 1));
      }
      vals[id] = { data: res[i], ...outs[i] };
    });
  }
  for (const [name, id] of graph.assigns) {
    states.set(name, vals[id].data.slice());
    // A state that took a noisy value is noisy in the next run.
    if (noisy.has(id)) noise?.noisy.add(name);
  }
  return vals;
}

/** Input values of run `run` (and the parameters), drawn from their specs. *
 * @example
 * ```ts ignore
 * const leaves = drawLeaves(graph, { data, inputsSeed: 7, runs: [{ dims: { T: 4 } }] }, 0);
 * ```
 */
export function drawLeaves(
  graph: Graph,
  options: CheckOptions,
  run: number,
): Map<string, HostArray> {
  const dims = options.runs[run].dims;
  const out = new Map<string, HostArray>();
  const draw = (name: string, id: number, seed: number) => {
    const spec = options.data[name];
    if (!spec) throw new TypeError(`no data spec for "${name}"`);
    const v = graph.values[id];
    out.set(name, drawData(spec, numel(bind(v.shape, dims)), v.dtype, tensorSeed(seed, name)));
  };
  for (const [name, id] of graph.inputs) draw(name, id, options.inputsSeed + run);
  for (const [name, id] of graph.params) draw(name, id, options.inputsSeed - 1);
  return out;
}

/** The leaves nudged by about one rounding error of their dtype (uniform data only). */
function perturbLeaves(
  options: CheckOptions,
  leaves: ReadonlyMap<string, HostArray>,
  rand: () => number,
): { leaves: Map<string, HostArray>; noisy: Set<string> } {
  const out = new Map(leaves);
  const noisy = new Set<string>();
  for (const [name, data] of leaves) {
    if (options.data[name]?.kind !== "uniform") continue;
    const half = data instanceof Float16Array;
    const eps = half ? 2 ** -10 : 2 ** -21;
    const p = data.slice();
    for (let i = 0; i < p.length; i++) p[i] = p[i] * (1 + eps * (2 * rand() - 1));
    out.set(name, p);
    noisy.add(name);
  }
  return { leaves: out, noisy };
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) if (Number.isFinite(a[i])) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Per-element tolerance of a float value: `rtol · scale + K · |cpu' − cpu|`. *
 * @example
 * ```ts ignore
 * tolerances([100, 1, 0], undefined, 1e-4); // [0.01, 0.01, 0.01]
 * ```
 */
export function tolerances(
  ref: ArrayLike<number>,
  pert: ArrayLike<number> | undefined,
  rtol: number,
): Float64Array {
  const base = rtol * Math.max(maxAbs(ref), 1e-30);
  const tol = new Float64Array(ref.length).fill(base);
  if (pert) {
    for (let i = 0; i < ref.length; i++) {
      const d = Math.abs(pert[i] - ref[i]);
      // A perturbation that reaches inf or NaN: the reference is not a judge here.
      tol[i] += Number.isFinite(pert[i]) === Number.isFinite(ref[i])
        ? (Number.isNaN(d) ? 0 : PERTURB_FACTOR * d)
        : Infinity;
    }
  }
  return tol;
}

/** The worst element of `got` against `want` (null when all are within `tol`). *
 * @example
 * ```ts ignore
 * worstElement([1, 2.5], [1, 2], 0.1); // "element 1: got 2.5, expected 2 (…)"
 * ```
 */
export function worstElement(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: ArrayLike<number> | number,
): string | null {
  if (got.length !== want.length) return `length ${got.length}, expected ${want.length}`;
  let worst = 0, at = -1;
  for (let i = 0; i < got.length; i++) {
    const g = got[i], w = want[i];
    if (g === w || (Number.isNaN(g) && Number.isNaN(w))) continue;
    const t = typeof tol === "number" ? tol : tol[i];
    const e = Math.abs(g - w) / (t > 0 ? t : Number.MIN_VALUE);
    if (!(e <= 1)) {
      const ratio = Number.isNaN(e) ? Infinity : e;
      if (at < 0 || ratio > worst) {
        worst = ratio;
        at = i;
      }
    }
  }
  if (at < 0) return null;
  const t = typeof tol === "number" ? tol : tol[at];
  return `element ${at}: got ${got[at]}, expected ${want[at]} (tolerance ${t.toPrecision(3)}, ${
    worst === Infinity ? "non-finite" : `${worst.toPrecision(3)}×`
  })`;
}

/**
 * Index outputs (`argmax`, `topk`'s second): each GPU index must point at a key
 * that ties, within the key's tolerance, with the one the CPU chose.
 *
 * @example
 * ```ts ignore
 * // keys [1, 3, 3] with ties within 1e-4: index 1 or 2 both pass
 * compareIndices("argmax", -1, key, keyTol, [1], [2]); // null
 * ```
 */
export function compareIndices(
  op: "argmax" | "topk",
  axis: number,
  key: HostTensor,
  keyTol: ArrayLike<number>,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
): string | null {
  if (got.length !== want.length) return `length ${got.length}, expected ${want.length}`;
  const shape = key.shape;
  const ax = op === "topk" ? shape.length - 1 : normAxis(axis, shape.length, "argmax");
  let inner = 1;
  for (let i = ax + 1; i < shape.length; i++) inner *= shape[i];
  const r = shape[ax];
  const k = op === "topk" ? (r === 0 ? 0 : got.length / (numel(shape) / r)) : 1;
  for (let i = 0; i < got.length; i++) {
    if (got[i] === want[i]) continue;
    // Output i sits at (row o, slot p) over the key's (outer, inner) positions.
    const row = Math.floor(i / k);
    const o = Math.floor(row / inner), n = row % inner;
    const at = (j: number) => (o * r + j) * inner + n;
    const g = got[i], w = want[i];
    if (!(g < r)) return `index ${i}: got ${g}, out of range ${r}`;
    if (op === "topk") {
      for (let p = 0; p < k; p++) {
        const q = row * k + p;
        if (q !== i && got[q] === g) return `index ${i}: ${g} appears twice in its row`;
      }
    }
    const diff = Math.abs(key.data[at(g)] - key.data[at(w)]);
    const t = Math.max(keyTol[at(g)], keyTol[at(w)]);
    if (!(diff <= t)) {
      return `index ${i}: got ${g} (key ${key.data[at(g)]}), expected ${w} (key ${
        key.data[at(w)]
      }), keys differ by ${diff.toPrecision(3)} > tolerance ${t.toPrecision(3)}`;
    }
  }
  return null;
}

/** Compares one value (an output or a state) of a run. */
function compareValue(
  graph: Graph,
  id: number,
  got: HostTensor,
  want: HostTensor,
  ref: HostTensor[],
  pert: HostTensor[],
  info: { depth: number[]; half: boolean[] },
): string | null {
  if (got.shape.join(",") !== want.shape.join(",")) {
    return `shape [${got.shape}], expected [${want.shape}]`;
  }
  const v = graph.values[id];
  const node = graph.nodes[v.node];
  if ((node.op === "argmax" && v.index === 0) || (node.op === "topk" && v.index === 1)) {
    const keyId = node.inputs[0];
    const keyTol = isFloat(graph.values[keyId].dtype)
      ? tolerances(ref[keyId].data, pert[keyId].data, rtolOf(info.half[keyId], info.depth[keyId]))
      : new Float64Array(ref[keyId].data.length);
    return compareIndices(
      node.op,
      node.attrs.axis as number,
      ref[keyId],
      keyTol,
      got.data,
      want.data,
    );
  }
  if (!isFloat(v.dtype)) return worstElement(got.data, want.data, 0);
  const tol = tolerances(want.data, pert[id].data, rtolOf(info.half[id], info.depth[id]));
  return worstElement(got.data, want.data, tol);
}

function message(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/**
 * Runs `graph` on `device` and on the CPU reference for every entry of
 * `options.runs` (in a row, states carried over) and returns what disagreed.
 *
 * @example
 * ```ts ignore
 * const { failures } = await checkGraph(g.build(), await requestDevice(), {
 *   data: { x: { kind: "uniform", lo: -2, hi: 2 } },
 *   inputsSeed: 7,
 *   runs: [{ dims: { T: 5 } }],
 * });
 * ```
 */
export async function checkGraph(
  graph: Graph,
  device: GpuDevice,
  options: CheckOptions,
): Promise<CheckResult> {
  const failures: Failure[] = [];
  const params = drawLeaves(graph, options, 0);
  const paramData: Record<string, HostArray> = {};
  for (const name of graph.params.keys()) paramData[name] = params.get(name)!;
  let gpuExe: Executable | undefined, cpuExe: Executable;
  const scopes = ["validation", "internal", "out-of-memory"] as const;
  for (const s of scopes) device.device.pushErrorScope(s);
  try {
    cpuExe = compile(graph, cpuDevice(), { params: paramData });
  } catch (e) {
    for (const _ of scopes) await device.device.popErrorScope();
    return {
      failures: [{ kind: "cpu-error", run: 0, what: "compile", detail: message(e) }],
      kernels: 0,
      labels: [],
    };
  }
  try {
    gpuExe = compile(graph, device, { params: paramData });
  } catch (e) {
    failures.push({ kind: "gpu-error", run: 0, what: "compile", detail: message(e) });
  }
  const info = pathInfo(graph);
  const refStates = new Map<string, HostArray>(), pertStates = new Map<string, HostArray>();
  const noisyNames = new Set<string>();
  let kernels = 0;
  const labels: string[] = [];
  let ref: HostTensor[] = [], pert: HostTensor[] = [];
  for (let run = 0; run < options.runs.length && failures.length === 0; run++) {
    const dims = options.runs[run].dims;
    const leaves = drawLeaves(graph, options, run);
    const inputs: Record<string, HostTensor> = {};
    for (const [name, id] of graph.inputs) {
      const v = graph.values[id];
      inputs[name] = { data: leaves.get(name)!, shape: bind(v.shape, dims), dtype: v.dtype };
    }
    let want: Record<string, HostTensor>;
    try {
      want = await cpuExe.run(inputs, { dims });
      ref = interpret(graph, dims, leaves, refStates);
      const rand = mulberry32((options.inputsSeed * 31 + run) ^ 0x5bd1e995);
      const nudged = perturbLeaves(options, leaves, rand);
      for (const name of nudged.noisy) noisyNames.add(name);
      pert = interpret(graph, dims, nudged.leaves, pertStates, { rand, noisy: noisyNames });
    } catch (e) {
      failures.push({ kind: "cpu-error", run, what: "run", detail: message(e) });
      break;
    }
    let got: Record<string, HostTensor>;
    try {
      got = await gpuExe!.run(inputs, { dims });
      kernels = gpuExe!.lastPlan?.kernels.length ?? 0;
      for (const k of gpuExe!.lastPlan?.kernels ?? []) labels.push(k.label);
    } catch (e) {
      const limit = e instanceof RangeError && /than the device allows/.test(e.message);
      failures.push({
        kind: limit ? "refused" : "gpu-error",
        run,
        what: "run",
        detail: message(e),
      });
      break;
    }
    for (const [name, id] of graph.outputs) {
      const opt = compareValue(graph, id, want[name], ref[id], ref, pert, info);
      if (opt) failures.push({ kind: "optimizer", run, what: name, detail: opt });
      const bad = compareValue(graph, id, got[name], want[name], ref, pert, info);
      if (bad) failures.push({ kind: "mismatch", run, what: name, detail: bad });
    }
  }
  if (failures.length === 0 && gpuExe) {
    for (const [name, id] of graph.assigns) {
      try {
        const [g, c] = [await gpuExe.readState(name), await cpuExe.readState(name)];
        const bad = compareValue(graph, id, g, c, ref, pert, info);
        if (bad) {
          failures.push({
            kind: "mismatch",
            run: options.runs.length - 1,
            what: `state ${name}`,
            detail: bad,
          });
        }
      } catch (e) {
        failures.push({
          kind: "gpu-error",
          run: options.runs.length - 1,
          what: `state ${name}`,
          detail: message(e),
        });
      }
    }
  }
  gpuExe?.dispose();
  cpuExe.dispose();
  for (const s of [...scopes].reverse()) {
    const err = await device.device.popErrorScope();
    if (err) failures.push({ kind: "gpu-error", run: 0, what: `WebGPU ${s}`, detail: err.message });
  }
  return { failures, kernels, labels };
}
