/**
 * Seeded mutations for the loader fuzzer: of parsed JSON values (a field replaced
 * by a wrong type, an edge number, a long string, deep nesting; a member deleted,
 * added, renamed or duplicated), of JSON text (flipped bytes, truncations, cut or
 * pasted spans, numbers replaced by `NaN` / `Infinity` / `1e999`), and of raw bytes.
 *
 * Every mutation returns a short description, so a failing case can be read
 * without re-running it.
 *
 * @module
 */

import { mulberry32 } from "../../core/random.ts";

/** A uniform random number in [0, 1). */
export type Rng = () => number;

/** A JSON value as `JSON.parse` returns it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Where a value sits inside a JSON document: object keys and array indices. */
export type JsonPathParts = (string | number)[];

/**
 * The generator of one case: a hash of the run seed, the loader and the case
 * index, so any case can be replayed alone.
 *
 * @example
 * ```ts
 * import { caseRng } from "./mutate.ts";
 * caseRng(1, "config", 7)() === caseRng(1, "config", 7)(); // true
 * ```
 */
export function caseRng(seed: number, loader: string, index: number): Rng {
  let h = 2166136261 ^ seed;
  for (const c of `${loader}#${index}`) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
  return mulberry32(h >>> 0);
}

/** An integer in [0, n). */
export function int(r: Rng, n: number): number {
  return Math.floor(r() * n);
}

/** A random element of a non-empty list. */
export function pick<T>(r: Rng, list: readonly T[]): T {
  return list[int(r, list.length)];
}

/** True with probability `p`. */
export function chance(r: Rng, p: number): boolean {
  return r() < p;
}

/** Numbers at the edges of every range a loader checks. */
export const EDGE_NUMBERS: readonly number[] = [
  0,
  -0,
  1,
  -1,
  2,
  3,
  7,
  8,
  255,
  256,
  65535,
  65536,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32,
  2 ** 32 + 1,
  2 ** 40,
  2 ** 53 - 1,
  2 ** 53,
  2 ** 53 + 2,
  2 ** 63,
  2 ** 64,
  -(2 ** 63),
  1e308,
  -1e308,
  1.5,
  0.5,
  -0.5,
  1e-300,
  5e-324,
];

/** Numbers that only JavaScript callers (not JSON text) can pass. */
export const NON_FINITE: readonly number[] = [NaN, Infinity, -Infinity];

/** A deeply nested array or object (`depth` levels), built without recursion. */
export function deepNest(depth: number, kind: "array" | "object", leaf: Json = 0): Json {
  let v: Json = leaf;
  for (let i = 0; i < depth; i++) v = kind === "array" ? [v] : { type: "Sequence", x: v };
  return v;
}

/** A value of some other JSON type than `current`, or an edge value of the same. */
export function wrongValue(r: Rng, current: Json, words: readonly string[], js = false): Json {
  const k = int(r, 16);
  switch (k) {
    case 0:
      return null;
    case 1:
      return chance(r, 0.5);
    case 2:
    case 3:
      return js && chance(r, 0.3) ? pick(r, NON_FINITE) : pick(r, EDGE_NUMBERS);
    case 4:
      return "";
    case 5:
      return pick(r, words.length ? words : ["x"]);
    case 6:
      // Long strings: a loader must neither choke on them nor echo them whole.
      return "x".repeat(pick(r, [100, 10_000, 1_000_000]));
    case 7:
      return pick(r, ["\u0000", "\ud800", "\u{1F9A9}", "a b", "../x", "/etc/passwd", "-", "\\"]);
    case 8:
      return [];
    case 9:
      return [current];
    case 10:
      return {};
    case 11:
      return { [pick(r, words.length ? words : ["k"])]: current };
    case 12: {
      // JSON.stringify recurses into objects: keep them shallow enough to write out.
      const kind = chance(r, 0.5) ? "array" : "object";
      return deepNest(pick(r, kind === "array" ? [64, 1000, 5000] : [64, 1000, 2000]), kind);
    }
    case 13:
      return Array.from({ length: pick(r, [3, 1000, 100_000]) }, () => 0);
    case 14:
      return typeof current === "number" ? tweakNumber(r, current, js) : pick(r, EDGE_NUMBERS);
    default:
      return typeof current === "string" ? tweakString(r, current, words) : -1;
  }
}

