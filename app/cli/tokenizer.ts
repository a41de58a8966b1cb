/**
 * `kiln tokenizer train --corpus FILE … --vocab-size N --out DIR`: trains a
 * GPT-2-style byte-level BPE on text files and writes `DIR/tokenizer.json`, the
 * file Hugging Face's `ByteLevelBPETokenizer` would write for the same corpus
 * and settings (see `app/tokenizer/train.ts`). Every argument and every corpus
 * file is checked before training starts, so a mistake costs no training time.
 *
 * @module
 */

import { join } from "node:path";
import { makeOutputDir, outputWriteError, readCorpus } from "./paths.ts";
import { formatBytes } from "../progress.ts";
import { trainByteLevelBpe, WordCounts } from "../tokenizer/train.ts";
import { intOption, type OptionSpec, parseCommand } from "./args.ts";
import { UsageError } from "./errors.ts";
import { usage } from "./usage.ts";

const SPEC: OptionSpec = {
  "vocab-size": { type: "string" },
  "min-frequency": { type: "string" },
  out: { type: "string" },
  o: { type: "string" },
  quiet: { type: "boolean" },
};

/** Options that may be given more than once; collected before the rest are parsed. */
const REPEATED = ["corpus", "special"] as const;

/**
 * Runs `kiln tokenizer` with its arguments (after the command word).
 *
 * @example
 * ```ts ignore
 * import { tokenizer } from "./tokenizer.ts";
 * await tokenizer(["train", "--corpus", "book.txt", "--vocab-size", "4096", "--out", "tok/"]);
 * ```
 */
export async function tokenizer(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") {
    return console.log(usage("tokenizer"));
  }
  if (sub !== "train") {
    throw new UsageError(
      `tokenizer: unknown subcommand ${JSON.stringify(sub)} (try: kiln tokenizer --help)`,
    );
  }
  // --help anywhere (before "--") wins over every mistake, as for the other commands.
  const end = rest.indexOf("--");
  const head = end < 0 ? rest : rest.slice(0, end);
  if (head.includes("--help") || head.includes("-h")) return console.log(usage("tokenizer"));
  const { repeated, others } = takeRepeated(rest);
  const { values } = parseCommand("tokenizer train", others, SPEC);
  const corpora = repeated.corpus;
  if (corpora.length === 0) {
    throw new UsageError(
      "tokenizer train: --corpus FILE is required (see: kiln tokenizer --help)",
    );
  }
  if (values["vocab-size"] === undefined) {
    throw new UsageError(
      "tokenizer train: --vocab-size N is required (see: kiln tokenizer --help)",
    );
  }
  const specials = repeated.special;
  specials.forEach((s) => {
    if (s === "") throw new UsageError('--special must be a non-empty token, got ""');
  });
  const distinct = new Set(specials).size;
  const vocabSize = intOption(values["vocab-size"], "vocab-size", 0, 1);
  if (vocabSize < 256 + distinct) {
    throw new RangeError(
      `--vocab-size ${vocabSize} is below ${256 + distinct}: the 256 byte tokens` +
        (distinct > 0 ? ` and ${distinct} special token${distinct > 1 ? "s" : ""}` : "") +
        ` come first`,
    );
  }
  const minFrequency = intOption(values["min-frequency"], "min-frequency", 2, 0);
  const outValue = values.out ?? values.o;
  if (typeof outValue !== "string" || outValue === "") {
    throw new UsageError("tokenizer train: --out DIR is required (see: kiln tokenizer --help)");
  }
  if (values.out !== undefined && values.o !== undefined) {
    throw new UsageError("tokenizer train: give --out or -o, not both");
  }

  // Read every corpus before training: a missing or broken file is reported at once.
  const texts: string[] = [];
  let bytes = 0;
  for (const path of corpora) {
    const text = await readCorpus(path, true);
    bytes += text.bytes;
    texts.push(text.text);
  }
  await makeOutputDir(outValue, "tokenizer train");

  const t0 = performance.now();
  const words = new WordCounts();
  for (const t of texts) words.add(t);
  texts.length = 0;
  const bpe = trainByteLevelBpe(words, { vocabSize, minFrequency, specialTokens: specials });
  const file = join(outValue, "tokenizer.json");
  try {
    await Deno.writeTextFile(file, bpe.json());
  } catch (e) {
    throw outputWriteError(e, outValue, "tokenizer train");
  }
  if (values.quiet) return;
  const seconds = (performance.now() - t0) / 1000;
  const short = bpe.vocab.length < vocabSize
    ? `; no pair left occurring ${Math.max(1, minFrequency)}+ times`
    : "";
  console.log(
    `wrote ${file}: ${bpe.vocab.length} tokens (${bpe.specialTokens.length} special, ` +
      `256 bytes, ${bpe.merges.length} merges${short}) from ${bpe.words} distinct words in ` +
      `${formatBytes(bytes)} of text, ${seconds.toFixed(1)} s`,
  );
}

/** Pulls every `--corpus X` / `--special X` (or `--name=X`) out of `args`. */
function takeRepeated(
  args: readonly string[],
): { repeated: Record<typeof REPEATED[number], string[]>; others: string[] } {
  const repeated = { corpus: [] as string[], special: [] as string[] };
  const others: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      others.push(...args.slice(i));
      break;
    }
    const name = REPEATED.find((n) => a === `--${n}` || a.startsWith(`--${n}=`));
    if (name === undefined) {
      others.push(a);
      continue;
    }
    if (a.startsWith(`--${name}=`)) repeated[name].push(a.slice(name.length + 3));
    else if (i + 1 < args.length) repeated[name].push(args[++i]);
    else {
      throw new UsageError(
        `tokenizer train: option '--${name}' needs a value (see: kiln tokenizer --help)`,
      );
    }
  }
  return { repeated, others };
}
