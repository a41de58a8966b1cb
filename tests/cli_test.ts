/**
 * The `kiln` CLI as a user runs it: `deno run -A cli.ts …` in a subprocess, on a
 * tiny Hugging Face checkpoint, a config.json-only folder (the real Mixtral-8x7B
 * config) and a set of user mistakes, each of which must print one `kiln:` line
 * on stderr and exit 1 without a stack trace.
 */
import { MIXTRAL_8X7B_CONFIG } from "./fixtures/published_configs.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import { assertUserError, kiln } from "./fixtures/kiln_cli.ts";
import { writeTinyMixtral } from "./fixtures/tiny_checkpoints.ts";

// state-spaces/mamba-130m-hf's config.json (the fields Kiln reads).
const MAMBA_130M = {
  architectures: ["MambaForCausalLM"],
  model_type: "mamba",
  hidden_size: 768,
  intermediate_size: 1536,
  state_size: 16,
  num_hidden_layers: 24,
  vocab_size: 50280,
  conv_kernel: 4,
  expand: 2,
  time_step_rank: 48,
  layer_norm_epsilon: 1e-5,
  use_bias: false,
  use_conv_bias: true,
  tie_word_embeddings: true,
};

// allenai/OLMoE-1B-7B-0924 and Qwen/Qwen1.5-MoE-A2.7B, as published (the fields Kiln reads).
const OLMOE_1B_7B = {
  architectures: ["OlmoeForCausalLM"],
  model_type: "olmoe",
  hidden_size: 2048,
  intermediate_size: 1024,
  num_hidden_layers: 16,
  num_attention_heads: 16,
  num_key_value_heads: 16,
  num_experts: 64,
  num_experts_per_tok: 8,
  norm_topk_prob: false,
  clip_qkv: null,
  rope_theta: 10000.0,
  tie_word_embeddings: false,
  vocab_size: 50304,
};
const QWEN15_MOE_A27B = {
  architectures: ["Qwen2MoeForCausalLM"],
  model_type: "qwen2_moe",
  hidden_size: 2048,
  intermediate_size: 5632,
  moe_intermediate_size: 1408,
  shared_expert_intermediate_size: 5632,
  num_hidden_layers: 24,
  num_attention_heads: 16,
  num_key_value_heads: 16,
  num_experts: 60,
  num_experts_per_tok: 4,
  decoder_sparse_step: 1,
  norm_topk_prob: false,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  use_sliding_window: false,
  max_window_layers: 21,
  tie_word_embeddings: false,
  vocab_size: 151936,
};

