/**
 * The pieces of a Hugging Face `tokenizer.json` around the model: normalizers,
 * pre-tokenizers and decoders, each parsed from JSON with errors that name the
 * file and the field path. Private to the tokenizer (`tokenizer.ts`).
 *
 * @module
 */

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
    return new JsonPath(this.source, `${this.path}[${JSON.stringify(name)}]`);
  }

  /** A TypeError saying what is wrong at this path. */
  error(what: string): TypeError {
    return new TypeError(`${this.source}: ${this.path || "(top level)"} ${what}`);
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

/** A TypeError for an unsupported component type, listing what is supported. */
function unsupported(at: JsonPath, type: string, supported: readonly string[]): TypeError {
  return at.key("type").error(
    `${JSON.stringify(type)} is not supported (supported: ${supported.join(", ")})`,
  );
}

// ---------------------------------------------------------------------------------------
// Regular expressions

/**
 * Compiles a pattern written for Hugging Face's Rust regex engines (Oniguruma /
 * fancy-regex) as a JavaScript global Unicode RegExp. `\s` and `\S` are rewritten to the
 * Unicode White_Space property because JavaScript's `\s` differs from theirs (it
 * includes U+FEFF and lacks U+0085).
 */
export function compileHfRegex(pattern: string, at: JsonPath): RegExp {
  let out = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "\\" && i + 1 < pattern.length) {
      const n = pattern[i + 1];
      if (n === "s") out += "\\p{White_Space}";
      else if (n === "S") out += "\\P{White_Space}";
      else out += c + n;
      i++;
    } else out += c;
  }
  try {
    return new RegExp(out, "gu");
  } catch (e) {
    throw new SyntaxError(
      `${at.source}: ${at.path} regex ${JSON.stringify(pattern)} does not compile: ${
        (e as Error).message
      }`,
    );
  }
}

/** A `{String: s}` or `{Regex: r}` pattern as a global RegExp. */
export function parsePattern(value: unknown, at: JsonPath): RegExp {
  const obj = asObject(value, at);
  if (typeof obj.String === "string") return new RegExp(escapeRegex(obj.String), "gu");
  if (typeof obj.Regex === "string") return compileHfRegex(obj.Regex, at.key("Regex"));
  throw at.error(
    `must be {"String": …} or {"Regex": …} (got keys ${Object.keys(obj).join(", ") || "none"})`,
  );
}

/** Escapes a literal for use inside a RegExp. */
export function escapeRegex(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|\/-]/g, "\\$&");
}

// ---------------------------------------------------------------------------------------
// Normalizers

/** A normalizer: text in, text out. */
export type Normalizer = (text: string) => string;

const NORMALIZERS = [
  "Sequence",
  "Prepend",
  "Replace",
  "NFC",
  "NFD",
  "NFKC",
  "NFKD",
  "Lowercase",
  "Strip",
];

/** Parses `normalizer` (null gives undefined). */
export function parseNormalizer(value: unknown, at: JsonPath): Normalizer | undefined {
  if (value === null || value === undefined) return undefined;
  const obj = asObject(value, at);
  const type = typeOf(obj, at);
  switch (type) {
    case "Sequence": {
      const list = asArray(obj.normalizers, at.key("normalizers"))
        .map((n, i) => parseNormalizer(n, at.key("normalizers").index(i)))
        .filter((n): n is Normalizer => n !== undefined);
      return (text) => list.reduce((t, n) => n(t), text);
    }
    case "Prepend": {
      const prefix = asString(obj.prepend, at.key("prepend"));
      // Hugging Face prepends only to non-empty text.
      return (text) => text.length === 0 ? text : prefix + text;
    }
    case "Replace": {
      const pattern = parsePattern(obj.pattern, at.key("pattern"));
      const content = asString(obj.content, at.key("content"));
      return (text) => text.replace(pattern, () => content);
    }
    case "NFC":
    case "NFD":
    case "NFKC":
    case "NFKD":
      return (text) => text.normalize(type);
    case "Lowercase":
      return (text) => text.toLowerCase();
    case "Strip": {
      const left = optBool(obj, "strip_left", at, true);
      const right = optBool(obj, "strip_right", at, true);
      return (text) => {
        let t = text;
        if (left) t = t.replace(/^\p{White_Space}+/u, "");
        if (right) t = t.replace(/\p{White_Space}+$/u, "");
        return t;
      };
    }
    default:
      throw unsupported(at, type, NORMALIZERS);
  }
}

