/**
 * Importance-matrix files as llama.cpp writes them (`llama-imatrix`) and
 * `llama-quantize --imatrix` reads them, in both layouts:
 *
 * - **GGUF** (llama.cpp since mid-2025): `general.type = "imatrix"`,
 *   `imatrix.datasets` (strings), `imatrix.chunk_count` and
 *   `imatrix.chunk_size` (u32), and per weight `W` two f32 tensors:
 *   `W.in_sum2` (`[matrices, columns]`: the sum of each column's squared
 *   activations, one row per expert of a stacked expert weight) and
 *   `W.counts` (`[matrices, 1]`: how many activation rows were summed). The
 *   importance of a column is `in_sum2 / counts` (1 where a matrix has no
 *   count, as llama-quantize fills it).
 * - **Legacy** (`imatrix.dat`): `i32 n_entries`, then per entry `i32 len`,
 *   the name, `i32 ncall`, `i32 nval`, `f32 values[nval]` (the mean squared
 *   activation times `ncall`), then optionally `i32 chunks`, `i32 len` and the
 *   dataset's name. The importance is `values / ncall`.
 *
 * Either way {@linkcode readImatrix} returns each weight's importance
 * vectors, divided as llama-quantize divides them (float32), keyed by the
 * GGUF tensor name they apply to.
 *
 * @module
 */

import { GgufFile } from "./file.ts";
import type { Importance } from "../../core/quant/importance.ts";
import type { ModelConfig } from "../../models/config.ts";
import { ggufWrittenPlans } from "./arch_names.ts";
import type { GgufTensorSpec } from "./layout.ts";
import { writeGguf } from "./writer.ts";

/**
 * An importance matrix: per GGUF weight name, one importance value per input
 * column for each of its `matrices` (experts of a stacked expert weight, else 1).
 *
 * @example
 * ```ts
 * import type { Imatrix } from "./imatrix.ts";
 * const m: Imatrix = {
 *   entries: new Map([["blk.0.attn_q.weight", { values: new Float32Array(64).fill(1), matrices: 1 }]]),
 *   datasets: ["wiki.txt"], chunkCount: 10, chunkSize: 512,
 * };
 * ```
 */
export interface Imatrix {
  /** Weight name → importance (`values.length` = columns × matrices, matrix by matrix). */
  readonly entries: ReadonlyMap<string, ImatrixEntry>;
  /** The calibration texts it was computed on, as recorded. */
  readonly datasets: readonly string[];
  /** Chunks of text it was computed on (0 where not recorded). */
  readonly chunkCount: number;
  /** Tokens a chunk (0 where not recorded, as in legacy files). */
  readonly chunkSize: number;
  /** The file it was read from (recorded by `kiln quantize` as llama-quantize does). */
  readonly path?: string;
}

/**
 * One weight's importance vectors.
 *
 * @example
 * ```ts
 * import type { ImatrixEntry } from "./imatrix.ts";
 * const e: ImatrixEntry = { values: new Float32Array(8), matrices: 2 }; // 2 experts of 4 columns
 * ```
 */
export interface ImatrixEntry {
  /** The importance of each column, matrix after matrix. */
  readonly values: Float32Array;
  /** How many matrices share the entry (a stacked expert weight's experts). */
  readonly matrices: number;
}

const f = Math.fround;
const GGUF_MAGIC = 0x46554747; // "GGUF", little-endian

/**
 * Reads an importance-matrix file in either of llama.cpp's layouts (see the
 * module notes). A malformed file is a `SyntaxError` naming the file and what
 * is wrong (the entry, the tensor or the byte offset); an unreadable one the
 * file system's error.
 *
 * @example
 * ```ts ignore
 * import { readImatrix } from "./imatrix.ts";
 * const m = await readImatrix("imatrix.gguf");
 * console.log(m.entries.get("blk.0.ffn_down_exps.weight")?.matrices); // 8
 * ```
 */
export async function readImatrix(path: string): Promise<Imatrix> {
  const bytes = await Deno.readFile(path);
  const magic = bytes.length >= 4 ? new DataView(bytes.buffer).getUint32(0, true) : 0;
  const m = magic === GGUF_MAGIC ? await readGgufImatrix(path) : parseLegacyImatrix(bytes, path);
  return { ...m, path };
}

