/**
 * `kiln train`: trains a causal language model on text files with the
 * {@linkcode Trainer} — a fresh model from a config.json (`--config`), a model
 * folder to fine-tune (`--from`), or a checkpoint to continue (`--resume`).
 * The corpus is tokenized with `--tokenizer`, the model folder's tokenizer, or
 * a byte-level BPE trained on the corpus first (`--vocab-size`); its tail is
 * held out for evaluation. Every argument, the config and every corpus file
 * are checked before the device is touched, so a mistake costs no training
 * time and prints one `kiln:` line. The loop and its outputs are in
 * `train_run.ts`.
 *
 * @module
 */

import { fileError } from "../fs_errors.ts";
import { intOption, numberOption, type OptionSpec, parseCommand } from "./args.ts";
import { UsageError } from "./errors.ts";
import { runTraining, type TrainPlan } from "./train_run.ts";
import { usage } from "./usage.ts";

const SPEC: OptionSpec = {
  config: { type: "string" },
  from: { type: "string" },
  resume: { type: "string" },
  tokenizer: { type: "string" },
  "vocab-size": { type: "string" },
  out: { type: "string" },
  o: { type: "string" },
  steps: { type: "string" },
  batch: { type: "string" },
  seq: { type: "string" },
  lr: { type: "string" },
  warmup: { type: "string" },
  "weight-decay": { type: "string" },
  clip: { type: "string" },
  accumulate: { type: "string" },
  recompute: { type: "boolean" },
  "fused-xent": { type: "boolean" },
  "f16-activations": { type: "boolean" },
  "aux-loss": { type: "string" },
  "z-loss": { type: "string" },
  "bias-update-rate": { type: "string" },
  seed: { type: "string" },
  "eval-fraction": { type: "string" },
  "eval-every": { type: "string" },
  "checkpoint-every": { type: "string" },
  "log-every": { type: "string" },
  quiet: { type: "boolean" },
  progress: { type: "boolean" },
};

/**
 * Settings a checkpoint fixes: changing them would not continue the same run.
 * (`--tokenizer` is checked later: allowed where the checkpoint has none.)
 */
const FIXED_ON_RESUME = [
  "config",
  "from",
  "vocab-size",
  "batch",
  "seq",
  "lr",
  "warmup",
  "weight-decay",
  "clip",
  "accumulate",
  "recompute",
  "fused-xent",
  "f16-activations",
  "aux-loss",
  "z-loss",
  "bias-update-rate",
  "seed",
  "log-every",
  "eval-fraction",
] as const;

/**
 * Runs `kiln train` with its arguments (after the command word).
 *
 * @example
 * ```ts ignore
 * import { train } from "./train.ts";
 * await train(["--config", "config.json", "--corpus", "book.txt", "--vocab-size", "4096",
 *   "--out", "run/", "--steps", "1000"]);
 * ```
 */
export async function train(args: string[]): Promise<void> {
  const plan = await parseTrainArgs(args);
  if (plan === undefined) return console.log(usage("train"));
  await runTraining(plan);
}

/**
 * Parses and checks `kiln train`'s arguments (reading `--config`), or
 * undefined when `--help` was asked for.
 *
 * @example
 * ```ts ignore
 * const plan = await parseTrainArgs(["--config", "c.json", "--corpus", "a.txt",
 *   "--vocab-size", "300", "--out", "run"]);
 * ```
 */
