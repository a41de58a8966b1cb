/**
 * Typed access to a GGUF file's metadata: a wrong-typed key is a `TypeError`
 * and a missing one a `RangeError`, each naming the file, the key, the type
 * expected and the type found.
 *
 * @module
 */

import { quote } from "../safetensors/header.ts";
import type { GgufArray, GgufEntry, GgufValue, GgufValueType } from "./value.ts";

const NUMERIC: ReadonlySet<GgufValueType> = new Set([
  "u8",
  "i8",
  "u16",
  "i16",
  "u32",
  "i32",
  "f32",
  "u64",
  "i64",
  "f64",
]);

/**
 * A GGUF file's metadata with typed getters (the base of `GgufFile`).
 *
 * @example
 * ```ts
 * import { GgufMetadata } from "./metadata.ts";
 * const m = new GgufMetadata("m.gguf", new Map([["llama.block_count", { type: "u32", value: 32 }]]));
 * m.number("llama.block_count"); // 32
 * ```
 */
export class GgufMetadata {
  /** The file's path (used in every error message). */
  readonly path: string;
  /** Each key's value and stored type, in file order. */
  readonly entries: ReadonlyMap<string, GgufEntry>;
  /** Each key's value, in file order (64-bit integers as bigints). */
  readonly metadata: ReadonlyMap<string, GgufValue>;

  /** Metadata of the file `path`. */
  constructor(path: string, entries: ReadonlyMap<string, GgufEntry>) {
    this.path = path;
    this.entries = entries;
    this.metadata = new Map([...entries].map(([k, e]) => [k, e.value]));
  }

  /**
   * Whether the metadata holds `key`.
   *
   * @example
   * ```ts
   * import { GgufMetadata } from "./metadata.ts";
   * new GgufMetadata("m.gguf", new Map()).has("general.name"); // false
   * ```
   */
  has(key: string): boolean {
    return this.entries.has(key);
  }

  /**
   * The stored type of `key`, or undefined when it is absent.
   *
   * @example
   * ```ts
   * import { GgufMetadata } from "./metadata.ts";
   * const m = new GgufMetadata("m.gguf", new Map([["a", { type: "u64", value: 1n }]]));
   * m.type("a"); // "u64"
   * ```
   */
  type(key: string): GgufValueType | undefined {
    return this.entries.get(key)?.type;
  }

  /**
   * The string stored at `key`.
   *
   * @example
   * ```ts
   * import { GgufMetadata } from "./metadata.ts";
   * const m = new GgufMetadata("m.gguf", new Map([["general.architecture", { type: "string", value: "llama" }]]));
   * m.string("general.architecture"); // "llama"
   * ```
   */
  string(key: string): string {
    return this.#required(key, "a string", (k) => this.optionalString(k));
  }

