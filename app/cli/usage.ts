/**
 * The command line's usage texts: one per command (`kiln generate --help`) and
 * the whole (`kiln help`).
 *
 * @module
 */

/**
 * Usage of `kiln generate`.
 *
 * @example
 * ```ts
 * import { GENERATE_USAGE } from "./usage.ts";
 * console.log(GENERATE_USAGE);
 * ```
 */
export const GENERATE_USAGE = `\
  generate [--model DIR|FILE.gguf] --prompt TEXT [--max-tokens N] [--temperature T]
           [--top-k K] [--top-p P] [--seed S] [--max-seq N] [--allow-long]
           [--read-every N] [--stats] [--quiet] [--progress] [--gpu-memory 2GiB]
           [--policy lru|lfu|stream|naive] [--heatmap FILE.svg] [--save-routing-stats]
           [--devices N] [--host-memory 8GiB] [--prefetch temporal|lookahead|both]
           [--dtype f32|f16] [--quantize FORMAT] [--imatrix FILE] [--threads N]
           [--chat [--system TEXT] [--chat-template FILE] [--chat-vars JSON] [--interactive]]
                                     stream text from a Hugging Face model folder or a GGUF
                                     file (default: the model Kiln trained, assets/default_model/;
                                     a GGUF's quantized weights read as stored, dequantized
                                     in the kernels; --quantize stores a folder's weights as
                                     llama.cpp blocks on load: q4_k, q5_k, q6_k, q8_0, q4_0,
                                     q4_1, q5_0, q5_1, q3_k, q2_k, iq4_xs, iq4_nl, iq3_xxs,
                                     iq3_s, mxfp4, nvfp4, q2_0, tq2_0, tq1_0, q1_0, mxfp4_moe: MXFP4
                                     experts, Q8_0 elsewhere, or a llama-quantize mix: q4_k_m,
                                     q4_k_s, q5_k_m, q5_k_s, q3_k_m, q3_k_s, q3_k_l, iq3_m,
                                     iq3_xs, iq2_xxs, iq2_xs, iq2_s, iq2_m, iq1_s, iq1_m,
                                     q2_k_s (these need --imatrix),
                                     as kiln quantize writes them; --imatrix fits them
                                     with an importance matrix, as kiln quantize --imatrix),
                                     computing activations in
                                     --dtype (default f32; f16 needs shader-f16); --max-seq
                                     (default: max_position_embeddings, at most 2048) bounds
                                     prompt + generated tokens, past max_position_embeddings
                                     only with --allow-long; --gpu-memory caches (lru, lfu) or
                                     streams experts that do not fit; --host-memory keeps the
                                     rest in the checkpoint files; --devices N splits the
                                     experts over N GPU devices; --threads: workers that encode
                                     --quantize's blocks (default: every core); --progress shows
                                     prefill and decode progress on stderr (always on a terminal);
                                     --chat: --prompt is a user turn (after --system's) that the
                                     model's chat template (chat_template.jinja, tokenizer_config
                                     .json's or the GGUF's; --chat-template FILE instead) turns
                                     into the prompt, as transformers' apply_chat_template with
                                     add_generation_prompt; --chat-vars: more template variables
                                     as a JSON object, e.g. '{"enable_thinking": false}';
                                     --interactive: after the reply, each line of stdin is the
                                     next user turn (the conversation re-rendered each turn), until
                                     stdin ends or a line is empty`;

/**
 * Usage of `kiln inspect`.
 *
 * @example
 * ```ts
 * import { INSPECT_USAGE } from "./usage.ts";
 * console.log(INSPECT_USAGE);
 * ```
 */
export const INSPECT_USAGE = `\
  inspect DIR|FILE.gguf [--gpu-memory 2GiB] [--host-memory 8GiB] [--devices N]
          [--dtype f32|f16] [--quantize FORMAT]
                                     a model from config.json alone: architecture, layer pattern,
                                     parameters total vs active per token, bytes, kernels per step;
                                     with --gpu-memory, the expert placement plan; with
                                     --devices N, the split of the experts over N devices;
                                     --dtype: the weights' dtype the placement plans for (f32);
                                     --quantize: plan for the weights in a block format or a
                                     mix (as generate's), a GGUF's formats as stored
  inspect FILE [--dims T=128] [--wgsl] [--cache PATH]
                                     IR, fused kernel plan, buffers and WGSL of a module
                                     exporting build(), and the tile each matmul kernel got
                                     and why (with --cache: the tiles \`kiln tune\` chose)`;

/**
 * Usage of `kiln tune`.
 *
 * @example
 * ```ts
 * import { TUNE_USAGE } from "./usage.ts";
 * console.log(TUNE_USAGE);
 * ```
 */
export const TUNE_USAGE = `\
  tune FILE [--dims T=128] [--cache PATH] [--budget-ms 60000] [--max-candidates 4]
       [--expected-runs 100] [--retune]
                                     time candidate matmul tiles of a module's plan on this
                                     adapter and record the fastest (compile time + expected
                                     runs × run time) in the tuning cache (default
                                     $HOME/.cache/kiln/tuning.json), keyed by adapter`;

