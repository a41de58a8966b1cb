/**
 * Rendering a {@linkcode TokSpec} of the `tokenizers` campaign as `tokenizer.json`
 * content: ids as Hugging Face gives them, post-processor templates resolved, the
 * deliberate faults applied, and the added tokens Hugging Face cannot answer for (it
 * panics, or picks at random) left out.
 *
 * @module
 */

import { JsonPath, parseNormalizer } from "../../app/tokenizer/parts.ts";
import type { AddedSpec, Json, TokSpec } from "./tokenizers_gen.ts";
import { BPE_MODEL_DEFAULTS } from "../../app/tokenizer/train_json.ts";
/**
 * The vocabulary of a spec, in id order: base symbols then merge results, each once.
 *
 * @example
 * ```ts
 * import { generateTokenizerCase, vocabOf } from "./tokenizers_gen.ts";
 * vocabOf(generateTokenizerCase(1).spec).length > 0; // true
 * ```
 */
export function vocabOf(spec: TokSpec): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const t of [...spec.base, ...spec.merges.map(([a, b]) => a + b)]) {
    if (!seen.has(t)) {
      seen.add(t);
      out.push(t);
    }
  }
  return out;
}

/**
 * The ids Hugging Face gives added tokens (added_vocabulary.rs `add_tokens`): an existing
 * content keeps its id, else the next id from the vocabulary's size.
 *
 * @example
 * ```ts
 * import { addedIds, generateTokenizerCase, vocabOf } from "./tokenizers_gen.ts";
 * const { spec } = generateTokenizerCase(2);
 * addedIds(spec, vocabOf(spec)); // Map { "<s>" => 1, … }
 * ```
 */
export function addedIds(spec: TokSpec, vocab: readonly string[]): Map<string, number> {
  const index = new Map(vocab.map((t, i) => [t, i]));
  const ids = new Map<string, number>();
  let next = vocab.length;
  for (const a of unambiguous(spec)) {
    if (ids.has(a.content)) continue;
    ids.set(a.content, index.get(a.content) ?? next++);
  }
  return ids;
}

/**
 * The spec as `tokenizer.json` content.
 *
 * @example
 * ```ts
 * import { generateTokenizerCase, renderTokenizerJson } from "./tokenizers_gen.ts";
 * const json = renderTokenizerJson(generateTokenizerCase(3).spec);
 * (json.model as Record<string, unknown>).type; // "BPE"
 * ```
 */
export function renderTokenizerJson(spec: TokSpec): Json {
  const vocabList = vocabOf(spec);
  const vocab: Record<string, number> = {};
  vocabList.forEach((t, i) => vocab[t] = i);
  const ids = addedIds(spec, vocabList);
  const idOf = (t: string) => ids.get(t) ?? vocab[t];
  let post: Json | null = null;
  if (spec.post?.kind === "byte_level") post = byteLevelPost();
  else if (spec.post) {
    const known = (list: string[]) => list.filter((t) => idOf(t) !== undefined);
    const before = known(spec.post.before), after = known(spec.post.after);
    const item = (t: string, type_id: number) => ({ SpecialToken: { id: t, type_id } });
    const single = [
      ...before.map((t) => item(t, 0)),
      { Sequence: { id: "A", type_id: 0 } },
      ...after.map((t) => item(t, 0)),
    ];
    const special_tokens: Json = {};
    for (const t of [...before, ...after]) {
      special_tokens[t] = { id: t, ids: [idOf(t)], tokens: [t] };
    }
    const template = {
      type: "TemplateProcessing",
      single,
      pair: [...single, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens,
    };
    post = spec.post.byteLevel
      ? { type: "Sequence", processors: [byteLevelPost(), template] }
      : template;
  }
  const json: Json = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: unambiguous(spec).map((a) => ({
      id: ids.get(a.content),
      ...a,
      rstrip: a.rstrip || panics(spec, a),
    })),
    normalizer: spec.normalizer,
    pre_tokenizer: spec.pre_tokenizer,
    post_processor: post,
    decoder: spec.decoder,
    model: {
      ...BPE_MODEL_DEFAULTS,
      ...spec.model,
      vocab,
      merges: spec.mergeStrings ? spec.merges.map(([a, b]) => `${a} ${b}`) : spec.merges,
    },
  };
  return spec.fault ? applyFault(json, spec.fault) : json;
}

