/**
 * A trained byte-level BPE as the text of a Hugging Face `tokenizer.json`,
 * byte for byte what `ByteLevelBPETokenizer(...).save(path)` writes for the same
 * vocabulary: serde_json's pretty layout (two-space indent, no final newline),
 * the ByteLevel pre-tokenizer, post-processor and decoder with the settings that
 * class gives them, and the special tokens as added tokens.
 *
 * @module
 */

/** A JSON value whose objects keep their key order ({@linkcode Map}): vocab keys such as `"12"` would not in a plain object. */
type Json = null | boolean | number | string | readonly Json[] | ReadonlyMap<string, Json> | {
  readonly [k: string]: Json;
};

/** Pretty-prints as serde_json does (`[]`/`{}` when empty; strings escaped as JSON.stringify escapes them, which for well-formed text is serde's escaping too). */
function pretty(value: Json, indent: string, out: string[]): void {
  if (value === null || typeof value !== "object") {
    out.push(JSON.stringify(value));
    return;
  }
  const inner = indent + "  ";
  if (Array.isArray(value)) {
    if (value.length === 0) return void out.push("[]");
    out.push("[");
    value.forEach((v, i) => {
      out.push(i === 0 ? "\n" : ",\n", inner);
      pretty(v, inner, out);
    });
    out.push("\n", indent, "]");
    return;
  }
  const entries = value instanceof Map
    ? [...value.entries()]
    : Object.entries(value as { readonly [k: string]: Json });
  if (entries.length === 0) return void out.push("{}");
  out.push("{");
  entries.forEach(([k, v], i) => {
    out.push(i === 0 ? "\n" : ",\n", inner, JSON.stringify(k), ": ");
    pretty(v, inner, out);
  });
  out.push("\n", indent, "}");
}

/**
 * The fields of a `"BPE"` model object in the order and with the values Hugging
 * Face's serializer writes for a plain byte-level BPE (before `vocab` and
 * `merges`).
 *
 * @example
 * ```ts
 * import { BPE_MODEL_DEFAULTS } from "./train_json.ts";
 * const model = { ...BPE_MODEL_DEFAULTS, byte_fallback: true, vocab: {}, merges: [] };
 * ```
 */
export const BPE_MODEL_DEFAULTS: Readonly<Record<string, unknown>> = Object.freeze({
  type: "BPE",
  dropout: null,
  unk_token: null,
  continuing_subword_prefix: null,
  end_of_word_suffix: null,
  fuse_unk: false,
  byte_fallback: false,
  ignore_merges: false,
});

/**
 * The `tokenizer.json` text of a byte-level BPE: `vocab` (token by id, in the
 * byte-level alphabet), `merges` in rank order, and `specialTokens`, which must
 * be in `vocab` (they become special added tokens with their vocab ids).
 *
 * @example
 * ```ts
 * import { byteLevelBpeJson } from "./train_json.ts";
 * const text = byteLevelBpeJson(["<|endoftext|>", "a", "b", "ab"], [["a", "b"]], ["<|endoftext|>"]);
 * JSON.parse(text).model.merges; // [["a", "b"]]
 * ```
 */
export function byteLevelBpeJson(
  vocab: readonly string[],
  merges: readonly (readonly [string, string])[],
  specialTokens: readonly string[],
): string {
  const ids = new Map<string, Json>();
  vocab.forEach((t, id) => ids.set(t, id));
  const added: { id: number; json: Json }[] = [];
  const done = new Set<string>();
  for (const t of specialTokens) {
    if (done.has(t)) continue;
    done.add(t);
    const id = ids.get(t);
    if (id === undefined) {
      throw new RangeError(`special token ${JSON.stringify(t)} is not in vocab`);
    }
    added.push({
      id: id as number,
      json: {
        id,
        content: t,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      },
    });
  }
  // Ids ascending, as Hugging Face writes its added vocabulary.
  added.sort((x, y) => x.id - y.id);
  const byteLevel = (addPrefixSpace: boolean, trimOffsets: boolean): Json => ({
    type: "ByteLevel",
    add_prefix_space: addPrefixSpace,
    trim_offsets: trimOffsets,
    use_regex: true,
  });
  const doc: Json = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added.map((a) => a.json),
    normalizer: null,
    pre_tokenizer: byteLevel(false, true),
    post_processor: byteLevel(true, false),
    decoder: byteLevel(true, true),
    model: {
      ...BPE_MODEL_DEFAULTS,
      vocab: ids,
      merges: merges.map(([a, b]) => [a, b]),
    },
  };
  const out: string[] = [];
  pretty(doc, "", out);
  return out.join("");
}
