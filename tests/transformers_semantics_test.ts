/**
 * Where Kiln's reading of config.json had drifted from
 * Hugging Face transformers (4.57 and 5.18, the releases read for this): each
 * test names the transformers definition its expected value comes from.
 */

import assert from "node:assert/strict";
import { parseConfig } from "../models/architectures/mod.ts";
import { checkRopeLength, readRopeSettings, ropeFrequencies } from "../models/rope_scaling.ts";
import { readConfig } from "../app/config_file.ts";

import { JAMBA, type Json, MAMBA, MIXTRAL, OLMOE, QWEN } from "./fixtures/small_configs.ts";
const FILE = "config.json";

function refuses(json: Json, kind: ErrorConstructor, re: RegExp): void {
  assert.throws(() => parseConfig(json, FILE), (e: unknown) => {
    assert.ok(e instanceof kind, `${e} is not a ${kind.name}`);
    assert.match((e as Error).message, new RegExp(`^${FILE}: `));
    assert.match((e as Error).message, re);
    return true;
  });
}

const windows = (json: Json) => parseConfig(json, FILE).pattern.map((p) => p.window);

Deno.test("Qwen2-MoE sliding layers without layer_types: as transformers 5 derives them on load", () => {
  const slide = { ...QWEN, use_sliding_window: true, sliding_window: 32, max_window_layers: 3 };
  // transformers 5, Qwen2MoeConfig.__post_init__: layer i slides iff
  // (i + 1) % 2 and i < max_window_layers and use_sliding_window.
  assert.deepEqual(windows(slide), [32, 0, 32, 0]);
  assert.deepEqual(windows({ ...slide, transformers_version: "5.18.0" }), [32, 0, 32, 0]);
  // A config written by 4.57 (whose eager/SDPA mask slid every layer) is still read
  // as transformers 5 loads it: the reference Kiln is checked against.
  assert.deepEqual(windows({ ...slide, transformers_version: "4.57.6" }), [32, 0, 32, 0]);
  // Qwen2MoeConfig: sliding_window defaults to 4096; an explicit null builds no window.
  const { sliding_window: _, ...noWindow } = slide;
  assert.deepEqual(windows(noWindow), [4096, 0, 4096, 0]);
  assert.deepEqual(windows({ ...slide, sliding_window: null }), [0, 0, 0, 0]);
  // Without use_sliding_window nothing slides (sliding_window = 0 / None).
  assert.deepEqual(windows({ ...QWEN, sliding_window: 32 }), [0, 0, 0, 0]);
});

Deno.test('layer_types: "attention" is read as "full_attention" (remap_legacy_layer_types)', () => {
  const types = ["attention", "sliding_attention", "full_attention", "attention"];
  const json = { ...QWEN, use_sliding_window: true, sliding_window: 8, layer_types: types };
  assert.deepEqual(windows(json), [0, 8, 0, 0]);
});

Deno.test("Qwen2-MoE: Qwen2MoeConfig's defaults for expert widths; mlp_only_layers past the end", () => {
  const { moe_intermediate_size: _m, shared_expert_intermediate_size: _s, ...bare } = QWEN;
  const cfg = parseConfig(bare, FILE);
  // Qwen2MoeConfig: moe_intermediate_size 1408, shared_expert_intermediate_size 5632.
  assert.equal(cfg.moe!.ff, 1408);
  assert.deepEqual(cfg.moe!.sharedExpert, { ff: 5632, gated: true });
  // Qwen2MoeDecoderLayer only asks `layer_idx not in config.mlp_only_layers`.
  const past = parseConfig({ ...QWEN, mlp_only_layers: [1, 7] }, FILE);
  assert.deepEqual(past.pattern.map((p) => p.ffn), ["moe", "mlp", "moe", "moe"]);
});

Deno.test("Jamba: an offset at or past its period is refused (JambaConfig.validate_architecture)", () => {
  refuses(
    { ...JAMBA, attn_layer_period: 2, attn_layer_offset: 2 },
    RangeError,
    /attn_layer_offset 2 must be smaller than attn_layer_period 2/,
  );
  refuses(
    { ...JAMBA, expert_layer_period: 2, expert_layer_offset: 3 },
    RangeError,
    /expert_layer_offset 3 must be smaller than expert_layer_period 2/,
  );
});

