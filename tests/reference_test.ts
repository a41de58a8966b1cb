/**
 * Tests of the tiny Hugging Face checkpoint writer and of the float64 reference
 * forward: layout (names, shapes, config fields, tokenizer, shards), and the
 * reference against a second implementation written in a different form (matrix
 * form attention with full masked score matrices, dense-gated MoE, Toeplitz
 * convolution and closed-form scan), plus causality, sliding window, sharded and
 * half-precision storage.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { Checkpoint } from "../app/safetensors/mod.ts";
import {
  type TinyCheckpoint,
  type TinyCheckpointOptions,
  writeTinyJamba,
  writeTinyMamba,
  writeTinyMixtral,
} from "./fixtures/tiny_checkpoints.ts";
import {
  type HfConfig,
  layerKinds,
  loadReference,
  referenceLogits,
  rmsNorm,
  route,
  selectiveScan,
  sparseMoe,
} from "./reference/hf_reference.ts";

type Writer = (dir: string, options?: TinyCheckpointOptions) => Promise<TinyCheckpoint>;

const WRITERS: [string, Writer][] = [
  ["Mixtral", writeTinyMixtral],
  ["Mamba", writeTinyMamba],
  ["Jamba", writeTinyJamba],
];

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "kiln_ref_" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function row(logits: Float64Array, t: number, vocab: number): Float64Array {
  return logits.subarray(t * vocab, (t + 1) * vocab);
}

/** Deterministic token ids in [lo, vocab). */
function tokens(n: number, vocab: number, seed = 1, lo = 3): number[] {
  return Array.from({ length: n }, (_, i) => lo + ((i * 7919 + seed * 104729) % (vocab - lo)));
}

// ---------------------------------------------------------------------------
// A second implementation, in matrix form, for cross-checking the reference

type Mat = number[][];

const dot = (a: readonly number[], b: readonly number[]): number =>
  a.reduce((s, v, i) => s + v * b[i], 0);
/** x · Wᵀ for W stored [out, in]. */
const mulT = (x: Mat, w: Mat): Mat => x.map((r) => w.map((wr) => dot(r, wr)));
const addMat = (a: Mat, b: Mat): Mat => a.map((r, i) => r.map((v, j) => v + b[i][j]));
const sig = (v: number): number => 1 / (1 + Math.exp(-v));
const normRows = (x: Mat, w: readonly number[], eps: number): Mat =>
  x.map((r) => {
    const rms = Math.sqrt(r.reduce((s, v) => s + v * v, 0) / r.length + eps);
    return r.map((v, i) => (v / rms) * w[i]);
  });
const softmaxRow = (r: readonly number[]): number[] => {
  const m = Math.max(...r);
  const lse = m + Math.log(r.reduce((s, v) => s + Math.exp(v - m), 0));
  return r.map((v) => Math.exp(v - lse));
};

class Tensors {
  constructor(readonly map: Map<string, { shape: readonly number[]; data: Float32Array }>) {}
  static async read(dir: string): Promise<Tensors> {
    using ckpt = await Checkpoint.open(dir);
    const map = new Map<string, { shape: readonly number[]; data: Float32Array }>();
    for (const [name, info] of ckpt.tensors) {
      map.set(name, { shape: info.shape, data: await ckpt.readF32(name) });
    }
    return new Tensors(map);
  }
  has(name: string): boolean {
    return this.map.has(name);
  }
  vec(name: string): number[] {
    const t = this.map.get(name);
    assert.ok(t, `missing ${name}`);
    return Array.from(t.data);
  }
  mat(name: string): Mat {
    const t = this.map.get(name);
    assert.ok(t, `missing ${name}`);
    const rows = t.shape[0];
    const cols = t.data.length / rows;
    return Array.from(
      { length: rows },
      (_, r) => Array.from(t.data.subarray(r * cols, (r + 1) * cols)),
    );
  }
}