async function readGgufImatrix(path: string): Promise<Imatrix> {
  const file = await GgufFile.open(path);
  try {
    const bad = (what: string) => new SyntaxError(`${path}: ${what}`);
    const type = file.optionalString("general.type");
    if (type !== undefined && type !== "imatrix") {
      throw bad(`general.type is "${type}", not "imatrix": this is not an importance matrix`);
    }
    const sums = new Map<string, string>(), counts = new Map<string, string>();
    for (const name of file.tensors.keys()) {
      if (name.endsWith(".in_sum2")) sums.set(name.slice(0, -8), name);
      else if (name.endsWith(".counts")) counts.set(name.slice(0, -7), name);
    }
    if (sums.size === 0) throw bad("no <weight>.in_sum2 tensors: this is not an importance matrix");
    const entries = new Map<string, ImatrixEntry>();
    for (const [weight, sumName] of sums) {
      const countName = counts.get(weight);
      if (countName === undefined) throw bad(`${sumName} has no ${weight}.counts beside it`);
      for (const n of [sumName, countName]) {
        if (file.info(n).type.name !== "f32") {
          throw bad(`${n} is ${file.info(n).type.name}; importance tensors are f32`);
        }
      }
      const s = await file.readF32(sumName), c = await file.readF32(countName);
      if (c.length === 0 || s.length % c.length !== 0) {
        throw bad(
          `${sumName} holds ${s.length} values, not a whole row for each of ${c.length} counts`,
        );
      }
      entries.set(weight, entryOf({ sums: s, counts: c }));
    }
    const datasets = file.optionalArray("imatrix.datasets", "string")?.values as
      | string[]
      | undefined;
    return {
      entries,
      datasets: datasets ?? [],
      chunkCount: file.optionalNumber("imatrix.chunk_count") ?? 0,
      chunkSize: file.optionalNumber("imatrix.chunk_size") ?? 0,
    };
  } finally {
    file.close();
  }
}

/** An entry's importance from its sums and counts, as llama-quantize divides them. */
function entryOf({ sums, counts }: ImatrixSums): ImatrixEntry {
  const cols = sums.length / counts.length;
  const values = new Float32Array(sums.length);
  for (let m = 0; m < counts.length; m++) {
    const count = Math.round(counts[m]); // llama.cpp's lround
    for (let i = 0; i < cols; i++) {
      values[m * cols + i] = count > 0 ? f(sums[m * cols + i] / count) : 1;
    }
  }
  return { values, matrices: counts.length };
}

/**
 * The importance matrix of sums and counts a collector gathered (what
 * `computeImatrix` returns), as reading them back from a written GGUF file
 * would give it: for `kiln quantize` without a file in between.
 *
 * @example
 * ```ts
 * import { imatrixFromSums } from "./imatrix.ts";
 * const m = imatrixFromSums(
 *   new Map([["blk.0.attn_q.weight", { sums: new Float32Array([6, 9]), counts: new Float32Array([3]) }]]),
 *   { datasets: [], chunkCount: 1, chunkSize: 3 },
 * );
 * m.entries.get("blk.0.attn_q.weight")?.values; // Float32Array [2, 3]
 * ```
 */
export function imatrixFromSums(
  weights: ReadonlyMap<string, ImatrixSums>,
  meta: { datasets: readonly string[]; chunkCount: number; chunkSize: number },
): Imatrix {
  const entries = new Map<string, ImatrixEntry>();
  for (const [name, w] of weights) entries.set(name, entryOf(w));
  return { entries, ...meta };
}

/**
 * Parses a legacy `imatrix.dat` file's bytes (see the module notes); `path`
 * names it in errors.
 *
 * @example
 * ```ts
 * import { parseLegacyImatrix } from "./imatrix.ts";
 * const name = new TextEncoder().encode("blk.0.attn_q.weight");
 * const b = new DataView(new ArrayBuffer(4 + 4 + name.length + 8 + 8));
 * b.setInt32(0, 1, true); b.setInt32(4, name.length, true);
 * new Uint8Array(b.buffer).set(name, 8);
 * b.setInt32(8 + name.length, 2, true); // ncall
 * b.setInt32(12 + name.length, 2, true); // nval
 * b.setFloat32(16 + name.length, 4, true); b.setFloat32(20 + name.length, 6, true);
 * const m = parseLegacyImatrix(new Uint8Array(b.buffer), "imatrix.dat");
 * m.entries.get("blk.0.attn_q.weight")?.values; // Float32Array [2, 3]
 * ```
 */