Deno.test("OLMoE: clip_qkv 0 is refused, not read as no clipping (OlmoeAttention clamps when not None)", () => {
  refuses({ ...OLMOE, clip_qkv: 0 }, RangeError, /clip_qkv must be > 0, got 0/);
  assert.equal(parseConfig({ ...OLMOE, clip_qkv: null }, FILE).attention!.clipQkv, 0);
});

Deno.test("yarn: factor is taken as given; original_max_position_embeddings only places the ramp", () => {
  // _compute_yarn_parameters (4.57 and 5.18): factor = rope_parameters["factor"].
  const s = readRopeSettings(
    {
      max_position_embeddings: 4096,
      rope_scaling: { type: "yarn", factor: 4, original_max_position_embeddings: 2048 },
    },
    FILE,
    1e4,
  );
  assert.deepEqual([s.factor, s.originalMaxPositions], [4, 2048]);
  // transformers 5 writes original_max_position_embeddings = max_position_embeddings
  // (standardize_rope_params) beside any factor: still that factor.
  const v5 = readRopeSettings(
    {
      max_position_embeddings: 512,
      rope_parameters: {
        rope_type: "yarn",
        rope_theta: 1e4,
        factor: 4,
        original_max_position_embeddings: 512,
      },
    },
    FILE,
    1e6,
  );
  assert.deepEqual([v5.factor, v5.originalMaxPositions, v5.theta], [4, 512, 1e4]);
  // Without one, standardize_rope_params defaults it to max_position_embeddings.
  const bare = readRopeSettings(
    { max_position_embeddings: 1024, rope_scaling: { rope_type: "yarn", factor: 2 } },
    FILE,
    1e4,
  );
  assert.equal(bare.originalMaxPositions, 1024);
  // A top-level original_max_position_embeddings wins (standardize_rope_params).
  const top = readRopeSettings(
    {
      max_position_embeddings: 1024,
      original_max_position_embeddings: 256,
      rope_scaling: { rope_type: "yarn", factor: 2, original_max_position_embeddings: 512 },
    },
    FILE,
    1e4,
  );
  assert.equal(top.originalMaxPositions, 256);
});

Deno.test("llama3: original_max_position_embeddings defaults to max_position_embeddings", () => {
  const s = readRopeSettings(
    {
      max_position_embeddings: 8192,
      rope_parameters: {
        rope_type: "llama3",
        rope_theta: 5e5,
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
      },
    },
    FILE,
    1e4,
  );
  assert.equal(s.originalMaxPositions, 8192);
});

Deno.test("rope_scaling wins over rope_parameters (transformers 4 reads only it; 5: `rope_scaling or rope_parameters`)", () => {
  const s = readRopeSettings(
    {
      rope_theta: 1e4,
      rope_scaling: { type: "linear", factor: 2 },
      rope_parameters: { rope_type: "default" },
    },
    FILE,
    1e6,
  );
  assert.deepEqual([s.type, s.factor, s.theta], ["linear", 2, 1e4]);
  // An empty rope_scaling is falsy there: rope_parameters is read.
  const e = readRopeSettings(
    { rope_scaling: {}, rope_parameters: { rope_type: "linear", factor: 3, rope_theta: 1e4 } },
    FILE,
    1e6,
  );
  assert.deepEqual([e.type, e.factor], ["linear", 3]);
});

Deno.test("token ids a config leaves out take the class's defaults; null means none", () => {
  // The `bos_token_id` / `eos_token_id` defaults of MixtralConfig (1, 2),
  // MambaConfig (0, 0), JambaConfig (1, 2), OlmoeConfig (none, 50279) and
  // Qwen2MoeConfig (none, none) in transformers 5.18's configuration_*.py.
  const ids = (json: Json) => {
    const c = parseConfig(json, FILE);
    return [c.bosTokenId, c.eosTokenIds];
  };
  assert.deepEqual(ids(MIXTRAL), [1, [2]]);
  assert.deepEqual(ids(MAMBA), [0, [0]]);
  assert.deepEqual(ids(JAMBA), [1, [2]]);
  assert.deepEqual(ids(OLMOE), [undefined, [50279]]);
  assert.deepEqual(ids(QWEN), [undefined, []]);
  assert.deepEqual(ids({ ...MIXTRAL, bos_token_id: null, eos_token_id: null }), [undefined, []]);
  assert.deepEqual(ids({ ...MIXTRAL, eos_token_id: [2, 7] }), [1, [2, 7]]);
});