function altAttention(x: Mat, t: Tensors, p: string, c: HfConfig, rope: boolean): Mat {
  const heads = c.num_attention_heads as number;
  const kv = c.num_key_value_heads as number;
  const hd = (c.hidden_size as number) / heads;
  const T = x.length;
  const split = (m: Mat, n: number): Mat[] =>
    Array.from({ length: n }, (_, h) => m.map((r) => r.slice(h * hd, (h + 1) * hd)));
  // Positions as complex rotations: (a + ib)·e^{iθ} on the pair (v[i], v[i + hd/2]).
  const rotate = (m: Mat): Mat =>
    m.map((r, pos) => {
      const out = r.slice();
      for (let i = 0; i < hd / 2; i++) {
        const ang = pos * Math.pow(c.rope_theta as number, -(2 * i) / hd);
        const [re, im] = [r[i], r[i + hd / 2]];
        out[i] = re * Math.cos(ang) - im * Math.sin(ang);
        out[i + hd / 2] = re * Math.sin(ang) + im * Math.cos(ang);
      }
      return out;
    });
  let qs = split(mulT(x, t.mat(`${p}.q_proj.weight`)), heads);
  let ks = split(mulT(x, t.mat(`${p}.k_proj.weight`)), kv);
  const vs = split(mulT(x, t.mat(`${p}.v_proj.weight`)), kv);
  if (rope) {
    qs = qs.map(rotate);
    ks = ks.map(rotate);
  }
  // repeat_kv: KV head list expanded to one per query head.
  const kvOf = Array.from({ length: kv }, (_, g) => Array(heads / kv).fill(g)).flat() as number[];
  const window = c.sliding_window as number | null;
  const outs = qs.map((q, h) => {
    const k = ks[kvOf[h]];
    const v = vs[kvOf[h]];
    const scores = q.map((qi, i) =>
      k.map((
        kj,
        j,
      ) => (j > i || (window != null && i - j >= window) ? -Infinity : dot(qi, kj) / Math.sqrt(hd)))
    );
    const probs = scores.map(softmaxRow);
    return probs.map((pr) =>
      Array.from({ length: hd }, (_, d) => pr.reduce((s, pj, j) => s + pj * v[j][d], 0))
    );
  });
  const concat = Array.from({ length: T }, (_, i) => outs.flatMap((o) => o[i]));
  return mulT(concat, t.mat(`${p}.o_proj.weight`));
}

function altSwiglu(x: Mat, gate: Mat, up: Mat, down: Mat): Mat {
  const g = mulT(x, gate);
  const u = mulT(x, up);
  return mulT(g.map((r, i) => r.map((v, j) => v * sig(v) * u[i][j])), down);
}

/** Every expert runs on every token; the gate vector zeroes the unchosen ones. */
function altMoe(x: Mat, router: Mat, experts: [Mat, Mat, Mat][], k: number, renorm: boolean): Mat {
  const all = experts.map(([g, u, d]) => altSwiglu(x, g, u, d));
  return x.map((xt, ti) => {
    const p = softmaxRow(router.map((r) => dot(r, xt)));
    const kth = p.slice().sort((a, b) => b - a)[k - 1];
    let g = p.map((v) => (v >= kth ? v : 0));
    if (renorm) {
      const s = g.reduce((a, b) => a + b, 0);
      g = g.map((v) => v / s);
    }
    return xt.map((_, i) => g.reduce((s, ge, e) => s + ge * all[e][ti][i], 0));
  });
}

/** Mamba mixer with the conv as a Toeplitz matrix and the scan in closed form. */
function altMamba(
  x: Mat,
  t: Tensors,
  p: string,
  dims: { I: number; N: number; K: number; R: number },
  innerNormEps?: number,
): Mat {
  const { I, N, K, R } = dims;
  const T = x.length;
  const bias = (name: string): number[] | undefined => (t.has(name) ? t.vec(name) : undefined);
  const inB = bias(`${p}.in_proj.bias`);
  const proj = mulT(x, t.mat(`${p}.in_proj.weight`)).map((r) =>
    r.map((v, i) => v + (inB ? inB[i] : 0))
  );
  const xin = proj.map((r) => r.slice(0, I));
  const z = proj.map((r) => r.slice(I));
  const w = t.vec(`${p}.conv1d.weight`); // [I, 1, K]
  const cb = bias(`${p}.conv1d.bias`);
  const u: Mat = Array.from({ length: T }, () => Array(I).fill(0));
  for (let c = 0; c < I; c++) {
    // toeplitz[t][s] = kernel tap for lag t − s (tap K−1 is lag 0).
    const toeplitz = Array.from(
      { length: T },
      (_, ti) =>
        Array.from(
          { length: T },
          (_, s) => (ti - s >= 0 && ti - s < K ? w[c * K + K - 1 - (ti - s)] : 0),
        ),
    );
    for (let ti = 0; ti < T; ti++) {
      const v = (cb ? cb[c] : 0) + toeplitz[ti].reduce((acc, m, s) => acc + m * xin[s][c], 0);
      u[ti][c] = v * sig(v);
    }
  }
  const params = mulT(u, t.mat(`${p}.x_proj.weight`));
  let dt = params.map((r) => r.slice(0, R));
  let B = params.map((r) => r.slice(R, R + N));
  let C = params.map((r) => r.slice(R + N));
  if (innerNormEps !== undefined) {
    dt = normRows(dt, t.vec(`${p}.dt_layernorm.weight`), innerNormEps);
    B = normRows(B, t.vec(`${p}.b_layernorm.weight`), innerNormEps);
    C = normRows(C, t.vec(`${p}.c_layernorm.weight`), innerNormEps);
  }
  const dtb = t.vec(`${p}.dt_proj.bias`);
  const delta = mulT(dt, t.mat(`${p}.dt_proj.weight`)).map((r) =>
    r.map((v, c) => Math.log1p(Math.exp(v + dtb[c])))
  );
  const A = t.mat(`${p}.A_log`).map((r) => r.map((v) => -Math.exp(v)));
  const D = t.vec(`${p}.D`);
  // cum[t][c] = Σ_{r ≤ t} Δ; the decay from s to t is exp(A · (cum[t] − cum[s])).
  const cum: Mat = [];
  delta.forEach((r, ti) => cum.push(r.map((v, c) => v + (ti ? cum[ti - 1][c] : 0))));
  const y: Mat = Array.from({ length: T }, (_, ti) =>
    Array.from({ length: I }, (_, c) => {
      let acc = D[c] * u[ti][c];
      for (let s = 0; s <= ti; s++) {
        for (let n = 0; n < N; n++) {
          acc += C[ti][n] * Math.exp(A[c][n] * (cum[ti][c] - cum[s][c])) * delta[s][c] * B[s][n] *
            u[s][c];
        }
      }
      return acc * z[ti][c] * sig(z[ti][c]);
    }));
  const outB = bias(`${p}.out_proj.bias`);
  return mulT(y, t.mat(`${p}.out_proj.weight`)).map((r) =>
    r.map((v, i) => v + (outB ? outB[i] : 0))
  );
}

