/**
 * Mamba-2 beside Mamba at the same width (hidden 768, inner 1536, 6 layers,
 * vocab 1024; random weights written as Hugging Face checkpoints and loaded
 * with `loadModel`): Mamba (state 16), Mamba-2 with Mamba's state size (24
 * heads of 64, one group, state 16) and Mamba-2 as its checkpoints are shaped
 * (state 128). Prefill of a 300-token prompt and decode tok/s, the models
 * taking turns, median of the rounds.
 *
 * With `--hybrids`, the hybrids at that width instead: Jamba (Mamba-1, attention
 * at layers 2 and 5, 8 experts top-2 every other layer), Granite 4.0 (Mamba-2
 * with state 128, attention at 2 and 5, 8 experts top-2 of width 512 and a
 * shared MLP of 1024 in every layer) and Bamba (Mamba-2 with state 128,
 * attention at 2 and 5 with a partial RoPE, a SwiGLU MLP of 2048), and the same
 * attention and MLP beside Gated DeltaNet (Qwen3-Next's layers, Bamba's state
 * size) and beside LFM2's short convolution.
 *
 * ```sh
 * deno run -A bench/mamba2_bench.ts [--rounds 3] [--hybrids]
 * ```
 *
 * @module
 */

import { loadModel } from "../app/model/mod.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { requestDevice } from "../runtime/device.ts";

const roundsArg = Deno.args.indexOf("--rounds");
const rounds = roundsArg >= 0 ? Number(Deno.args[roundsArg + 1]) : 3;
const common = { vocab_size: 1024, hidden_size: 768, num_hidden_layers: 6 };
const mamba2 = { architectures: ["Mamba2ForCausalLM"], num_heads: 24, head_dim: 64, n_groups: 1 };
const attention = { num_attention_heads: 12, num_key_value_heads: 4 };
const mixer2 = { mamba_n_heads: 24, mamba_d_state: 128 };
const types = ["mamba", "mamba", "attention", "mamba", "mamba", "attention"];
const hybrids: [string, Record<string, unknown>][] = [
  ["Jamba (Mamba-1 state 16, MoE 8×2)", {
    architectures: ["JambaForCausalLM"],
    ...attention,
    attn_layer_period: 3,
    attn_layer_offset: 2,
    num_experts: 8,
    intermediate_size: 1024,
    mamba_d_state: 16,
  }],
  ["Granite 4.0 (Mamba-2 state 128, MoE 8×2 + shared)", {
    architectures: ["GraniteMoeHybridForCausalLM"],
    ...attention,
    ...mixer2,
    layer_types: types,
    num_local_experts: 8,
    intermediate_size: 512,
    shared_intermediate_size: 1024,
    embedding_multiplier: 12,
    residual_multiplier: 0.22,
    attention_multiplier: 0.0156,
    logits_scaling: 6,
  }],
  ["Bamba (Mamba-2 state 128, partial RoPE)", {
    architectures: ["BambaForCausalLM"],
    ...attention,
    ...mixer2,
    attn_layer_indices: [2, 5],
    intermediate_size: 2048,
  }], // The same attention layers and MLP beside other recurrent mixers: Gated DeltaNet with
  // Bamba's state size (12 value heads of 128 × 128 = 24 heads of 64 × 128) and LFM2's
  // short convolution.
  ["Qwen3-Next layers (Gated DeltaNet state 128 × 128, dense MLP)", {
    architectures: ["Qwen3NextForCausalLM"],
    ...attention,
    head_dim: 64,
    layer_types: types.map((t) => (t === "mamba" ? "linear_attention" : "full_attention")),
    linear_num_key_heads: 6,
    linear_num_value_heads: 12,
    linear_key_head_dim: 128,
    linear_value_head_dim: 128,
    num_experts: 0,
    intermediate_size: 2048,
  }],
  ["LFM2 (short conv, 3 taps)", {
    architectures: ["Lfm2ForCausalLM"],
    ...attention,
    layer_types: types.map((t) => (t === "mamba" ? "conv" : "full_attention")),
    intermediate_size: 3072,
    block_multiple_of: 256,
  }],
];
const configs: [string, Record<string, unknown>][] = Deno.args.includes("--hybrids") ? hybrids : [
  ["Mamba (state 16)", { architectures: ["MambaForCausalLM"], state_size: 16 }],
  ["Mamba-2 (state 16)", { ...mamba2, state_size: 16 }],
  ["Mamba-2 (state 128)", { ...mamba2, state_size: 128 }],
];

const device = await requestDevice();
const root = await Deno.makeTempDir({ prefix: "kiln_mamba2_bench_" });
try {
  const models = [];
  for (const [i, [name, cfg]] of configs.entries()) {
    const dir = `${root}/m${i}`;
    await writeRandomCheckpoint(dir, { ...common, ...cfg }, { seed: 3 });
    const t0 = performance.now();
    const model = await loadModel(dir, { device, quiet: true, maxSeq: 512 });
    models.push({
      name,
      model,
      load: performance.now() - t0,
      prefill: [] as number[],
      decode: [] as number[],
    });
  }
  const prompt = Array.from({ length: 300 }, (_, i) => (i * 37) % 1000);
  // A first pass compiles each prompt's pipelines; rounds after it are measured.
  for (let r = 0; r <= rounds; r++) {
    for (const m of models) {
      for await (const _ of m.model.generateIds(prompt, { maxTokens: 49, readEvery: 16 })) {
        // drain
      }
      const s = m.model.lastStats!;
      if (r === 0) continue;
      m.prefill.push(s.prefillMs);
      m.decode.push((s.generatedTokens - 1) / s.decodeMs * 1000);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`adapter: ${device.adapterName}; ${rounds} rounds, median\n`);
  console.log(
    "| model | load ms (with the decode step's compile) | prefill 300 tokens, ms | decode tok/s |",
  );
  console.log("| --- | --- | --- | --- |");
  for (const m of models) {
    console.log(
      `| ${m.name} | ${m.load.toFixed(0)} | ${median(m.prefill).toFixed(0)} | ${
        median(m.decode).toFixed(1)
      } |`,
    );
    m.model.dispose();
  }
} finally {
  await Deno.remove(root, { recursive: true });
}
