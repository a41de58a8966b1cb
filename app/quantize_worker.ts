/**
 * The worker of {@linkcode QuantPool} (`quantize_pool.ts`): encodes the part of
 * a tensor it is sent with the same CPU codecs as the main thread, and sends
 * the blocks back (their buffer transferred, not copied). An encoder's error
 * goes back as a message, so the pool can tell it from a worker that failed to
 * load.
 *
 * Messages in: `{ id, format, shared, from, to, importance? }` (elements
 * `from`..`to` of the float32 tensor in the `SharedArrayBuffer` `shared`, whole
 * rows when an importance vector comes with them); out: `{ id, bytes }`
 * or `{ id, error: { name, message } }`.
 *
 * @module
 */

import { quantize } from "../core/quant/codecs.ts";
import { type Importance, quantizeWithImportance } from "../core/quant/importance.ts";
import type { QuantFormat } from "../core/quant/formats.ts";

/** One part of a tensor to encode. */
interface Part {
  id: number;
  format: QuantFormat;
  shared: SharedArrayBuffer;
  from: number;
  to: number;
  /** Whole rows then, each fitted with these values (`quantizeWithImportance`). */
  importance?: Importance;
}

/** The little of a dedicated worker's scope this module uses. */
interface WorkerScope {
  onmessage: (e: MessageEvent<Part>) => void;
  postMessage(message: unknown, transfer?: Transferable[]): void;
}

const scope = globalThis as unknown as WorkerScope;

scope.onmessage = (e) => {
  const { id, format, shared, from, to, importance } = e.data;
  try {
    const part = new Float32Array(shared, from * 4, to - from);
    const bytes = importance
      ? quantizeWithImportance(format, part, importance.rowLength, importance.values)
      : quantize(format, part);
    scope.postMessage({ id, bytes }, [bytes.buffer]);
  } catch (err) {
    const { name, message } = err instanceof Error ? err : new Error(String(err));
    scope.postMessage({ id, error: { name, message } });
  }
};