/**
 * Usage of `kiln bench`.
 *
 * @example
 * ```ts
 * import { BENCH_USAGE } from "./usage.ts";
 * console.log(BENCH_USAGE);
 * ```
 */
export const BENCH_USAGE = `\
  bench DIR [--prompt-tokens N] [--tokens N] [--allow-long] [--quiet] [--progress]
                                     prefill and decode tokens/s of a model folder (prompt +
                                     tokens past max_position_embeddings only with --allow-long)`;

/**
 * Usage of `kiln build`.
 *
 * @example
 * ```ts
 * import { BUILD_USAGE } from "./usage.ts";
 * console.log(BUILD_USAGE);
 * ```
 */
export const BUILD_USAGE = `\
  build FILE -o OUT.ts [--dims T=1,64,256[;S=8]] [--name NAME] [--no-bundle] [--no-check]
                                     compile a module exporting build() ahead of time into one
                                     TypeScript module importing only the runtime, with a plan
                                     per --dims binding (default: its exported dims); exported
                                     params are packed into NAME.kwb beside it
  build DIR -o OUT.ts [--max-seq 2048] [--prefill-chunk 256] [--dtype f32|f16]
        [--sampling temperature=T,top-k=K,top-p=P[;…]] [--name NAME] [--no-check]
                                     compile a model folder ahead of time: the decode step and
                                     prefill chunks of 1, 4, 16 … tokens for greedy sampling
                                     (and each --sampling setting), weights in NAME.kwb; its
                                     load() gives forward(ids) and generateIds(ids)
  build … --binary OUT               also compile it into one executable with deno compile
                                     (OUT --prompt-ids 1,2,3 --max-tokens 8 prints ids; a graph
                                     module's: OUT --inputs JSON); needs DENORT_BIN offline`;

/**
 * Usage of `kiln quantize`.
 *
 * @example
 * ```ts
 * import { QUANTIZE_USAGE } from "./usage.ts";
 * console.log(QUANTIZE_USAGE);
 * ```
 */
export const QUANTIZE_USAGE = `\
  quantize DIR|FILE.gguf --type TYPE -o OUT.gguf [--imatrix FILE] [--name NAME] [--threads N]
           [--output-tensor-type T] [--token-embedding-type T] [--quiet]
                                     write one GGUF file as llama.cpp would: a Hugging Face
                                     folder's weights (and its tokenizer.json) or another GGUF
                                     file's (dequantized, then requantized) in --type: one of
                                     llama-quantize's mixes (q4_k_m, q4_k_s, q5_k_m, q5_k_s,
                                     q3_k_m, q3_k_s, q3_k_l, iq3_m, iq3_xs, and with --imatrix
                                     iq2_xxs, iq2_xs, iq2_s, iq2_m, iq1_s, iq1_m, q2_k_s: some
                                     tensors in more bits, as llama-quantize picks them), or one
                                     format for every
                                     matrix (q4_k, q5_k, q6_k, q8_0, q4_0, q4_1, q5_0, q5_1, q3_k,
                                     q2_k, iq4_xs, iq4_nl, iq3_xxs, iq3_s, mxfp4_moe, mxfp4, nvfp4,
                                     q2_0, tq2_0, tq1_0, q1_0, f16, f32; mxfp4_moe: MXFP4 experts,
                                     Q8_0 elsewhere, as llama-quantize's MXFP4_MOE), norms and the
                                     tensors llama.cpp keeps f32 in f32; a row that is not whole
                                     blocks falls back as llama-quantize does; --imatrix: an
                                     importance matrix (llama-imatrix's or kiln imatrix's, GGUF or
                                     legacy .dat; kiln imatrix makes one): each weight it covers
                                     is fitted with it, the bytes llama-quantize --imatrix
                                     writes; --output-tensor-type / --token-embedding-type:
                                     output.weight's / token_embd.weight's type (f32, f16 or a
                                     block format), as llama-quantize's flags of those names
                                     (e.g. q8_0 for both: the "_L" variants of Q4_K_M files);
                                     --name sets
                                     general.name; --threads: workers that encode (default:
                                     every core; the same bytes for any count); --quiet: no
                                     progress, no summary line`;

/**
 * Usage of `kiln imatrix`.
 *
 * @example
 * ```ts
 * import { IMATRIX_USAGE } from "./usage.ts";
 * console.log(IMATRIX_USAGE);
 * ```
 */
export const IMATRIX_USAGE = `\
  imatrix DIR|FILE.gguf --text FILE -o OUT.gguf|OUT.dat [--chunk-size 512] [--chunks N]
          [--process-output] [--quiet]
                                     compute an importance matrix as llama-imatrix does: the
                                     model runs over the text in chunks of --chunk-size tokens
                                     (all whole chunks, or the first N), each layer weight's
                                     input columns' squared activations summed (experts: over
                                     the tokens routed to them; the output head only with
                                     --process-output); written in llama.cpp's GGUF layout (or
                                     the legacy .dat) for kiln quantize --imatrix or
                                     llama-quantize. Runs on the CPU reference (~40 ms a token
                                     for ~100M parameters)`;

