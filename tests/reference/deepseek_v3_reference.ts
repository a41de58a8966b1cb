/**
 * Float64 reference of DeepSeek-V3 (transformers 5's `DeepseekV3ForCausalLM`),
 * written from its modeling code, attention in the expanded form transformers
 * computes (Kiln runs the absorbed one): queries through `q_a_proj`, an RMSNorm
 * (eps 1e-6) and `q_b_proj` (or one `q_proj`); a latent from
 * `kv_a_proj_with_mqa` whose first `kv_lora_rank` values are RMS-normed and
 * expanded per head by `kv_b_proj` into the keys' unrotated part and the
 * values, its last `qk_rope_head_dim` the rotary key every head shares; RoPE on
 * each head's last `qk_rope_head_dim` query values and that key (pairs of
 * adjacent values with `rope_interleave`, output as rotated evens then odds);
 * softmax scale `qk_head_dim^-½`, times yarn's mscale(factor, mscale_all_dim)²
 * when given. The feed-forward side is GLM-4.5's (`loadSigmoidMoe`).
 *
 * @module
 */

import {
  type HfConfig,
  intField,
  type LayerKind,
  linear,
  type ReferenceModel,
  rmsNorm,
  type Weights,
} from "./hf_reference.ts";
import { loadSigmoidMoe, type Mixer } from "./glm4_moe_reference.ts";
import { referenceRope } from "./rope_reference.ts";

/**
 * The DeepSeek-V3 reference model of a loaded checkpoint (GLM-4.7-Flash's
 * `Glm4MoeLiteForCausalLM` too: the same layer, its dense layers from
 * `mlp_layer_types` in `kinds`), or with `v2` DeepSeek-V2's: its attention is
 * V3's with RoPE on complex (adjacent) pairs whatever `rope_interleave` says,
 * its router softmax (`routeV2`).
 */
export function loadDeepseekV3(
  w: Weights,
  config: HfConfig,
  kinds: LayerKind[],
  v2 = false,
): Promise<ReferenceModel> {
  const d = intField(config, "hidden_size");
  const H = intField(config, "num_attention_heads");
  const qr = config.q_lora_rank == null ? 0 : intField(config, "q_lora_rank");
  const C = intField(config, "kv_lora_rank");
  const N = intField(config, "qk_nope_head_dim"), R = intField(config, "qk_rope_head_dim");
  const V = intField(config, "v_head_dim");
  const interleave = v2 || config.rope_interleave !== false;
  const bias = config.attention_bias === true;
  const rope = referenceRope(config, R, 1e4);
  const p = (config.rope_parameters ?? {}) as HfConfig;
  const mAll = (p.mscale_all_dim ?? 0) as number, factor = (p.factor ?? 1) as number;
  const m = factor <= 1 ? 1 : 0.1 * mAll * Math.log(factor) + 1;
  const scale = (N + R) ** -0.5 * ((p.rope_type ?? "default") !== "default" && mAll ? m * m : 1);

  /** RoPE of one `[R]` vector at position t, in place, as transformers lays it out. */
  const rotate = (x: Float64Array, t: number): void => {
    const half = R / 2;
    const out = new Float64Array(R);
    for (let i = 0; i < half; i++) {
      const a = t * rope.invFreq[i];
      const c = Math.cos(a) * rope.scale, s = Math.sin(a) * rope.scale;
      const [x1, x2] = interleave ? [x[2 * i], x[2 * i + 1]] : [x[i], x[i + half]];
      out[i] = x1 * c - x2 * s;
      out[i + half] = x2 * c + x1 * s;
    }
    x.set(out);
  };

  const arch = v2
    ? "DeepseekV2ForCausalLM"
    : (config.architectures as string[] | undefined)?.[0] === "Glm4MoeLiteForCausalLM"
    ? "Glm4MoeLiteForCausalLM"
    : "DeepseekV3ForCausalLM";
  return loadSigmoidMoe(w, config, kinds, arch, async (pre) => {
    const a = `${pre}.self_attn`;
    const qa = qr ? await w.get(`${a}.q_a_proj.weight`, [qr, d]) : undefined;
    const qaBias = qr ? await w.maybe(`${a}.q_a_proj.bias`, [qr], bias) : undefined;
    const qaNorm = qr ? await w.get(`${a}.q_a_layernorm.weight`, [qr]) : undefined;
    const qb = qr
      ? await w.get(`${a}.q_b_proj.weight`, [H * (N + R), qr])
      : await w.get(`${a}.q_proj.weight`, [H * (N + R), d]);
    const kva = await w.get(`${a}.kv_a_proj_with_mqa.weight`, [C + R, d]);
    const kvaBias = await w.maybe(`${a}.kv_a_proj_with_mqa.bias`, [C + R], bias);
    const kvNorm = await w.get(`${a}.kv_a_layernorm.weight`, [C]);
    const kvb = await w.get(`${a}.kv_b_proj.weight`, [H * (N + V), C]);
    const o = await w.get(`${a}.o_proj.weight`, [d, H * V]);
    const oBias = await w.maybe(`${a}.o_proj.bias`, [d], bias);
    const mixer: Mixer = (x, T) => {
      const q = qr
        ? linear(
          rmsNorm(linear(x, T, d, qa!, qr, qaBias), T, qr, qaNorm!, 1e-6),
          T,
          qr,
          qb,
          H * (N + R),
        )
        : linear(x, T, d, qb, H * (N + R));
      const lat = linear(x, T, d, kva, C + R, kvaBias);
      const c = new Float64Array(T * C), kRope = new Float64Array(T * R);
      for (let t = 0; t < T; t++) {
        c.set(lat.subarray(t * (C + R), t * (C + R) + C), t * C);
        kRope.set(lat.subarray(t * (C + R) + C, (t + 1) * (C + R)), t * R);
        rotate(kRope.subarray(t * R, (t + 1) * R), t);
        for (let h = 0; h < H; h++) {
          rotate(q.subarray((t * H + h) * (N + R) + N, (t * H + h + 1) * (N + R)), t);
        }
      }
      const kv = linear(rmsNorm(c, T, C, kvNorm, 1e-6), T, C, kvb, H * (N + V));
      const out = new Float64Array(T * H * V);
      for (let h = 0; h < H; h++) {
        for (let t = 0; t < T; t++) {
          const qo = (t * H + h) * (N + R);
          const scores = new Float64Array(t + 1);
          let mx = -Infinity;
          for (let j = 0; j <= t; j++) {
            const ko = (j * H + h) * (N + V);
            let s = 0;
            for (let i = 0; i < N; i++) s += q[qo + i] * kv[ko + i];
            for (let i = 0; i < R; i++) s += q[qo + N + i] * kRope[j * R + i];
            scores[j] = s * scale;
            mx = Math.max(mx, scores[j]);
          }
          let sum = 0;
          for (let j = 0; j <= t; j++) sum += scores[j] = Math.exp(scores[j] - mx);
          for (let j = 0; j <= t; j++) {
            const vo = (j * H + h) * (N + V) + N;
            for (let i = 0; i < V; i++) out[(t * H + h) * V + i] += (scores[j] / sum) * kv[vo + i];
          }
        }
      }
      return linear(out, T, H * V, o, d, oBias);
    };
    return mixer;
  }, v2);
}