Deno.test("generation_config.json's eos_token_id is the model's end set, as generate takes it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_genconfig_" });
  try {
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...QWEN, eos_token_id: 5 }));
    assert.deepEqual((await readConfig(dir)).eosTokenIds, [5]);
    // A chat model lists its turn end there only (Qwen1.5-MoE-A2.7B-Chat: [151645, 151643]).
    const gen = `${dir}/generation_config.json`;
    await Deno.writeTextFile(gen, JSON.stringify({ eos_token_id: [7, 5], do_sample: true }));
    assert.deepEqual((await readConfig(dir)).eosTokenIds, [7, 5]);
    await Deno.writeTextFile(gen, JSON.stringify({ bos_token_id: 1 }));
    assert.deepEqual((await readConfig(dir)).eosTokenIds, [5]);
    await Deno.writeTextFile(gen, JSON.stringify({ eos_token_id: "x" }));
    await assert.rejects(
      readConfig(dir),
      new RegExp(`^TypeError: ${dir}/generation_config\\.json: field "eos_token_id" must be`),
    );
    await Deno.writeTextFile(gen, "{");
    await assert.rejects(readConfig(dir), /generation_config\.json: not valid JSON/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dynamic RoPE: the default table, for contexts up to max_position_embeddings only", () => {
  const rope = readRopeSettings(
    { max_position_embeddings: 128, rope_scaling: { rope_type: "dynamic", factor: 4 } },
    FILE,
    1e4,
  );
  assert.equal(rope.type, "dynamic");
  assert.deepEqual(
    ropeFrequencies(8, rope).invFreq,
    ropeFrequencies(8, { ...rope, type: "default" }).invFreq,
  );
  checkRopeLength(rope, 128, "maxSeq"); // up to the limit: fine
  assert.throws(
    () => checkRopeLength(rope, 129, "buildTrainingLM: seq"),
    /^RangeError: buildTrainingLM: seq 129 is past max_position_embeddings 128 of a "dynamic" RoPE/,
  );
  checkRopeLength({ ...rope, type: "linear" }, 1e6, "maxSeq"); // fixed tables: any length
});

Deno.test("longrope: short factors up to original_max_position_embeddings; past it only if long equals short", () => {
  const config = {
    max_position_embeddings: 256,
    rope_parameters: {
      rope_type: "longrope",
      rope_theta: 1e4,
      short_factor: [1, 2],
      long_factor: [3, 4],
      original_max_position_embeddings: 64,
    },
  };
  const rope = readRopeSettings(config, FILE, 1e6);
  assert.equal(rope.factor, 4); // no factor: max / original, as transformers derives it
  const { invFreq, attentionFactor } = ropeFrequencies(4, rope);
  // 1 / (short · 10000^(2i/4)), and √(1 + ln 4 / ln 64).
  assert.deepEqual([...invFreq], [1, Math.fround(1 / (2 * 100))]);
  assert.ok(Math.abs(attentionFactor - Math.sqrt(1 + Math.log(4) / Math.log(64))) < 1e-12);
  checkRopeLength(rope, 64, "maxSeq");
  assert.throws(
    () => checkRopeLength(rope, 65, "maxSeq"),
    /^RangeError: maxSeq 65 is past original_max_position_embeddings 64 of a "longrope" RoPE/,
  );
  // Equal short and long factors: transformers' switch changes nothing.
  checkRopeLength({ ...rope, longFactor: rope.shortFactor }, 4096, "maxSeq");
  // One factor broadcasts; any other count than headDim / 2 is refused.
  assert.equal(ropeFrequencies(4, { ...rope, shortFactor: [2] }).invFreq[0], 0.5);
  assert.throws(
    () => ropeFrequencies(6, rope),
    /^RangeError: ropeFrequencies: longrope short_factor has 2 values, expected 3/,
  );
});