  /**
   * The string stored at `key`, or undefined when it is absent.
   *
   * @example
   * ```ts
   * import { GgufMetadata } from "./metadata.ts";
   * new GgufMetadata("m.gguf", new Map()).optionalString("general.name"); // undefined
   * ```
   */
  optionalString(key: string): string | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (e.type !== "string") throw this.#wrongType(key, e, "a string");
    return e.value as string;
  }

  /**
   * The number stored at `key`, of any integer or float type; a 64-bit integer
   * beyond 2^53 is a `RangeError` (read it as a bigint from `metadata`).
   *
   * @example
   * ```ts
   * import { GgufMetadata } from "./metadata.ts";
   * const m = new GgufMetadata("m.gguf", new Map([["n", { type: "u64", value: 4096n }]]));
   * m.number("n"); // 4096
   * ```
   */
  number(key: string): number {
    return this.#required(key, "a number", (k) => this.optionalNumber(k));
  }

  /**
   * The number stored at `key` (as {@linkcode GgufMetadata.number}), or undefined
   * when it is absent.
   *
   * @example
   * ```ts
   * import { GgufMetadata } from "./metadata.ts";
   * new GgufMetadata("m.gguf", new Map()).optionalNumber("llama.rope.freq_base"); // undefined
   * ```
   */
  optionalNumber(key: string): number | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (!NUMERIC.has(e.type)) throw this.#wrongType(key, e, "a number");
    if (typeof e.value !== "bigint") return e.value as number;
    const n = Number(e.value);
    if (!Number.isSafeInteger(n)) {
      throw new RangeError(
        `${this.path}: metadata ${quote(key)} is ${e.type} ${e.value}, beyond 2^53: read it ` +
          `as a bigint from metadata.get(${quote(key)})`,
      );
    }
    return n;
  }

  /**
   * The bool stored at `key`.
   *
   * @example
   * ```ts
   * import { GgufMetadata } from "./metadata.ts";
   * const m = new GgufMetadata("m.gguf", new Map([["add_bos", { type: "bool", value: true }]]));
   * m.bool("add_bos"); // true
   * ```
   */
  bool(key: string): boolean {
    return this.#required(key, "a bool", (k) => this.optionalBool(k));
  }

  /**
   * The bool stored at `key`, or undefined when it is absent.
   *
   * @example
   * ```ts
   * import { GgufMetadata } from "./metadata.ts";
   * new GgufMetadata("m.gguf", new Map()).optionalBool("tokenizer.ggml.add_bos_token"); // undefined
   * ```
   */
  optionalBool(key: string): boolean | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (e.type !== "bool") throw this.#wrongType(key, e, "a bool");
    return e.value as boolean;
  }

  /**
   * The array stored at `key`; with `of`, its elements must be of that type.
   *
   * @example
   * ```ts
   * import { GgufMetadata } from "./metadata.ts";
   * const tokens = { type: "string", values: ["<s>", "</s>"] } as const;
   * const m = new GgufMetadata("m.gguf", new Map([["t", { type: "array", value: tokens }]]));
   * m.array("t", "string").values.length; // 2
   * ```
   */
  array(key: string, of?: GgufValueType): GgufArray {
    return this.#required(key, expectArray(of), (k) => this.optionalArray(k, of));
  }

  /**
   * The array stored at `key` (as {@linkcode GgufMetadata.array}), or undefined
   * when it is absent.
   *
   * @example
   * ```ts
   * import { GgufMetadata } from "./metadata.ts";
   * new GgufMetadata("m.gguf", new Map()).optionalArray("tokenizer.ggml.merges", "string"); // undefined
   * ```
   */
  optionalArray(key: string, of?: GgufValueType): GgufArray | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    const a = e.value as GgufArray;
    if (e.type !== "array" || (of !== undefined && a.type !== of)) {
      throw this.#wrongType(key, e, expectArray(of));
    }
    return a;
  }

  #required<T>(key: string, expected: string, get: (key: string) => T | undefined): T {
    const v = get(key);
    if (v === undefined) {
      throw new RangeError(`${this.path}: metadata ${quote(key)} is missing, expected ${expected}`);
    }
    return v;
  }

  #wrongType(key: string, e: GgufEntry, expected: string): TypeError {
    return new TypeError(
      `${this.path}: metadata ${quote(key)} is ${describeEntry(e)}, expected ${expected}`,
    );
  }
}

function expectArray(of: GgufValueType | undefined): string {
  return of === undefined ? "an array" : `an array of ${of}`;
}

/**
 * A metadata entry's type and a glimpse of its value, for messages: `u32 4096`,
 * `string "llama"`, `an array of 32000 string`.
 *
 * @example
 * ```ts
 * import { describeEntry } from "./metadata.ts";
 * describeEntry({ type: "f32", value: 0.5 }); // "f32 0.5"
 * ```
 */
export function describeEntry(e: GgufEntry): string {
  if (e.type === "array") {
    const a = e.value as GgufArray;
    return `an array of ${a.values.length} ${a.type}`;
  }
  if (e.type === "string") return `string ${quote(String(e.value).slice(0, 60))}`;
  return `${e.type} ${String(e.value)}`;
}
