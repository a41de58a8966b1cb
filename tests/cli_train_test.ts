/**
 * `kiln train` through the CLI's `main` on a tiny Mixtral (hidden 32, 2
 * layers, 4 experts) and the BPE fixture corpus: a fresh run with a tokenizer
 * trained on the corpus writes checkpoints, the final model (which
 * `loadModel` loads and generates text with), loss.csv and loss.svg; resuming
 * from the middle checkpoint ends with the same losses and weights as the
 * uninterrupted run; every user mistake is one `kiln:` line naming it; and
 * the progress display's lines.
 */
import { TINY_TRAIN_MIXTRAL } from "./fixtures/train_configs.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel } from "../app/model/mod.ts";
import { createTrainProgress } from "../app/cli/train_progress.ts";
import { gpu } from "./_util.ts";
import { kiln, type Run } from "./cli_util.ts";

const CORPUS = new URL("./fixtures/hf_bpe/corpus.txt", import.meta.url).pathname;
const tmp = await Deno.makeTempDir({ prefix: "kiln_cli_train_" });

const MIXTRAL = {
  ...TINY_TRAIN_MIXTRAL,
  vocab_size: 300,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 64,
};
const CONFIG = join(tmp, "config.json");
await Deno.writeTextFile(CONFIG, JSON.stringify(MIXTRAL));

/** One `kiln:` line on stderr, exit 1, nothing on stdout. */
function assertMistake(r: Run, want: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stdout, "");
  assert.equal(r.stderr.split("\n").length, 2, r.stderr);
  assert.match(r.stderr, want);
}

/** `kiln train --resume checkpoint` on the corpus, with more flags. */
const resume = (checkpoint: string, ...flags: string[]): Promise<Run> =>
  kiln("train", "--resume", checkpoint, "--corpus", CORPUS, ...flags);

/** `kiln train --resume checkpoint --out out --quiet` on the corpus. */
const resumeInto = (checkpoint: string, out: string): Promise<Run> =>
  resume(checkpoint, "--out", out, "--quiet");

const RUN = [
  "--corpus",
  CORPUS,
  "--steps",
  "6",
  "--batch",
  "2",
  "--seq",
  "16",
  "--lr",
  "1e-2",
  "--warmup",
  "1",
  "--eval-every",
  "3",
  "--checkpoint-every",
  "3",
  "--log-every",
  "2",
  "--seed",
  "1",
];

