/**
 * The synthetic tasks of the Mamba paper (§4.1), scaled down: batches of
 * token ids with the positions a model is scored on.
 *
 * - **Selective copying**: `data` tokens scattered at random positions among
 *   noise tokens, then as many marker tokens; at each marker the model must
 *   emit the next data token in order. Where the data sits changes per
 *   example, so a time-invariant model (S4, a fixed convolution) cannot pick
 *   it out — selection needs input-dependent parameters.
 * - **Associative recall** (induction heads): key–value pairs, then one of the
 *   keys again; the model must emit its value.
 *
 * `targets[t]` is what the model should emit after reading `ids[t]` (so a
 * language model's logits at t are scored against it), −100 where a position
 * is not scored, as PyTorch's ignore index.
 *
 * @module
 */

import { mulberry32 } from "../../core/random.ts";

/** A batch: `ids` and `targets` are `[batch, length]` row-major. */
export interface TaskBatch {
  /** Input ids. */
  ids: Int32Array;
  /** Next-token targets; −100 where not scored. */
  targets: Int32Array;
  /** Examples. */
  batch: number;
  /** Tokens per example. */
  length: number;
}

/** Sizes of the selective-copying task. */
export interface CopyTask {
  /** Vocabulary: 0 noise, 1 marker, 2.. data. */
  vocab: number;
  /** Positions the data is scattered over. */
  span: number;
  /** Data tokens to copy. */
  data: number;
}

/** Token ids of the tasks' special symbols. */
export const NOISE = 0, MARKER = 1;

/**
 * A batch of selective copying: `span` positions holding `data` tokens
 * (ids ≥ 2) at random places, then `data` markers. The target at the last
 * `data` positions is the data in order (the model reads a marker and emits
 * the next data token).
 */
export function selectiveCopyBatch(task: CopyTask, batch: number, seed: number): TaskBatch {
  if (task.vocab < 3 || task.data > task.span) {
    throw new RangeError(
      `selectiveCopyBatch: needs vocab ≥ 3 and data ≤ span, got ${JSON.stringify(task)}`,
    );
  }
  const rand = mulberry32(seed);
  const length = task.span + task.data;
  const ids = new Int32Array(batch * length), targets = new Int32Array(batch * length).fill(-100);
  for (let b = 0; b < batch; b++) {
    const row = b * length;
    // Choose `data` distinct positions in the span, kept in order.
    const slots = Array.from({ length: task.span }, (_, i) => i);
    for (let i = slots.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [slots[i], slots[j]] = [slots[j], slots[i]];
    }
    const chosen = slots.slice(0, task.data).sort((a, c) => a - c);
    const values = chosen.map(() => 2 + Math.floor(rand() * (task.vocab - 2)));
    chosen.forEach((p, i) => (ids[row + p] = values[i]));
    for (let i = 0; i < task.data; i++) {
      ids[row + task.span + i] = MARKER;
      // Reading the i-th marker, the model emits the i-th datum.
      targets[row + task.span + i] = values[i];
    }
  }
  return { ids, targets, batch, length };
}

/** Sizes of the associative-recall task. */
export interface RecallTask {
  /** Vocabulary: keys and values are drawn from ids ≥ 2. */
  vocab: number;
  /** Key–value pairs before the query. */
  pairs: number;
}

/**
 * A batch of associative recall: `pairs` distinct keys each followed by its
 * value, then one of the keys; the target at that last position is its value.
 */
export function associativeRecallBatch(task: RecallTask, batch: number, seed: number): TaskBatch {
  const half = Math.floor((task.vocab - 2) / 2);
  if (task.pairs < 1 || task.pairs > half) {
    throw new RangeError(`associativeRecallBatch: needs 1 ≤ pairs ≤ ${half}, got ${task.pairs}`);
  }
  const rand = mulberry32(seed);
  const length = 2 * task.pairs + 1;
  const ids = new Int32Array(batch * length), targets = new Int32Array(batch * length).fill(-100);
  for (let b = 0; b < batch; b++) {
    const row = b * length;
    // Keys from the lower half of the ids, values from the upper, so the two never mix.
    const keys = Array.from({ length: half }, (_, i) => 2 + i);
    for (let i = keys.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [keys[i], keys[j]] = [keys[j], keys[i]];
    }
    const values: number[] = [];
    for (let p = 0; p < task.pairs; p++) {
      values.push(2 + half + Math.floor(rand() * half));
      ids[row + 2 * p] = keys[p];
      ids[row + 2 * p + 1] = values[p];
    }
    const q = Math.floor(rand() * task.pairs);
    ids[row + length - 1] = keys[q];
    targets[row + length - 1] = values[q];
  }
  return { ids, targets, batch, length };
}

/**
 * Accuracy of greedy predictions on the scored positions: `pred` holds the
 * argmax id per position, `[batch, length]`.
 */
export function scoredAccuracy(pred: ArrayLike<number>, targets: ArrayLike<number>): number {
  let hit = 0, n = 0;
  for (let i = 0; i < targets.length; i++) {
    if (targets[i] < 0) continue;
    n++;
    if (pred[i] === targets[i]) hit++;
  }
  return n === 0 ? 0 : hit / n;
}
