/**
 * The token classes of lecture experiment 6 (expert specialisation, after
 * Mixtral §5's routing analysis): each token of a text, as the byte-level BPE
 * cut it, gets exactly one class, by the first rule that matches:
 *
 * 1. `whitespace` — the piece is only whitespace (spaces, newlines);
 * 2. `punctuation` — its non-space characters are all punctuation or symbols;
 * 3. `digits` — it holds a digit;
 * 4. `function word` — a whole word (it starts one: a leading space or after a
 *    non-letter; and ends it: the next piece does not start with a letter)
 *    in {@linkcode FUNCTION_WORDS}, any case;
 * 5. `capitalised` — it starts (after any leading space) with an upper-case
 *    letter: names, and also sentence-initial words (not told apart);
 * 6. `word start` — any other piece that starts a word (a leading space, or
 *    after a newline, punctuation or the text's start): mostly space-led pieces;
 * 7. `word-internal` — the rest: continuation pieces inside a word.
 *
 * @module
 */

/** The classes, in the order the rules try them. */
export const TOKEN_CLASSES = [
  "whitespace",
  "punctuation",
  "digits",
  "function word",
  "capitalised",
  "word start",
  "word-internal",
] as const;

/** One of {@linkcode TOKEN_CLASSES}. */
export type TokenClass = typeof TOKEN_CLASSES[number];

/** The fixed list of English function words (lower case). */
export const FUNCTION_WORDS: ReadonlySet<string> = new Set(
  (
    "a an the and or but nor so yet if then than that this these those which who whom whose " +
    "what when where while of to in on at by for with from into upon out up as about over " +
    "i me my he him his she her it its we us our you your they them their there here " +
    "is was be been being are were am has had have do did does not no all some any such " +
    "would will shall should could can may might must"
  ).split(" "),
);

const LETTER = /\p{L}/u;
const UPPER = /^\p{Lu}/u;
const PUNCT = /^[\p{P}\p{S}]+$/u;
const DIGIT = /\p{N}/u;

/**
 * The class of every piece of a tokenized text (`pieces[i]` the text of token
 * i, in order; the neighbours decide whether a piece is a whole word).
 */
export function classifyPieces(pieces: readonly string[]): TokenClass[] {
  return pieces.map((piece, i): TokenClass => {
    const core = piece.trim();
    if (core.length === 0) return "whitespace";
    if (PUNCT.test(core.replace(/\s/g, ""))) return "punctuation";
    if (DIGIT.test(core)) return "digits";
    const led = /^\s/.test(piece);
    const prev = pieces[i - 1] ?? "";
    const next = pieces[i + 1] ?? "";
    const starts = led || prev.length === 0 || !LETTER.test(prev.at(-1)!);
    const ends = next.length === 0 || !LETTER.test(next[0]);
    if (starts && ends && FUNCTION_WORDS.has(core.toLowerCase())) return "function word";
    if (UPPER.test(core)) return "capitalised";
    return starts ? "word start" : "word-internal";
  });
}