/** The whole model in matrix form; returns logits as a flat array. */
async function altLogits(dir: string, ids: number[]): Promise<Float64Array> {
  const c = JSON.parse(await Deno.readTextFile(join(dir, "config.json"))) as HfConfig;
  const t = await Tensors.read(dir);
  const arch = (c.architectures as string[])[0];
  const H = c.hidden_size as number;
  let x: Mat;
  let logits: Mat;
  if (arch === "MambaForCausalLM") {
    const emb = t.mat("backbone.embeddings.weight");
    const eps = c.layer_norm_epsilon as number;
    const dims = {
      I: c.intermediate_size as number,
      N: c.state_size as number,
      K: c.conv_kernel as number,
      R: c.time_step_rank as number,
    };
    x = ids.map((id) => emb[id].slice());
    for (let l = 0; l < (c.num_hidden_layers as number); l++) {
      const p = `backbone.layers.${l}`;
      x = addMat(x, altMamba(normRows(x, t.vec(`${p}.norm.weight`), eps), t, `${p}.mixer`, dims));
    }
    logits = mulT(normRows(x, t.vec("backbone.norm_f.weight"), eps), emb);
  } else {
    const jamba = arch === "JambaForCausalLM";
    const eps = c.rms_norm_eps as number;
    const emb = t.mat("model.embed_tokens.weight");
    x = ids.map((id) => emb[id].slice());
    for (let l = 0; l < (c.num_hidden_layers as number); l++) {
      const p = `model.layers.${l}`;
      const n1 = normRows(x, t.vec(`${p}.input_layernorm.weight`), eps);
      const mixed = t.has(`${p}.self_attn.q_proj.weight`)
        ? altAttention(n1, t, `${p}.self_attn`, c, !jamba)
        : altMamba(n1, t, `${p}.mamba`, {
          I: (c.mamba_expand as number) * H,
          N: c.mamba_d_state as number,
          K: c.mamba_d_conv as number,
          R: c.mamba_dt_rank as number,
        }, eps);
      x = addMat(x, mixed);
      const n2 = normRows(
        x,
        t.vec(`${p}.${jamba ? "pre_ff_layernorm" : "post_attention_layernorm"}.weight`),
        eps,
      );
      const moe = jamba ? `${p}.feed_forward` : `${p}.block_sparse_moe`;
      const routerName = jamba ? `${moe}.router.weight` : `${moe}.gate.weight`;
      let ff: Mat;
      if (t.has(routerName)) {
        const E = (jamba ? c.num_experts : c.num_local_experts) as number;
        const names = jamba ? ["gate_proj", "up_proj", "down_proj"] : ["w1", "w3", "w2"];
        const experts = Array.from(
          { length: E },
          (_, e) => names.map((n) => t.mat(`${moe}.experts.${e}.${n}.weight`)) as [Mat, Mat, Mat],
        );
        ff = altMoe(n2, t.mat(routerName), experts, c.num_experts_per_tok as number, !jamba);
      } else {
        ff = altSwiglu(
          n2,
          t.mat(`${p}.feed_forward.gate_proj.weight`),
          t.mat(`${p}.feed_forward.up_proj.weight`),
          t.mat(`${p}.feed_forward.down_proj.weight`),
        );
      }
      x = addMat(x, ff);
    }
    const norm = t.vec(jamba ? "model.final_layernorm.weight" : "model.norm.weight");
    logits = mulT(normRows(x, norm, eps), c.tie_word_embeddings ? emb : t.mat("lm_head.weight"));
  }
  return Float64Array.from(logits.flat());
}

