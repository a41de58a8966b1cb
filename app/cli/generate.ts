/**
 * `kiln generate`: stream text from a Hugging Face model folder. Every option
 * and path is checked before the (possibly long) load, the context before the
 * prefill, and a run that ends because the context is full says so.
 *
 * @module
 */

import { requestDevice } from "../../runtime/device.ts";
import { QUANTIZE_CHOICES } from "../../core/quant/formats.ts";
import { GGUF_MIXES } from "../gguf/quant_mix.ts";
import { readModelConfig, sideFolder } from "../model/source.ts";
import { checkChatOptions, openChat, readLines } from "./chat.ts";
import { usageHeatmapSvg } from "../experts/mod.ts";
import { writeRoutingStats } from "../experts/placement.ts";
import { type GenerateOptions, loadModel, type Model } from "../model/mod.ts";
import {
  bytesOption,
  choiceOption,
  intOption,
  numberOption,
  type OptionSpec,
  parseCommand,
} from "./args.ts";
import { UsageError } from "./errors.ts";
import { readImatrixOption } from "./quantize.ts";
import { checkContextFits, maxSeqFor } from "./limits.ts";
import { checkWritable, modelFolder } from "./paths.ts";
import { DEFAULT_MODEL_COMMAND, defaultModelPath, findDefaultModel } from "../default_model.ts";
import { createStepProgress, progressMode } from "./step_progress.ts";
import { usage } from "./usage.ts";

const SPEC: OptionSpec = {
  model: { type: "string" },
  prompt: { type: "string" },
  "max-tokens": { type: "string" },
  temperature: { type: "string" },
  "top-k": { type: "string" },
  "top-p": { type: "string" },
  seed: { type: "string" },
  "max-seq": { type: "string" },
  "allow-long": { type: "boolean" },
  "read-every": { type: "string" },
  stats: { type: "boolean" },
  quiet: { type: "boolean" },
  progress: { type: "boolean" },
  "gpu-memory": { type: "string" },
  policy: { type: "string" },
  heatmap: { type: "string" },
  "save-routing-stats": { type: "boolean" },
  devices: { type: "string" },
  "host-memory": { type: "string" },
  prefetch: { type: "string" },
  dtype: { type: "string" },
  quantize: { type: "string" },
  imatrix: { type: "string" },
  threads: { type: "string" },
  chat: { type: "boolean" },
  system: { type: "string" },
  "chat-template": { type: "string" },
  "chat-vars": { type: "string" },
  interactive: { type: "boolean" },
};

const POLICIES = ["lru", "lfu", "stream", "naive"] as const;
const PREFETCH = ["temporal", "lookahead", "both"] as const;

/** Writes all of `bytes` to stdout: one write may take only part of them. */
async function writeAll(bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await Deno.stdout.write(bytes.subarray(off));
}

/**
 * Runs `kiln generate` with its arguments (after the command word).
 *
 * @example
 * ```ts ignore
 * import { generate } from "./generate.ts";
 * await generate(["--model", "./mamba-130m-hf", "--prompt", "Hello", "--max-tokens", "16"]);
 * ```
 */