Deno.test("kiln train: a fresh model with a corpus-trained tokenizer; the folder loads and generates; resume ends where the uninterrupted run does", async () => {
  const device = await gpu();
  const out = join(tmp, "run");
  const r = await kiln("train", "--config", CONFIG, "--vocab-size", "290", "--out", out, ...RUN);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /^trained 6 steps \(192 tokens\) in .*: loss \d+\.\d{4} → \d+\.\d{4}, held-out \d+\.\d{4}; wrote /,
  );
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "optimizer.safetensors"]) {
    await Deno.stat(join(out, "checkpoint-3", f));
    await Deno.stat(join(out, "checkpoint-6", f));
    await Deno.stat(join(out, f));
  }
  const tokenizer = JSON.parse(await Deno.readTextFile(join(out, "tokenizer.json")));
  assert.equal(Object.keys(tokenizer.model.vocab).length, 290);
  // The config left the token ids out: the saved one states the tokenizer's (a
  // byte-level BPE without special tokens has none), not MixtralConfig's 1 and 2.
  const saved = JSON.parse(await Deno.readTextFile(join(out, "config.json")));
  assert.ok(!("eos_token_id" in MIXTRAL) && !("bos_token_id" in MIXTRAL));
  assert.deepEqual([saved.bos_token_id, saved.eos_token_id], [null, null]);

  // loss.csv: six training losses, held-out losses after updates 3 and 6; the chart.
  const csv = await Deno.readTextFile(join(out, "loss.csv"));
  const rows = csv.trim().split("\n").slice(1).map((l) => l.split(","));
  assert.deepEqual(rows.map((c) => c[0]), ["1", "2", "3", "4", "5", "6"]);
  assert.ok(rows.every((c) => Number.isFinite(Number(c[1])) && c[1] !== ""), csv);
  assert.deepEqual(rows.map((c) => c[2] !== ""), [false, false, true, false, false, true]);
  assert.ok(Number(rows[5][1]) < Number(rows[0][1]), `loss did not fall: ${csv}`);
  // A uniform guess over 300 tokens is ln 300 ≈ 5.70; the first steps sit near it.
  assert.ok(Math.abs(Number(rows[0][1]) - Math.log(300)) < 0.5, csv);
  const svg = await Deno.readTextFile(join(out, "loss.svg"));
  assert.ok(svg.startsWith("<svg") && svg.includes("held-out"), svg.slice(0, 200));

  // The output folder is a model: loadModel reads it, with its tokenizer, and generates.
  const model = await loadModel(out, { device, maxSeq: 32, quiet: true });
  try {
    let text = "";
    for await (const piece of model.generate("The ", { maxTokens: 5 })) text += piece;
    assert.ok(text.length > 0, "no text generated");
    const logits = await model.forward([5, 6, 7]);
    assert.equal(logits.length, 3 * 300);
    assert.ok(logits.every(Number.isFinite));
  } finally {
    model.dispose();
  }

  // Resume from update 3 into another folder: the same rows, the same final weights.
  const resumed = join(tmp, "resumed");
  const r2 = await resumeInto(join(out, "checkpoint-3"), resumed);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(r2.stdout, "");
  assert.equal(await Deno.readTextFile(join(resumed, "loss.csv")), csv);
  assert.deepEqual(
    await Deno.readFile(join(resumed, "model.safetensors")),
    await Deno.readFile(join(out, "model.safetensors")),
  );
  await Deno.stat(join(resumed, "checkpoint-6"));

  // Mistakes that need a finished run: nothing left to train, changing a fixed setting.
  assertMistake(
    await resume(out),
    /^kiln: --steps 6: .* has done 6 updates already; give a larger --steps/,
  );
  assertMistake(
    await resume(join(out, "checkpoint-3"), "--lr", "1"),
    /^kiln: train: --lr cannot change with --resume/,
  );
  assertMistake(
    await resume(join(out, "checkpoint-3"), "--tokenizer", join(out, "tokenizer.json")),
    /^kiln: train: --tokenizer cannot change with --resume: .*checkpoint-3\/tokenizer\.json is the run's tokenizer/,
  );

  // Fine-tuning the trained folder with its own tokenizer, no held-out part: two more updates.
  const tuned = join(tmp, "tuned");
  const r3 = await kiln(
    "train",
    "--from",
    out,
    "--corpus",
    CORPUS,
    "--out",
    tuned,
    "--steps",
    "2",
    "--batch",
    "2",
    "--seq",
    "16",
    "--eval-fraction",
    "0",
    "--quiet",
  );
  assert.equal(r3.code, 0, r3.stderr);
  const tunedCsv = await Deno.readTextFile(join(tuned, "loss.csv"));
  assert.match(tunedCsv, /^step,train_loss,eval_loss\n1,[\d.]+,\n2,[\d.]+,\n$/);
  // It starts from the trained weights: its first loss is near the trained run's last, not ln 300.
  assert.ok(Number(tunedCsv.split("\n")[1].split(",")[1]) < Math.log(300) - 0.2, tunedCsv);
  assert.equal(
    await Deno.readTextFile(join(tuned, "tokenizer.json")),
    await Deno.readTextFile(join(out, "tokenizer.json")),
  );
});

Deno.test("kiln train --f16-activations: f16 activations are kept across a resume, bit for bit", async () => {
  const out = join(tmp, "half");
  const run = ["--corpus", CORPUS, "--vocab-size", "290", ...RUN.slice(2)];
  const r = await kiln("train", "--config", CONFIG, "--out", out, "--f16-activations", ...run);
  assert.equal(r.code, 0, r.stderr);
  const state = JSON.parse(
    await Deno.readTextFile(join(out, "checkpoint-3", "trainer_state.json")),
  );
  assert.equal(state.options.activationDtype, "f16");
  const csv = await Deno.readTextFile(join(out, "loss.csv"));
  const rows = csv.trim().split("\n").slice(1).map((l) => Number(l.split(",")[1]));
  assert.ok(rows.every(Number.isFinite) && rows[5] < rows[0], csv);
  // The checkpoint's setting continues the run: the same rows as the uninterrupted one.
  const resumed = join(tmp, "half_resumed");
  const r2 = await resumeInto(join(out, "checkpoint-3"), resumed);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(await Deno.readTextFile(join(resumed, "loss.csv")), csv);
  assertMistake(
    await resume(join(out, "checkpoint-3"), "--f16-activations"),
    /^kiln: train: --f16-activations cannot change with --resume/,
  );
});

