/**
 * Importance matrices computed by Kiln (`kiln imatrix`), as `llama-imatrix`
 * computes them: the model runs over calibration text in chunks of
 * `chunkSize` tokens (each chunk's first token replaced by BOS where the
 * tokenizer adds one), and for every weight matrix of a layer (`blk.*`; the
 * output head only with `processOutput`) each input column's squared
 * activations are summed, with the number of rows summed. A weight multiplied
 * with fewer than 16 rows at once is skipped, as llama-imatrix skips it; a
 * stacked expert weight keeps one sum and count per expert, over the tokens
 * routed to it (its down projection's input is the expert's SwiGLU
 * activations for that token). Names are the GGUF weights llama.cpp writes,
 * so the result feeds `kiln quantize --imatrix` and `llama-quantize`.
 *
 * The model runs on the CPU reference device (`Executable.observe` hears each
 * node's inputs): exact, and slow — ~40 ms a token for a ~100M-parameter
 * Mixtral-style model on this project's 2-core machines; a GPU collector is
 * not built yet.
 *
 * @module
 */

import type { HostTensor } from "../core/types.ts";
import type { Node } from "../core/graph.ts";
import { checkpointSources } from "../models/causal_lm.ts";
import { moeVisit } from "../ops/moe/mod.ts";
import type { MoeAttrs } from "../ops/moe/attrs.ts";
import { cpuDevice } from "../runtime/device.ts";
import { ggufWeightsBySource, type ImatrixSums } from "./gguf/imatrix.ts";
import { loadModel } from "./model/load.ts";
import { modelTokenizer, readModelConfig } from "./model/source.ts";

/**
 * Options of {@linkcode computeImatrix}.
 *
 * @example
 * ```ts
 * import type { ComputeImatrixOptions } from "./imatrix.ts";
 * const o: ComputeImatrixOptions = { chunkSize: 512, chunks: 100 };
 * ```
 */
