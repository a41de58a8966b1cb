/**
 * A Hugging Face `tokenizer.json` tokenizer in plain TypeScript, for the two schemes
 * Kiln's models use:
 *
 * - byte-level BPE (GPT-2 / GPT-NeoX for Mamba, and the `Sequence[Split, ByteLevel]`
 *   form of Qwen, DeepSeek and Llama-3);
 * - SentencePiece-style BPE with byte fallback (Llama, Mistral, Mixtral, Jamba), with
 *   either the `Prepend`/`Replace` normalizers or the legacy `Metaspace` pre-tokenizer.
 *
 * Added tokens are found before the model runs, `TemplateProcessing` adds BOS/EOS when
 * asked, and a {@link StreamDecoder} turns generated ids into text without ever emitting
 * half a character.
 *
 * @module
 */

import {
  type AddedToken,
  AddedTokenMatcher,
  parseAddedTokens,
  resolveAddedTokens,
} from "./added_tokens.ts";
import { BpeModel, parseMerges, parseVocab } from "./bpe.ts";
import {
  asObject,
  type Decoder,
  describe,
  JsonPath,
  type Normalizer,
  optBool,
  optString,
  parseDecoder,
  parseNormalizer,
  parsePreTokenizer,
  type PreTokenizer,
} from "./parts.ts";
import { parsePostProcessor, type PostProcessor } from "./post_processor.ts";
import { fileError } from "../fs_errors.ts";
import { quote } from "./json.ts";
import { BOS_NAMES, EOS_NAMES, readTokenizerConfig } from "./special_tokens.ts";
import { StreamDecoder } from "./stream_decoder.ts";

/**
 * Options of {@link Tokenizer.fromJSON}.
 *
 * @example
 * ```ts ignore
 * import { Tokenizer, type TokenizerOptions } from "@kiln/kiln";
 * const options: TokenizerOptions = { source: "llama/tokenizer.json", bosToken: "<s>", eosToken: "</s>" };
 * const tok = Tokenizer.fromJSON(await Deno.readTextFile("llama/tokenizer.json"), options);
 * ```
 */
export interface TokenizerOptions {
  /** Names the file in error messages (default `"tokenizer.json"`). */
  source?: string;
  /** The BOS token's text, when the tokenizer.json alone does not say (tokenizer_config.json does). */
  bosToken?: string;
  /** The EOS token's text, when the tokenizer.json alone does not say (tokenizer_config.json does). */
  eosToken?: string;
  /**
   * Priority of each of `model.merges` (non-negative integers, lower first): merges of
   * equal priority apply leftmost first, as in SentencePiece's by-score BPE. For
   * vocabularies built from GGUF scores (`app/gguf/tokenizer.ts`); default each merge's rank.
   */
  mergePriorities?: ArrayLike<number>;
}

/**
 * Options of {@link Tokenizer.encode}.
 *
 * @example
 * ```ts ignore
 * import { type EncodeOptions, Tokenizer } from "@kiln/kiln";
 * const tok = await Tokenizer.fromFile("./tokenizer.json");
 * const options: EncodeOptions = { addSpecialTokens: true, splitSpecialTokens: true };
 * const ids = tok.encode("user text with </s> inside", options);
 * ```
 */
export interface EncodeOptions {
  /** Adds the post-processor's special tokens (BOS/EOS); default false. */
  addSpecialTokens?: boolean;
  /** Treats special added tokens in the text as plain text (a guard against prompt injection); default false. */
  splitSpecialTokens?: boolean;
}

/**
 * Options of {@link Tokenizer.decode} and {@link Tokenizer.decoder}.
 *
 * @example
 * ```ts ignore
 * import { type DecodeOptions, Tokenizer } from "@kiln/kiln";
 * const tok = await Tokenizer.fromFile("./tokenizer.json");
 * const options: DecodeOptions = { skipSpecialTokens: true };
 * tok.decode(tok.encode("Hello", { addSpecialTokens: true }), options); // "Hello"
 * ```
 */
export interface DecodeOptions {
  /** Leaves out added tokens marked `special`; default false. */
  skipSpecialTokens?: boolean;
}

