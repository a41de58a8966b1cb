/**
 * Fuzz cases for the safetensors reader: one file (`SafetensorsFile.open` and a
 * read of every tensor) and a sharded folder (`Checkpoint.open` on an index and
 * its shards). Each case mutates a valid seed — the length prefix, truncations at
 * every region, flipped bytes, the header as JSON (wrong types, missing fields,
 * unknown dtypes, overflowing shapes, bad spans, duplicate names) and as text —
 * and compares Kiln's verdict and bytes with the independent reference.
 *
 * @module
 */

import { join } from "node:path";
import { Checkpoint } from "../../app/safetensors/checkpoint.ts";
import { SafetensorsFile } from "../../app/safetensors/file.ts";
import { SAFE_DTYPES } from "../../app/safetensors/dtypes.ts";
import { type CaseResult, judgeError, wrongSuccess } from "./judge.ts";
import {
  chance,
  DUP,
  flipBytes,
  int,
  type Json,
  mutateJson,
  mutateText,
  pick,
  type Rng,
  stringifyWithDuplicate,
} from "./mutate.ts";
import { type Folder, referenceFolder, referenceSafetensors, type RefTensor } from "./reference.ts";

const MAX_HEADER = 100 * 1024 * 1024;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Strings worth putting into a header. */
const HEADER_WORDS = [
  ...SAFE_DTYPES,
  "F4",
  "bf16",
  "F8_E4M3FN",
  "C64",
  "dtype",
  "shape",
  "data_offsets",
  "__metadata__",
  "format",
  "pt",
  "lm_head.weight",
];

