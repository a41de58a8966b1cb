/**
 * Loading and running a Hugging Face causal LM folder: config.json, safetensors
 * (single or sharded) and, optionally, tokenizer.json.
 *
 * Files:
 * - `load.ts`: {@linkcode loadModel} and its options (devices, budgets, dtype);
 * - `model.ts`: the loaded {@linkcode Model} — `forward`, `step`, `generate`;
 * - `decode_loop.ts`: the decode loops behind `generateIds`, the expert-cached
 *   one included;
 * - `weights.ts`: checkpoint tensors into graph parameters ({@linkcode loadWeights});
 * - `expert_budget.ts`: expert placement for a memory budget or several
 *   devices, from config.json alone ({@linkcode planModelExperts}).
 *
 * ```ts ignore
 * const model = await loadModel("./Mixtral-8x7B-v0.1");
 * const logits = await model.forward([1, 22557, 1526]); // Float32Array [T, vocab]
 * for await (const text of model.generate("The lecture says", { maxTokens: 32 })) {
 *   Deno.stdout.writeSync(new TextEncoder().encode(text));
 * }
 * ```
 *
 * @module
 */

export { loadModel, type LoadOptions } from "./load.ts";
export { Model } from "./model.ts";
export type { GenerateOptions, GenerateStats } from "./generate_options.ts";
export { loadWeights, type LoadWeightsOptions, weightFormatsFor } from "./weights.ts";
export {
  chatSpecialTokens,
  isGgufPath,
  modelChatTemplate,
  modelTokenizer,
  openWeights,
  readModelConfig,
  readWeightBytes,
  type WeightInfo,
  type WeightSource,
} from "./source.ts";
export { planModelDevices, planModelExperts } from "./expert_budget.ts";
