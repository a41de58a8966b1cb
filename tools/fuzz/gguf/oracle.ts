/**
 * The GGUF fuzzer's oracle: a mutated file goes through every step Kiln takes
 * with a GGUF file ({@linkcode pipeline}: open and read every tensor, open as
 * a model and as a checkpoint, read the config, build and use the tokenizer,
 * and for some cases load the model and run a forward pass), and each step
 * must succeed or throw a Kiln error (`../../fuzz_loaders/judge.ts`); an
 * accepted file must read back as it was written ({@linkcode headerDiff}).
 *
 * @module
 */

import { openGgufModel } from "../../../app/gguf/arch.ts";
import { GgufCheckpoint } from "../../../app/gguf/checkpoint.ts";
import { GgufFile } from "../../../app/gguf/file.ts";
import { GGUF_VALUE_TYPES } from "../../../app/gguf/value.ts";
import { loadModel } from "../../../app/model/mod.ts";
import { modelTokenizer, readModelConfig } from "../../../app/model/source.ts";
import type { Tokenizer } from "../../../app/tokenizer/mod.ts";
import { cpuDevice } from "../../../runtime/device.ts";
import { type CaseResult, judgeError } from "../../fuzz_loaders/judge.ts";
import { dec, keyOf, nameOf, type RawGguf, type RawValue, readFixed, VT } from "./codec.ts";

/** Texts the tokenizer encodes and decodes. */
const TEXTS = [
  "Hello world",
  "  The quick brown fox -- jumps over 1234 lazy dogs!\n\tTabs.",
  "héllo wörld 🦩 日本語 \u0000 \ud83d",
  "<s>user</s> <|endoftext|>",
  "",
];

/** Why a tokenizer's output is wrong, or undefined. */
function useTokenizer(tok: Tokenizer): string | undefined {
  for (const text of TEXTS) {
    for (const addSpecialTokens of [true, false]) {
      const ids = tok.encode(text, { addSpecialTokens });
      const bad = ids.find((id) => !Number.isInteger(id) || id < 0 || id >= tok.vocabSize);
      if (bad !== undefined) return `encode gave id ${bad} (vocabSize ${tok.vocabSize})`;
      if (typeof tok.decode(ids) !== "string") return "decode did not return a string";
    }
  }
  // Every token decodes (a mutated one too), alone and all together.
  const all = Array.from({ length: Math.min(tok.vocabSize, 1024) }, (_, i) => i);
  if (typeof tok.decode(all) !== "string") return "decode did not return a string";
  return undefined;
}

/** The result of a case, with the step that ended it. */
export interface GgufCaseResult extends CaseResult {
  /** The step that refused the file (`open`, `model`, `config`, `tokenizer`, `run`). */
  step?: string;
  /** The mutations' families, `+`-joined. */
  kinds?: string;
}

/** Runs the pipeline on `path`: every step succeeds or refuses properly. */
export async function pipeline(
  path: string,
  model: boolean,
  run: boolean,
  what: string,
  written?: RawGguf,
): Promise<GgufCaseResult> {
  const steps: [string, () => Promise<string | undefined>][] = [
    ["open", async () => {
      using f = await GgufFile.open(path);
      // What was written is what is read (when the fields describe the file exactly).
      const diff = written && headerDiff(f, written);
      if (diff) return `the header read differs from the one written: ${diff}`;
      for (const [name, t] of f.tensors) {
        const raw = await f.read(name);
        if (raw.length !== t.bytes) return `read(${name}) gave ${raw.length} bytes, not ${t.bytes}`;
        if (t.offset + t.bytes > f.size || t.offset < f.dataOffset) {
          return `accepted tensor ${name} at bytes ${t.offset}..${t.offset + t.bytes} of ${f.size}`;
        }
        if (["f32", "f16", "bf16"].includes(t.type.name)) await f.readF32(name);
      }
      return undefined;
    }],
  ];
  if (model) {
    steps.push(
      ["model", async () => {
        {
          using m = await openGgufModel(path);
          for (const [name, t] of m.tensors) {
            const b = await m.read(name);
            if (b.length !== t.bytes) {
              return `model.read(${name}) gave ${b.length} bytes, not ${t.bytes}`;
            }
          }
        }
        using w = await GgufCheckpoint.open(path);
        for (const name of w.tensors.keys()) await w.readAs(name, "f32");
        return undefined;
      }],
      ["config", async () => {
        await readModelConfig(path);
        return undefined;
      }],
      ["tokenizer", async () => {
        const tok = await modelTokenizer(path);
        return tok ? useTokenizer(tok) : undefined;
      }],
    );
    if (run) {
      steps.push(["run", async () => {
        const m = await loadModel(path, { device: cpuDevice(), quiet: true, maxSeq: 8 });
        try {
          const V = m.config.vocabSize;
          const logits = await m.forward([1 % V, 2 % V]);
          const bad = logits.findIndex((x) => !Number.isFinite(x));
          if (bad >= 0) {
            return `forward gave non-finite logits (${logits[bad]} at ${bad} of ${logits.length})`;
          }
        } finally {
          m.dispose();
        }
        return undefined;
      }]);
    }
  }
  for (const [step, fn] of steps) {
    let wrong: string | undefined;
    try {
      wrong = await fn();
    } catch (e) {
      return { ...judgeError(e, [path], what), step };
    }
    if (wrong) return { outcome: "failure", failure: `wrong success: ${wrong}`, what, step };
  }
  return { outcome: "ok", what };
}