export async function generate(args: string[]): Promise<void> {
  const { values, help } = parseCommand("generate", args, SPEC);
  if (help) return console.log(usage("generate"));
  const str = (name: string) => values[name] as string | undefined;
  const on = (name: string) => values[name] === true;
  // No --model: the default model shipped in the repository, when it is there.
  const modelPath = str("model") || await findDefaultModel();
  if (!modelPath) {
    throw new UsageError(
      `generate: --model DIR is required (the default model is not at ${defaultModelPath()}; ` +
        `create it with: ${DEFAULT_MODEL_COMMAND})`,
    );
  }
  if (str("prompt") === undefined) throw new UsageError("generate: --prompt TEXT is required");
  const chat = await checkChatOptions(values);
  // Every option is checked before the (possibly long) load, so a typo fails at once.
  const prefetch = choiceOption(values.prefetch, "prefetch", PREFETCH);
  const policy = choiceOption(values.policy, "policy", POLICIES);
  const devices = intOption(values.devices, "devices", 1, 1, 64);
  const gpuMemory = bytesOption(values["gpu-memory"], "gpu-memory");
  const hostMemory = bytesOption(values["host-memory"], "host-memory");
  if (hostMemory !== undefined && gpuMemory === undefined) {
    throw new UsageError("generate: --host-memory needs --gpu-memory");
  }
  const options = {
    maxTokens: intOption(values["max-tokens"], "max-tokens", 64, 1),
    temperature: numberOption(values.temperature, "temperature", 0, { min: 0 }),
    topK: intOption(values["top-k"], "top-k", 0, 0),
    topP: numberOption(values["top-p"], "top-p", 1, { min: 0, minExclusive: true, max: 1 }),
    seed: intOption(values.seed, "seed", 0, 0, 2 ** 32 - 1),
    readEvery: intOption(values["read-every"], "read-every", 8, 1),
  };
  const dtype = str("dtype");
  if (dtype !== undefined && dtype !== "f32" && dtype !== "f16") {
    throw new UsageError(`generate: --dtype must be f32 or f16, got "${dtype}"`);
  }
  const requestedMaxSeq = values["max-seq"] === undefined
    ? undefined
    : intOption(values["max-seq"], "max-seq", 0, 1);
  const heatmap = str("heatmap");
  const expertOutput = heatmap !== undefined
    ? "--heatmap"
    : on("save-routing-stats")
    ? "--save-routing-stats"
    : undefined;
  if (expertOutput && gpuMemory === undefined) {
    throw new UsageError(
      `generate: ${expertOutput} records the expert cache, which needs --gpu-memory`,
    );
  }
  const quantize = values.quantize === undefined
    ? undefined
    : choiceOption(values.quantize, "quantize", [...QUANTIZE_CHOICES, ...GGUF_MIXES]);
  const threads = values.threads === undefined
    ? undefined
    : intOption(values.threads, "threads", 1, 1, 1024);
  if (values.imatrix !== undefined && quantize === undefined) {
    throw new UsageError(
      "generate: --imatrix fits the weights --quantize stores; give --quantize too",
    );
  }
  const dir = await modelFolder(modelPath, "generate --model");
  const imatrix = values.imatrix === undefined
    ? undefined
    : await readImatrixOption(values.imatrix as string, "generate");
  if (heatmap !== undefined) await checkWritable(heatmap, "--heatmap");
  if (on("save-routing-stats")) {
    await checkWritable(
      `${sideFolder(dir).replace(/\/$/, "")}/kiln_routing_stats.json`,
      "--save-routing-stats",
    );
  }
  const cfg = await readModelConfig(dir);
  const { maxSeq, announce } = maxSeqFor(cfg, requestedMaxSeq, on("allow-long"));
  const device = await requestDevice();
  try {
    checkContextFits(cfg, maxSeq, "--max-seq", device.caps, device.device.limits.maxBufferSize);
    if (announce) console.error(announce);
    const model = await loadModel(dir, {
      device,
      quiet: on("quiet"),
      maxSeq,
      memoryBudget: gpuMemory,
      expertPolicy: policy,
      devices,
      hostMemoryBudget: hostMemory,
      prefetch,
      dtype,
      quantize,
      imatrix,
      threads,
    });
    try {
      const flags = { progress: on("progress"), quiet: on("quiet"), allowLong: on("allow-long") };
      if (!chat) await run(model, str("prompt")!, false, options, maxSeq, flags);
      else {
        // One turn, or with --interactive one a line of stdin until it ends (or an empty line).
        const conversation = await openChat(dir, model, chat);
        const lines = chat.interactive ? readLines(Deno.stdin.readable) : undefined;
        let user: string | undefined = str("prompt")!;
        while (user !== undefined) {
          const reply = await run(model, conversation.prompt(user), true, options, maxSeq, flags);
          conversation.reply(reply);
          if (!lines) break;
          if (isTerminal(Deno.stdin)) await Deno.stderr.write(new TextEncoder().encode("> "));
          const next = await lines.next();
          user = next.done || next.value.trim() === "" ? undefined : next.value;
        }
      }
      if (on("stats")) printStats(model);
      if (expertOutput && !model.experts) {
        console.error(
          `kiln: ${expertOutput}: nothing written, every expert fit in --gpu-memory ` +
            `(or the model has none), so no expert cache ran`,
        );
      }
      if (model.experts && heatmap !== undefined) {
        await Deno.writeTextFile(heatmap, usageHeatmapSvg(model.experts.stats.usage));
        console.error(`[kiln] expert usage heatmap written to ${heatmap}`);
      }
      if (model.experts && on("save-routing-stats")) {
        await writeRoutingStats(sideFolder(dir), model.experts.routingStats(), true);
      }
    } finally {
      model.dispose();
    }
  } finally {
    device.destroy();
  }
}