// ---------------------------------------------------------------------------
// Fixture layout

Deno.test("tiny Mixtral: config fields, tensor names and shapes are Hugging Face's", async () => {
  await withDir(async (dir) => {
    const ck = await writeTinyMixtral(dir, {
      config: { num_hidden_layers: 1, num_local_experts: 2, num_experts_per_tok: 1 },
    });
    const cfg = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    assert.deepEqual(cfg.architectures, ["MixtralForCausalLM"]);
    assert.equal(cfg.model_type, "mixtral");
    for (
      const key of [
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "rms_norm_eps",
        "rope_theta",
        "sliding_window",
        "num_local_experts",
        "num_experts_per_tok",
        "tie_word_embeddings",
        "router_aux_loss_coef",
      ]
    ) assert.ok(key in cfg, `config.json lacks ${key}`);
    const V = cfg.vocab_size, d = 32, ff = 64;
    const expected: Record<string, number[]> = {
      "model.embed_tokens.weight": [V, d],
      "model.layers.0.input_layernorm.weight": [d],
      "model.layers.0.post_attention_layernorm.weight": [d],
      "model.layers.0.self_attn.q_proj.weight": [32, d],
      "model.layers.0.self_attn.k_proj.weight": [16, d],
      "model.layers.0.self_attn.v_proj.weight": [16, d],
      "model.layers.0.self_attn.o_proj.weight": [d, 32],
      "model.layers.0.block_sparse_moe.gate.weight": [2, d],
      "model.layers.0.block_sparse_moe.experts.0.w1.weight": [ff, d],
      "model.layers.0.block_sparse_moe.experts.0.w2.weight": [d, ff],
      "model.layers.0.block_sparse_moe.experts.0.w3.weight": [ff, d],
      "model.layers.0.block_sparse_moe.experts.1.w1.weight": [ff, d],
      "model.layers.0.block_sparse_moe.experts.1.w2.weight": [d, ff],
      "model.layers.0.block_sparse_moe.experts.1.w3.weight": [ff, d],
      "model.norm.weight": [d],
      "lm_head.weight": [V, d],
    };
    using ckpt = await Checkpoint.open(dir);
    const found = Object.fromEntries([...ckpt.tensors].map(([n, i]) => [n, [...i.shape]]));
    assert.deepEqual(found, expected);
    assert.deepEqual(ck.shapes, expected);
    assert.equal(ck.files[0], "model.safetensors");
    // The tokenizer fits the embedding exactly.
    const tok = JSON.parse(await Deno.readTextFile(join(dir, "tokenizer.json")));
    assert.equal(tok.model.type, "BPE");
    assert.equal(tok.model.byte_fallback, true);
    assert.equal(V, ck.tokenizerSize);
    assert.equal(V, Object.keys(tok.model.vocab).length);
  });
});

Deno.test("tiny Mamba: tensor names and shapes, dt bias and A_log follow Mamba's init", async () => {
  await withDir(async (dir) => {
    const ck = await writeTinyMamba(dir, { config: { num_hidden_layers: 1 } });
    const cfg = ck.config;
    for (
      const key of [
        "state_size",
        "expand",
        "conv_kernel",
        "time_step_rank",
        "use_bias",
        "use_conv_bias",
        "layer_norm_epsilon",
        "tie_word_embeddings",
        "residual_in_fp32",
        "intermediate_size",
      ]
    ) assert.ok(key in cfg, `config.json lacks ${key}`);
    assert.equal(cfg.model_type, "mamba");
    const V = cfg.vocab_size as number, H = 32, I = 64, N = 8, K = 4, R = 2;
    assert.equal(cfg.time_step_rank, R);
    assert.equal(cfg.intermediate_size, I);
    const p = "backbone.layers.0";
    assert.deepEqual(ck.shapes, {
      "backbone.embeddings.weight": [V, H],
      [`${p}.norm.weight`]: [H],
      [`${p}.mixer.in_proj.weight`]: [2 * I, H],
      [`${p}.mixer.conv1d.weight`]: [I, 1, K],
      [`${p}.mixer.conv1d.bias`]: [I],
      [`${p}.mixer.x_proj.weight`]: [R + 2 * N, I],
      [`${p}.mixer.dt_proj.weight`]: [I, R],
      [`${p}.mixer.dt_proj.bias`]: [I],
      [`${p}.mixer.A_log`]: [I, N],
      [`${p}.mixer.D`]: [I],
      [`${p}.mixer.out_proj.weight`]: [H, I],
      "backbone.norm_f.weight": [H],
    });
    const tok = JSON.parse(await Deno.readTextFile(join(dir, "tokenizer.json")));
    assert.equal(tok.pre_tokenizer.type, "ByteLevel");
    assert.equal(V, ck.tokenizerSize);
    const t = await Tensors.read(dir);
    for (const b of t.vec(`${p}.mixer.dt_proj.bias`)) {
      const dt = Math.log1p(Math.exp(b));
      assert.ok(dt >= 0.999e-3 && dt <= 0.1001, `softplus(dt bias) = ${dt}`);
    }
    const aLog = t.mat(`${p}.mixer.A_log`);
    for (const r of aLog) r.forEach((v, n) => assert.ok(Math.abs(v - Math.log(n + 1)) < 1e-6));
  });
});

