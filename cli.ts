/**
 * The `kiln` command line.
 *
 * ```sh
 * deno run --allow-read=DIR cli.ts generate --model DIR --prompt "Once upon a time"
 * deno run -A cli.ts inspect examples/fused_mlp.ts --dims T=128 [--wgsl]
 * ```
 *
 * `generate` streams text from a Hugging Face model folder, `bench` measures
 * prefill and decode tokens/s, `inspect DIR` describes a model from its
 * config.json, and `inspect FILE` imports a module exporting `build()`
 * (returning a `GraphBuilder` or a `Graph`) and optional `dims`, and prints the
 * IR, the fused kernel plan with buffer sizes and peak bytes, and with `--wgsl`
 * every kernel's source. `build FILE -o OUT.ts` compiles such a module ahead
 * of time into a standalone module importing only the runtime. `quantize MODEL --type T
 * -o OUT.gguf` writes a model folder or GGUF file as one GGUF file in that type
 * (`--imatrix FILE` fits it with an importance matrix, which `imatrix MODEL
 * --text FILE -o OUT.gguf` computes).
 * `tokenizer train --corpus FILE --vocab-size N --out DIR` trains a byte-level BPE
 * tokenizer.json on text. `train --config config.json --corpus FILE --vocab-size N --out DIR`
 * trains a model on text (fresh, `--from` a folder, or `--resume` a checkpoint).
 * `kiln COMMAND --help` prints one command's options.
 * User mistakes print one line and exit with status 1. The commands live in
 * `app/cli/`.
 *
 * @module
 */

import { bench } from "./app/cli/bench.ts";
import { build } from "./app/cli/build.ts";
import { UsageError } from "./app/cli/errors.ts";
import { generate } from "./app/cli/generate.ts";
import { inspect } from "./app/cli/inspect.ts";
import { quantize } from "./app/cli/quantize.ts";
import { imatrix } from "./app/cli/imatrix.ts";
import { tokenizer } from "./app/cli/tokenizer.ts";
import { train } from "./app/cli/train.ts";
import { tune } from "./app/cli/tune.ts";
import { usage } from "./app/cli/usage.ts";
import { envFlag } from "./app/env_flag.ts";
import { setDebugSource } from "./core/debug.ts";

export { UsageError };

// KILN_DEBUG=1 prints each kernel's WGSL and GPU time; read only where env access
// is granted, so a run without --allow-env neither prompts nor fails.
setDebugSource(() => envFlag("KILN_DEBUG"));

const COMMANDS = {
  generate,
  inspect,
  bench,
  build,
  tune,
  quantize,
  imatrix,
  tokenizer,
  train,
} as const;

/**
 * Runs the CLI with `args`; returns the exit status.
 *
 * @example
 * ```ts ignore
 * import { main } from "@kiln/kiln/cli";
 * Deno.exit(await main(["inspect", "model.ts"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const [cmd, ...rest] = args;
  try {
    if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
      const topic = cmd === "help" ? rest[0] : undefined;
      if (topic !== undefined && !(topic in COMMANDS)) {
        throw new UsageError(`help: unknown command "${topic}" (try: kiln help)`);
      }
      console.log(usage(topic as keyof typeof COMMANDS | undefined));
      return 0;
    }
    if (!(cmd in COMMANDS)) throw new UsageError(`unknown command "${cmd}" (try: kiln help)`);
    await COMMANDS[cmd as keyof typeof COMMANDS](rest);
    return 0;
  } catch (e) {
    if (
      e instanceof UsageError || e instanceof TypeError || e instanceof RangeError ||
      e instanceof SyntaxError || e instanceof Deno.errors.NotFound ||
      e instanceof Deno.errors.NotADirectory || e instanceof Deno.errors.IsADirectory ||
      e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable
    ) {
      // One line, always: some messages span several.
      console.error(`kiln: ${e.message.trim().replace(/\s*\n\s*/g, " ")}`);
      return 1;
    }
    if (e instanceof Error && /No WebGPU adapter/.test(e.message)) {
      console.error(`kiln: ${e.message.trim().replace(/\s*\n\s*/g, " ")}`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