/**
 * Usage of `kiln tokenizer`.
 *
 * @example
 * ```ts
 * import { TOKENIZER_USAGE } from "./usage.ts";
 * console.log(TOKENIZER_USAGE);
 * ```
 */
export const TOKENIZER_USAGE = `\
  tokenizer train --corpus FILE [--corpus FILE …] --vocab-size N --out DIR
                  [--min-frequency 2] [--special TOKEN …] [--quiet]
                                     train a GPT-2-style byte-level BPE on UTF-8 text files and
                                     write DIR/tokenizer.json as Hugging Face's
                                     ByteLevelBPETokenizer would (same merges, same ties):
                                     --special tokens (e.g. "<|endoftext|>") take the first
                                     ids, then the 256 bytes, then merges of the most frequent
                                     pair occurring at least --min-frequency times, up to N`;

/**
 * Usage of `kiln train`.
 *
 * @example
 * ```ts
 * import { TRAIN_USAGE } from "./usage.ts";
 * console.log(TRAIN_USAGE);
 * ```
 */
export const TRAIN_USAGE = `\
  train --config config.json|--from DIR|--resume DIR/checkpoint-N --corpus FILE [--corpus FILE …]
        [--tokenizer tokenizer.json | --vocab-size N] --out DIR [--steps 1000] [--batch 8]
        [--seq 128] [--lr 3e-4] [--warmup N] [--weight-decay 0.01] [--clip 1] [--accumulate 1]
        [--recompute] [--fused-xent] [--f16-activations] [--aux-loss X] [--z-loss X]
        [--bias-update-rate G] [--seed 0]
        [--eval-fraction 0.05] [--eval-every 100] [--checkpoint-every 500]
        [--log-every 10] [--quiet] [--progress]
                                     train a causal LM on UTF-8 text with AdamW (cosine schedule
                                     to 10% after --warmup, default steps/10 up to 100; --clip 0:
                                     no clipping): a fresh model from config.json (seeded Hugging
                                     Face init), fine-tuning a model folder (--from), or going on
                                     from a checkpoint (--resume: bit for bit the same run; only
                                     --steps, --out, --eval-every, --checkpoint-every may change,
                                     and --tokenizer where the checkpoint has no tokenizer.json).
                                     The corpus is tokenized with --tokenizer, the folder's, or a
                                     byte-level BPE of N tokens trained on it first; its last
                                     --eval-fraction is held out. Writes DIR/checkpoint-N/ every
                                     --checkpoint-every updates, the final model in DIR (what
                                     loadModel and kiln generate read), DIR/loss.csv and
                                     DIR/loss.svg; --progress: progress lines on a non-terminal.
                                     --recompute: each layer's forward again in the backward
                                     (less memory); --fused-xent: the LM head's cross-entropy
                                     without [B·T, vocab] logits; --f16-activations: the forward's
                                     activations kept in f16 (math, weights, gradients f32; needs
                                     shader-f16); --aux-loss / --z-loss: MoE
                                     load-balancing and router z-loss coefficients (default 0);
                                     --bias-update-rate: GLM-4.5 / DeepSeek-V3 selection biases
                                     move ±G per update toward balance (default 0: fixed)`;

/**
 * Usage of one command, or of them all (`undefined`).
 *
 * @example
 * ```ts
 * import { usage } from "./usage.ts";
 * usage("bench").startsWith("usage: kiln bench"); // true
 * ```
 */
export function usage(
  command?:
    | "generate"
    | "inspect"
    | "bench"
    | "build"
    | "tune"
    | "quantize"
    | "imatrix"
    | "tokenizer"
    | "train",
): string {
  if (command) {
    const text = {
      generate: GENERATE_USAGE,
      inspect: INSPECT_USAGE,
      bench: BENCH_USAGE,
      build: BUILD_USAGE,
      tune: TUNE_USAGE,
      quantize: QUANTIZE_USAGE,
      imatrix: IMATRIX_USAGE,
      tokenizer: TOKENIZER_USAGE,
      train: TRAIN_USAGE,
    }[command];
    return `usage: kiln ${text.trimStart()}`;
  }
  return `usage: kiln <command> [options]

commands:
${GENERATE_USAGE}
${INSPECT_USAGE}
${BENCH_USAGE}
${BUILD_USAGE}
${TUNE_USAGE}
${QUANTIZE_USAGE}
${IMATRIX_USAGE}
${TOKENIZER_USAGE}
${TRAIN_USAGE}
  help [COMMAND]                     this text, or one command's (also: kiln COMMAND --help)

Least privilege: deno run --allow-read=DIR cli.ts generate --model DIR …`;
}
