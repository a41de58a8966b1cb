/**
 * The GGUF fuzzer's mutations put together: {@linkcode genOp} picks one from
 * the families of `./mutations_header.ts`, `./mutations_tensors.ts` and
 * `./mutations_model.ts`, and {@linkcode build} applies a case's mutations to
 * a seed and encodes the file, with whether it must be refused and, when the
 * fields still describe it exactly, the fields it must read back as.
 *
 * @module
 */

import {
  cloneRaw,
  encodeRaw,
  FIXED_SIZE,
  keyOf,
  type RawGguf,
  type RawValue,
  VT,
} from "./codec.ts";
import { alignmentOp, preambleOp, stringOp, valueOp } from "./mutations_header.ts";
import { modelKeyOp, tokenizerOp } from "./mutations_model.ts";
import { byteOp, dataOp, relayoutOp, tensorOp } from "./mutations_tensors.ts";
import type { Op, SeedInfo } from "./op.ts";
import type { Rng } from "../../fuzz_loaders/mutate.ts";

/** One mutation for a case (never undefined: falls back to a truncation). */
export function genOp(r: Rng, g: RawGguf, s: SeedInfo): Op {
  const hasTokenizer = g.kvs.some((kv) => keyOf(kv).startsWith("tokenizer.ggml."));
  const table: [number, string, () => Op | undefined][] = [
    [2, "preamble", () => preambleOp(r, g)],
    [5, "string", () => stringOp(r, g, s)],
    [5, "value", () => valueOp(r, g)],
    [2, "alignment", () => alignmentOp(r)],
    [7, "tensor", () => tensorOp(r, g, s)],
    [4, "relayout", () => relayoutOp(r, g, s)],
    [4, "bytes", () => byteOp(r)],
    [s.model ? 3 : 1, "data", () => dataOp(r, g, s)],
    [s.model ? 6 : 0, "model-key", () => modelKeyOp(r, g, s)],
    [hasTokenizer ? 5 : 0, "tokenizer", () => tokenizerOp(r, g)],
  ];
  const total = table.reduce((a, [w]) => a + w, 0);
  for (let tries = 0; tries < 20; tries++) {
    let x = r() * total;
    for (const [w, kind, gen] of table) {
      if ((x -= w) >= 0) continue;
      const op = gen();
      if (op) return { ...op, kind: op.kind ?? kind };
      break;
    }
  }
  return { ...byteOp(r), kind: "bytes" };
}

/** A file from a seed and mutations: model mutations in order, then byte mutations. */
export function build(
  seed: RawGguf,
  ops: readonly Op[],
): { bytes: Uint8Array; refuse: boolean; what: string[]; exact?: RawGguf } {
  const g = cloneRaw(seed);
  for (const op of ops) op.model?.(g);
  const encoded = encodeRaw(g);
  let { bytes, layout } = encoded;
  let refuse = ops.some((o) => o.refuse);
  const what = ops.map((o) => o.what);
  const byteOps = ops.filter((o) => o.bytes).length;
  ops.forEach((op, i) => {
    if (!op.bytes) return;
    const out = op.bytes(bytes, layout);
    bytes = out.bytes;
    // After another byte edit the layout is off: only a lone one's verdict holds.
    if (byteOps === 1) refuse ||= out.refuse === true;
    if (out.what) what[i] = out.what;
    layout = { ...layout, size: bytes.length };
  });
  return { bytes, refuse, what, exact: byteOps === 0 && !overridden(g) ? g : undefined };
}

/**
 * Whether `g` writes a count or length other than its own, or a value of
 * another type than the one it declares (then it does not describe its file).
 */
function overridden(g: RawGguf): boolean {
  const value = (type: number, v: RawValue): boolean =>
    v.kind === "raw" ||
    (v.kind === "fixed" && v.bytes.length !== FIXED_SIZE[type]) ||
    (v.kind === "string" && (type !== VT.string || v.s.len !== undefined)) ||
    (v.kind === "array" &&
      (type !== VT.array || v.len !== undefined || v.items.some((x) => value(v.elem, x))));
  return g.tensorCount !== undefined || g.kvCount !== undefined ||
    g.kvs.some((kv) => kv.key.len !== undefined || value(kv.type, kv.value)) ||
    g.tensors.some((t) => t.name.len !== undefined || t.nd !== undefined);
}
