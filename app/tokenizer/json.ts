/**
 * Reading the JSON of a `tokenizer.json`: field access that throws an error
 * naming the file and the field path, and the limits that keep a corrupt or
 * hostile file from making huge allocations, deep recursion or huge messages.
 * Private to the tokenizer.
 *
 * @module
 */

/**
 * Largest token id accepted. Ids index an array of tokens and are paired into
 * merge keys (`left * (maxId + 1) + right`), which must stay exact below 2^53;
 * real vocabularies stay under 2^20.
 *
 * @example
 * ```ts
 * import { MAX_TOKEN_ID } from "./json.ts";
 * MAX_TOKEN_ID; // 67108863
 * ```
 */
export const MAX_TOKEN_ID = 2 ** 26 - 1;

/**
 * Deepest nesting of `Sequence` components accepted (real files nest 2 deep):
 * parsing and running them recurses once per level.
 *
 * @example
 * ```ts
 * import { MAX_SEQUENCE_DEPTH } from "./json.ts";
 * MAX_SEQUENCE_DEPTH; // 32
 * ```
 */
export const MAX_SEQUENCE_DEPTH = 32;

/** Where a JSON value sits, for error messages: `tokenizer.json: model.merges[12]`. */
export class JsonPath {
  /** @param source the file name or label; @param path the dotted path inside it */
  constructor(readonly source: string, readonly path: string) {}

  /** The path of a member. */
  key(name: string): JsonPath {
    return new JsonPath(this.source, this.path ? `${this.path}.${name}` : name);
  }

  /** The path of an array element. */
  index(i: number): JsonPath {
    return new JsonPath(this.source, `${this.path}[${i}]`);
  }

  /** The path of an object entry whose key is arbitrary text: `model.vocab["a b"]`. */
  entry(name: string): JsonPath {
    return new JsonPath(this.source, `${this.path}[${quote(name)}]`);
  }

  /** A TypeError saying what is wrong at this path. */
  error(what: string): TypeError {
    return new TypeError(`${this.source}: ${this.path || "(top level)"} ${what}`);
  }

  /** A RangeError saying what is out of range at this path. */
  rangeError(what: string): RangeError {
    return new RangeError(`${this.source}: ${this.path || "(top level)"} ${what}`);
  }
}

/** A JSON object, for reading fields. */
export type JsonObject = Record<string, unknown>;

/** `value` as an object, or a TypeError naming the path. */
export function asObject(value: unknown, at: JsonPath): JsonObject {
  if (value === undefined) throw at.error("is missing");
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw at.error(`is not an object (got ${describe(value)})`);
  }
  return value as JsonObject;
}

/** `value` as an array, or a TypeError naming the path. */
export function asArray(value: unknown, at: JsonPath): unknown[] {
  if (value === undefined) throw at.error("is missing");
  if (!Array.isArray(value)) throw at.error(`is not an array (got ${describe(value)})`);
  return value;
}

/** `value` as a string, or a TypeError naming the path. */
export function asString(value: unknown, at: JsonPath): string {
  if (value === undefined) throw at.error("is missing");
  if (typeof value !== "string") throw at.error(`is not a string (got ${describe(value)})`);
  return value;
}

/** An optional boolean (absent or null gives `fallback`). */
export function optBool(obj: JsonObject, name: string, at: JsonPath, fallback: boolean): boolean {
  const v = obj[name];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean") throw at.key(name).error(`is not a boolean (got ${describe(v)})`);
  return v;
}

/** An optional string (absent or null gives undefined). */
export function optString(obj: JsonObject, name: string, at: JsonPath): string | undefined {
  const v = obj[name];
  if (v === undefined || v === null) return undefined;
  return asString(v, at.key(name));
}

/** An optional non-negative integer (absent or null gives `fallback`). */
export function optInt(obj: JsonObject, name: string, at: JsonPath, fallback: number): number {
  const v = obj[name];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    throw at.key(name).error(`is not a non-negative integer (got ${describe(v)})`);
  }
  return v;
}

/** A short description of a JSON value's kind for messages. */
export function describe(value: unknown): string {
  if (value === undefined) return "nothing (missing)";
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === "string") {
    return `string ${JSON.stringify(value.length > 30 ? value.slice(0, 30) + "…" : value)}`;
  }
  if (typeof value === "object") return "an object";
  return `${typeof value} ${String(value)}`;
}

/** The component's `type` field, or a TypeError naming the path. */
export function typeOf(obj: JsonObject, at: JsonPath): string {
  return asString(obj.type, at.key("type"));
}

/**
 * A string for messages: JSON-quoted and cut at 60 characters, so a huge token
 * or type name cannot make a huge message.
 *
 * @example
 * ```ts
 * import { quote } from "./json.ts";
 * quote("x".repeat(100)); // "\"xxx…\" (100 characters)" with 60 x's
 * ```
 */
export function quote(s: string): string {
  return s.length <= 60
    ? JSON.stringify(s)
    : `${JSON.stringify(s.slice(0, 60))}… (${s.length} characters)`;
}

/** A RangeError when `at` is nested deeper than {@linkcode MAX_SEQUENCE_DEPTH} Sequences. */
export function checkDepth(at: JsonPath): void {
  let depth = 0;
  for (const c of at.path) if (c === "[") depth++;
  if (depth > MAX_SEQUENCE_DEPTH) {
    throw at.rangeError(`nests Sequences more than ${MAX_SEQUENCE_DEPTH} deep`);
  }
}

/**
 * The members of a `Sequence` component (`obj[key]`, each parsed by `parse` at its
 * own path, `undefined` results dropped), after checking the nesting depth.
 *
 * @example
 * ```ts
 * import { JsonPath, sequenceMembers } from "./json.ts";
 * sequenceMembers({ items: [1, null, 2] }, "items", new JsonPath("t.json", "x"), (v) => v ?? undefined);
 * // [1, 2]
 * ```
 */
export function sequenceMembers<T>(
  obj: JsonObject,
  key: string,
  at: JsonPath,
  parse: (value: unknown, at: JsonPath) => T | undefined,
): T[] {
  checkDepth(at);
  const list = at.key(key);
  return asArray(obj[key], list)
    .map((v, i) => parse(v, list.index(i)))
    .filter((m): m is T => m !== undefined);
}

/** A token id: a non-negative integer up to {@linkcode MAX_TOKEN_ID}, or an error naming `at`. */
export function tokenId(
  value: unknown,
  at: JsonPath,
  what = "is not a non-negative integer id",
): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw at.error(`${what} (got ${describe(value)})`);
  }
  if (value > MAX_TOKEN_ID) {
    throw at.rangeError(`is ${value}, over the limit of ${MAX_TOKEN_ID} for a token id`);
  }
  return value;
}
