/**
 * Random texts for the `tokenizers` campaign, made of the pieces real tokenizers trip
 * on: ASCII words and contractions, runs of spaces, tabs and newlines, digits,
 * punctuation, accented and combining characters, CJK and other scripts, emoji
 * (astral, with skin tones and zero-width joiners), characters with special meaning to
 * one scheme (`▁`, `Ġ`, `<0x41>`), controls and invalid-looking sequences, and the
 * contents of the tokenizer's own added tokens embedded in words.
 *
 * Lone surrogates are left out on purpose: the binding converts JavaScript strings to
 * Rust's UTF-8 with U+FFFD in their place, so Hugging Face never sees them.
 *
 * @module
 */

/**
 * A seeded random source with the draws the generators need.
 *
 * @example
 * ```ts
 * import { mulberry32 } from "../../core/random.ts";
 * import { Rand } from "./tokenizers_texts.ts";
 * const r = new Rand(mulberry32(1));
 * r.int(10) < 10; // true
 * ```
 */
export class Rand {
  /** @param next uniform numbers in [0, 1) */
  constructor(readonly next: () => number) {}

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One element of `list`. */
  pick<T>(list: readonly T[]): T {
    return list[this.int(list.length)];
  }

  /** A shuffled copy. */
  shuffle<T>(list: readonly T[]): T[] {
    const out = [...list];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }
}

const WORDS = [
  "the",
  "hello",
  "world",
  "Hello",
  "HELLO",
  "don't",
  "I'm",
  "we'll",
  "it's",
  "THEY'RE",
  "x",
  "a",
  "café",
  "naïve",
  "über",
  "straße",
  "ΟΔΟΣ",
  "Σίσυφος",
  "москва",
  "日本語",
  "漢字",
  "かな",
  "中文",
  "한국어",
  "مرحبا",
  "שלום",
  "हिन्दी",
  "ﬁne",
  "Åse",
  "Ω",
  "ｆｕｌｌ",
  "①",
  "x²",
  "½",
  "ǅemal",
  "İstanbul",
  "ß",
  "ŉ",
  "tree",
  "there",
  "then",
  "other",
  "sea",
  "seen",
];
const SPACES = [
  " ",
  " ",
  " ",
  "  ",
  "   ",
  "    ",
  "\t",
  "\n",
  "\n\n",
  " \n",
  "\r\n",
  "\n ",
  " \t ",
  "\u00a0",
  "\u3000",
  "\u2028",
  "\u200b",
  "\u0085",
];
const PUNCT = [
  ".",
  ",",
  "!",
  "?",
  "...",
  "--",
  "'",
  '"',
  "(",
  ")",
  "<",
  ">",
  "<|",
  "|>",
  "[INST]",
  "{}",
  "#",
  "$",
  "%",
  "&",
  "*",
  "@",
  "\\",
  "/",
  "``",
  "''",
  "'s",
  "'S",
  "'LL",
  ":)",
  "—",
  "«»",
  "。",
];
const COMBINING = [
  "e\u0301",
  "a\u0308",
  "n\u0303",
  "\u0301",
  "o\u0302\u0323",
  "Å",
  "é",
  "A\u030a",
  "\u0345",
];
const EMOJI = [
  "🎉",
  "👍",
  "👍🏽",
  "👨‍👩‍👧",
  "🏳️‍🌈",
  "❤️",
  "🇫🇷",
  "𝔘𝔫𝔦",
  "𠀀",
  "\u{10FFFD}",
  "😀😀",
  "a\u200db",
  "\u200c",
  "\u200d",
];
const ODD = [
  "\u0000",
  "\u0001",
  "\u007f",
  "\ufeff",
  "\ufffd",
  "\u2581",
  "▁▁",
  "<0x41>",
  "<0xZZ>",
  "<0x+A>",
  "Ġ",
  "Ċ",
  "Ã©",
  "\u00ad",
  "\u{E000}",
  "\uFFFF",
  "ï»¿",
  "\\x80",
];

/** A random digit run: ASCII, or other scripts' numerals. */
function digits(r: Rand): string {
  if (r.chance(0.2)) return r.pick(["٣٤٥", "１２３", "²³", "Ⅻ", "০১"]);
  return String(r.int(10 ** (1 + r.int(7))));
}

/**
 * A random text of 1–12 pieces; `extras` (added-token contents, vocabulary entries) are
 * mixed in, sometimes inside words.
 *
 * @example
 * ```ts
 * import { mulberry32 } from "../../core/random.ts";
 * import { Rand, randomText } from "./tokenizers_texts.ts";
 * typeof randomText(new Rand(mulberry32(2)), ["<s>"]); // "string"
 * ```
 */
export function randomText(r: Rand, extras: readonly string[]): string {
  const n = 1 + r.int(12);
  let out = r.chance(0.15) ? r.pick(SPACES) : "";
  for (let i = 0; i < n; i++) {
    const k = r.int(100);
    if (k < 35) out += r.pick(WORDS);
    else if (k < 55) out += r.pick(SPACES);
    else if (k < 63) out += digits(r);
    else if (k < 73) out += r.pick(PUNCT);
    else if (k < 79) out += r.pick(COMBINING);
    else if (k < 85) out += r.pick(EMOJI);
    else if (k < 89) out += r.pick(ODD);
    else if (extras.length) out += r.pick(extras);
    else out += r.pick(WORDS);
  }
  return out;
}
