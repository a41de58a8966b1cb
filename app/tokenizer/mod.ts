/**
 * A Hugging Face `tokenizer.json` tokenizer in plain TypeScript: byte-level BPE
 * (GPT-2 / GPT-NeoX, Qwen, DeepSeek, Llama 3) and SentencePiece-style BPE with
 * byte fallback (Llama, Mistral, Mixtral, Jamba).
 *
 * Files: `tokenizer.ts` (the {@linkcode Tokenizer}: encode, decode, options),
 * `stream_decoder.ts` (ids to text one at a time), `bpe.ts` (the BPE model),
 * `added_tokens.ts` (special and user tokens found before the model runs),
 * `parts.ts` (normalizers, and the JSON field helpers re-exported),
 * `pre_tokenizers.ts`, `decoders.ts`, `split.ts` (splitting by match behaviour, the
 * byte-level alphabet), `patterns.ts` (regexes as Hugging Face runs them), `post_processor.ts` (BOS/EOS templates), `special_tokens.ts`
 * (BOS/EOS from tokenizer_config.json or conventional names), `train.ts` (training a
 * byte-level BPE on text: `train_words.ts`, `train_merges.ts`, `train_json.ts`).
 *
 * @example
 * ```ts ignore
 * import { Tokenizer } from "./mod.ts";
 * const tok = await Tokenizer.fromFile("./Mixtral-8x7B-v0.1/tokenizer.json");
 * const ids = tok.encode("Hello world", { addSpecialTokens: true });
 * tok.decode(ids, { skipSpecialTokens: true }); // "Hello world"
 * ```
 *
 * @module
 */

export { StreamDecoder } from "./stream_decoder.ts";
export {
  type DecodeOptions,
  type EncodeOptions,
  Tokenizer,
  type TokenizerOptions,
} from "./tokenizer.ts";
export { type BpeTrainOptions, trainByteLevelBpe, type TrainedBpe, WordCounts } from "./train.ts";