/** A number near `n`: off by one, negated, scaled, or an edge. */
export function tweakNumber(r: Rng, n: number, js = false): number {
  switch (int(r, 9)) {
    case 0:
      return n + 1;
    case 1:
      return n - 1;
    case 2:
      return -n;
    case 3:
      return n * 2;
    case 4:
      return n / 2;
    case 5:
      return n * 1e9;
    case 6:
      return n + 0.5;
    case 7:
      return js && chance(r, 0.5) ? pick(r, NON_FINITE) : 0;
    default:
      return pick(r, EDGE_NUMBERS);
  }
}

/** A string near `s`: cut, extended, case-changed, or another known word. */
export function tweakString(r: Rng, s: string, words: readonly string[]): string {
  switch (int(r, 7)) {
    case 0:
      return s.slice(0, int(r, s.length + 1));
    case 1:
      return s + pick(r, ["x", " ", "\u0000", "é", "🦩", "-"]);
    case 2:
      return s.toLowerCase() === s ? s.toUpperCase() : s.toLowerCase();
    case 3:
      return "";
    case 4:
      return s.repeat(2);
    default:
      return pick(r, words.length ? words : [s]);
  }
}

/** The value at `path`, or undefined. */
export function getAt(root: Json, path: JsonPathParts): Json | undefined {
  let v: Json | undefined = root;
  for (const p of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<string | number, Json>)[p];
  }
  return v;
}

/**
 * A copy of `root` with the container at `path` replaced by `fn(it)`: only the
 * containers along the path are copied, so a 150k-entry vocabulary is shared.
 * `fn` returning `undefined` deletes the member.
 */
export function updateAt(
  root: Json,
  path: JsonPathParts,
  fn: (v: Json) => Json | undefined,
): Json {
  if (path.length === 0) return fn(root) ?? null;
  const [head, ...rest] = path;
  if (Array.isArray(root)) {
    const copy = root.slice();
    const i = head as number;
    if (rest.length > 0) copy[i] = updateAt(copy[i], rest, fn);
    else {
      const v = fn(copy[i]);
      if (v === undefined) copy.splice(i, 1);
      else copy[i] = v;
    }
    return copy;
  }
  if (root !== null && typeof root === "object") {
    const copy: Record<string, Json> = { ...root };
    const key = head as string;
    if (rest.length === 0) {
      const v = fn(copy[key]);
      if (v === undefined) delete copy[key];
      else copy[key] = v;
    } else copy[key] = updateAt(copy[key], rest, fn);
    return copy;
  }
  return root;
}

/**
 * A random path: a walk from the root that stops at each level with probability
 * `stop` (never at the root unless it is a leaf), so each top-level field is as
 * likely as the next however big the others are.
 */
export function randomPath(r: Rng, root: Json, stop = 0.35): JsonPathParts {
  const path: JsonPathParts = [];
  let v: Json = root;
  for (;;) {
    if (v === null || typeof v !== "object") return path;
    const keys: (string | number)[] = Array.isArray(v)
      ? (v.length ? [int(r, v.length)] : [])
      : Object.keys(v);
    if (keys.length === 0 || (path.length > 0 && chance(r, stop))) return path;
    const k = Array.isArray(v) ? keys[0] : pick(r, keys);
    path.push(k);
    v = (v as Record<string | number, Json>)[k];
  }
}

/**
 * Marker key that {@linkcode stringifyWithDuplicate} turns into a repeated key:
 * `{ ...obj, [DUP]: { key, value } }` comes out with `key` written twice.
 */
export const DUP = "\u0001kiln-dup\u0001";

/**
 * One structural mutation of a JSON document (`words`: strings worth trying,
 * `js`: whether non-finite numbers may appear, for loaders given objects).
 * Returns the new document and what was done; a `duplicate` asks the caller to
 * serialize with {@linkcode stringifyWithDuplicate}.
 */
