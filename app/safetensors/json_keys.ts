/**
 * Duplicate keys in JSON text. `JSON.parse` keeps the last copy of a repeated
 * key without a word, so a header naming one tensor twice would silently load
 * the second; this scan over the text finds the repetition so the reader can
 * refuse it.
 *
 * @module
 */

/**
 * A key written twice in one object: the keys leading to that object (`"[]"` for
 * an array element) and the repeated key.
 *
 * @example
 * ```ts
 * import type { DuplicateKey } from "./json_keys.ts";
 * const dup: DuplicateKey = { path: ["weight_map"], key: "lm_head.weight" };
 * ```
 */
export interface DuplicateKey {
  /** Keys from the top-level value down to the object holding the repeated key. */
  readonly path: readonly string[];
  /** The key that appears twice. */
  readonly key: string;
}

/** One open object or array while scanning. */
interface Frame {
  /** Whether this is an object (else an array). */
  isObject: boolean;
  /** The keys seen so far: a list while short (most objects have a few), then a set. */
  keys: string[] | Set<string>;
  /** The enclosing container. */
  parent: Frame | undefined;
  /** This container's key in its parent (`"[]"` inside an array). */
  name: string;
  /** The last key read (objects only): the name of a container that opens next. */
  last: string;
  /** True between `{` or `,` and the next key. */
  wantKey: boolean;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * The first key that appears twice in one object of `text`, or undefined.
 * `text` must already be valid JSON (parse it first): the scan only tracks
 * strings and brackets. It keeps no recursion and a constant amount of state
 * per open container, so deep nesting costs nothing extra.
 *
 * @example
 * ```ts
 * import { findDuplicateKey } from "./json_keys.ts";
 * findDuplicateKey('{"a": 1, "b": {"c": 2, "c": 3}}'); // { path: ["b"], key: "c" }
 * findDuplicateKey('{"a": 1}'); // undefined
 * ```
 */
export function findDuplicateKey(text: string): DuplicateKey | undefined {
  let top: Frame | undefined;
  // Jumps from one structural character to the next: numbers, literals and
  // whitespace are skipped by the regex engine, strings by indexOf.
  const next = /["{}[\],]/g;
  for (let m = next.exec(text); m; m = next.exec(text)) {
    const i = m.index;
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // The closing quote is the next one not escaped by an odd run of backslashes.
      let end = text.indexOf('"', i + 1);
      for (;;) {
        let n = 0;
        while (text.charCodeAt(end - 1 - n) === BACKSLASH) n++;
        if (n % 2 === 0) break;
        end = text.indexOf('"', end + 1);
      }
      if (top?.isObject && top.wantKey) {
        const raw = text.slice(i + 1, end);
        const key = raw.includes("\\") ? JSON.parse(text.slice(i, end + 1)) as string : raw;
        const keys = top.keys;
        if (Array.isArray(keys)) {
          if (keys.includes(key)) return { path: pathOf(top), key };
          keys.push(key);
          if (keys.length > 16) top.keys = new Set(keys);
        } else {
          if (keys.has(key)) return { path: pathOf(top), key };
          keys.add(key);
        }
        top.last = key;
        top.wantKey = false;
      }
      next.lastIndex = end + 1;
    } else if (c === 0x7b || c === 0x5b) {
      const isObject = c === 0x7b;
      top = {
        isObject,
        keys: [],
        parent: top,
        name: top ? (top.isObject ? top.last : "[]") : "",
        last: "",
        wantKey: isObject,
      };
    } else if (c === 0x7d || c === 0x5d) {
      top = top?.parent;
    } else if (c === 0x2c && top?.isObject) {
      top.wantKey = true;
    }
  }
  return undefined;
}

function pathOf(frame: Frame): string[] {
  const path: string[] = [];
  for (let f: Frame | undefined = frame; f?.parent; f = f.parent) path.push(f.name);
  return path.reverse();
}