/**
 * A tokenizer loaded from a Hugging Face `tokenizer.json`.
 *
 * @example
 * ```ts
 * const tok = await Tokenizer.fromFile("models/tokenizer.json");
 * const ids = tok.encode("Hello world", { addSpecialTokens: true });
 * tok.decode(ids, { skipSpecialTokens: true }); // "Hello world"
 * ```
 */
export class Tokenizer {
  /** Number of ids: one past the largest id of the model vocabulary and the added tokens. */
  readonly vocabSize: number;
  /** The beginning-of-sequence id, if known. */
  readonly bosId?: number;
  /** The end-of-sequence id, if known. */
  readonly eosId?: number;

  readonly #model: BpeModel;
  readonly #normalizer: Normalizer | undefined;
  readonly #preTokenizer: PreTokenizer | undefined;
  readonly #decoder: Decoder | undefined;
  readonly #post: PostProcessor | undefined;
  readonly #idToToken: string[];
  readonly #vocab: Map<string, number>;
  readonly #addedToId: Map<string, number>;
  /** Contents of special added tokens: decode skips ids whose token string is one. */
  readonly #specials: Set<string>;
  /** The file, for messages. */
  readonly #source: string;
  /** Matchers for added tokens with `normalized: false` (on raw text) and true (on normalized text). */
  readonly #matchRaw: AddedTokenMatcher;
  readonly #matchNormalized: AddedTokenMatcher;