export function mutateJson(
  r: Rng,
  root: Json,
  words: readonly string[],
  js = false,
): { value: Json; what: string } {
  const path = randomPath(r, root);
  const at = path.map((p) => (typeof p === "number" ? `[${p}]` : `.${p}`)).join("") || "(root)";
  const here = getAt(root, path) ?? null;
  const op = int(r, 10);
  if (op <= 3 || here === null || typeof here !== "object") {
    const v = wrongValue(r, here, words, js);
    return { value: updateAt(root, path, () => v), what: `${at} = ${brief(v)}` };
  }
  if (Array.isArray(here)) {
    const i = int(r, Math.max(1, here.length));
    switch (op) {
      case 4:
        return {
          value: updateAt(root, path, (a) => (a as Json[]).filter((_, k) => k !== i)),
          what: `${at}: element ${i} removed`,
        };
      case 5:
        return {
          value: updateAt(root, path, (a) => [...(a as Json[]), (a as Json[])[i] ?? 0]),
          what: `${at}: element ${i} repeated at the end`,
        };
      case 6:
        return { value: updateAt(root, path, () => []), what: `${at} emptied` };
      case 7:
        return {
          value: updateAt(root, path, (a) => (a as Json[]).slice().reverse()),
          what: `${at} reversed`,
        };
      default: {
        const v = wrongValue(r, here[i] ?? null, words, js);
        return {
          value: updateAt(root, path, (a) => (a as Json[]).map((x, k) => (k === i ? v : x))),
          what: `${at}[${i}] = ${brief(v)}`,
        };
      }
    }
  }
  const keys = Object.keys(here);
  const key = keys.length ? pick(r, keys) : pick(r, words.length ? words : ["k"]);
  switch (op) {
    case 4:
      return {
        value: updateAt(root, [...path, key], () => undefined),
        what: `${at}.${key} deleted`,
      };
    case 5: {
      const name = chance(r, 0.5) ? pick(r, words.length ? words : ["k"]) : `extra${int(r, 9)}`;
      const v = wrongValue(r, null, words, js);
      return {
        value: updateAt(root, [...path, name], () => v),
        what: `${at}.${name} added = ${brief(v)}`,
      };
    }
    case 6: {
      const other = pick(r, keys.length ? keys : [key]);
      return {
        value: updateAt(root, path, (o) => {
          const copy = { ...(o as Record<string, Json>) };
          [copy[key], copy[other]] = [copy[other] ?? null, copy[key] ?? null];
          return copy;
        }),
        what: `${at}: values of ${key} and ${other} swapped`,
      };
    }
    case 7: {
      const name = tweakString(r, key, words);
      return {
        value: updateAt(root, path, (o) => {
          const copy: Record<string, Json> = {};
          for (const [k, v] of Object.entries(o as Record<string, Json>)) {
            copy[k === key ? name : k] = v;
          }
          return copy;
        }),
        what: `${at}: key ${JSON.stringify(key)} renamed ${JSON.stringify(name.slice(0, 40))}`,
      };
    }
    default: {
      // A second copy of a member: JSON.parse would silently keep only the last one.
      const v = chance(r, 0.5) ? (here as Record<string, Json>)[key] : wrongValue(r, null, words);
      return {
        value: updateAt(root, [...path, DUP], () => ({ key, value: v ?? null })),
        what: `${at}: key ${JSON.stringify(key)} written twice`,
      };
    }
  }
}

/**
 * `JSON.stringify`, except that a member made by a `duplicate` mutation comes
 * out as a second copy of the key it names.
 */