export async function parseTrainArgs(args: string[]): Promise<TrainPlan | undefined> {
  const { corpora, others } = takeCorpora(args);
  const { values, help } = parseCommand("train", others, SPEC);
  if (help) return undefined;
  const given = (k: string) => values[k] !== undefined;
  if (corpora.length === 0) {
    throw new UsageError("train: --corpus FILE is required (see: kiln train --help)");
  }
  const sources = (["config", "from", "resume"] as const).filter(given);
  if (sources.length !== 1) {
    throw new UsageError(
      sources.length === 0
        ? "train: give --config FILE (a fresh model), --from DIR (fine-tune) or --resume DIR (see: kiln train --help)"
        : `train: give one of --config, --from and --resume, not ${
          sources.map((s) => `--${s}`).join(" and ")
        }`,
    );
  }
  if (given("out") && given("o")) throw new UsageError("train: give --out or -o, not both");
  for (const [k, v] of Object.entries(values)) {
    if (v === "") throw new UsageError(`--${k} needs a value, got ""`);
  }
  const out = (values.out ?? values.o) as string | undefined;
  const resume = values.resume as string | undefined;
  if (resume !== undefined) {
    const fixed = FIXED_ON_RESUME.find(given);
    if (fixed) {
      throw new UsageError(
        `train: --${fixed} cannot change with --resume: the checkpoint's settings continue the run`,
      );
    }
  } else if (out === undefined) {
    throw new UsageError("train: --out DIR is required (see: kiln train --help)");
  }
  if (given("tokenizer") && given("vocab-size")) {
    throw new UsageError(
      "train: give --tokenizer FILE or --vocab-size N (train one on the corpus), not both",
    );
  }
  if (given("from") && given("vocab-size")) {
    throw new UsageError(
      "train: --vocab-size trains a new tokenizer, which a model from --from does not " +
        "know; give --tokenizer FILE or none (the folder's tokenizer.json)",
    );
  }
  if (given("config") && !given("tokenizer") && !given("vocab-size")) {
    throw new UsageError(
      "train: a fresh model needs --tokenizer FILE or --vocab-size N (train a byte-level BPE on the corpus)",
    );
  }
  const vocabSize = given("vocab-size")
    ? intOption(values["vocab-size"], "vocab-size", 0, 256)
    : undefined;
  const steps = given("steps") ? intOption(values.steps, "steps", 0, 1) : undefined;
  const total = steps ?? 1000;
  const logEvery = intOption(values["log-every"], "log-every", 10, 1);
  const plan: TrainPlan = {
    out,
    corpora,
    resume,
    from: values.from as string | undefined,
    config: given("config") ? await readConfigFile(values.config as string) : undefined,
    tokenizer: values.tokenizer as string | undefined,
    vocabSize,
    steps,
    batch: intOption(values.batch, "batch", 8, 1),
    seq: intOption(values.seq, "seq", 128, 1),
    lr: numberOption(values.lr, "lr", 3e-4, { min: 0, minExclusive: true }),
    warmup: intOption(values.warmup, "warmup", Math.min(100, Math.floor(total / 10)), 0),
    weightDecay: numberOption(values["weight-decay"], "weight-decay", 0.01, { min: 0 }),
    clip: numberOption(values.clip, "clip", 1, { min: 0 }),
    accumulate: intOption(values.accumulate, "accumulate", 1, 1),
    recompute: values.recompute === true,
    fusedXent: values["fused-xent"] === true,
    f16Activations: values["f16-activations"] === true,
    auxLoss: numberOption(values["aux-loss"], "aux-loss", 0, { min: 0 }),
    zLoss: numberOption(values["z-loss"], "z-loss", 0, { min: 0 }),
    biasUpdateRate: numberOption(values["bias-update-rate"], "bias-update-rate", 0, { min: 0 }),
    seed: intOption(values.seed, "seed", 0, 0, 2 ** 32 - 1),
    evalFraction: given("eval-fraction")
      ? numberOption(values["eval-fraction"], "eval-fraction", 0.05, { min: 0, max: 0.5 })
      : undefined,
    evalEvery: given("eval-every")
      ? intOption(values["eval-every"], "eval-every", 0, 1)
      : undefined,
    checkpointEvery: given("checkpoint-every")
      ? intOption(values["checkpoint-every"], "checkpoint-every", 0, 1)
      : undefined,
    logEvery,
    quiet: values.quiet === true,
    progress: values.progress === true,
  };
  if (plan.warmup > total) {
    throw new UsageError(`--warmup ${plan.warmup} is more than --steps ${total}`);
  }
  return plan;
}

/** Pulls every `--corpus X` (or `--corpus=X`) out of `args`. */
function takeCorpora(args: readonly string[]): { corpora: string[]; others: string[] } {
  const corpora: string[] = [];
  const others: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      others.push(...args.slice(i));
      break;
    }
    if (a.startsWith("--corpus=")) corpora.push(a.slice("--corpus=".length));
    else if (a !== "--corpus") others.push(a);
    else if (i + 1 < args.length && !["--help", "-h"].includes(args[i + 1])) {
      corpora.push(args[++i]);
    } else if (i + 1 < args.length) others.push(args[++i]);
    else throw new UsageError("train: option '--corpus' needs a value (see: kiln train --help)");
  }
  for (const c of corpora) if (c === "") throw new UsageError('--corpus needs a file, got ""');
  return { corpora, others };
}

/** `--config FILE`: a JSON object, or an error naming the file. */
async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw fileError(e, path, "a model config.json for --config");
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`--config ${path}: not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TypeError(`--config ${path}: expected a JSON object (a model's config.json)`);
  }
  return json as Record<string, unknown>;
}