  private constructor(json: Record<string, unknown>, options: TokenizerOptions) {
    const root = new JsonPath(options.source ?? "tokenizer.json", "");
    this.#source = root.source;
    const modelAt = root.key("model");
    const model = asObject(json.model, modelAt);
    const type = model.type === undefined
      ? (model.merges !== undefined ? "BPE" : undefined)
      : model.type;
    if (type !== "BPE") {
      throw type === undefined
        ? modelAt.key("type").error(
          "is missing and the model has no merges (only BPE is supported)",
        )
        : modelAt.key("type").error(
          `${
            typeof type === "string" ? quote(type) : describe(type)
          } is not supported (supported: BPE)`,
        );
    }
    const vocab = parseVocab(model.vocab, modelAt.key("vocab"));
    const merges = parseMerges(model.merges, modelAt.key("merges"));
    this.#model = new BpeModel({
      vocab,
      merges,
      priorities: options.mergePriorities,
      mergesPath: `${root.source}: model.merges`,
      source: root.source,
      unkToken: optString(model, "unk_token", modelAt),
      fuseUnk: optBool(model, "fuse_unk", modelAt, false),
      byteFallback: optBool(model, "byte_fallback", modelAt, false),
      ignoreMerges: optBool(model, "ignore_merges", modelAt, false),
      continuingSubwordPrefix: optString(model, "continuing_subword_prefix", modelAt) ?? "",
      endOfWordSuffix: optString(model, "end_of_word_suffix", modelAt) ?? "",
    });

    const added = parseAddedTokens(json.added_tokens, root.key("added_tokens"));
    this.#normalizer = parseNormalizer(json.normalizer, root.key("normalizer"));
    this.#preTokenizer = parsePreTokenizer(json.pre_tokenizer, root.key("pre_tokenizer"));
    this.#decoder = parseDecoder(json.decoder, root.key("decoder"));

    this.#vocab = vocab;
    const { byContent, byId, specials, normalizedText } = resolveAddedTokens(
      added,
      vocab,
      this.#normalizer,
    );
    this.#addedToId = byContent;
    this.#specials = specials;
    let maxId = -1;
    for (const id of vocab.values()) maxId = Math.max(maxId, id);
    for (const id of byId.keys()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    this.#idToToken = new Array(this.vocabSize);
    for (const [tok, id] of vocab) this.#idToToken[id] = tok;
    // Added tokens win over the model's own entry for the same id; a normalized one is
    // known by its normalized text (tokenizers 0.23 `simple_id_to_token`), which is
    // what decode sees and what the normalized matcher looks for.
    const raw: { token: AddedToken; pattern: string }[] = [];
    const normalized: { token: AddedToken; pattern: string }[] = [];
    for (const t of byId.values()) {
      const text = normalizedText.get(t.id) ?? t.content;
      this.#idToToken[t.id] = text;
      if (t.normalized) normalized.push({ token: t, pattern: text });
      else raw.push({ token: t, pattern: t.content });
    }
    this.#matchRaw = new AddedTokenMatcher(raw);
    this.#matchNormalized = new AddedTokenMatcher(normalized);
    this.#post = parsePostProcessor(
      json.post_processor,
      root.key("post_processor"),
      (t) => this.tokenToId(t),
    );
    // A template id with no token would make encode return ids decode refuses.
    for (const id of [...(this.#post?.before ?? []), ...(this.#post?.after ?? [])]) {
      if (this.#idToToken[id] === undefined) {
        throw root.key("post_processor").rangeError(
          `adds token id ${id}, which is not in the vocabulary (vocabSize ${this.vocabSize})`,
        );
      }
    }

    const pick = (name: string | undefined, what: string): number | undefined => {
      if (name === undefined) return undefined;
      const id = this.tokenToId(name);
      if (id === undefined) {
        throw new RangeError(
          `${root.source}: ${what} ${quote(name)} is not in the vocabulary`,
        );
      }
      return id;
    };
    // Only added tokens count: a plain vocabulary entry spelled "<s>" is not a BOS.
    const known = (names: readonly string[]): number | undefined =>
      names.map((n) => this.#addedToId.get(n)).find((id) => id !== undefined);
    this.bosId = pick(options.bosToken, "bos token") ?? this.#post?.before.at(-1) ??
      known(BOS_NAMES);
    this.eosId = pick(options.eosToken, "eos token") ?? this.#post?.after[0] ?? known(EOS_NAMES);
  }

  /**
   * Builds a tokenizer from parsed `tokenizer.json` content (or its text). Throws a
   * SyntaxError for text that is not JSON or a regex that does not compile, and a
   * TypeError naming the field path for anything malformed or unsupported.
   *
   * @example
   * ```ts
   * const tok = Tokenizer.fromJSON(JSON.parse(await Deno.readTextFile("tokenizer.json")));
   * ```
   */
  static fromJSON(json: unknown, options: TokenizerOptions = {}): Tokenizer {
    const source = options.source ?? "tokenizer.json";
    let value = json;
    if (typeof json === "string") {
      try {
        value = JSON.parse(json);
      } catch (e) {
        throw new SyntaxError(`${source}: not valid JSON: ${(e as Error).message}`);
      }
    }
    return new Tokenizer(asObject(value, new JsonPath(source, "")), { ...options, source });
  }

  /**
   * Loads `tokenizer.json` from disk. BOS/EOS names are taken from a
   * `tokenizer_config.json` beside it when there is one.
   *
   * @example
   * ```ts
   * const tok = await Tokenizer.fromFile("./models/tokenizer.json");
   * console.log(tok.vocabSize, tok.bosId, tok.eosId);
   * ```
   */
  static async fromFile(
    path: string,
    options: Omit<TokenizerOptions, "source"> = {},
  ): Promise<Tokenizer> {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      throw fileError(e, path, "a tokenizer.json");
    }
    const config = await readTokenizerConfig(path.replace(/[^/\\]*$/, "tokenizer_config.json"));
    return Tokenizer.fromJSON(text, {
      bosToken: config.bos,
      eosToken: config.eos,
      ...options,
      source: path,
    });
  }

  /**
   * Text → token ids.
   *
   * @example
   * ```ts ignore
   * import { Tokenizer } from "@kiln/kiln";
   * const tok = await Tokenizer.fromFile("tokenizer.json");
   * tok.encode("Hello world", { addSpecialTokens: true }); // Mistral: [1, 22557, 1526]
   * ```
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== "string") {
      throw new TypeError(
        `${this.#source}: Tokenizer.encode: text is not a string (got ${typeof text})`,
      );
    }
    // As tokenizers' `extract_and_normalize`: non-normalized added tokens are found in
    // the raw text, the rest is normalized piece by piece and searched for normalized ones.
    const skip = options.splitSpecialTokens === true;
    const ids: number[] = [];
    for (const seg of this.#matchRaw.split(text, 0, skip)) {
      if ("id" in seg) {
        ids.push(seg.id);
        continue;
      }
      const norm = this.#normalizer ? this.#normalizer(seg.text) : seg.text;
      for (const sub of this.#matchNormalized.split(norm, seg.start, skip)) {
        if ("id" in sub) {
          ids.push(sub.id);
          continue;
        }
        const piece = { text: sub.text, start: sub.start };
        const pieces = this.#preTokenizer ? this.#preTokenizer([piece]) : [piece];
        for (const p of pieces) for (const id of this.#model.tokenize(p.text)) ids.push(id);
      }
    }
    return options.addSpecialTokens && this.#post ? this.#post.apply(ids) : ids;
  }

  /**
   * Token ids → text. Throws a RangeError for an id outside the vocabulary.
   *
   * @example
   * ```ts ignore
   * import { Tokenizer } from "@kiln/kiln";
   * const tok = await Tokenizer.fromFile("tokenizer.json");
   * tok.decode([1, 22557, 1526], { skipSpecialTokens: true }); // "Hello world"
   * ```
   */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    return this.decodeDetailed(ids, options).text;
  }

  /**
   * Like {@link Tokenizer.decode}, and says whether the text ends inside a UTF-8
   * sequence that more ids could complete (its bytes then show as U+FFFD).
   *
   * @example
   * ```ts ignore
   * import { Tokenizer } from "@kiln/kiln";
   * const tok = await Tokenizer.fromFile("tokenizer.json");
   * tok.decodeDetailed([0xf0 + 3]).incomplete; // true for Llama's <0xF0> byte token
   * ```
   */
  decodeDetailed(
    ids: readonly number[],
    options: DecodeOptions = {},
  ): { text: string; incomplete: boolean } {
    const tokens: string[] = [];
    for (const id of ids) {
      const tok = this.idToToken(id);
      if (tok === undefined) {
        throw new RangeError(
          `${this.#source}: Tokenizer.decode: token id ${id} is not in the vocabulary ` +
            `(vocabSize ${this.vocabSize})`,
        );
      }
      // tokenizers' `decode` skips by token string, not by id.
      if (options.skipSpecialTokens && this.#specials.has(tok)) continue;
      tokens.push(tok);
    }
    // Without a decoder Hugging Face joins tokens with spaces.
    if (!this.#decoder) return { text: tokens.join(" "), incomplete: false };
    const state = { incomplete: false };
    const text = this.#decoder(tokens, state).join("");
    return { text, incomplete: state.incomplete };
  }

  /**
   * A decoder for generated ids, one at a time.
   *
   * @example
   * ```ts ignore
   * import { Tokenizer } from "@kiln/kiln";
   * const tok = await Tokenizer.fromFile("tokenizer.json");
   * const ids = tok.encode("Hello world");
   * const stream = tok.decoder();
   * let text = "";
   * for (const id of ids) text += stream.push(id);
   * text += stream.flush();
   * ```
   */
  decoder(options: DecodeOptions = {}): StreamDecoder {
    return new StreamDecoder(this, options);
  }

  /**
   * The token string of an id (added tokens included), or undefined.
   *
   * @example
   * ```ts ignore
   * import { Tokenizer } from "@kiln/kiln";
   * const tok = await Tokenizer.fromFile("tokenizer.json");
   * tok.idToToken(1); // "<s>"
   * ```
   */
  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.#idToToken[id] : undefined;
  }

  /**
   * The id of a token string (added tokens included), or undefined.
   *
   * @example
   * ```ts ignore
   * import { Tokenizer } from "@kiln/kiln";
   * const tok = await Tokenizer.fromFile("tokenizer.json");
   * tok.tokenToId("</s>"); // 2
   * ```
   */
  tokenToId(token: string): number | undefined {
    return this.#addedToId.get(token) ?? this.#vocab.get(token);
  }

  /**
   * Whether decode with `skipSpecialTokens` leaves the id out: its token string is the
   * content of an added token marked `special`.
   *
   * @example
   * ```ts ignore
   * import { Tokenizer } from "@kiln/kiln";
   * const tok = await Tokenizer.fromFile("tokenizer.json");
   * tok.isSpecial(tok.eosId!); // true
   * ```
   */
  isSpecial(id: number): boolean {
    const tok = this.idToToken(id);
    return tok !== undefined && this.#specials.has(tok);
  }
}
