/**
 * DeepSeek-V3's multi-head latent attention (`DeepseekV3Attention`) as Kiln
 * ops, in its absorbed form: the per-head key and value expansions
 * (`kv_b_proj`) fold into the query and the output, so attention runs as one
 * shared key/value "head" over the latents — the KV cache holds a token's
 * `kvLoraRank + ropeDim` values, not `2·heads·headDim`.
 *
 * transformers expands instead: kᵢ = [W_UKᵢ·c, k_rope], vᵢ = W_UVᵢ·c for
 * each head i from the latent c, so qᵢ·kᵢ = (W_UKᵢᵀ·q_nopeᵢ)·c + q_ropeᵢ·k_rope
 * and Σ pⱼ vᵢⱼ = W_UVᵢ·(Σ pⱼ cⱼ): attention of the queries
 * [W_UKᵢᵀ·q_nopeᵢ, q_ropeᵢ] over the keys [c, k_rope] (values: the same rows,
 * whose first `kvLoraRank` outputs are Σ pⱼ cⱼ), then W_UVᵢ per head. The same
 * sums in another order.
 *
 * Parameters under the block's `name` (HF names): `q_a_proj.weight`
 * `[qLoraRank, hidden]`, `q_a_layernorm.weight`, `q_b_proj.weight`
 * `[heads·(nope+rope), qLoraRank]` (or `q_proj.weight` without the
 * bottleneck), `kv_a_proj_with_mqa.weight` `[kvLoraRank + rope, hidden]`,
 * `kv_a_layernorm.weight`, `kv_b_proj.weight` `[heads·(nope+v), kvLoraRank]`,
 * `o_proj.weight` `[hidden, heads·v]`; with `outBias` (`attention_bias`) also
 * `q_a_proj.bias`, `kv_a_proj_with_mqa.bias` and `o_proj.bias`. State (with a
 * cache): `${name}.kv_cache` `[maxSeq, 1, kvLoraRank + rope]`.
 *
 * @module
 */

import type { GraphBuilder, Tensor } from "../compiler/builder.ts";
import type { AttentionBlockOptions } from "./attention.ts";
import type { MlaConfig } from "./config.ts";
import { linear } from "./weights.ts";
import { pairsToHalves } from "./rope_scaling.ts";

/** DeepseekV3RMSNorm's default epsilon, which its latent norms keep. */
const LATENT_EPS = 1e-6;

/**
 * One latent attention block on x `[T, hidden]` at positions `pos[0] + t`;
 * `[T, hidden]` out (before the residual add). Called by `attentionBlock`
 * when its options carry `mla`.
 *
 * @example
 * ```ts
 * import { attentionBlock, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 32]);
 * const mla = { qLoraRank: 16, kvLoraRank: 8, nopeDim: 4, ropeDim: 4, vDim: 6, interleave: true };
 * g.output("y", attentionBlock(g, x, g.input("pos", [1], "u32"), {
 *   name: "model.layers.0.self_attn", heads: 2, headDim: 8, mla, maxSeq: 64,
 * }));
 * ```
 */
export function mlaBlock(
  g: GraphBuilder,
  x: Tensor,
  pos: Tensor,
  o: AttentionBlockOptions & { mla: MlaConfig },
): Tensor {
  const m = o.mla, n = o.name, H = o.heads;
  const hidden = x.shape[1] as number;
  const T = x.shape[0];
  const dt = o.dtype ?? x.dtype;
  const formats = o.weightFormats ?? {};
  const [C, R, N, V] = [m.kvLoraRank, m.ropeDim, m.nopeDim, m.vDim];
  const lin = (t: Tensor, w: string, rows: number, cols: number, bias = false) => {
    const y = linear(g, t, `${n}.${w}.weight`, rows, cols, dt, formats);
    return bias ? y.add(g.param(`${n}.${w}.bias`, [rows], dt)) : y;
  };
  const bias = o.outBias ?? false;
  const qf = m.qLoraRank > 0
    ? lin(
      lin(x, "q_a_proj", m.qLoraRank, hidden, bias)
        .rmsnorm(g.param(`${n}.q_a_layernorm.weight`, [m.qLoraRank], dt), LATENT_EPS),
      "q_b_proj",
      H * (N + R),
      m.qLoraRank,
    )
    : lin(x, "q_proj", H * (N + R), hidden);
  const q = qf.reshape([T, H, N + R]);
  let qRope = q.slice(2, N, N + R);
  const kva = lin(x, "kv_a_proj_with_mqa", C + R, hidden, bias);
  const latent = kva.slice(1, 0, C)
    .rmsnorm(g.param(`${n}.kv_a_layernorm.weight`, [C], dt), LATENT_EPS)
    .reshape([T, 1, C]);
  let kRope = kva.slice(1, C, C + R).reshape([T, 1, R]);
  if (m.interleave) [qRope, kRope] = [pairsToHalves(qRope), pairsToHalves(kRope)];
  const theta = o.ropeTheta ?? 10000;
  if (theta !== null) {
    qRope = qRope.rope(pos, theta, o.ropeScaling);
    kRope = kRope.rope(pos, theta, o.ropeScaling);
  }
  // W_UK and W_UV per head from kv_b_proj's rows: [H, N + V, C].
  const wkv = g.param(`${n}.kv_b_proj.weight`, [H * (N + V), C], dt).reshape([H, N + V, C]);
  const perHead = (t: Tensor) => t.transpose([1, 0, 2]); // [T, H, ·] ↔ [H, T, ·]
  const qLatent = perHead(perHead(q.slice(2, 0, N)).matmul(wkv.slice(1, 0, N)));
  const qAll = g.concat([qLatent, qRope], 2); // [T, H, C + R]
  let kv = g.concat([latent, kRope], 2); // [T, 1, C + R]
  if (o.maxSeq !== undefined) {
    const cache = g.state(`${n}.kv_cache`, [o.maxSeq, 1, C + R], dt);
    kv = cache.writeRows(kv, pos);
    g.assign(cache, kv);
  }
  const at = o.maxSeq !== undefined ? pos : undefined;
  const scale = o.scale ?? 1 / Math.sqrt(N + R);
  // Values are the keys' rows: their first C outputs are Σ pⱼ cⱼ, the rest unused.
  const att = g.attention(qAll, kv, kv, at, { causal: true, window: 0, scale });
  const heads = perHead(
    perHead(att.slice(2, 0, C)).matmul(wkv.slice(1, N, N + V), { transB: true }),
  );
  return lin(heads.reshape([T, H * V]), "o_proj", hidden, H * V, bias);
}