Deno.test("tiny Jamba: layer pattern decides which tensors exist", async () => {
  await withDir(async (dir) => {
    const ck = await writeTinyJamba(dir);
    const names = Object.keys(ck.shapes);
    const has = (s: string) => names.includes(s);
    // Defaults: 0 Mamba+MLP, 1 attention+MoE, 2 Mamba+MLP, 3 Mamba+MoE.
    assert.ok(has("model.layers.0.mamba.in_proj.weight"));
    assert.ok(has("model.layers.0.mamba.dt_layernorm.weight"));
    assert.ok(has("model.layers.0.mamba.b_layernorm.weight"));
    assert.ok(has("model.layers.0.mamba.c_layernorm.weight"));
    assert.ok(has("model.layers.0.feed_forward.gate_proj.weight"));
    assert.ok(!has("model.layers.0.self_attn.q_proj.weight"));
    assert.ok(has("model.layers.1.self_attn.q_proj.weight"));
    assert.ok(!has("model.layers.1.mamba.in_proj.weight"));
    assert.ok(has("model.layers.1.feed_forward.router.weight"));
    assert.ok(has("model.layers.1.feed_forward.experts.3.down_proj.weight"));
    assert.ok(!has("model.layers.1.feed_forward.gate_proj.weight"));
    assert.ok(has("model.layers.3.feed_forward.experts.0.gate_proj.weight"));
    assert.ok(has("model.layers.2.pre_ff_layernorm.weight"));
    assert.ok(has("model.final_layernorm.weight"));
    assert.ok(has("lm_head.weight"));
    assert.deepEqual(ck.shapes["model.layers.0.mamba.dt_layernorm.weight"], [2]);
    assert.deepEqual(ck.shapes["model.layers.0.mamba.conv1d.weight"], [64, 1, 4]);
    assert.deepEqual(ck.shapes["model.layers.3.feed_forward.router.weight"], [4, 32]);
    for (
      const key of [
        "attn_layer_period",
        "attn_layer_offset",
        "expert_layer_period",
        "expert_layer_offset",
        "num_experts",
        "num_experts_per_tok",
        "mamba_d_state",
        "mamba_d_conv",
        "mamba_expand",
        "mamba_dt_rank",
        "mamba_conv_bias",
        "mamba_proj_bias",
      ]
    ) assert.ok(key in ck.config, `config.json lacks ${key}`);
  });
});

Deno.test("Jamba layer-pattern selection follows periods and offsets", () => {
  const jamba = (extra: HfConfig) =>
    layerKinds({ architectures: ["JambaForCausalLM"], num_experts: 16, ...extra });
  // Jamba-v0.1: 32 layers, attention at 4 mod 8, MoE at odd layers.
  const v01 = jamba({
    num_hidden_layers: 32,
    attn_layer_period: 8,
    attn_layer_offset: 4,
    expert_layer_period: 2,
    expert_layer_offset: 1,
  });
  assert.deepEqual(v01.flatMap((k, i) => (k.mixer === "attention" ? [i] : [])), [4, 12, 20, 28]);
  assert.deepEqual(
    v01.flatMap((k, i) => (k.ffn === "moe" ? [i] : [])),
    Array.from({ length: 16 }, (_, i) => 2 * i + 1),
  );
  const small = jamba({
    num_hidden_layers: 6,
    attn_layer_period: 3,
    attn_layer_offset: 0,
    expert_layer_period: 3,
    expert_layer_offset: 2,
  });
  assert.deepEqual(small.map((k) => `${k.mixer[0]}${k.ffn[1]}`), [
    "al",
    "ml",
    "mo",
    "al",
    "ml",
    "mo",
  ]);
  // One expert means a dense MLP everywhere (layers_num_experts is 1 → JambaMLP).
  const dense = jamba({
    num_hidden_layers: 4,
    num_experts: 1,
    expert_layer_period: 1,
    expert_layer_offset: 0,
  });
  assert.ok(dense.every((k) => k.ffn === "mlp"));
  assert.deepEqual(
    layerKinds({ architectures: ["MambaForCausalLM"], num_hidden_layers: 2 }),
    [{ mixer: "mamba", ffn: "none" }, { mixer: "mamba", ffn: "none" }],
  );
});