/** Tokenizes, checks the context, streams the text, and says why it stopped if not by choice. */
async function run(
  model: Model,
  prompt: string,
  templated: boolean,
  options: GenerateOptions & { maxTokens: number },
  maxSeq: number,
  flags: { progress: boolean; quiet: boolean; allowLong: boolean },
): Promise<string> {
  const tok = model.tokenizer;
  if (!tok) {
    throw new TypeError(
      "generate: the model folder has no tokenizer.json, which turns --prompt into tokens",
    );
  }
  // A chat template writes the special tokens itself (transformers encodes its text without).
  const ids = tok.encode(prompt, { addSpecialTokens: !templated });
  if (ids.length === 0) throw new UsageError("generate: --prompt gives no tokens; give some text");
  if (ids.length >= maxSeq) {
    throw new UsageError(
      `generate: the prompt is ${ids.length} tokens and --max-seq is ${maxSeq}, ` +
        `which leaves no room to generate; raise --max-seq above ${ids.length}`,
    );
  }
  const eos = new Set([
    ...model.config.eosTokenIds,
    ...(tok.eosId !== undefined ? [tok.eosId] : []),
  ]);
  const { allowLong } = flags;
  const mode = progressMode(flags.progress, flags.quiet);
  const progress = createStepProgress({ mode });
  let stdoutTty = false;
  try {
    stdoutTty = Deno.stdout.isTerminal();
  } catch {
    // No stdout to ask: not a terminal.
  }
  // Streamed text on the same terminal is its own progress: only the prefill gets a line.
  const decodeProgress = mode === "lines" || !stdoutTty;
  const stream = tok.decoder({ skipSpecialTokens: true });
  const enc = new TextEncoder();
  const limit = Math.min(options.maxTokens, maxSeq - ids.length);
  let n = 0, sawEos = false, text = "";
  progress.start("prefill", ids.length, false);
  try {
    // A chat's turn repeats the conversation so far: only what is new runs.
    for await (const id of model.generateIds(ids, { ...options, reusePrefix: templated })) {
      if (n++ === 0) {
        progress.end(mode === "terminal" && stdoutTty);
        if (decodeProgress) progress.start("decode", limit, true, 1);
      }
      progress.update(n);
      if (eos.has(id)) {
        sawEos = true;
        break;
      }
      const piece = stream.push(id);
      text += piece;
      await writeAll(enc.encode(piece));
    }
    progress.end();
  } finally {
    progress.end(true);
  }
  const rest = stream.flush();
  text += rest;
  await writeAll(enc.encode(`${rest}\n`));
  // Neither an end-of-sequence token nor --max-tokens: the KV cache is full.
  if (!sawEos && n < options.maxTokens && ids.length + n >= maxSeq) {
    const max = model.config.maxPositions;
    const how = max !== undefined && maxSeq >= max && !allowLong
      ? "--max-seq (with --allow-long, past what the model was trained for)"
      : "--max-seq";
    console.error(
      `kiln: stopped at the context limit (--max-seq ${maxSeq}${
        maxSeq === max ? ", the model's max_position_embeddings" : ""
      }: ${ids.length} prompt + ${n} generated tokens); raise ${how} to continue`,
    );
  }
  return text;
}

function isTerminal(f: { isTerminal(): boolean }): boolean {
  try {
    return f.isTerminal();
  } catch {
    return false;
  }
}

function printStats(model: Model): void {
  const s = model.lastStats;
  if (!s) return;
  const after = Math.max(0, s.generatedTokens - 1);
  const rate = s.generatedTokens > 1 ? (after / (s.decodeMs / 1000)).toFixed(1) : "–";
  console.error(
    `[kiln] pipelines compiled in ${s.compileMs.toFixed(0)} ms; ` +
      `prompt ${s.promptTokens} tokens${
        s.reusedTokens ? ` (${s.reusedTokens} already in the cache)` : ""
      }, ${s.promptRun === "decode" ? "through the decode step" : "prefill"} ${
        s.prefillMs.toFixed(0)
      } ms; ` +
      `${s.generatedTokens} tokens generated, the ${after} after the first in ${
        s.decodeMs.toFixed(0)
      } ms (${rate} tok/s), ${s.readbacks} host round trips`,
  );
  if (model.experts) console.error(`[kiln] ${model.experts.report()}`);
  if (model.parallel) console.error(`[kiln] ${model.parallel.report()}`);
}