export interface ComputeImatrixOptions {
  /** Tokens a chunk (default 512, at most the model's `max_position_embeddings`). */
  chunkSize?: number;
  /** At most this many chunks (default: every whole chunk of the text). */
  chunks?: number;
  /** Collect the output head (`output.weight`) too, as llama-imatrix's `--process-output`. */
  processOutput?: boolean;
  /** Told after each chunk. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * What {@linkcode computeImatrix} gathered: per GGUF weight, the sums and
 * counts `writeImatrix` stores.
 *
 * @example
 * ```ts ignore
 * const r: ComputedImatrix = await computeImatrix("./tiny-mixtral", ["Some text…"]);
 * console.log(r.chunks, r.weights.size);
 * ```
 */
export interface ComputedImatrix {
  /** GGUF weight name → Σx² per column (matrix after matrix) and rows summed per matrix. */
  readonly weights: Map<string, ImatrixSums>;
  /** Chunks run. */
  readonly chunks: number;
  /** Tokens a chunk. */
  readonly chunkSize: number;
}

/** Where a Kiln parameter's activations go: its GGUF weight, and its matrix count (experts). */
interface Target {
  readonly name: string;
  readonly matrices: number;
}

/** Accumulates Σx² per column and a row count per matrix, in float64. */
class Sums {
  readonly sums: Float64Array;
  readonly counts: Float64Array;
  constructor(readonly cols: number, matrices: number) {
    this.sums = new Float64Array(cols * matrices);
    this.counts = new Float64Array(matrices);
  }
  /** Adds row `r` of `x` (rows of `cols`) to matrix `m`. */
  add(m: number, x: ArrayLike<number>, r: number): void {
    const o = m * this.cols, xo = r * this.cols;
    for (let j = 0; j < this.cols; j++) this.sums[o + j] += x[xo + j] * x[xo + j];
    this.counts[m]++;
  }
}

/**
 * Runs the model at `model` (a Hugging Face folder or GGUF file with a
 * tokenizer) over `texts` and returns its importance matrix (see the module
 * notes). Texts are tokenized one after another (special tokens added, as
 * llama-imatrix tokenizes its file) and joined; too few tokens for one chunk is
 * a `RangeError` saying how many there are.
 *
 * @example
 * ```ts ignore
 * import { computeImatrix } from "./imatrix.ts";
 * import { writeImatrix } from "./gguf/imatrix.ts";
 * const r = await computeImatrix("./tiny-mixtral", [await Deno.readTextFile("wiki.txt")], { chunkSize: 256 });
 * await writeImatrix("imatrix.gguf", r.weights, { datasets: ["wiki.txt"], chunkCount: r.chunks, chunkSize: r.chunkSize });
 * ```
 */
export async function computeImatrix(
  model: string,
  texts: readonly string[],
  options: ComputeImatrixOptions = {},
): Promise<ComputedImatrix> {
  const cfg = await readModelConfig(model);
  // State-space models have no position limit; attention models read theirs.
  const limit = cfg.maxPositions ?? 1 << 20;
  const chunkSize = options.chunkSize ?? Math.min(512, limit);
  if (!Number.isInteger(chunkSize) || chunkSize < 16 || chunkSize > limit) {
    throw new RangeError(
      `imatrix: chunkSize must be an integer from 16 to the model's ${limit} positions, ` +
        `got ${chunkSize}`,
    );
  }
  const tokenizer = await modelTokenizer(model);
  if (!tokenizer) {
    throw new TypeError(`${model}: no tokenizer; an importance matrix is computed from text`);
  }
  const ids = texts.flatMap((t) => tokenizer.encode(t, { addSpecialTokens: true }));
  const whole = Math.floor(ids.length / chunkSize);
  const chunks = Math.min(whole, options.chunks ?? whole);
  if (chunks < 1) {
    throw new RangeError(
      `imatrix: the text is ${ids.length} tokens, less than one chunk of ${chunkSize}; give ` +
        `more text or a smaller chunk size`,
    );
  }
  // llama-imatrix puts BOS first in every chunk when the tokenizer adds one.
  const first = tokenizer.encode("a", { addSpecialTokens: true })[0];
  const bos = tokenizer.bosId !== undefined && first === tokenizer.bosId ? first : undefined;

  const m = await loadModel(model, {
    device: cpuDevice(),
    quiet: true,
    maxSeq: chunkSize,
    prefillChunk: false,
    coldPromptTokens: 0,
  });
  try {
    const graph = m.prefill.graph;
    const where = ggufWeightsBySource(cfg);
    const wanted = (name: string) =>
      name.startsWith("blk.") || (options.processOutput === true && name === "output.weight");
    // Graph value id of each parameter → where its activations are summed.
    const targets = new Map<number, Target>();
    for (const [param, src] of checkpointSources(cfg, graph)) {
      const w = src.tensors.length > 0 ? where.get(src.tensors[0]) : undefined;
      if (w && wanted(w.weight)) {
        targets.set(graph.params.get(param)!, { name: w.weight, matrices: w.of });
      }
    }
    const acc = new Map<string, Sums>();
    const sumsOf = (t: Target, cols: number) => {
      let s = acc.get(t.name);
      if (!s) acc.set(t.name, s = new Sums(cols, t.matrices));
      return s;
    };
    m.prefill.observe((node, inputs) => observeNode(node, inputs, targets, sumsOf));
    for (let c = 0; c < chunks; c++) {
      const chunk = ids.slice(c * chunkSize, (c + 1) * chunkSize);
      if (bos !== undefined) chunk[0] = bos;
      await m.forward(chunk);
      options.onProgress?.(c + 1, chunks);
    }
    const weights = new Map<string, ImatrixSums>();
    for (const [name, s] of acc) {
      weights.set(name, { sums: Float32Array.from(s.sums), counts: Float32Array.from(s.counts) });
    }
    return { weights, chunks, chunkSize };
  } finally {
    m.dispose();
  }
}

/** Adds one interpreted node's weight inputs to the sums. */
function observeNode(
  node: Node,
  inputs: readonly HostTensor[],
  targets: ReadonlyMap<number, Target>,
  sumsOf: (t: Target, cols: number) => Sums,
): void {
  if (node.op === "matmul" || node.op === "qmatmul") {
    const t = targets.get(node.inputs[1]);
    if (!t) return;
    const x = inputs[0];
    const cols = x.shape[x.shape.length - 1];
    const rows = x.data.length / cols;
    if (rows < 16) return; // llama-imatrix asks only for batches of 16 rows or more
    const s = sumsOf(t, cols);
    for (let r = 0; r < rows; r++) s.add(0, x.data, r);
    return;
  }
  if (node.op !== "moe") return;
  const attrs = node.attrs as MoeAttrs;
  const x = inputs[0];
  const d = x.shape[x.shape.length - 1];
  const rows = x.data.length / d;
  const router = attrs.logitsIn === true ? undefined : targets.get(node.inputs[1]);
  if (router && rows >= 16) {
    const s = sumsOf(router, d);
    for (let r = 0; r < rows; r++) s.add(0, x.data, r);
  }
  const [w1, w3, w2] = [2, 3, 4].map((i) => targets.get(node.inputs[i]));
  if (!w1 && !w3 && !w2) return;
  const ff = typeof attrs.ff === "number" ? attrs.ff : inputs[2].shape[inputs[2].shape.length - 2];
  moeVisit(inputs, attrs, (e, tok, hidden) => {
    if (w1) sumsOf(w1, d).add(e, x.data, tok);
    if (w3) sumsOf(w3, d).add(e, x.data, tok);
    if (w2) sumsOf(w2, ff).add(e, hidden, 0);
  });
}