Deno.test("kiln inspect: OLMoE-1B-7B and Qwen1.5-MoE-A2.7B give their published sizes", async () => {
  const root = await Deno.makeTempDir({ prefix: "kiln_cli_moe_" });
  try {
    const cases: [string, object, RegExp, RegExp][] = [
      ["olmoe", OLMOE_1B_7B, /parameters: 6\.92B total, 1\.28B active per token/, /QK-norm/],
      [
        "qwen",
        QWEN15_MOE_A27B,
        /parameters: 14\.32B total, 2\.69B active per token/,
        /shared expert width 5632 \(sigmoid-gated\)/,
      ],
    ];
    for (const [name, config, params, detail] of cases) {
      await Deno.mkdir(join(root, name));
      await Deno.writeTextFile(join(root, name, "config.json"), JSON.stringify(config));
      const r = await kiln("inspect", join(root, name));
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, params);
      assert.match(r.stdout, detail);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("kiln CLI", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "kiln_cli_" });
  const tiny = join(root, "tiny");
  const configOnly = join(root, "mixtral-8x7b");
  const mambaConfig = join(root, "mamba-130m");
  const broken = join(root, "broken");
  try {
    await writeTinyMixtral(tiny);
    await Deno.mkdir(configOnly);
    await Deno.writeTextFile(join(configOnly, "config.json"), JSON.stringify(MIXTRAL_8X7B_CONFIG));
    await Deno.mkdir(mambaConfig);
    await Deno.writeTextFile(join(mambaConfig, "config.json"), JSON.stringify(MAMBA_130M));
    await Deno.mkdir(broken);
    await Deno.writeTextFile(join(broken, "config.json"), '{"architectures": ["Mixtral');

    const generateStats = (maxTokens: string, ...extra: string[]) =>
      kiln(
        "generate",
        "--model",
        tiny,
        "--prompt",
        "hi",
        "--max-tokens",
        maxTokens,
        ...extra,
        "--stats",
        "--quiet",
      );
    // The three model-running checks share the adapter; run them one after another.
    await t.step("generate prints text and exits 0", async () => {
      const r = await kiln("generate", "--model", tiny, "--prompt", "hi", "--max-tokens", "5");
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.trim().length > 0, "some text on stdout");
      // In f16 where the adapter has shader-f16 (lavapipe does), else one clear line.
      const h = await kiln(
        "generate",
        ...["--model", tiny, "--prompt", "hi", "--max-tokens", "3", "--dtype", "f16"],
      );
      if (h.code === 0) assert.ok(h.stdout.trim().length > 0, "some text on stdout in f16");
      else assertUserError(h, /f16|shader-f16/);
    });

    await t.step("generate --stats reports prefill, decode and host round trips", async () => {
      const r = await generateStats("5");
      assert.equal(r.code, 0, r.stderr);
      // A short prompt in a fresh process: the prefill is not compiled, the decode step runs it.
      assert.match(r.stderr, /prompt \d+ tokens, through the decode step \d+ ms/);
      assert.match(r.stderr, /tok\/s/);
      assert.match(r.stderr, /(\d+) host round trips/);
    });

    await t.step("bench prints prefill and decode tokens/s", async () => {
      const r = await kiln("bench", tiny, "--prompt-tokens", "16", "--tokens", "8", "--quiet");
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /prefill: 16 tokens .* = [\d.]+ tok\/s/);
      assert.match(r.stdout, /decode: \d+ tokens .* = [\d.]+ tok\/s/);
    });

    await t.step("inspect a tiny checkpoint", async () => {
      const r = await kiln("inspect", tiny);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /architecture: MixtralForCausalLM/);
      assert.match(r.stdout, /layer pattern .*: Ae Ae/);
      assert.match(r.stdout, /parameters: [\d.]+K total, [\d.]+K active per token/);
      assert.match(r.stdout, /weights: .* at f32, .* at f16/);
      assert.match(r.stdout, /kernels: \d+ per decode step/);
      // Two identical layers: the decode step compiles fewer pipelines than it has kernels.
      const m = /pipelines: (\d+) distinct for (\d+) kernels \(decode step: (\d+) for (\d+);/
        .exec(r.stdout);
      assert.ok(m, r.stdout);
      assert.ok(Number(m[3]) < Number(m[4]), m[0]);
      assert.ok(Number(m[1]) < Number(m[2]), m[0]);
    });

    await t.step(
      "inspect Mixtral-8x7B from config.json alone: 46.7B total, 12.9B active",
      async () => {
        const r = await kiln("inspect", configOnly);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /architecture: MixtralForCausalLM/);
        assert.match(r.stdout, /layers: 32, hidden 4096, vocab 32000/);
        assert.match(r.stdout, /layer pattern .*: (Ae ){31}Ae/);
        assert.match(r.stdout, /32 heads, 8 kv heads, head dim 128/);
        assert.match(r.stdout, /8 experts, top-2/);
        const m = r.stdout.match(/parameters: ([\d.]+)B total, ([\d.]+)B active per token/);
        assert.ok(m, r.stdout);
        assert.equal(Number(m[1]).toFixed(1), "46.7");
        assert.equal(Number(m[2]).toFixed(1), "12.9");
        // 46.7e9 parameters: ~174 GiB at f32, ~87 GiB at f16.
        assert.match(r.stdout, /weights: 17\d\.\d+ GiB at f32, 8\d\.\d+ GiB at f16/);
        assert.match(r.stdout, /kernels: \d+ per decode step/);
      },
    );

    await t.step("inspect Mamba-130m from config.json: the scan algorithm and why", async () => {
      const r = await kiln("inspect", mambaConfig);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /mamba: state 16, inner 1536, conv 4, dt rank 48/);
      // On lavapipe: one pass when the 24 channel blocks of 64 (a walk of ≤ 512 steps: 8
      // channels a thread in 8-lane groups) keep the cores busy.
      const m = r.stdout.match(
        /selective scan, prefill of 512 tokens: \[(one pass|chunked)\] auto: (.*) \(llvmpipe/,
      );
      assert.ok(m, r.stdout);
      assert.match(m[2], m[1] === "one pass" ? /^24 channel blocks keep/ : /× 24 channel blocks/);
    });

    await t.step("expert placement: --devices, --host-memory, generate --stats", async () => {
      const split = await kiln("inspect", tiny, "--devices", "2");
      assert.equal(split.code, 0, split.stderr);
      assert.match(split.stdout, /expert parallelism over 2 devices \(balanced split\)/);
      assert.match(split.stdout, /layer 0: device 0 \[0, 1\], device 1 \[2, 3\]/);
      // Budget: non-expert bytes plus one layer of experts (E = 4, 24 KiB each at f32 here).
      const plan = await kiln("inspect", tiny, "--gpu-memory", "64GiB");
      const fixed = Number(plan.stdout.match(/non-expert ([\d.]+) MiB/)![1]) * 2 ** 20;
      const budget = String(Math.ceil(fixed) + 6 * 24576);
      const disk = await kiln("inspect", tiny, "--gpu-memory", budget, "--host-memory", "48KiB");
      assert.equal(disk.code, 0, disk.stderr);
      assert.match(disk.stdout, /host budget 48.00 KiB: 1 experts in host memory/);
      assert.match(disk.stdout, /disk \[\d/);
      assert.match(disk.stdout, /read from disk per token: [\d.]+ KiB/);
      const gen = await generateStats("4", "--devices", "2");
      assert.equal(gen.code, 0, gen.stderr);
      assert.match(gen.stderr, /expert parallelism: 2 devices, experts per layer \[2, 2\]/);
      assert.match(gen.stderr, /host round trips\/token/);
    });

    await t.step("user mistakes: one kiln: line, exit 1, no stack trace", async () => {
      const cases: [string[], RegExp][] = [
        // No --model: the default model (assets/default_model/) where it is shipped.
        [["generate"], /--prompt TEXT is required|--model DIR is required/],
        [["generate", "--model", join(root, "nope"), "--prompt", "hi"], /nope does not exist/],
        [
          ["generate", "--model", join(tiny, "config.json"), "--prompt", "hi"],
          /is not a folder/,
        ],
        [["generate", "--model", broken, "--prompt", "hi"], /config\.json: not valid JSON/],
        [["inspect", broken], /config\.json: not valid JSON/],
        [["frobnicate"], /unknown command "frobnicate"/],
        [
          ["generate", "--model", tiny, "--prompt", "hi", "--temperature", "warm"],
          /--temperature must be a number >= 0, got "warm"/,
        ],
        [
          ["generate", "--model", tiny, "--prompt", "hi", "--temperature=-1"],
          /--temperature must be a number >= 0, got -1/,
        ],
        // A negative number is the option's value (node:util's parseArgs calls it ambiguous).
        [
          ["generate", "--model", tiny, "--prompt", "hi", "--temperature", "-1"],
          /--temperature must be a number >= 0, got -1/,
        ],
        [
          ["generate", "--model", tiny, "--prompt", "hi", "--top-p", "2"],
          /--top-p must be in \(0, 1\], got 2/,
        ],
        [["generate", "--model", tiny, "--prompt", "hi", "--colour"], /Unknown option '--colour'/],
        [["bench", tiny, "--tokens", "many"], /--tokens must be an integer >= 2, got "many"/],
        [
          ["generate", "--model", tiny, "--prompt", "hi", "--devices", "0"],
          /--devices must be an integer in \[1, 64\], got 0/,
        ],
        [
          ["generate", "--model", tiny, "--prompt", "hi", "--prefetch", "psychic"],
          /--prefetch must be one of temporal, lookahead, both/,
        ],
        [["inspect", tiny, "--host-memory", "1MiB"], /--host-memory needs --gpu-memory/],
        [
          [
            "generate",
            "--model",
            tiny,
            "--prompt",
            "hi",
            "--gpu-memory",
            "1GiB",
            "--host-memory",
            "lots",
          ],
          /--host-memory must be a byte size above 0 like 2GiB/,
        ],
      ];
      // Independent processes that fail before touching the adapter: run them together.
      const results = await Promise.all(cases.map(([args]) => kiln(...args)));
      results.forEach((r, i) => assertUserError(r, cases[i][1]));
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