// ---------------------------------------------------------------------------------------
// Pre-tokenizers

/** A piece of text between pre-tokenizer splits; `first` marks the piece at input offset 0. */
export interface Piece {
  text: string;
  first: boolean;
}

/** A pre-tokenizer: pieces in, finer pieces out. */
export type PreTokenizer = (pieces: Piece[]) => Piece[];

const PRE_TOKENIZERS = [
  "Sequence",
  "ByteLevel",
  "Split",
  "Metaspace",
  "Digits",
  "Whitespace",
  "WhitespaceSplit",
];

/** The GPT-2 split regex that ByteLevel uses when `use_regex` is true. */
export const GPT2_PATTERN =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

type SplitBehavior =
  | "Removed"
  | "Isolated"
  | "MergedWithPrevious"
  | "MergedWithNext"
  | "Contiguous";
const BEHAVIORS: readonly SplitBehavior[] = [
  "Removed",
  "Isolated",
  "MergedWithPrevious",
  "MergedWithNext",
  "Contiguous",
];

/** Splits one string around the matches of `re` as Hugging Face's SplitDelimiterBehavior does. */
export function splitBy(
  text: string,
  re: RegExp,
  behavior: SplitBehavior,
  invert: boolean,
): string[] {
  // Segments: [start, end, isMatch] covering the text.
  const segs: [number, number, boolean][] = [];
  let last = 0;
  re.lastIndex = 0;
  for (const m of text.matchAll(re)) {
    const s = m.index!, e = s + m[0].length;
    if (e === s) continue;
    if (s > last) segs.push([last, s, invert]);
    segs.push([s, e, !invert]);
    last = e;
  }
  if (last < text.length) segs.push([last, text.length, invert]);
  const out: string[] = [];
  switch (behavior) {
    case "Removed":
      for (const [s, e, m] of segs) if (!m) out.push(text.slice(s, e));
      break;
    case "Isolated":
      for (const [s, e] of segs) out.push(text.slice(s, e));
      break;
    case "Contiguous": {
      let prevMatch = false;
      for (const [s, e, m] of segs) {
        if (m && prevMatch) out[out.length - 1] += text.slice(s, e);
        else out.push(text.slice(s, e));
        prevMatch = m;
      }
      break;
    }
    case "MergedWithPrevious": {
      let prevMatch = false;
      for (const [s, e, m] of segs) {
        if (m && !prevMatch && out.length > 0) out[out.length - 1] += text.slice(s, e);
        else out.push(text.slice(s, e));
        prevMatch = m;
      }
      break;
    }
    case "MergedWithNext": {
      let carry = "";
      for (const [s, e, m] of segs) {
        if (m) {
          if (carry) out.push(carry);
          carry = text.slice(s, e);
        } else {
          out.push(carry + text.slice(s, e));
          carry = "";
        }
      }
      if (carry) out.push(carry);
      break;
    }
  }
  return out.filter((s) => s.length > 0);
}

/** Applies a string splitter to each piece; the first sub-piece keeps `first`. */
function eachPiece(pieces: Piece[], split: (text: string, first: boolean) => string[]): Piece[] {
  const out: Piece[] = [];
  for (const p of pieces) {
    split(p.text, p.first).forEach((text, i) => out.push({ text, first: p.first && i === 0 }));
  }
  return out;
}

/** bytes → printable unicode characters, GPT-2's reversible table. */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    table[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  return table;
})();

/** The inverse of {@link BYTE_TO_CHAR}. */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(
  BYTE_TO_CHAR.map((c, b) => [c, b]),
);

const encoder = new TextEncoder();

/** Maps text to its UTF-8 bytes spelled with the byte-level alphabet. */
export function toByteLevel(text: string): string {
  let out = "";
  for (const b of encoder.encode(text)) out += BYTE_TO_CHAR[b];
  return out;
}