/** A file from header text and data, with the right length prefix. */
function assemble(header: string, data: Uint8Array, pad: boolean): Uint8Array {
  let h = enc.encode(header);
  if (pad && h.length % 8) {
    const padded = new Uint8Array(h.length + 8 - (h.length % 8)).fill(0x20);
    padded.set(h);
    h = padded;
  }
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

/** A seed's parts: the header as text and object, and the data region. */
function split(
  bytes: Uint8Array,
): { text: string; header: Record<string, Json>; data: Uint8Array } {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const text = dec.decode(bytes.subarray(8, 8 + n));
  return { text, header: JSON.parse(text), data: bytes.subarray(8 + n) };
}

type Entry = { dtype: string; shape: number[]; data_offsets: [number, number] };

/** Targeted header edits: the cases the format's rules are about. */
function targeted(r: Rng, seed: Uint8Array): { bytes: Uint8Array; what: string } {
  const { header, data } = split(seed);
  const names = Object.keys(header).filter((k) => k !== "__metadata__");
  const h = structuredClone(header) as Record<string, Json>;
  const name = names.length ? pick(r, names) : "t";
  const e = (h[name] ?? { dtype: "U8", shape: [0], data_offsets: [0, 0] }) as unknown as Entry;
  h[name] = e as unknown as Json;
  // An earlier mutation may have left non-numbers here: arithmetic on them would
  // write "[object Object]1" into the file, which reads as an engine message.
  const num = (v: unknown) => (typeof v === "number" ? v : 0);
  const size = num(e.data_offsets?.[1]) - num(e.data_offsets?.[0]);
  const done = (what: string, extra = new Uint8Array(0)) => {
    const d = new Uint8Array(data.length + extra.length);
    d.set(data);
    d.set(extra, data.length);
    return { bytes: assemble(JSON.stringify(h), d, chance(r, 0.5)), what };
  };
  switch (int(r, 9)) {
    case 0: {
      // The same name twice, the copy in its own bytes: a reader keeping the last copy changes output.
      const copy = { ...e, data_offsets: [data.length, data.length + size] };
      const text = stringifyWithDuplicate({ ...h, [DUP]: { key: name, value: copy } });
      const d = new Uint8Array(data.length + size).fill(0x3f);
      d.set(data);
      return { bytes: assemble(text, d, false), what: `tensor ${name} written twice (own bytes)` };
    }
    case 1: {
      const other = pick(r, names.length ? names : [name]);
      const o = h[other] as unknown as Entry;
      e.data_offsets = [num(o.data_offsets?.[0]), num(o.data_offsets?.[0]) + size];
      return done(`${name} moved onto ${other}'s bytes`);
    }
    case 2:
      e.data_offsets = [num(e.data_offsets?.[1]) + 1, num(e.data_offsets?.[0]) + 1];
      return done(`${name}: begin > end`);
    case 3: {
      const past = data.length + int(r, 3);
      e.data_offsets = [past - size + 1, past + 1];
      return done(`${name}: span ends past the data`);
    }
    case 4:
      e.shape = pick(r, [
        [2 ** 53 - 1, 2 ** 53 - 1, 0],
        [2 ** 32, 2 ** 32],
        [2 ** 26, 2 ** 26, 2 ** 26, 0],
        [2 ** 40],
        [0, 2 ** 53 - 1],
      ]);
      e.data_offsets = [0, 0];
      return done(`${name}: shape ${JSON.stringify(e.shape)} with an empty span`);
    case 5: {
      // A header claiming 2^40 elements: must be refused before anything is allocated.
      e.shape = [2 ** 40];
      e.dtype = "U8";
      e.data_offsets = [0, 2 ** 40];
      return done(`${name}: claims 2^40 bytes`);
    }
    case 6:
      e.dtype = pick(r, ["F4", "f32", "", "I128", "F8_E4M3FN", "BOOL "]);
      return done(`${name}: dtype ${JSON.stringify(e.dtype)}`);
    case 7: {
      // Data that does not end where the last tensor ends: gaps are allowed.
      const extra = new Uint8Array(1 + int(r, 64)).fill(0xee);
      return done(`${extra.length} bytes appended after the data`, extra);
    }
    default: {
      const meta = pick<Json>(r, [{ format: 1 }, [], "pt", { a: { b: "c" } }, null, { "": "" }]);
      h.__metadata__ = meta;
      return done(`__metadata__ = ${JSON.stringify(meta)}`);
    }
  }
}

/** One mutation of a valid safetensors file. */
export function mutateSafetensors(
  r: Rng,
  seed: Uint8Array,
  words: readonly string[] = [],
): { bytes: Uint8Array; what: string } {
  const size = seed.length;
  const n = Number(new DataView(seed.buffer, seed.byteOffset, 8).getBigUint64(0, true));
  const op = int(r, 11);
  switch (op) {
    case 0: {
      const v = pick(r, [
        0n,
        1n,
        2n,
        7n,
        BigInt(Math.max(0, n - 1)),
        BigInt(n + 1),
        BigInt(size - 8),
        BigInt(size - 7),
        2n ** 32n,
        2n ** 53n,
        2n ** 63n,
        2n ** 64n - 1n,
        BigInt(MAX_HEADER),
        BigInt(MAX_HEADER + 1),
        BigInt(int(r, 2 ** 30)) * BigInt(int(r, 2 ** 30)),
      ]);
      const out = seed.slice();
      new DataView(out.buffer).setBigUint64(0, v, true);
      return { bytes: out, what: `header length ${v} (was ${n})` };
    }
    case 1: {
      const at = pick(r, [
        int(r, 9),
        8 + int(r, n + 1),
        8 + n + int(r, size - 8 - n + 1),
        size - 1,
        8 + n,
      ]);
      return { bytes: seed.slice(0, Math.max(0, at)), what: `truncated at ${at} of ${size}` };
    }
    case 2: {
      const region = int(r, 3);
      const [from, to] = region === 0 ? [0, 8] : region === 1 ? [8, 8 + n] : [8 + n, size];
      const f = flipBytes(r, seed, from, to, 1 + int(r, 4));
      return { bytes: f.bytes, what: `${["prefix", "header", "data"][region]} ${f.what}` };
    }
    case 3:
    case 4:
    case 5: {
      const { header, data } = split(seed);
      const m = mutateJson(r, header, [...HEADER_WORDS, ...Object.keys(header), ...words]);
      const text = stringifyWithDuplicate(m.value, chance(r, 0.2) ? 2 : undefined);
      return { bytes: assemble(text, data, chance(r, 0.5)), what: `header ${m.what}` };
    }
    case 6: {
      const { text, data } = split(seed);
      const m = mutateText(r, text);
      return { bytes: assemble(m.text, data, false), what: `header ${m.what}` };
    }
    case 7:
    case 8:
      return targeted(r, seed);
    case 9: {
      const extra = new Uint8Array(int(r, 100)).map(() => int(r, 256));
      const out = new Uint8Array(size + extra.length);
      out.set(seed);
      out.set(extra, size);
      return { bytes: out, what: `${extra.length} random bytes appended` };
    }
    default: {
      const a = mutateSafetensors(r, seed, words);
      try {
        const b = mutateSafetensors(r, a.bytes, words);
        return { bytes: b.bytes, what: `${a.what}; then ${b.what}` };
      } catch {
        return a; // the first step left no header the second can start from
      }
    }
  }
}

/** Checks an accepted file's tensors against the reference's, and reads each. */
async function checkTensors(
  kiln: ReadonlyMap<string, { dtype: string; offset: number; byteLength: number; file: string }>,
  ref: Map<string, { file: string; tensor: RefTensor }>,
  read: (name: string) => Promise<Uint8Array>,
  readF32: (name: string) => Promise<Float32Array>,
  bytesOf: (file: string) => Uint8Array,
  fileOf: (kilnFile: string) => string,
): Promise<string | undefined> {
  if (kiln.size !== ref.size) return `Kiln has ${kiln.size} tensors, the reference ${ref.size}`;
  for (const [name, t] of kiln) {
    const want = ref.get(name);
    if (!want) return `Kiln has tensor ${JSON.stringify(name.slice(0, 60))}, the reference not`;
    const w = want.tensor;
    if (fileOf(t.file) !== want.file || t.offset !== w.offset || t.byteLength !== w.byteLength) {
      return `tensor ${name}: Kiln puts it at ${fileOf(t.file)}@${t.offset}+${t.byteLength}, ` +
        `the reference at ${want.file}@${w.offset}+${w.byteLength}`;
    }
    const got = await read(name);
    const expect = bytesOf(want.file).subarray(w.offset, w.offset + w.byteLength);
    if (got.length !== expect.length || got.some((b, i) => b !== expect[i])) {
      return `tensor ${name}: bytes read differ from the file's`;
    }
    if (t.dtype !== "BOOL") {
      const f = await readF32(name);
      if (f.length !== w.numel) {
        return `tensor ${name}: readAs gave ${f.length} values, not ${w.numel}`;
      }
    }
  }
  return undefined;
}

/** Context shared by the cases of one worker. */
export interface SafetensorsContext {
  /** Scratch folder of this worker. */
  dir: string;
  /** Valid files to start from. */
  seeds: Uint8Array[];
  /** Valid folders to start from. */
  folders: Folder[];
  /** Told what a case is about to load (so a hang can be described). */
  note: (what: string) => void;
}

/** One single-file case. */
export async function singleCase(r: Rng, ctx: SafetensorsContext): Promise<CaseResult> {
  const s = int(r, ctx.seeds.length);
  const m = mutateSafetensors(r, ctx.seeds[s]);
  const what = `seed ${s}: ${m.what}`;
  ctx.note(what);
  const path = join(ctx.dir, "model.safetensors");
  await Deno.writeFile(path, m.bytes);
  const ref = referenceSafetensors(m.bytes);
  let f: SafetensorsFile;
  try {
    f = await SafetensorsFile.open(path);
  } catch (e) {
    const j = judgeError(e, [path], what);
    if (j.outcome === "error" && ref.ok) {
      return { ...j, outcome: "failure", failure: "Kiln refused a file the reference accepts" };
    }
    return j;
  }
  try {
    if (!ref.ok) {
      return wrongSuccess(what, `Kiln accepted a file the reference refuses: ${ref.why}`);
    }
    const refMap = new Map([...ref.tensors].map(([k, t]) => [k, { file: "f", tensor: t }]));
    const bad = await checkTensors(
      f.tensors,
      refMap,
      (n) => f.read(n),
      async (n) => (await f.readAs(n, "f32")) as Float32Array,
      () => m.bytes,
      () => "f",
    );
    return bad ? wrongSuccess(what, bad) : { outcome: "ok", what };
  } catch (e) {
    return judgeError(e, [path], `${what} (while reading)`);
  } finally {
    f.close();
  }
}

/** One mutation of a valid sharded folder. */
function mutateFolder(r: Rng, seed: Folder): { folder: Folder; what: string } {
  const folder: Folder = new Map(seed);
  const shards = [...seed.keys()].filter((k) => k.endsWith(".safetensors"));
  const indexName = "model.safetensors.index.json";
  const indexText = dec.decode(seed.get(indexName) as Uint8Array);
  const index = JSON.parse(indexText) as { weight_map: Record<string, string> };
  const tensors = Object.keys(index.weight_map);
  const shard = pick(r, shards);
  const setIndex = (text: string) => folder.set(indexName, enc.encode(text));
  switch (int(r, 10)) {
    case 0:
    case 1: {
      const words = [
        ...shards,
        ...tensors,
        "../x.safetensors",
        `./${shard}`,
        `sub/../${shard}`,
        "/etc/passwd",
        "",
        ".",
        indexName,
        "missing.safetensors",
        "sub",
      ];
      const m = mutateJson(r, index as unknown as Json, words);
      setIndex(stringifyWithDuplicate(m.value, 2));
      return { folder, what: `index ${m.what}` };
    }
    case 2: {
      const m = mutateText(r, indexText);
      setIndex(m.text);
      return { folder, what: `index ${m.what}` };
    }
    case 3:
    case 4: {
      const m = mutateSafetensors(r, seed.get(shard) as Uint8Array);
      folder.set(shard, m.bytes);
      return { folder, what: `${shard}: ${m.what}` };
    }
    case 5: {
      const how = int(r, 3);
      if (how === 0) folder.delete(shard);
      else if (how === 1) folder.set(shard, "dir");
      else folder.set(shard, new Uint8Array(0));
      return { folder, what: `${shard} ${["deleted", "made a folder", "emptied"][how]}` };
    }
    case 6: {
      // One tensor in two shards (the index names one of them).
      const from = seed.get(shard) as Uint8Array;
      const others = shards.filter((s) => s !== shard);
      const to = pick(r, others.length ? others : [shard]);
      const a = split(from), b = split(seed.get(to) as Uint8Array);
      const names = Object.keys(a.header).filter((k) => k !== "__metadata__");
      if (names.length === 0) return mutateFolder(r, seed);
      const t = pick(r, names);
      const e = a.header[t] as unknown as Entry;
      const bytes = a.data.subarray(e.data_offsets[0], e.data_offsets[1]);
      const d = new Uint8Array(b.data.length + bytes.length);
      d.set(b.data);
      d.set(bytes, b.data.length);
      const h = {
        ...b.header,
        [t]: { ...e, data_offsets: [b.data.length, b.data.length + bytes.length] },
      } as Json;
      folder.set(to, assemble(JSON.stringify(h), d, true));
      return { folder, what: `tensor ${t} of ${shard} also put in ${to}` };
    }
    case 7: {
      const t = pick(r, tensors);
      const was = index.weight_map[t];
      const alias = pick(r, [
        `./${typeof was === "string" ? was : shard}`,
        pick(r, shards),
        `sub/${shard}`,
      ]);
      index.weight_map[t] = alias;
      setIndex(JSON.stringify(index));
      return { folder, what: `weight_map[${t}] = ${alias}` };
    }
    case 8: {
      folder.delete(indexName);
      if (chance(r, 0.5)) folder.set("model.safetensors", seed.get(shard) as Uint8Array);
      return {
        folder,
        what: `index removed${folder.has("model.safetensors") ? ", model.safetensors added" : ""}`,
      };
    }
    default: {
      const a = mutateFolder(r, seed);
      try {
        const b = mutateFolder(r, a.folder);
        return { folder: b.folder, what: `${a.what}; then ${b.what}` };
      } catch {
        return a; // the first step left no index the second can start from
      }
    }
  }
}

/** One sharded-folder case. */
export async function shardedCase(
  r: Rng,
  ctx: SafetensorsContext,
  index: number,
): Promise<CaseResult> {
  const s = int(r, ctx.folders.length);
  const m = mutateFolder(r, ctx.folders[s]);
  const what = `folder ${s}: ${m.what}`;
  ctx.note(what);
  const dir = join(ctx.dir, `case${index}`);
  await Deno.mkdir(dir);
  try {
    for (const [name, content] of m.folder) {
      if (content === "dir") await Deno.mkdir(join(dir, name), { recursive: true });
      else await Deno.writeFile(join(dir, name), content);
    }
    const ref = referenceFolder(m.folder);
    let ckpt: Checkpoint;
    try {
      ckpt = await Checkpoint.open(dir);
    } catch (e) {
      const j = judgeError(e, [dir], what);
      if (j.outcome === "error" && ref.ok) {
        return { ...j, outcome: "failure", failure: "Kiln refused a folder the reference accepts" };
      }
      return j;
    }
    try {
      if (!ref.ok) {
        return wrongSuccess(what, `Kiln accepted a folder the reference refuses: ${ref.why}`);
      }
      const bad = await checkTensors(
        ckpt.tensors,
        ref.tensors,
        (n) => ckpt.readRaw(n),
        (n) => ckpt.readF32(n),
        (file) => m.folder.get(file) as Uint8Array,
        (file) => file.slice(dir.length + 1),
      );
      return bad ? wrongSuccess(what, bad) : { outcome: "ok", what };
    } catch (e) {
      return judgeError(e, [dir], `${what} (while reading)`);
    } finally {
      ckpt.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