/**
 * The added tokens less those Hugging Face cannot answer for: those whose content, or
 * its normalized text, is also another content's: Hugging Face then finds one of the two ids at random (its tries are built
 * from a hash map iterated in a per-instance order), so no answer is the right one.
 * The normalized text is computed with Kiln's normalizer: it only decides what to
 * leave out, never what the answer is.
 */
function unambiguous(spec: TokSpec): AddedSpec[] {
  let normalize = (t: string) => t;
  try {
    normalize = parseNormalizer(spec.normalizer, new JsonPath("fuzz", "normalizer")) ?? normalize;
  } catch { /* a normalizer Kiln refuses: the file is refused anyway */ }
  const owner = new Map<string, string>();
  const out: AddedSpec[] = [];
  for (const a of spec.added) {
    // A normalized token its normalizer empties (spaces under Strip) makes Hugging Face
    // panic when it builds or runs its trie ("AddedVocabulary bad split"): left out too.
    if (a.content === "" || (a.normalized && normalize(a.content) === "")) continue;
    const patterns = [a.content, normalize(a.content)];
    if (patterns.some((p) => owner.has(p) && owner.get(p) !== a.content)) continue;
    for (const p of patterns) owner.set(p, a.content);
    out.push(a);
  }
  return out;
}

/**
 * Whether `a` could make Hugging Face panic (and abort the process): added_vocabulary.rs
 * `find_matches` slices (max(lstrip start, previous end), end), which is inverted when a
 * whitespace-only lstrip token without rstrip matches wholly inside the whitespace an
 * earlier rstrip token took ("AddedVocabulary bad split"). Such a token is rendered with
 * rstrip, which keeps the slice ordered; Kiln drops the token there (see added_tokens.ts).
 */
function panics(spec: TokSpec, a: AddedSpec): boolean {
  return a.lstrip && !a.rstrip && /^\p{White_Space}+$/u.test(a.content) &&
    spec.added.some((b) => b.rstrip);
}

function byteLevelPost(): Json {
  return { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false };
}

/**
 * Faults a file may carry, which both sides must refuse at load.
 *
 * @example
 * ```ts
 * import { FAULTS } from "./tokenizers_gen.ts";
 * FAULTS.includes("merge_missing_token"); // true
 * ```
 */
export const FAULTS = [
  "merge_missing_token",
  "metaspace_contradiction",
  "replacement_two_chars",
  "unknown_normalizer",
  "negative_vocab_id",
  "merge_not_pair",
] as const;

function applyFault(json: Json, fault: string): Json {
  const model = json.model as Json;
  switch (fault) {
    case "merge_missing_token":
      return { ...json, model: { ...model, merges: [["\u{E000}x", "\u{E001}y"]] } };
    case "metaspace_contradiction":
      return {
        ...json,
        pre_tokenizer: {
          type: "Metaspace",
          replacement: "▁",
          prepend_scheme: "always",
          add_prefix_space: false,
          split: true,
        },
      };
    case "replacement_two_chars":
      return {
        ...json,
        pre_tokenizer: {
          type: "Metaspace",
          replacement: "▁▁",
          prepend_scheme: "always",
          split: true,
        },
      };
    case "unknown_normalizer":
      return { ...json, normalizer: { type: "NoSuchNormalizer" } };
    case "negative_vocab_id":
      return { ...json, model: { ...model, vocab: { ...(model.vocab as Json), "\u{E002}": -1 } } };
    case "merge_not_pair":
      return { ...json, model: { ...model, merges: ["a b c"] } };
  }
  return json;
}
