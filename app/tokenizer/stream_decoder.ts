/**
 * Streaming detokenization: generated ids to text one id at a time, never
 * emitting half a character.
 *
 * @module
 */

import type { DecodeOptions, Tokenizer } from "./tokenizer.ts";

/**
 * Turns ids into text incrementally. It re-decodes a short window of recent ids and
 * emits only what is new, holding ids back while they end inside a UTF-8 sequence, so
 * no chunk ever carries a broken character or a lone surrogate; the concatenation of
 * all chunks equals `decode(allIds)` for valid text.
 *
 * @example
 * ```ts ignore
 * import { Tokenizer } from "@kiln/kiln";
 * const tok = await Tokenizer.fromFile("tokenizer.json");
 * const ids = tok.encode("Hello world");
 * const stream = tok.decoder({ skipSpecialTokens: true });
 * const chunks = ids.map((id) => stream.push(id));
 * chunks.push(stream.flush());
 * ```
 */
export class StreamDecoder {
  readonly #tok: Tokenizer;
  readonly #options: DecodeOptions;
  #ids: number[] = [];
  /** Window start: an already-emitted id whose text anchors the window's start-of-text rules. */
  #prefix = 0;
  /** ids[read:] are not yet emitted. */
  #read = 0;
  /** decode(ids[prefix:read]). */
  #prefixText = "";

  /** Use {@link Tokenizer.decoder}. */
  constructor(tokenizer: Tokenizer, options: DecodeOptions = {}) {
    this.#tok = tokenizer;
    this.#options = options;
  }

  /**
   * Adds one id; returns the text it completes (often "", while a character is unfinished).
   *
   * @example
   * ```ts ignore
   * import { Tokenizer } from "@kiln/kiln";
   * const tok = await Tokenizer.fromFile("./tokenizer.json");
   * const stream = tok.decoder();
   * let text = "";
   * for (const id of tok.encode("héllo")) text += stream.push(id);
   * text += stream.flush(); // "héllo"
   * ```
   */
  push(id: number): string {
    if (this.#tok.idToToken(id) === undefined) {
      throw new RangeError(
        `StreamDecoder.push: token id ${id} is not in the vocabulary (vocabSize ${this.#tok.vocabSize})`,
      );
    }
    this.#ids.push(id);
    const full = this.#tok.decodeDetailed(this.#ids.slice(this.#prefix), this.#options);
    if (full.incomplete) return "";
    return this.#emit(full.text);
  }

  /**
   * Emits whatever is held back (an unfinished character shows as U+FFFD) and resets.
   *
   * @example
   * ```ts ignore
   * import { Tokenizer } from "@kiln/kiln";
   * const tok = await Tokenizer.fromFile("./tokenizer.json");
   * const stream = tok.decoder();
   * for (const id of tok.encode("end")) stream.push(id);
   * const rest = stream.flush(); // held-back text; the decoder is reset
   * ```
   */
  flush(): string {
    const out = this.#read < this.#ids.length
      ? this.#emit(this.#tok.decodeDetailed(this.#ids.slice(this.#prefix), this.#options).text)
      : "";
    this.#ids = [];
    this.#prefix = this.#read = 0;
    this.#prefixText = "";
    return out;
  }

  #emit(text: string): string {
    let common = this.#prefixText.length;
    if (!text.startsWith(this.#prefixText)) {
      // A decoder rule changed earlier text; emit past the part both agree on.
      common = 0;
      while (common < text.length && text[common] === this.#prefixText[common]) common++;
    }
    const out = text.slice(common);
    if (out.length === 0) return "";
    // Move the window to start at the ids just emitted, unless their text is empty: an
    // empty anchor would let start-of-text rules (Strip, Metaspace) reach later ids.
    const next = this.#tok.decodeDetailed(this.#ids.slice(this.#read), this.#options).text;
    if (next.length > 0) {
      this.#prefix = this.#read;
      this.#prefixText = next;
    } else this.#prefixText = text;
    this.#read = this.#ids.length;
    // The window never needs ids before the anchor: drop them so memory stays bounded.
    if (this.#prefix > 0) {
      this.#ids = this.#ids.slice(this.#prefix);
      this.#read -= this.#prefix;
      this.#prefix = 0;
    }
    return out;
  }
}