Deno.test("writer: vocab overrides, tokenizer choice and shard splits", async () => {
  await withDir(async (dir) => {
    const small = await writeTinyMixtral(join(dir, "a"), { config: { vocab_size: 64 } });
    assert.equal(small.tokenizer, "none");
    await assert.rejects(() => Deno.stat(join(dir, "a", "tokenizer.json")), Deno.errors.NotFound);
    await assert.rejects(
      () =>
        writeTinyMixtral(join(dir, "b"), {
          config: { vocab_size: 64 },
          tokenizer: "sentencepiece",
        }),
      RangeError,
    );
    // A padded vocabulary (as real checkpoints have) keeps the tokenizer.
    const padded = await writeTinyMamba(join(dir, "c"), { config: { vocab_size: 320 } });
    assert.equal(padded.tokenizer, "byte_level");
    assert.ok(padded.tokenizerSize <= 320);
    const sharded = await writeTinyJamba(join(dir, "d"), { shards: 3 });
    assert.deepEqual(sharded.files, [
      "model-00001-of-00003.safetensors",
      "model-00002-of-00003.safetensors",
      "model-00003-of-00003.safetensors",
    ]);
    const index = JSON.parse(
      await Deno.readTextFile(join(dir, "d", "model.safetensors.index.json")),
    );
    assert.deepEqual(new Set(Object.values(index.weight_map)), new Set(sharded.files));
    assert.deepEqual(Object.keys(index.weight_map).sort(), Object.keys(sharded.shapes).sort());
    assert.equal(index.metadata.total_size, sharded.parameters * 4);
  });
});

// ---------------------------------------------------------------------------
// The reference itself

Deno.test("route: Mixtral renormalises the top-k, Jamba keeps raw probabilities", () => {
  const logits = [0, Math.log(3), Math.log(6)]; // p = [0.1, 0.3, 0.6]
  const mix = route(logits, 2, true);
  assert.deepEqual(mix.experts, [2, 1]);
  assert.ok(Math.abs(mix.weights[0] - 2 / 3) < 1e-12 && Math.abs(mix.weights[1] - 1 / 3) < 1e-12);
  const jam = route(logits, 2, false);
  assert.ok(Math.abs(jam.weights[0] - 0.6) < 1e-12 && Math.abs(jam.weights[1] - 0.3) < 1e-12);
  // With one expert per layer the MoE is that expert (weight 1) whatever the router says.
  const e = {
    gate: new Float64Array([0.5, -1]),
    up: new Float64Array([2, 1]),
    down: new Float64Array([1, 3]),
  };
  const x = new Float64Array([0.7, -0.2]);
  const y = sparseMoe(x, 1, 2, 1, new Float64Array([4, -4]), [e], 1, true);
  const g = 0.5 * 0.7 + 0.2;
  const h = (g / (1 + Math.exp(-g))) * (2 * 0.7 - 0.2);
  assert.ok(Math.abs(y[0] - h) < 1e-12 && Math.abs(y[1] - 3 * h) < 1e-12);
});

Deno.test("selectiveScan equals the closed form of a time-invariant one-state SSM", () => {
  // Constant Δ, B, C: y_t = Σ_{s≤t} C·B·Δ·e^{AΔ(t−s)}·u_s + D·u_t, per channel.
  const T = 9, I = 3;
  const u = Float64Array.from({ length: T * I }, (_, i) => Math.sin(i * 1.3) + 0.2);
  const dts = [0.05, 0.4, 1.5];
  const A = [-1, -0.3, -2.5];
  const D = [0.5, 1, -0.7];
  const delta = Float64Array.from({ length: T * I }, (_, i) => dts[i % I]);
  const Bv = 0.8, Cv = -1.3;
  const y = selectiveScan(
    u,
    delta,
    Float64Array.from(A),
    new Float64Array(T).fill(Bv),
    new Float64Array(T).fill(Cv),
    Float64Array.from(D),
    T,
    I,
    1,
  );
  for (let c = 0; c < I; c++) {
    for (let t = 0; t < T; t++) {
      let want = D[c] * u[t * I + c];
      for (let s = 0; s <= t; s++) {
        want += Cv * Bv * dts[c] * Math.exp(A[c] * dts[c] * (t - s)) * u[s * I + c];
      }
      assert.ok(
        Math.abs(y[t * I + c] - want) < 1e-12,
        `channel ${c} step ${t}: ${y[t * I + c]} vs ${want}`,
      );
    }
  }
});

