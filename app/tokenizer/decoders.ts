/**
 * The decoders of a Hugging Face `tokenizer.json`, parsed from JSON with errors that
 * name the file and the field path. Each follows the matching file of tokenizers'
 * `src/decoders/` (ByteLevel and Metaspace live in `src/pre_tokenizers/`, Replace in
 * `src/normalizers/replace.rs`). Private to the tokenizer (`tokenizer.ts`).
 *
 * @module
 */

import {
  asObject,
  asString,
  type JsonPath,
  optBool,
  optInt,
  optString,
  quote,
  sequenceMembers,
  typeOf,
} from "./json.ts";
import { type Budget, budgetFor, parsePattern, replaceWithin, spend, total } from "./patterns.ts";
import { metaspaceScheme, oneChar } from "./pre_tokenizers.ts";
import { CHAR_TO_BYTE } from "./split.ts";

const encoder = new TextEncoder();

/**
 * A decoder step: token strings in, token strings out. It sets `state.incomplete` when
 * the text ends inside a UTF-8 sequence that later tokens could complete, so the stream
 * decoder can hold those bytes back.
 *
 * @example
 * ```ts
 * import type { Decoder } from "./decoders.ts";
 * const fuse: Decoder = (tokens) => [tokens.join("")];
 * ```
 */
export type Decoder = (
  tokens: string[],
  state: { incomplete: boolean; budget?: Budget },
) => string[];

const DECODERS = [
  "Sequence",
  "ByteLevel",
  "ByteFallback",
  "Fuse",
  "Replace",
  "Strip",
  "Metaspace",
  "BPEDecoder",
  "WordPiece",
];

const lossy = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * How many trailing bytes form a valid but unfinished UTF-8 sequence (0 if none): the
 * bytes a stream must wait on.
 *
 * @example
 * ```ts
 * import { incompleteTail } from "./decoders.ts";
 * incompleteTail(new Uint8Array([0x61, 0xe2, 0x82])); // 2: "€" needs one more byte
 * ```
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

/**
 * Parses `<0xNN>` as a byte, or returns -1. byte_fallback.rs reads the two characters
 * with `u8::from_str_radix(_, 16)`, which also takes a leading `+` (`<0x+A>` is 10).
 */
function byteToken(t: string): number {
  if (t.length !== 6 || !t.startsWith("<0x") || t[5] !== ">") return -1;
  const hex = t.slice(3, 5);
  return /^(?:[0-9A-Fa-f]{2}|\+[0-9A-Fa-f])$/.test(hex) ? parseInt(hex, 16) : -1;
}

/** wordpiece.rs `cleanup`: undoes the spaces a WordPiece decode puts before punctuation. */
function cleanup(text: string): string {
  return text.replaceAll(" .", ".").replaceAll(" ?", "?").replaceAll(" !", "!")
    .replaceAll(" ,", ",").replaceAll(" ' ", "'").replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m").replaceAll(" do not", " don't").replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
}

/**
 * Parses `decoder` (null gives undefined: tokens are then joined with spaces).
 *
 * @example
 * ```ts
 * import { parseDecoder } from "./decoders.ts";
 * import { JsonPath } from "./json.ts";
 * const d = parseDecoder({ type: "Fuse" }, new JsonPath("tokenizer.json", "decoder"));
 * d?.(["a", "b"], { incomplete: false }); // ["ab"]
 * ```
 */
export function parseDecoder(value: unknown, at: JsonPath): Decoder | undefined {
  if (value === null || value === undefined) return undefined;
  const obj = asObject(value, at);
  const type = typeOf(obj, at);
  switch (type) {
    case "Sequence": {
      const list = sequenceMembers(obj, "decoders", at, parseDecoder);
      return (tokens, state) => {
        const budget = state.budget ??= budgetFor(total(tokens));
        return list.reduce((ts, d) => {
          const out = d(ts, state);
          spend(total(out), budget, at);
          return out;
        }, tokens);
      };
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
          // A loop, not push(...xs): a token of 100k+ characters would overflow the stack.
          for (const b of ok ? mapped : encoder.encode(t)) bytes.push(b);
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
      return (tokens, state) => {
        const budget = state.budget ??= budgetFor(total(tokens));
        let length = total(tokens);
        return tokens.map((t) => {
          // What this token may grow to: the budget less the other tokens' text.
          const out = replaceWithin(
            t,
            pattern,
            content,
            { max: budget.max - length + t.length },
            at,
          );
          length += out.length - t.length;
          return out;
        });
      };
    }
    case "Strip": {
      const content = oneChar(obj.content, at.key("content"));
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
      const replacement = oneChar(obj.replacement ?? "▁", at.key("replacement"));
      const scheme = metaspaceScheme(obj, at);
      return (tokens) =>
        // Hugging Face drops every replacement character of the first token, not just a leading one.
        tokens.map((t, i) => t.replaceAll(replacement, i === 0 && scheme !== "never" ? "" : " "));
    }
    case "BPEDecoder": {
      // bpe.rs: the suffix ends a word: a space, except after the last token.
      const suffix = optString(obj, "suffix", at) ?? "</w>";
      return (tokens) =>
        tokens.map((t, i) => t.replaceAll(suffix, i === tokens.length - 1 ? "" : " "));
    }
    case "WordPiece": {
      const prefix = optString(obj, "prefix", at) ?? "##";
      const clean = optBool(obj, "cleanup", at, true);
      return (tokens) =>
        tokens.map((t, i) => {
          let out = t;
          if (i !== 0) out = t.startsWith(prefix) ? t.slice(prefix.length) : " " + t;
          return clean ? cleanup(out) : out;
        });
    }
    default:
      throw at.key("type").error(
        `${quote(type)} is not supported (supported: ${DECODERS.join(", ")})`,
      );
  }
}
