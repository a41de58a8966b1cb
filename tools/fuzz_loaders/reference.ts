/**
 * An independent reference for the safetensors reader, written from the format's
 * description rather than from Kiln's code: a strict, iterative JSON parser that
 * refuses duplicate keys at any depth, and validators of a safetensors file and of
 * a sharded folder that say whether Kiln should accept them and, when they do,
 * where each tensor's bytes are. The fuzzer checks Kiln against it case by case.
 *
 * Policy mirrored from Kiln (where the format leaves room): gaps between tensors
 * and bytes after the last one are allowed; a header is at most 100 MiB; a shape's
 * element count must stay below 2^53 at every step of the product.
 *
 * @module
 */

import { normalize } from "node:path";
import type { Json } from "./mutate.ts";

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const ESCAPES: Record<string, string> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

type Frame = { obj: Record<string, Json>; keys: Set<string>; key: string } | { arr: Json[] };

/**
 * Parses JSON text (RFC 8259) without recursion; throws an `Error` saying why for
 * bad syntax or a key that appears twice in one object.
 *
 * @example
 * ```ts
 * import { strictParse } from "./reference.ts";
 * strictParse('{"a":[1,2]}'); // { a: [1, 2] }
 * ```
 */
export function strictParse(text: string): Json {
  let i = 0;
  const n = text.length;
  const ws = () => {
    while (i < n && WS.has(text.charCodeAt(i))) i++;
  };
  const fail = (why: string): never => {
    throw new Error(`${why} at ${i}`);
  };
  const string = (): string => {
    if (text[i] !== '"') fail("expected a string");
    i++;
    let out = "";
    let from = i;
    for (;;) {
      if (i >= n) fail("unterminated string");
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(from, i);
        i++;
        return out;
      }
      if (c < 0x20) fail("control character in string");
      if (c === 0x5c) {
        out += text.slice(from, i);
        const e = text[i + 1];
        if (e === "u") {
          const hex = text.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
          out += String.fromCharCode(parseInt(hex, 16));
          i += 6;
        } else if (e !== undefined && e in ESCAPES) {
          out += ESCAPES[e];
          i += 2;
        } else fail("bad escape");
        from = i;
        continue;
      }
      i++;
    }
  };
  const key = (f: { keys: Set<string> }): string => {
    ws();
    const k = string();
    if (f.keys.has(k)) fail(`duplicate key ${JSON.stringify(k.slice(0, 40))}`);
    f.keys.add(k);
    ws();
    if (text[i] !== ":") fail("expected ':'");
    i++;
    return k;
  };
  const scalar = (): Json => {
    if (text[i] === '"') return string();
    for (const [word, v] of [["true", true], ["false", false], ["null", null]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) return fail("expected a value");
    i += m[0].length;
    return Number(m[0]);
  };
  const stack: Frame[] = [];
  outer: for (;;) {
    ws();
    let v: Json;
    if (text[i] === "{") {
      i++;
      ws();
      if (text[i] === "}") {
        i++;
        v = {};
      } else {
        const f = { obj: {}, keys: new Set<string>(), key: "" };
        f.key = key(f);
        stack.push(f);
        continue;
      }
    } else if (text[i] === "[") {
      i++;
      ws();
      if (text[i] === "]") {
        i++;
        v = [];
      } else {
        stack.push({ arr: [] });
        continue;
      }
    } else v = scalar();
    for (;;) {
      const top = stack.at(-1);
      if (!top) {
        ws();
        if (i !== n) fail("text after the value");
        return v;
      }
      ws();
      if ("arr" in top) {
        top.arr.push(v);
        if (text[i] === ",") {
          i++;
          continue outer;
        }
        if (text[i] !== "]") fail("expected ',' or ']'");
        i++;
        stack.pop();
        v = top.arr;
      } else {
        // defineProperty: a key "__proto__" is data, not the prototype.
        Object.defineProperty(top.obj, top.key, {
          value: v,
          enumerable: true,
          writable: true,
          configurable: true,
        });
        if (text[i] === ",") {
          i++;
          top.key = key(top);
          continue outer;
        }
        if (text[i] !== "}") fail("expected ',' or '}'");
        i++;
        stack.pop();
        v = top.obj;
      }
    }
  }
}

const DTYPE_SIZE: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  F8_E8M0: 1,
  U16: 2,
  I16: 2,
  F16: 2,
  BF16: 2,
  U32: 4,
  I32: 4,
  F32: 4,
  U64: 8,
  I64: 8,
  F64: 8,
};

const MAX_HEADER = 100 * 1024 * 1024;

/** Where the reference puts one tensor. */
export interface RefTensor {
  /** Element type. */
  dtype: string;
  /** Element count. */
  numel: number;
  /** Absolute byte offset in the file. */
  offset: number;
  /** Length in bytes. */
  byteLength: number;
}

/** The reference's verdict: the tensors of an acceptable file, or why it is not. */
export type RefVerdict = { ok: true; tensors: Map<string, RefTensor> } | {
  ok: false;
  why: string;
};

const isObj = (v: unknown): v is Record<string, Json> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isIndex = (v: unknown): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/**
 * Whether the bytes of a safetensors file are acceptable, and its tensors.
 *
 * @example
 * ```ts
 * import { referenceSafetensors } from "./reference.ts";
 * referenceSafetensors(new Uint8Array(4)).ok; // false (too short)
 * ```
 */
