/**
 * Random valid graphs: {@linkcode generateCase} turns a seed into a graph, the
 * sizes its symbols take in each run and the seed of its inputs.
 *
 * A graph starts from a few leaves (symbolic shapes, a long axis now and then,
 * perhaps a state), then grows by single ops and by templates:
 * - **chain**: an elementwise DAG feeding a matmul, reduction, norm or scan,
 *   with an elementwise epilogue — what fusion is for;
 * - **views**: reshapes, transposes and slices of one another, then a consumer;
 * - **fan-out**: one value read by several ops (and so by several kernels).
 * Every sink becomes an output, and sometimes an inner value too. Stateful graphs
 * run two or three times in a row; others once or twice (new sizes each time).
 *
 * The ops the campaign covers and the ones it leaves out (with the reason) are
 * listed here, in {@linkcode GENERATED_OPS} and {@linkcode SKIPPED_OPS}.
 *
 * @module
 */

import { broadcastShapes, type Dim } from "../../core/shape.ts";
import type { OpName } from "../../ops/registry.ts";
import { type FuzzCase, type FuzzGraph, prune, refsOf } from "./spec.ts";
import { Gen, LONG_MENU, type Val } from "./gen.ts";
import {
  bin,
  binary,
  cast,
  compare,
  floatLeaf,
  mag,
  un,
  UNARY,
  unary,
  where,
} from "./gen_elementwise.ts";
import {
  attention,
  concat,
  cumsum,
  gather,
  matmul,
  norm,
  reduce,
  reshape,
  rope,
  slice,
  softmax,
  STRUCTURAL_OPS,
  topk,
  transpose,
  writeRows,
} from "./gen_ops.ts";

/** Ops the generator builds. */
export const GENERATED_OPS: readonly OpName[] = [
  ...(Object.keys(UNARY) as OpName[]),
  "cast",
  "add",
  "sub",
  "mul",
  "div",
  "pow",
  "maximum",
  "minimum",
  "equal",
  "not_equal",
  "less",
  "less_equal",
  "greater",
  "greater_equal",
  "where",
  ...STRUCTURAL_OPS,
];

/**
 * Registered ops the generator leaves out by design, and why. Every op of the
 * registry is in exactly one of this table and {@linkcode GENERATED_OPS}
 * (a test checks it), so a new op forces the choice.
 */
export const SKIPPED_OPS: Readonly<Partial<Record<OpName, string>>> = {
  moe: "routed expert MLP: the router's top-k decides which experts run, so a near tie " +
    "changes whole rows; needs expert weight stacks in fixed layouts (tests/moe_op_test.ts)",
  fft: "power-of-two FFT lengths and a complex layout of its own (tests/s4_test.ts)",
  fft_conv: "long convolution through the FFT: power-of-two lengths (tests/s4_test.ts)",
  direct_conv: "the FFT convolution's direct twin, same layout (tests/s4_test.ts)",
  s4_kernel:
    "S4 kernel needs a stable (negative real part) diagonal state matrix (tests/s4_test.ts)",
  s4: "S4 layer: same stability constraint on its parameters (tests/s4_test.ts)",
  s4_state: "S4 recurrent state: same stability constraint (tests/s4_test.ts)",
  s4_kernel_grad: "S4 kernel's backward: same stability constraint; checked by finite " +
    "differences and on the GPU (tests/s4_grad_test.ts)",
  s4_state_grad: "S4 state's backward: as s4_kernel_grad (tests/s4_grad_test.ts)",
  conv_grad_input: "long convolution's backward, FFT lengths as fft_conv (tests/s4_grad_test.ts)",
  conv_grad_kernel: "long convolution's backward, as conv_grad_input (tests/s4_grad_test.ts)",
  conv1d_causal:
    "Mamba's depthwise causal conv: fixed [L, C] / [C, K] layouts (tests/ssm_op_test.ts)",
  conv_state_update: "Mamba's conv state shift: fixed layouts (tests/ssm_op_test.ts)",
  conv1d_step: "Mamba's one-token conv: fixed layouts (tests/ssm_op_test.ts)",
  selective_scan: "Mamba's scan: its inputs (Δ, A, B, C) need a stable discretisation " +
    "(tests/ssm_op_test.ts)",
  ssm_step: "Mamba's one-token scan: same constraints (tests/ssm_op_test.ts)",
  gated_delta: "Gated DeltaNet's recurrence: unit-norm keys and decays below 1 keep it " +
    "bounded, g and β packed side by side (tests/gated_delta_test.ts, awkward sizes, " +
    "padding and f16)",
  qmatmul: "block-quantized weights: random words decode to NaN/Inf f16 scales, so weights " +
    "come from the codecs (tests/quant_ops_test.ts, every format, row count and target)",
  qgather: "block-quantized embedding table: same as qmatmul (tests/quant_ops_test.ts)",
  sample: "draws random tokens: GPU and CPU agree in distribution, not per draw; its " +
    "greedy case is argmax, which is generated (tests/sample_test.ts)",
  attention_lse: "attention's backward: its lse, delta and dO operands only make sense " +
    "together with a forward (tests/attention_grad_test.ts, finite differences and GPU)",
  attention_dq: "attention's backward: as attention_lse (tests/attention_grad_test.ts)",
  attention_dkv: "attention's backward: as attention_lse (tests/attention_grad_test.ts)",
  expand: "broadcast view for gradients: attributes name the target shape; checked through " +
    "every broadcasting rule (tests/grad_rules_test.ts, CPU float64 and GPU)",
  scatter_add: "gather's gradient: ids out of range add nothing (tests/grad_rules_test.ts)",
  stop_gradient: "an alias of its input that only changes what grad does " +
    "(tests/grad_rules_test.ts, CPU and GPU)",
  selective_scan_grad: "the scan's backward: needs the forward's operands and an incoming " +
    "gradient (tests/ssm_grad_test.ts, finite differences, chunk agreement and GPU)",
  conv1d_causal_grad: "the causal conv's backward: fixed layouts as conv1d_causal " +
    "(tests/ssm_grad_test.ts)",
  lm_head_xent: "cross-entropy fused with the LM head: integer targets indexing the head's " +
    "vocabulary; checked against plain logits then log-softmax (tests/xent_test.ts)",
  lm_head_xent_grad: "its backward: the saved log-sum-exp only makes sense with a forward " +
    "(tests/xent_test.ts, finite differences and GPU)",
  moe_grad: "MoE's backward: its saved logits and incoming gradients only make sense with a " +
    "forward (tests/moe_grad_test.ts, finite differences and GPU)",
};