/** Parses `pre_tokenizer` (null gives undefined). */
export function parsePreTokenizer(value: unknown, at: JsonPath): PreTokenizer | undefined {
  if (value === null || value === undefined) return undefined;
  const obj = asObject(value, at);
  const type = typeOf(obj, at);
  switch (type) {
    case "Sequence": {
      const list = asArray(obj.pretokenizers, at.key("pretokenizers"))
        .map((p, i) => parsePreTokenizer(p, at.key("pretokenizers").index(i)))
        .filter((p): p is PreTokenizer => p !== undefined);
      return (pieces) => list.reduce((ps, p) => p(ps), pieces);
    }
    case "ByteLevel": {
      const addPrefixSpace = optBool(obj, "add_prefix_space", at, true);
      const useRegex = optBool(obj, "use_regex", at, true);
      const re = compileHfRegex(GPT2_PATTERN, at);
      return (pieces) =>
        eachPiece(pieces, (text) => {
          // Hugging Face adds the space to every piece it is given, not just the first.
          const t = addPrefixSpace && !text.startsWith(" ") ? " " + text : text;
          return useRegex ? splitBy(t, re, "Isolated", false) : [t];
        }).map((p) => ({ text: toByteLevel(p.text), first: p.first }));
    }
    case "Split": {
      const re = parsePattern(obj.pattern, at.key("pattern"));
      const behavior = asString(obj.behavior, at.key("behavior")) as SplitBehavior;
      if (!BEHAVIORS.includes(behavior)) {
        throw at.key("behavior").error(
          `${JSON.stringify(behavior)} is not one of ${BEHAVIORS.join(", ")}`,
        );
      }
      const invert = optBool(obj, "invert", at, false);
      return (pieces) => eachPiece(pieces, (text) => splitBy(text, re, behavior, invert));
    }
    case "Metaspace": {
      const replacement = asString(obj.replacement ?? "▁", at.key("replacement"));
      const scheme = metaspaceScheme(obj, at);
      const split = optBool(obj, "split", at, true);
      const re = new RegExp(escapeRegex(replacement), "gu");
      return (pieces) =>
        eachPiece(pieces, (text, first) => {
          let t = text.replaceAll(" ", replacement);
          if (
            !t.startsWith(replacement) && (scheme === "always" || (scheme === "first" && first))
          ) {
            t = replacement + t;
          }
          return split ? splitBy(t, re, "MergedWithNext", false) : [t];
        });
    }
    case "Digits": {
      const individual = optBool(obj, "individual_digits", at, false);
      const re = individual ? /\p{N}/gu : /\p{N}+/gu;
      return (pieces) => eachPiece(pieces, (text) => splitBy(text, re, "Isolated", false));
    }
    case "Whitespace": {
      const re = /\w+|[^\w\s]+/gu;
      return (pieces) =>
        eachPiece(
          pieces,
          (text) => splitBy(text, re, "Isolated", true).filter((s) => !/^\s+$/u.test(s)),
        );
    }
    case "WhitespaceSplit": {
      const re = /\p{White_Space}+/gu;
      return (pieces) => eachPiece(pieces, (text) => splitBy(text, re, "Removed", false));
    }
    default:
      throw unsupported(at, type, PRE_TOKENIZERS);
  }
}

/** Metaspace's prepend scheme from `prepend_scheme` or the legacy `add_prefix_space`. */
function metaspaceScheme(obj: JsonObject, at: JsonPath): "always" | "first" | "never" {
  const s = optString(obj, "prepend_scheme", at);
  if (s === undefined) return optBool(obj, "add_prefix_space", at, true) ? "always" : "never";
  if (s !== "always" && s !== "first" && s !== "never") {
    throw at.key("prepend_scheme").error(`${JSON.stringify(s)} is not one of always, first, never`);
  }
  return s;
}

// ---------------------------------------------------------------------------------------
// Decoders

/**
 * A decoder step: token strings in, token strings out. It sets `state.incomplete` when
 * the text ends inside a UTF-8 sequence that later tokens could complete, so the stream
 * decoder can hold those bytes back.
 */
export type Decoder = (tokens: string[], state: { incomplete: boolean }) => string[];

const DECODERS = ["Sequence", "ByteLevel", "ByteFallback", "Fuse", "Replace", "Strip", "Metaspace"];

const lossy = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * How many trailing bytes form a valid but unfinished UTF-8 sequence (0 if none): the
 * bytes a stream must wait on.
 */
