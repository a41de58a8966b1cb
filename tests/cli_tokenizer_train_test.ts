/**
 * `kiln tokenizer train` through the CLI's `main`: the fixture corpus (in one
 * file or two) gives Hugging Face's tokenizer.json byte for byte, which Kiln's
 * Tokenizer loads; `--quiet` and `--min-frequency`; every user mistake as one
 * `kiln:` line naming what is wrong, with nothing written; and a least-privilege
 * run in a subprocess.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Tokenizer } from "../app/tokenizer/mod.ts";
import { kilnWith } from "./fixtures/kiln_cli.ts";
import { kiln, type Run } from "./cli_util.ts";

const FIXTURE = new URL("./fixtures/hf_bpe/", import.meta.url).pathname;
const CORPUS = join(FIXTURE, "corpus.txt");
const tmp = await Deno.makeTempDir({ prefix: "kiln_cli_tokenizer_" });

/** One `kiln:` line on stderr, exit 1, nothing on stdout. */
function assertMistake(r: Run, want: string | RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stdout, "");
  assert.equal(r.stderr.split("\n").length, 2, r.stderr);
  if (typeof want === "string") assert.equal(r.stderr, `kiln: ${want}\n`);
  else assert.match(r.stderr, want);
}

Deno.test("kiln tokenizer train: Hugging Face's tokenizer.json from one corpus file or two, loadable by Kiln", async () => {
  const want = await Deno.readTextFile(join(FIXTURE, "tokenizer.json"));
  const out = join(tmp, "one");
  const r = await kiln(
    "tokenizer",
    "train",
    "--corpus",
    CORPUS,
    "--vocab-size",
    "600",
    "--special",
    "<|endoftext|>",
    "--special=<pad>",
    "--out",
    out,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  assert.match(
    r.stdout,
    new RegExp(
      `^wrote ${out}/tokenizer\\.json: 600 tokens \\(2 special, 256 bytes, 342 merges\\) ` +
        `from \\d+ distinct words in 21\\.7 kB of text, [\\d.]+ s\\n$`,
    ),
  );
  assert.equal(await Deno.readTextFile(join(out, "tokenizer.json")), want);
  const tok = await Tokenizer.fromFile(join(out, "tokenizer.json"));
  const text = "Call me Ishmael 🐋<|endoftext|>";
  const ids = tok.encode(text);
  assert.equal(ids.at(-1), 0, "<|endoftext|> is id 0");
  assert.equal(tok.decode(ids), text);

  // Split at a line break into two files (and -o, --min-frequency given as the default):
  // the same words, so the same file.
  const text2 = await Deno.readTextFile(CORPUS);
  const cut = text2.indexOf("\n", text2.length >> 1) + 1;
  await Deno.writeTextFile(join(tmp, "a.txt"), text2.slice(0, cut));
  await Deno.writeTextFile(join(tmp, "b.txt"), text2.slice(cut));
  const two = join(tmp, "two", "nested");
  const r2 = await kiln(
    "tokenizer",
    "train",
    "--corpus=" + join(tmp, "a.txt"),
    "--special",
    "<|endoftext|>",
    "--corpus",
    join(tmp, "b.txt"),
    "--min-frequency",
    "2",
    "--special",
    "<pad>",
    "--vocab-size",
    "600",
    "-o",
    two,
    "--quiet",
  );
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(r2.stdout, "", "--quiet prints nothing");
  assert.equal(await Deno.readTextFile(join(two, "tokenizer.json")), want);

  // A high --min-frequency stops early, and the summary says why.
  const r3 = await kiln(
    ...["tokenizer", "train", "--corpus", CORPUS, "--vocab-size", "4096"],
    ...["--min-frequency", "200", "--out", join(tmp, "few")],
  );
  assert.equal(r3.code, 0, r3.stderr);
  const m = r3.stdout.match(/: (\d+) tokens \(0 special, 256 bytes, (\d+) merges; no pair left/);
  assert.ok(m, r3.stdout);
  assert.ok(Number(m[2]) > 0 && Number(m[2]) < 100, r3.stdout);
  const few = JSON.parse(await Deno.readTextFile(join(tmp, "few", "tokenizer.json")));
  assert.equal(Object.keys(few.model.vocab).length, Number(m[1]));

  // A leading byte-order mark is text, as Hugging Face's trainer reads it (tokenizers
  // 0.23.2 learns exactly these merges from this file).
  await Deno.writeTextFile(join(tmp, "bom.txt"), "\ufeffHello hello\nHello\n");
  const bom = await kiln(
    ...["tokenizer", "train", "--corpus", join(tmp, "bom.txt"), "--vocab-size", "300"],
    ...["--min-frequency", "1", "--out", join(tmp, "bom"), "--quiet"],
  );
  assert.equal(bom.code, 0, bom.stderr);
  const merged = JSON.parse(await Deno.readTextFile(join(tmp, "bom", "tokenizer.json")));
  assert.deepEqual(
    Object.keys(merged.model.vocab).slice(256),
    ["el", "lo", "ello", "Hello", "hello", "»¿", "ï»¿", "Ġhello"],
  );
});

Deno.test("kiln tokenizer train: each mistake is one line naming it, and nothing is written", async () => {
  const out = join(tmp, "mistakes");
  const t = (...a: string[]) => kiln("tokenizer", "train", ...a);
  const missing = join(tmp, "nope.txt");
  assertMistake(
    await t("--corpus", CORPUS, "--corpus", missing, "--vocab-size", "300", "--out", out),
    `${missing}: not found (expected a text corpus for --corpus)`,
  );
  assertMistake(
    await t("--corpus", CORPUS, "--vocab-size", "256", "--special", "<s>", "--out", out),
    "--vocab-size 256 is below 257: the 256 byte tokens and 1 special token come first",
  );
  assertMistake(
    await t("--corpus", CORPUS, "--vocab-size", "100", "--out", out),
    "--vocab-size 100 is below 256: the 256 byte tokens come first",
  );
  assertMistake(
    await t("--corpus", CORPUS, "--vocab-size", "lots", "--out", out),
    '--vocab-size must be a positive integer, got "lots"',
  );
  assertMistake(
    await t("--corpus", CORPUS, "--vocab-size", "300", "--min-frequency", "-1", "--out", out),
    "--min-frequency must be an integer >= 0, got -1",
  );
  assertMistake(
    await t("--corpus", CORPUS, "--out", out),
    "tokenizer train: --vocab-size N is required (see: kiln tokenizer --help)",
  );
  assertMistake(
    await t("--vocab-size", "300", "--out", out),
    "tokenizer train: --corpus FILE is required (see: kiln tokenizer --help)",
  );
  assertMistake(
    await t("--corpus", CORPUS, "--vocab-size", "300"),
    "tokenizer train: --out DIR is required (see: kiln tokenizer --help)",
  );
  assertMistake(
    await t("--vocab-size", "300", "--out", out, "--corpus"),
    "tokenizer train: option '--corpus' needs a value (see: kiln tokenizer --help)",
  );
  assertMistake(
    await t("--corpus", CORPUS, "--vocab-size", "300", "--special", "", "--out", out),
    '--special must be a non-empty token, got ""',
  );
  assertMistake(
    await t("--corpus", CORPUS, "--vocab-size", "300", "--out", out, "--bogus"),
    /^kiln: tokenizer train: Unknown option '--bogus'/,
  );
  const empty = join(tmp, "empty.txt");
  await Deno.writeTextFile(empty, "");
  assertMistake(
    await t("--corpus", empty, "--vocab-size", "300", "--out", out),
    `${empty}: the corpus is empty`,
  );
  const binary = join(tmp, "binary.txt");
  await Deno.writeFile(binary, new Uint8Array([0x41, 0xff, 0xfe, 0x42]));
  assertMistake(
    await t("--corpus", binary, "--vocab-size", "300", "--out", out),
    `${binary}: the corpus is not UTF-8 text`,
  );
  assertMistake(
    await t("--corpus", tmp, "--vocab-size", "300", "--out", out),
    `${tmp}: is a folder, expected a text corpus for --corpus`,
  );
  assertMistake(
    await t("--corpus", CORPUS, "--vocab-size", "300", "--out", CORPUS),
    `${CORPUS}: is a file, expected a folder for --out`,
  );
  assertMistake(
    await kiln("tokenizer", "fit"),
    'tokenizer: unknown subcommand "fit" (try: kiln tokenizer --help)',
  );
  await assert.rejects(Deno.stat(out), Deno.errors.NotFound, "no output folder was made");

  const help = await kiln("tokenizer", "--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: kiln tokenizer train --corpus FILE/);
  assert.equal((await kiln("tokenizer", "train", "--help")).stdout, help.stdout);
  assert.equal(
    (await kiln("tokenizer", "train", "--corpus", "--vocab-size", "-h")).stdout,
    help.stdout,
  );
  assert.equal((await kiln("help", "tokenizer")).stdout, help.stdout);
  assert.ok((await kiln("help")).stdout.includes("\n  tokenizer train --corpus FILE"));
});

Deno.test("kiln tokenizer train: runs with read access to the corpus and write access to --out alone", async () => {
  const out = join(tmp, "least");
  await Deno.mkdir(out);
  const args = ["tokenizer", "train", "--corpus", CORPUS, "--vocab-size", "300", "--out", out];
  const ok = await kilnWith([`--allow-read=${FIXTURE},${out}`, `--allow-write=${out}`], ...args);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /: 300 tokens \(0 special, 256 bytes, 44 merges\)/);
  const denied = await kilnWith([`--allow-read=${FIXTURE}`], ...args.slice(0, -1), join(out, "x"));
  assert.equal(denied.code, 1);
  assert.equal(
    denied.stderr,
    `kiln: tokenizer train: --out ${out}/x: no permission to write there; run with ` +
      `--allow-write=${out}/x (or a folder above it)\n`,
  );
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(tmp, { recursive: true });
  } catch { /* already gone */ }
});