/** Options of {@linkcode generateCase}. */
export interface GenerateOptions {
  /** The adapter has shader-f16 (f16 values and casts may appear). */
  readonly f16: boolean;
  /** Most ops in a graph (default 12). */
  readonly maxOps?: number;
}

type Builder = (g: Gen) => boolean;

const SINGLE: readonly (readonly [number, Builder])[] = [
  [12, unary],
  [14, binary],
  [3, (g) => !!compare(g)],
  [3, where],
  [4, cast],
  [8, reduce],
  [8, matmul],
  [4, softmax],
  [5, norm],
  [4, reshape],
  [4, transpose],
  [4, slice],
  [3, concat],
  [4, gather],
  [3, cumsum],
  [4, topk],
  [2, writeRows],
  [3, rope],
  [3, attention],
];

const CONSUMERS: readonly (readonly [number, Builder])[] = [
  [4, matmul],
  [4, reduce],
  [2, softmax],
  [2, norm],
  [1, cumsum],
  [1, topk],
  [1, gather],
];

function elementwise(g: Gen): boolean {
  return g.weighted<Builder>([[3, unary], [4, binary], [1, where], [1, cast]])(g);
}

/** An elementwise DAG feeding a kernel op, with an elementwise epilogue. */
function chain(g: Gen): boolean {
  g.recent = 0.95;
  try {
    for (let k = g.int(2, 4); k > 0; k--) elementwise(g);
    const ok = g.weighted(CONSUMERS)(g);
    for (let k = g.int(0, 2); k > 0; k--) elementwise(g);
    return ok;
  } finally {
    g.recent = 0.5;
  }
}

/** Views of views, then a consumer. */
function views(g: Gen): boolean {
  g.recent = 0.95;
  try {
    for (let k = g.int(2, 3); k > 0; k--) g.pick<Builder>([reshape, transpose, slice])(g);
    return g.weighted<Builder>([[2, elementwise], ...CONSUMERS])(g);
  } finally {
    g.recent = 0.5;
  }
}

/** One value read by several ops. */
function fanout(g: Gen): boolean {
  g.pinned = g.take(() => true, 0.3);
  try {
    let ok = false;
    for (let k = g.int(2, 3); k > 0; k--) ok = g.weighted(SINGLE)(g) || ok;
    return ok;
  } finally {
    g.pinned = undefined;
  }
}

const TEMPLATES: readonly (readonly [number, Builder])[] = [[8, chain], [4, views], [4, fanout]];