Deno.test("rmsNorm: weight · x / sqrt(mean(x²) + eps)", () => {
  const y = rmsNorm(new Float64Array([3, 4, 0, 1]), 2, 2, new Float64Array([1, 2]), 0.5);
  const r0 = Math.sqrt(12.5 + 0.5), r1 = Math.sqrt(0.5 + 0.5);
  const want = [3 / r0, 8 / r0, 0, 2 / r1];
  want.forEach((w, i) => assert.ok(Math.abs(y[i] - w) < 1e-15));
});

Deno.test("Mixtral with E = 1, k = 1 equals a dense Llama computed in matrix form", async () => {
  await withDir(async (dir) => {
    await writeTinyMixtral(dir, {
      config: {
        num_hidden_layers: 1,
        num_local_experts: 1,
        num_experts_per_tok: 1,
        rope_theta: 100,
      },
      seed: 3,
    });
    const ids = tokens(10, 310);
    const ref = (await referenceLogits(dir))(ids);
    const alt = await altLogits(dir, ids);
    assert.ok(maxAbs(ref) > 0.5, "logits should be O(1)");
    assert.ok(maxDiff(ref, alt) < 1e-9 * maxAbs(ref), `max diff ${maxDiff(ref, alt)}`);
  });
});

for (
  const [name, write, opts] of [
    ["Mixtral (E = 4, k = 2, GQA, RoPE)", writeTinyMixtral, { seed: 5 }],
    ["Mixtral with a sliding window", writeTinyMixtral, { seed: 6, config: { sliding_window: 3 } }],
    ["Mamba (slow_forward)", writeTinyMamba, {
      seed: 7,
      config: { time_step_max: 1, use_bias: true },
    }],
    ["Jamba (attention, Mamba + inner norms, MoE, MLP)", writeTinyJamba, { seed: 8 }],
  ] as [string, Writer, TinyCheckpointOptions][]
) {
  Deno.test(`reference equals the matrix-form implementation: ${name}`, async () => {
    await withDir(async (dir) => {
      const ck = await write(dir, opts);
      const ids = tokens(9, ck.config.vocab_size as number, 2);
      const ref = (await referenceLogits(dir))(ids);
      const alt = await altLogits(dir, ids);
      assert.ok(maxAbs(ref) > 0.5, "logits should be O(1)");
      assert.ok(maxAbs(ref) < 20, "logits should be O(1)");
      assert.ok(maxDiff(ref, alt) < 1e-9 * maxAbs(ref), `max diff ${maxDiff(ref, alt)}`);
    });
  });
}

Deno.test("routing of the tiny Mixtral is not degenerate", async () => {
  await withDir(async (dir) => {
    const ck = await writeTinyMixtral(dir);
    const t = await Tensors.read(dir);
    const emb = t.mat("model.embed_tokens.weight");
    const gate = t.mat("model.layers.0.block_sparse_moe.gate.weight");
    const picks = new Set<string>();
    for (const id of tokens(24, ck.config.vocab_size as number)) {
      const x =
        normRows([emb[id]], t.vec("model.layers.0.post_attention_layernorm.weight"), 1e-5)[0];
      picks.add(route(gate.map((g) => dot(g, x)), 2, true).experts.slice().sort().join(","));
    }
    assert.ok(picks.size >= 4, `only ${picks.size} distinct expert pairs: ${[...picks]}`);
  });
});