export function stringifyWithDuplicate(value: Json, indent?: number): string {
  let text = JSON.stringify(value);
  // Indenting deep nesting makes text quadratic in the depth (and V8 indents
  // recursively): indent only documents of ordinary size.
  if (indent !== undefined && text.length < 100_000 && !/[[{]{64}/.test(text)) {
    text = JSON.stringify(value, null, indent);
  }
  if (!text.includes("\\u0001kiln-dup\\u0001")) return text;
  // The marker member is `"<DUP>":{"key":K,"value":V}`; rewrite it to `K:V`.
  const marker = JSON.stringify(DUP);
  let out = "";
  let from = 0;
  for (;;) {
    const at = text.indexOf(marker, from);
    if (at < 0) break;
    const body = parseMarker(text, at + marker.length);
    out += text.slice(from, at) + JSON.stringify(body.key) + ":" + JSON.stringify(body.value);
    from = body.end;
  }
  return out + text.slice(from);
}

function parseMarker(text: string, at: number): { key: string; value: Json; end: number } {
  // `:` then the object JSON.stringify wrote; find its end by bracket counting.
  let i = at;
  while (text[i] !== "{") i++;
  const start = i;
  let depth = 0;
  let inString = false;
  for (; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") {
      depth--;
      if (depth === 0) break;
    }
  }
  const obj = JSON.parse(text.slice(start, i + 1)) as { key: string; value: Json };
  return { key: obj.key, value: obj.value, end: i + 1 };
}

/** Text mutations: the document as it might arrive damaged or hand-edited. */
export function mutateText(r: Rng, text: string): { text: string; what: string } {
  const n = text.length;
  const at = int(r, n + 1);
  switch (int(r, 8)) {
    case 0:
      return { text: text.slice(0, at), what: `text truncated at ${at} of ${n}` };
    case 1: {
      const len = 1 + int(r, 20);
      return { text: text.slice(0, at) + text.slice(at + len), what: `text ${at}..+${len} cut` };
    }
    case 2: {
      const from = int(r, n), len = 1 + int(r, 40);
      const piece = text.slice(from, from + len);
      return {
        text: text.slice(0, at) + piece + text.slice(at),
        what: `text ${from}..+${len} pasted at ${at}`,
      };
    }
    case 3: {
      const c = pick(r, [...'{}[],:"\\0123456789eE-+. ntfalsu\u0000\u00e9']);
      return {
        text: text.slice(0, at) + c + text.slice(at),
        what: `${JSON.stringify(c)} inserted at ${at}`,
      };
    }
    case 4:
    case 5: {
      // Replace one number token with one JSON.parse cannot read or reads as ±Infinity.
      const nums = [...text.matchAll(/-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g)];
      if (nums.length === 0) return mutateText(r, text);
      const m = pick(r, nums);
      const by = pick(r, ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "-0", "1e-999"]);
      const i = m.index!;
      return {
        text: text.slice(0, i) + by + text.slice(i + m[0].length),
        what: `number ${m[0]} at ${i} replaced by ${by}`,
      };
    }
    case 6: {
      const depth = pick(r, [100, 10_000, 200_000]);
      return {
        text: text.slice(0, at) + "[".repeat(depth) + "]".repeat(depth) + text.slice(at),
        what: `${depth}-deep nesting inserted at ${at}`,
      };
    }
    default: {
      const bytes = new TextEncoder().encode(text);
      const out = flipBytes(r, bytes, 0, bytes.length, 1 + int(r, 3));
      return {
        text: new TextDecoder().decode(out.bytes),
        what: out.what,
      };
    }
  }
}

/** Flips one random bit in each of `count` random bytes of `bytes[from, to)` (a copy). */
export function flipBytes(
  r: Rng,
  bytes: Uint8Array,
  from: number,
  to: number,
  count: number,
): { bytes: Uint8Array; what: string } {
  const out = bytes.slice();
  if (to <= from) return { bytes: out, what: "no bytes to flip" };
  const where: string[] = [];
  for (let k = 0; k < count; k++) {
    const i = from + int(r, to - from);
    const bit = 1 << int(r, 8);
    out[i] ^= bit;
    where.push(`${i}^${bit}`);
  }
  return { bytes: out, what: `bytes flipped: ${where.join(", ")}` };
}

/** A value shortened for a description line. */
export function brief(v: unknown): string {
  if (typeof v === "string") {
    return v.length > 30
      ? `string of ${v.length} ${JSON.stringify(v.slice(0, 12))}…`
      : JSON.stringify(v);
  }
  if (typeof v === "number") return Object.is(v, -0) ? "-0" : String(v);
  if (Array.isArray(v)) return `array of ${v.length}`;
  if (v !== null && typeof v === "object") return `object of ${Object.keys(v).length} keys`;
  return String(v);
}