/** A state and the update that ends the graph (added once the rest is built). */
function addState(g: Gen): () => { state: number; value: Val } | null {
  const kind = g.pick(["accumulator", "cache", "counter"] as const);
  const node = g.nodes.length;
  const name = g.name("s");
  if (kind === "counter") {
    const shape = [g.pick([1, 3])];
    g.nodes.push({ kind: "state", name, shape, dtype: "i32", data: { kind: "int", lo: 0, hi: 0 } });
    const s: Val = {
      ref: { node, out: 0 },
      shape,
      dtype: "i32",
      info: { lo: 0, hi: 30, exact: true, step: 1, terminal: false, varies: false },
    };
    g.pool.push(s);
    return () => {
      const v = bin(g, "add", s, g.scalar(g.pick([1, 3]), "i32"));
      return v && { state: node, value: v };
    };
  }
  const dtype = g.floatType();
  const shape: Dim[] = kind === "cache"
    ? [g.pick([4, 6, 9, 16]), g.pick([1, 2, 3, 4, 5, 8])]
    : Array.from({ length: g.int(1, 2) }, () => g.pick([1, 2, 3, 5, 8, 13]));
  g.nodes.push({ kind: "state", name, shape, dtype, data: { kind: "uniform", lo: 0, hi: 0 } });
  const s: Val = {
    ref: { node, out: 0 },
    shape,
    dtype,
    info: { lo: -2.5, hi: 2.5, exact: false, step: 0, terminal: false, varies: false },
  };
  g.pool.push(s);
  if (kind === "cache") {
    return () => {
      const [R, D] = shape as number[];
      const src = g.take((v) =>
        v.dtype === dtype && v.shape.length === 2 && v.shape[1] === D && mag(v.info) <= 2 &&
        v.ref !== s.ref, 0.3) ??
        g.leaf([g.chance(0.6) ? g.dim(0.7) : g.int(1, R), D], dtype, {
          kind: "uniform",
          lo: -2,
          hi: 2,
        });
      const v = g.emit("write_rows", [s, src, g.pos(0, R)], {}, () => [s.info])?.[0];
      return v ? { state: node, value: v } : null;
    };
  }
  return () => {
    const u = g.take(
      (v) =>
        v.dtype === dtype && broadcastShapes(shape, v.shape)?.join() === shape.join() &&
        v.ref !== s.ref,
      0.3,
    ) ??
      g.leaf(shape, dtype, g.uniform());
    const t = un(g, "tanh", u);
    const h = bin(g, "mul", s, g.scalar(0.5, dtype));
    const v = t && h && bin(g, "add", h, t);
    return v ? { state: node, value: { ...v, info: s.info } } : null;
  };
}

/** A size for a symbol in [min, max], favouring 1, primes and the ends (0 now and then). */
function size(g: Gen, min: number, max: number): number {
  if (min === 0 && g.chance(0.1)) return 0;
  const lo = Math.max(min, 1);
  const menu = [1, 2, 3, 5, 7, 11, 13, 17, lo, max].filter((d) => d >= lo && d <= max);
  return menu.length && g.chance(0.8) ? g.pick(menu) : g.int(lo, Math.max(lo, max));
}

/**
 * The case of `seed`: a valid graph (by construction and by the registry's shape
 * rules), its runs' symbol sizes and its inputs' seed.
 *
 * @example
 * ```ts ignore
 * const c = generateCase(42, { f16: true });
 * const graph = buildGraph(c.graph);
 * ```
 */
export function generateCase(seed: number, options: GenerateOptions): FuzzCase {
  const g = new Gen(seed, options.f16);
  if (g.chance(0.6)) g.symbols.T = { min: 0, max: g.pick([3, 5, 8, 13, 24]) };
  if (g.chance(0.3)) g.symbols.S = { min: 0, max: g.pick([4, 9, 16, 33]) };
  for (let k = g.int(1, 2); k > 0; k--) floatLeaf(g);
  if (g.chance(0.15)) g.leaf([g.int(1, 3), g.pick(LONG_MENU)], g.floatType(), g.uniform());
  const finish = g.chance(0.25) ? addState(g) : undefined;
  const target = g.int(3, options.maxOps ?? 12);
  for (let tries = 0; g.ops < target && tries < 60; tries++) {
    g.weighted<Builder>([[3, (g) => g.weighted(SINGLE)(g)], [1, (g) => g.weighted(TEMPLATES)(g)]])(
      g,
    );
  }
  const assigns = [];
  const update = finish?.();
  if (update) assigns.push({ state: update.state, ref: update.value.ref });
  if (g.ops === 0) unary(g);
  // Outputs: every sink, and now and then an inner value as well.
  const used = new Set<string>();
  for (const n of g.nodes) for (const r of refsOf(n)) used.add(`${r.node}:${r.out}`);
  for (const a of assigns) used.add(`${a.ref.node}:${a.ref.out}`);
  const produced: Val[] = g.pool.filter((v) => g.nodes[v.ref.node].kind === "op");
  const key = (v: Val) => `${v.ref.node}:${v.ref.out}`;
  const sinks = produced.filter((v) => !used.has(key(v)));
  const chosen = sinks.slice(-4);
  if (!chosen.length || g.chance(0.3)) {
    const inner = produced.filter((v) => !chosen.includes(v) && !v.info.terminal);
    if (inner.length) chosen.push(g.pick(inner));
  }
  const outputs = chosen.map((v, i) => ({ name: `y${i}`, ref: v.ref }));
  const graph: FuzzGraph = prune({ nodes: g.nodes, outputs, assigns, symbols: g.symbols });
  const runs = [];
  for (let r = assigns.length ? g.int(2, 3) : g.chance(0.35) ? 2 : 1; r > 0; r--) {
    const dims: Record<string, number> = {};
    for (const [s, { min, max }] of Object.entries(graph.symbols)) dims[s] = size(g, min, max);
    runs.push({ dims });
  }
  return { seed, inputsSeed: (Math.imul(seed, 2654435761) ^ 0x5f3759df) >>> 0, graph, runs };
}