export function referenceSafetensors(bytes: Uint8Array): RefVerdict {
  const no = (why: string): RefVerdict => ({ ok: false, why });
  if (bytes.length < 8) return no("shorter than the length prefix");
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER)) return no("header length over the limit");
  if (Number(n) > bytes.length - 8) return no("header length past the end");
  const dataStart = 8 + Number(n);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, dataStart));
  } catch {
    return no("header is not UTF-8");
  }
  let header: Json;
  try {
    header = strictParse(text);
  } catch (e) {
    return no(`header JSON: ${(e as Error).message}`);
  }
  if (!isObj(header)) return no("header is not an object");
  const dataLen = bytes.length - dataStart;
  const tensors = new Map<string, RefTensor>();
  const spans: [number, number][] = [];
  for (const name of Object.keys(header)) {
    const e = header[name];
    if (name === "__metadata__") {
      if (!isObj(e) || Object.values(e).some((v) => typeof v !== "string")) {
        return no("__metadata__ is not an object of strings");
      }
      continue;
    }
    if (!isObj(e)) return no(`${name}: entry is not an object`);
    const dtype = e.dtype;
    if (typeof dtype !== "string" || !Object.hasOwn(DTYPE_SIZE, dtype)) {
      return no(`${name}: bad dtype`);
    }
    if (!Array.isArray(e.shape) || !e.shape.every(isIndex)) return no(`${name}: bad shape`);
    let numel = 1;
    for (const d of e.shape as number[]) {
      numel *= d;
      if (numel > Number.MAX_SAFE_INTEGER) return no(`${name}: element count overflows`);
    }
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every(isIndex)) {
      return no(`${name}: bad data_offsets`);
    }
    const [b, end] = off as number[];
    if (b > end) return no(`${name}: begin > end`);
    if (end - b !== numel * DTYPE_SIZE[dtype]) return no(`${name}: size mismatch`);
    if (end > dataLen) return no(`${name}: past the end`);
    tensors.set(name, { dtype, numel, offset: dataStart + b, byteLength: end - b });
    if (end > b) spans.push([b, end]);
  }
  spans.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  for (let k = 1; k < spans.length; k++) {
    if (spans[k][0] < spans[k - 1][1]) return no("overlapping spans");
  }
  return { ok: true, tensors };
}

/** A folder as the fuzzer wrote it: file name → bytes, or `"dir"` for a sub-folder. */
export type Folder = Map<string, Uint8Array | "dir">;

/** The reference's verdict on a sharded folder: tensor → [shard file, where]. */
export type RefFolderVerdict =
  | { ok: true; tensors: Map<string, { file: string; tensor: RefTensor }> }
  | { ok: false; why: string };

/**
 * Whether a folder with `model.safetensors.index.json` is an acceptable sharded
 * checkpoint: the index is strict JSON with a `weight_map` of file names inside
 * the folder; every named shard exists, is a file and is acceptable; every tensor
 * is in the shard the index names, and no tensor is in two of the shards.
 *
 * @example
 * ```ts
 * import { referenceFolder } from "./reference.ts";
 * referenceFolder(new Map()).ok; // false (no index)
 * ```
 */
export function referenceFolder(folder: Folder): RefFolderVerdict {
  const no = (why: string): RefFolderVerdict => ({ ok: false, why });
  const index = folder.get("model.safetensors.index.json");
  if (index === undefined) {
    const single = folder.get("model.safetensors");
    if (!(single instanceof Uint8Array)) return no("neither index nor model.safetensors");
    const v = referenceSafetensors(single);
    if (!v.ok) return v;
    return {
      ok: true,
      tensors: new Map(
        [...v.tensors].map(([k, t]) => [k, { file: "model.safetensors", tensor: t }]),
      ),
    };
  }
  if (index === "dir") return no("index is a folder");
  let json: Json;
  try {
    json = strictParse(new TextDecoder("utf-8", { fatal: true }).decode(index));
  } catch (e) {
    return no(`index: ${(e as Error).message}`);
  }
  if (!isObj(json) || !isObj(json.weight_map)) return no("index has no weight_map object");
  const wm = json.weight_map;
  const byTensor = new Map<string, string>();
  const shards = new Set<string>();
  for (const tensor of Object.keys(wm)) {
    const shard = wm[tensor];
    if (typeof shard !== "string") return no(`weight_map[${tensor}] is not a string`);
    if (shard === "" || shard.startsWith("/") || shard.split(/[\\/]/).includes("..")) {
      return no(`weight_map[${tensor}] leaves the folder`);
    }
    const file = normalize(shard);
    byTensor.set(tensor, file);
    shards.add(file);
  }
  const parsed = new Map<string, Map<string, RefTensor>>();
  for (const file of shards) {
    const bytes = folder.get(file);
    if (bytes === undefined) return no(`shard ${file} missing`);
    if (bytes === "dir") return no(`shard ${file} is a folder`);
    const v = referenceSafetensors(bytes);
    if (!v.ok) return no(`shard ${file}: ${v.why}`);
    parsed.set(file, v.tensors);
  }
  const seen = new Map<string, string>();
  for (const [file, tensors] of parsed) {
    for (const name of tensors.keys()) {
      if (seen.has(name)) return no(`tensor ${name} in ${seen.get(name)} and ${file}`);
      seen.set(name, file);
    }
  }
  const out = new Map<string, { file: string; tensor: RefTensor }>();
  for (const [tensor, file] of byTensor) {
    const t = parsed.get(file)!.get(tensor);
    if (!t) return no(`tensor ${tensor} not in ${file}`);
    out.set(tensor, { file, tensor: t });
  }
  return { ok: true, tensors: out };
}
