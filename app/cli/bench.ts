/**
 * `kiln bench`: prefill and decode tokens/s of a model folder, on a synthetic
 * prompt. A run past the model's `max_position_embeddings` needs `--allow-long`,
 * and long phases show progress.
 *
 * @module
 */

import { requestDevice } from "../../runtime/device.ts";
import { readConfig } from "../config_file.ts";
import { loadModel } from "../model/mod.ts";
import { intOption, type OptionSpec, parseCommand } from "./args.ts";
import { UsageError } from "./errors.ts";
import { checkContextFits, checkPositions } from "./limits.ts";
import { modelFolder } from "./paths.ts";
import { createStepProgress, progressMode } from "./step_progress.ts";
import { usage } from "./usage.ts";

const SPEC: OptionSpec = {
  "prompt-tokens": { type: "string" },
  tokens: { type: "string" },
  "allow-long": { type: "boolean" },
  quiet: { type: "boolean" },
  progress: { type: "boolean" },
};

/**
 * Runs `kiln bench` with its arguments (after the command word).
 *
 * @example
 * ```ts ignore
 * import { bench } from "./bench.ts";
 * await bench(["./mamba-130m-hf", "--prompt-tokens", "128", "--tokens", "32"]);
 * ```
 */
export async function bench(args: string[]): Promise<void> {
  const { values, positionals, help } = parseCommand("bench", args, SPEC, true);
  if (help) return console.log(usage("bench"));
  if (!positionals[0]) throw new UsageError("bench: give a model folder");
  if (positionals.length > 1) {
    throw new UsageError(`bench: one model folder expected, got also "${positionals[1]}"`);
  }
  const P = intOption(values["prompt-tokens"], "prompt-tokens", 128, 1);
  const N = intOption(values.tokens, "tokens", 32, 2);
  const dir = await modelFolder(positionals[0], "bench");
  const cfg = await readConfig(dir);
  const announce = checkPositions(
    cfg,
    P + N,
    `--prompt-tokens ${P} + --tokens ${N} (${P + N} positions)`,
    values["allow-long"] === true,
  );
  const maxSeq = P + N + 1;
  const device = await requestDevice();
  try {
    checkContextFits(
      cfg,
      maxSeq,
      "--prompt-tokens + --tokens",
      device.caps,
      device.device.limits.maxBufferSize,
    );
    if (announce) console.error(announce);
    const quiet = values.quiet === true;
    // Prefill speed is the point: never the decode step for a short prompt.
    const model = await loadModel(dir, { device, quiet, maxSeq, coldPromptTokens: 0 });
    const progress = createStepProgress({ mode: progressMode(values.progress === true, quiet) });
    try {
      const ids = Array.from({ length: P }, (_, i) => (i * 7919 + 1) % model.config.vocabSize);
      // Warm-up with the same prompt length: kernels are specialised per T, so a
      // shorter warm-up would leave the timed prefill compiling pipelines.
      progress.start("warm-up (compile and prefill)", P, false);
      for await (const _ of model.generateIds(ids, { maxTokens: 2 })) { /* compile */ }
      progress.end();
      progress.start("prefill", P, false);
      let n = 0;
      for await (const _ of model.generateIds(ids, { maxTokens: N, readEvery: 8 })) {
        if (n++ === 0) {
          progress.end();
          progress.start("decode", N, true, 1);
        }
        progress.update(n);
      }
      progress.end();
      const s = model.lastStats!;
      console.log(
        `prefill: ${P} tokens in ${s.prefillMs.toFixed(0)} ms = ${
          (P / s.prefillMs * 1000).toFixed(1)
        } tok/s (until the first sampled token is on the host)`,
      );
      console.log(
        `decode: ${n - 1} tokens in ${s.decodeMs.toFixed(0)} ms = ${
          ((n - 1) / (s.decodeMs / 1000)).toFixed(1)
        } tok/s, ${s.readbacks} host round trips (ids read back every 8 tokens)`,
      );
    } finally {
      progress.end(true);
      model.dispose();
    }
  } finally {
    device.destroy();
  }
}