export function parseLegacyImatrix(bytes: Uint8Array, path: string): Imatrix {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const bad = (what: string) =>
    new SyntaxError(`${path}: ${what} (byte ${at}); not a GGUF or legacy llama.cpp imatrix file`);
  const i32 = (what: string) => {
    if (at + 4 > bytes.length) throw bad(`the file ends inside ${what}`);
    const x = v.getInt32(at, true);
    at += 4;
    return x;
  };
  const text = (len: number, what: string) => {
    if (len < 0 || at + len > bytes.length) throw bad(`${what} of ${len} bytes does not fit`);
    const s = new TextDecoder("utf-8", { fatal: false }).decode(bytes.subarray(at, at + len));
    at += len;
    return s;
  };
  const n = i32("the entry count");
  if (n < 1) throw bad(`${n} entries`);
  const entries = new Map<string, ImatrixEntry>();
  for (let e = 0; e < n; e++) {
    const name = text(i32(`entry ${e}'s name length`), `entry ${e}'s name`);
    const ncall = i32(`entry ${name}'s call count`);
    const nval = i32(`entry ${name}'s value count`);
    if (nval < 1 || at + 4 * nval > bytes.length) {
      throw bad(`entry ${name}: ${nval} values do not fit`);
    }
    const values = new Float32Array(nval);
    for (let i = 0; i < nval; i++) {
      const x = v.getFloat32(at + 4 * i, true);
      values[i] = ncall > 0 ? f(x / ncall) : x;
    }
    at += 4 * nval;
    entries.set(name, { values, matrices: 1 });
  }
  let chunkCount = 0;
  const datasets: string[] = [];
  if (at + 4 <= bytes.length) {
    chunkCount = i32("the chunk count");
    if (at + 4 <= bytes.length) {
      const len = i32("the dataset name's length");
      if (len > 0) datasets.push(text(len, "the dataset name"));
    }
  }
  return { entries, datasets, chunkCount, chunkSize: 0 };
}

/**
 * The importance vector of matrix `index` (of `matrices`, e.g. experts) of the
 * GGUF weight `weight` with rows of `cols` elements, from its entry; a
 * `RangeError` naming the weight when the entry's size is not
 * `cols × matrices` (a matrix made for another model), as llama-quantize refuses it.
 *
 * @example
 * ```ts
 * import { importanceOf } from "./imatrix.ts";
 * const e = { values: new Float32Array([1, 2, 3, 4]), matrices: 2 };
 * importanceOf(e, "blk.0.ffn_up_exps.weight", 2, 2, 1).values; // Float32Array [3, 4]
 * ```
 */
export function importanceOf(
  entry: ImatrixEntry,
  weight: string,
  cols: number,
  matrices: number,
  index: number,
): Importance {
  if (entry.values.length !== cols * matrices) {
    throw new RangeError(
      `imatrix: ${weight} has ${entry.values.length} importance values, but the weight has ` +
        `${cols} columns × ${matrices} matrices = ${cols * matrices} (an importance matrix ` +
        `of another model?)`,
    );
  }
  return { rowLength: cols, values: entry.values.subarray(index * cols, (index + 1) * cols) };
}

/**
 * Where each Hugging Face tensor of a `cfg` model goes in the GGUF file
 * llama.cpp writes: the GGUF weight, its index among the weight's sources
 * (an expert), how many sources it stacks, and its row length. The first
 * weight holding a tensor wins (a tied head's copy comes after the embedding).
 *
 * @example
 * ```ts ignore
 * import { ggufWeightsBySource } from "./imatrix.ts";
 * ggufWeightsBySource(cfg).get("model.layers.0.block_sparse_moe.experts.3.w1.weight");
 * // { weight: "blk.0.ffn_gate_exps.weight", index: 3, of: 8, cols: 4096 }
 * ```
 */
export function ggufWeightsBySource(
  cfg: ModelConfig,
): Map<string, { weight: string; index: number; of: number; cols: number }> {
  const where = new Map<string, { weight: string; index: number; of: number; cols: number }>();
  for (const p of ggufWrittenPlans(cfg)) {
    const cols = p.sourceShape[p.sourceShape.length - 1];
    p.sources.forEach((src, index) => {
      if (!where.has(src)) where.set(src, { weight: p.name, index, of: p.sources.length, cols });
    });
  }
  return where;
}

/**
 * For each Hugging Face tensor of a `cfg` model, its importance vector in
 * `imatrix` (through the GGUF weight llama.cpp writes it into; an expert its
 * own slice), or undefined where the matrix has no entry: what quantize-on-load
 * fits each weight with.
 *
 * @example
 * ```ts ignore
 * import { importanceByTensor, readImatrix } from "./imatrix.ts";
 * const lookup = importanceByTensor(await readImatrix("imatrix.gguf"), cfg);
 * lookup("model.layers.0.block_sparse_moe.experts.3.w1.weight")?.rowLength; // 4096
 * ```
 */
export function importanceByTensor(
  imatrix: Imatrix,
  cfg: ModelConfig,
): (tensor: string) => Importance | undefined {
  const where = ggufWeightsBySource(cfg);
  return (tensor) => {
    const w = where.get(tensor);
    const entry = w && imatrix.entries.get(w.weight);
    return entry && importanceOf(entry, w.weight, w.cols, w.of, w.index);
  };
}