/** How a metadata value Kiln read differs from the one written, or undefined. */
function valueDiff(type: number, written: RawValue, read: unknown, depth = 0): string | undefined {
  if (written.kind === "fixed") {
    const v = readFixed(type, written.bytes);
    const want = type === VT.bool ? v === 1 : v;
    const same = typeof want === "number" && typeof read === "number"
      ? Object.is(want, read) || (Number.isNaN(want) && Number.isNaN(read)) || want === read
      : want === read;
    return same ? undefined : `${String(read)}, written ${String(want)}`;
  }
  if (written.kind === "string") {
    const want = dec.decode(written.s.bytes);
    return read === want ? undefined : `a string of ${String(read).length}, written ${want.length}`;
  }
  if (written.kind !== "array" || depth > 8) return undefined;
  const a = read as { type: string; values: unknown[] };
  if (a.type !== GGUF_VALUE_TYPES[written.elem]) return `an array of ${a.type}`;
  if (a.values.length !== written.items.length) return `an array of ${a.values.length}`;
  for (const [i, x] of written.items.entries()) {
    const d = valueDiff(written.elem, x, a.values[i], depth + 1);
    if (d) return `[${i}] ${d}`;
  }
  return undefined;
}

/** How the file Kiln opened differs from `g`, which wrote it, or undefined. */
export function headerDiff(f: GgufFile, g: RawGguf): string | undefined {
  if (f.version !== g.version) return `version ${f.version}, written ${g.version}`;
  const keys = [...f.entries.keys()];
  if (keys.length !== g.kvs.length) return `${keys.length} metadata pairs, written ${g.kvs.length}`;
  for (const [i, kv] of g.kvs.entries()) {
    const key = keyOf(kv);
    if (keys[i] !== key) return `metadata pair #${i} is ${JSON.stringify(keys[i])}, written ${key}`;
    const e = f.entries.get(key)!;
    if (VT[e.type] !== kv.type) {
      return `${JSON.stringify(key)} is ${e.type}, written type ${kv.type}`;
    }
    const d = valueDiff(kv.type, kv.value, e.value);
    if (d) return `${JSON.stringify(key)} reads as ${d}`;
  }
  const names = [...f.tensors.keys()];
  if (names.length !== g.tensors.length) {
    return `${names.length} tensors, written ${g.tensors.length}`;
  }
  for (const [i, t] of g.tensors.entries()) {
    const info = f.tensors.get(nameOf(t));
    if (names[i] !== nameOf(t) || !info) return `tensor #${i} is ${JSON.stringify(names[i])}`;
    if (info.dims.join() !== t.dims.join() || info.type.id !== t.type) {
      return `tensor ${
        names[i]
      } reads as ${info.type.name} [${info.dims}], written type ${t.type} ` +
        `[${t.dims}]`;
    }
    if (info.offset - f.dataOffset !== Number(t.offset)) {
      return `tensor ${names[i]} at offset ${info.offset - f.dataOffset}, written ${t.offset}`;
    }
  }
  return undefined;
}