Deno.test("kiln train: user mistakes are one kiln: line naming the thing", async () => {
  const out = join(tmp, "bad");
  const fresh = ["train", "--config", CONFIG, "--out", out];
  const cases: [string[], RegExp][] = [
    [["train", "--config", CONFIG, "--out", out], /--corpus FILE is required/],
    [[...fresh, "--corpus", CORPUS], /a fresh model needs --tokenizer FILE or --vocab-size N/],
    [
      ["train", "--config", CONFIG, "--from", tmp, "--corpus", CORPUS],
      /give one of --config, --from and --resume, not --config and --from/,
    ],
    [["train", "--corpus", CORPUS, "--out", out], /give --config FILE .*--from DIR .*--resume DIR/],
    [
      ["train", "--config", CONFIG, "--corpus", CORPUS, "--vocab-size", "290"],
      /--out DIR is required/,
    ],
    [
      [...fresh, "--corpus", CORPUS, "--vocab-size", "290", "--steps", "0"],
      /--steps must be a positive integer, got 0/,
    ],
    [
      [...fresh, "--corpus", CORPUS, "--vocab-size", "290", "--lr", "-1"],
      /--lr must be a number > 0, got -1/,
    ],
    [
      [...fresh, "--corpus", CORPUS, "--vocab-size", "290", "--aux-loss", "-0.5"],
      /--aux-loss must be a number >= 0, got -0.5/,
    ],
    [
      [...fresh, "--corpus", CORPUS, "--vocab-size", "290", "--bias-update-rate", "-1"],
      /--bias-update-rate must be a number >= 0, got -1/,
    ],
    [
      [...fresh, "--corpus", CORPUS, "--vocab-size", "100"],
      /--vocab-size must be an integer >= 256, got 100/,
    ],
    [
      [...fresh, "--corpus", CORPUS, "--vocab-size", "290", "--eval-fraction", "0.9"],
      /--eval-fraction must be in \[0, 0.5\], got 0.9/,
    ],
    [
      [...fresh, "--corpus", CORPUS, "--vocab-size", "290", "--steps", "5", "--warmup", "9"],
      /--warmup 9 is more than --steps 5/,
    ],
    [
      [...fresh, "--corpus", CORPUS, "--vocab-size", "290", "--bogus"],
      /train: Unknown option '--bogus'/,
    ],
    [
      [...fresh, "--corpus", CORPUS, "--tokenizer", "t.json", "--vocab-size", "290"],
      /give --tokenizer FILE or --vocab-size N .*not both/,
    ],
    [
      [...fresh, "--corpus", join(tmp, "missing.txt"), "--vocab-size", "290"],
      /missing\.txt.*(not found|No such file)/i,
    ],
    [
      [...fresh, "--corpus", CORPUS, "--vocab-size", "400"],
      /the tokenizer has 400 tokens, more than the model's vocab_size 300/,
    ],
    [
      [...fresh, "--corpus", CORPUS, "--vocab-size", "290", "--seq", "100000"],
      /the corpus gives \d+ training tokens, fewer than --seq 100000 \+ 1/,
    ],
    [
      [...fresh, "--corpus", CORPUS, "--vocab-size", "290", "--seq", "2000"],
      /--eval-fraction 0.05 holds out \d+ tokens, fewer than --seq 2000 \+ 1/,
    ],
    [
      ["train", "--resume", tmp, "--corpus", CORPUS],
      /--resume .*: no trainer_state\.json there/,
    ],
  ];
  const empty = join(tmp, "empty.txt");
  await Deno.writeTextFile(empty, "");
  cases.push([
    [...fresh, "--corpus", empty, "--vocab-size", "290"],
    /empty\.txt: the corpus is empty/,
  ]);
  const notJson = join(tmp, "bad_config.json");
  await Deno.writeTextFile(notJson, "{ nope");
  cases.push([
    ["train", "--config", notJson, "--corpus", CORPUS, "--vocab-size", "290", "--out", out],
    /--config .*bad_config\.json: not valid JSON/,
  ]);
  for (const [args, want] of cases) assertMistake(await kiln(...args), want);
  // Nothing was trained or written for any of them.
  await assert.rejects(() => Deno.stat(join(out, "model.safetensors")), Deno.errors.NotFound);

  const help = await kiln("train", "--corpus", CORPUS, "--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: kiln train --config config\.json\|--from DIR\|--resume/);
  assert.match((await kiln("help")).stdout, /\n {2}train --config/);
});

Deno.test("kiln train: progress lines show step, loss, tokens/s and ETA, then a final line", () => {
  const out: string[] = [];
  let t = 0;
  const p = createTrainProgress({
    mode: "lines",
    total: 100,
    first: 20,
    write: (s) => out.push(s),
    now: () => t,
  });
  t = 10_000;
  p.update(40, 3.14159, 2048.4);
  p.note("[kiln] train: step 40: held-out loss 3.2000");
  t = 12_000;
  p.update(45, 3, 2000); // within 5 s of the last line: not drawn
  p.end();
  assert.deepEqual(out, [
    "[kiln] train: step 20/100, 0:00 elapsed\n",
    // 20 steps in 10 s: 60 left take 30 s.
    "[kiln] train: step 40/100, loss 3.142, 2048 tokens/s, 0:10 elapsed, ETA 0:30\n",
    "[kiln] train: step 40: held-out loss 3.2000\n",
    "[kiln] train: 45/100 steps in 0:12, loss 3.000, 2000 tokens/s\n",
  ]);
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(tmp, { recursive: true });
  } catch { /* already gone */ }
});