/**
 * Sums of squared activations as a collector gathers them: per weight, the
 * sums (`columns × matrices`, matrix after matrix) and each matrix's count of
 * summed rows. What {@linkcode writeImatrix} stores.
 *
 * @example
 * ```ts
 * import type { ImatrixSums } from "./imatrix.ts";
 * const s: ImatrixSums = { sums: new Float32Array(8), counts: new Float32Array([3, 0]) };
 * ```
 */
export interface ImatrixSums {
  /** Σ x² of each column over the rows seen, matrix after matrix. */
  readonly sums: Float32Array;
  /** Rows summed, one count a matrix. */
  readonly counts: Float32Array;
}

/**
 * Writes an importance matrix in one of llama.cpp's layouts: GGUF (what
 * `llama-imatrix` writes today and `llama-quantize --imatrix` reads: weights
 * in name order, each as `<name>.in_sum2` and `<name>.counts`), or, for a path
 * ending in `.dat`, the legacy layout older llama.cpp builds read (each entry's
 * mean square times its call count `calls`, default `meta.chunkCount`). A
 * weight none of whose matrices saw a row is left out, as llama-imatrix leaves
 * it out; in the legacy layout, which has one count a weight, so is one with
 * any matrix unseen (an expert no token reached). A `RangeError` if nothing is
 * left to write. Returns the names written and left out.
 *
 * @example
 * ```ts ignore
 * import { writeImatrix } from "./imatrix.ts";
 * await writeImatrix("imatrix.gguf", new Map([["blk.0.attn_q.weight",
 *   { sums: new Float32Array(64).fill(3), counts: new Float32Array([3]) }]]),
 *   { datasets: ["wiki.txt"], chunkCount: 1, chunkSize: 512 });
 * ```
 */
export async function writeImatrix(
  path: string,
  weights: ReadonlyMap<string, ImatrixSums>,
  meta: { datasets: readonly string[]; chunkCount: number; chunkSize: number; calls?: number },
): Promise<{ written: string[]; skipped: string[] }> {
  const legacy = /\.dat$/i.test(path);
  const written: string[] = [], skipped: string[] = [];
  for (const name of [...weights.keys()].sort()) {
    const { sums, counts } = weights.get(name)!;
    if (counts.length === 0 || sums.length % counts.length !== 0) {
      throw new RangeError(
        `writeImatrix: ${name} has ${sums.length} sums for ${counts.length} counts`,
      );
    }
    const seen = counts.filter((c) => c > 0).length;
    (seen === counts.length || (!legacy && seen > 0) ? written : skipped).push(name);
  }
  if (written.length === 0) {
    throw new RangeError(`writeImatrix: no weight saw any rows; nothing to write`);
  }
  if (legacy) {
    await Deno.writeFile(path, legacyBytes(written, weights, meta.calls ?? meta.chunkCount, meta));
    return { written, skipped };
  }
  const tensors: GgufTensorSpec[] = written.flatMap((name) => {
    const { sums, counts } = weights.get(name)!;
    const cols = sums.length / counts.length;
    return [
      { name: `${name}.in_sum2`, shape: [counts.length, cols], type: "f32", data: bytesOf(sums) },
      { name: `${name}.counts`, shape: [counts.length, 1], type: "f32", data: bytesOf(counts) },
    ];
  });
  await writeGguf(path, {
    metadata: [
      ["general.type", { type: "string", value: "imatrix" }],
      ["imatrix.datasets", {
        type: "array",
        value: { type: "string", values: [...meta.datasets] },
      }],
      ["imatrix.chunk_count", { type: "u32", value: meta.chunkCount }],
      ["imatrix.chunk_size", { type: "u32", value: meta.chunkSize }],
    ],
    tensors,
  });
  return { written, skipped };
}

/** The legacy `imatrix.dat` bytes of the weights `names` (see the module notes). */
function legacyBytes(
  names: readonly string[],
  weights: ReadonlyMap<string, ImatrixSums>,
  calls: number,
  meta: { datasets: readonly string[]; chunkCount: number },
): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  const i32 = (x: number) => new Uint8Array(new Int32Array([x]).buffer);
  parts.push(i32(names.length));
  for (const name of names) {
    const { sums, counts } = weights.get(name)!;
    const cols = sums.length / counts.length;
    // llama-imatrix stores each value's mean square times the call count.
    const values = sums.map((v, i) => f(f(v / counts[Math.floor(i / cols)]) * calls));
    const n = enc.encode(name);
    parts.push(i32(n.length), n, i32(calls), i32(values.length), new Uint8Array(values.buffer));
  }
  const dataset = enc.encode(meta.datasets[0] ?? "");
  parts.push(i32(meta.chunkCount), i32(dataset.length), dataset);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function bytesOf(x: Float32Array): Uint8Array {
  return new Uint8Array(x.buffer.slice(x.byteOffset, x.byteOffset + x.byteLength));
}