export function incompleteTail(bytes: Uint8Array): number {
  const n = bytes.length;
  for (let k = 1; k <= 3 && k <= n; k++) {
    const b = bytes[n - k];
    if ((b & 0xc0) === 0x80) continue; // continuation byte: keep looking for the lead
    const need = b >= 0xf0 && b <= 0xf4 ? 4 : b >= 0xe0 ? 3 : b >= 0xc2 && b < 0xe0 ? 2 : 1;
    if (need <= k) return 0;
    // The second byte of E0/ED/F0/F4 sequences has a narrower range; outside it the bytes are invalid, not unfinished.
    if (k >= 2) {
      const c = bytes[n - k + 1];
      if (
        (b === 0xe0 && c < 0xa0) || (b === 0xed && c > 0x9f) || (b === 0xf0 && c < 0x90) ||
        (b === 0xf4 && c > 0x8f)
      ) {
        return 0;
      }
    }
    return k;
  }
  return 0;
}

/** Parses `<0xNN>` as a byte, or returns -1. */
function byteToken(t: string): number {
  if (t.length !== 6 || !t.startsWith("<0x") || t[5] !== ">") return -1;
  const v = parseInt(t.slice(3, 5), 16);
  return Number.isNaN(v) || !/^[0-9A-Fa-f]{2}$/.test(t.slice(3, 5)) ? -1 : v;
}

/** Parses `decoder` (null gives undefined: tokens are then joined with spaces). */
export function parseDecoder(value: unknown, at: JsonPath): Decoder | undefined {
  if (value === null || value === undefined) return undefined;
  const obj = asObject(value, at);
  const type = typeOf(obj, at);
  switch (type) {
    case "Sequence": {
      const list = asArray(obj.decoders, at.key("decoders"))
        .map((d, i) => parseDecoder(d, at.key("decoders").index(i)))
        .filter((d): d is Decoder => d !== undefined);
      return (tokens, state) => list.reduce((ts, d) => d(ts, state), tokens);
    }
    case "ByteLevel":
      return (tokens, state) => {
        const bytes: number[] = [];
        for (const t of tokens) {
          const mapped: number[] = [];
          let ok = true;
          for (const ch of t) {
            const b = CHAR_TO_BYTE.get(ch);
            if (b === undefined) {
              ok = false;
              break;
            }
            mapped.push(b);
          }
          // A token outside the byte alphabet (an added token, say) contributes its own UTF-8.
          if (ok) bytes.push(...mapped);
          else bytes.push(...encoder.encode(t));
        }
        const arr = Uint8Array.from(bytes);
        state.incomplete = incompleteTail(arr) > 0;
        return [lossy.decode(arr)];
      };
    case "ByteFallback":
      return (tokens, state) => {
        const out: string[] = [];
        let run: number[] = [];
        const flush = (atEnd: boolean): void => {
          if (run.length === 0) return;
          const arr = Uint8Array.from(run);
          try {
            out.push(strict.decode(arr));
          } catch {
            const tail = incompleteTail(arr);
            if (atEnd && tail > 0) {
              try {
                strict.decode(arr.subarray(0, arr.length - tail));
                state.incomplete = true;
              } catch { /* invalid before the tail: not merely unfinished */ }
            }
            // Hugging Face turns every byte of an invalid run into U+FFFD.
            out.push("\uFFFD".repeat(run.length));
          }
          run = [];
        };
        state.incomplete = false;
        for (const t of tokens) {
          const b = byteToken(t);
          if (b >= 0) run.push(b);
          else {
            flush(false);
            out.push(t);
          }
        }
        flush(true);
        return out;
      };
    case "Fuse":
      return (tokens) => [tokens.join("")];
    case "Replace": {
      const pattern = parsePattern(obj.pattern, at.key("pattern"));
      const content = asString(obj.content, at.key("content"));
      return (tokens) => tokens.map((t) => t.replace(pattern, () => content));
    }
    case "Strip": {
      const content = asString(obj.content, at.key("content"));
      const start = optInt(obj, "start", at, 0);
      const stop = optInt(obj, "stop", at, 0);
      return (tokens) =>
        tokens.map((t) => {
          const chars = Array.from(t);
          let s = 0, e = chars.length;
          while (s < start && s < e && chars[s] === content) s++;
          while (chars.length - e < stop && e > s && chars[e - 1] === content) e--;
          return chars.slice(s, e).join("");
        });
    }
    case "Metaspace": {
      const replacement = asString(obj.replacement ?? "▁", at.key("replacement"));
      const scheme = metaspaceScheme(obj, at);
      return (tokens) =>
        // Hugging Face drops every replacement character of the first token, not just a leading one.
        tokens.map((t, i) => t.replaceAll(replacement, i === 0 && scheme !== "never" ? "" : " "));
    }
    default:
      throw unsupported(at, type, DECODERS);
  }
}