for (const [name, write] of WRITERS) {
  Deno.test(`${name} reference is causal`, async () => {
    await withDir(async (dir) => {
      const ck = await write(dir, { seed: 11 });
      const V = ck.config.vocab_size as number;
      const f = await referenceLogits(dir);
      const a = tokens(10, V, 4);
      const b = a.slice(0, 6).concat(tokens(4, V, 9));
      const la = f(a), lb = f(b);
      for (let t = 0; t < 6; t++) {
        assert.deepEqual(row(la, t, V), row(lb, t, V), `position ${t} changed`);
      }
      for (let t = 6; t < 10; t++) {
        assert.ok(maxDiff(row(la, t, V), row(lb, t, V)) > 1e-6, `position ${t} unchanged`);
      }
    });
  });

  Deno.test(`${name}: sharded and single-file checkpoints give identical logits`, async () => {
    await withDir(async (dir) => {
      const one = await write(join(dir, "one"), { seed: 12 });
      await write(join(dir, "sharded"), { seed: 12, shards: 3 });
      const ids = tokens(7, one.config.vocab_size as number);
      assert.deepEqual(
        (await referenceLogits(join(dir, "sharded")))(ids),
        (await referenceLogits(join(dir, "one")))(ids),
      );
    });
  });

  Deno.test(`${name}: F16 and BF16 storage stay close to F32 storage`, async () => {
    await withDir(async (dir) => {
      const f32 = await write(join(dir, "f32"), { seed: 13 });
      await write(join(dir, "f16"), { seed: 13, dtype: "F16" });
      await write(join(dir, "bf16"), { seed: 13, dtype: "BF16" });
      const ids = tokens(8, f32.config.vocab_size as number);
      const a = (await referenceLogits(join(dir, "f32")))(ids);
      const scale = maxAbs(a);
      const h = (await referenceLogits(join(dir, "f16")))(ids);
      const bf = (await referenceLogits(join(dir, "bf16")))(ids);
      const dh = maxDiff(a, h), db = maxDiff(a, bf);
      assert.ok(dh > 0 && dh < 1e-2 * scale, `F16 diff ${dh} (scale ${scale})`);
      assert.ok(db > dh && db < 6e-2 * scale, `BF16 diff ${db} (scale ${scale})`);
      const cfg = JSON.parse(await Deno.readTextFile(join(dir, "bf16", "config.json")));
      assert.equal(cfg.torch_dtype, "bfloat16");
    });
  });
}

Deno.test("sliding window: one layer sees exactly the last W tokens", async () => {
  await withDir(async (dir) => {
    const W = 3;
    const ck = await writeTinyMixtral(join(dir, "full"), {
      seed: 14,
      config: { num_hidden_layers: 1 },
    });
    await writeTinyMixtral(join(dir, "win"), {
      seed: 14,
      config: { num_hidden_layers: 1, sliding_window: W },
    });
    const V = ck.config.vocab_size as number;
    const full = await referenceLogits(join(dir, "full"));
    const win = await referenceLogits(join(dir, "win"));
    const ids = tokens(8, V, 5);
    const lf = full(ids), lw = win(ids);
    for (let t = 0; t < W; t++) {
      assert.deepEqual(row(lw, t, V), row(lf, t, V), `position ${t} inside the window`);
    }
    for (let t = W; t < 8; t++) {
      assert.ok(maxDiff(row(lw, t, V), row(lf, t, V)) > 1e-6, `position ${t} unaffected`);
    }
    // Changing the token W steps back leaves position 7 alone; W − 1 steps back does not.
    const far = ids.slice();
    far[7 - W] = ids[7 - W] === 5 ? 6 : 5;
    const near = ids.slice();
    near[7 - W + 1] = ids[7 - W + 1] === 5 ? 6 : 5;
    assert.deepEqual(row(win(far), 7, V), row(lw, 7, V));
    assert.ok(maxDiff(row(win(near), 7, V), row(lw, 7, V)) > 1e-9);
    assert.ok(
      maxDiff(row(full(far), 7, V), row(lf, 7, V)) > 1e-9,
      "without a window the far token matters",
    );
  });
});

Deno.test("reference rejects wrong shapes, missing tensors, stray tensors and unknown architectures", async () => {
  await withDir(async (dir) => {
    await writeTinyMamba(dir);
    const cfgPath = join(dir, "config.json");
    const cfg = JSON.parse(await Deno.readTextFile(cfgPath));
    await Deno.writeTextFile(cfgPath, JSON.stringify({ ...cfg, state_size: 4 }));
    await assert.rejects(
      () => loadReference(dir),
      (e: Error) =>
        e instanceof RangeError && /x_proj\.weight.*\[18, 64\].*\[10, 64\]/.test(e.message),
    );
    await Deno.writeTextFile(cfgPath, JSON.stringify({ ...cfg, num_hidden_layers: 3 }));
    await assert.rejects(
      () => loadReference(dir),
      (e: Error) =>
        e instanceof RangeError &&
        /missing tensor "backbone\.layers\.2\.norm\.weight"/.test(e.message),
    );
    await Deno.writeTextFile(cfgPath, JSON.stringify({ ...cfg, num_hidden_layers: 1 }));
    await assert.rejects(
      () => loadReference(dir),
      (e: Error) => e instanceof RangeError && /not used/.test(e.message),
    );
    await Deno.writeTextFile(
      cfgPath,
      JSON.stringify({ ...cfg, architectures: ["GPT2LMHeadModel"] }),
    );
    await assert.rejects(() => loadReference(dir), TypeError);
    await Deno.writeTextFile(cfgPath, JSON.stringify(cfg));
    const ref = await loadReference(dir);
    assert.throws(() => ref.forward([cfg.vocab_size]), RangeError);
  });
});
