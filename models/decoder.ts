/**
 * The decoder stack every causal LM graph shares — inference (prefill and
 * decode, `causal_lm.ts`) and training (`causal_lm_train.ts`): per layer a
 * pre-norm mixer with its residual, then a pre-norm SwiGLU MLP or routed
 * experts (plus Qwen2-MoE's gated shared expert) with theirs (or, with
 * `postNorm`, each sublayer's output normed instead of its input), each part built
 * in a scope named like its Hugging Face module; then the final norm. What
 * differs between the graphs — how a mixer sees its rows (one sequence, or a
 * batch), how experts are stored and what their outputs feed — comes in
 * through {@linkcode DecoderParts}.
 *
 * @module
 */

import type { GraphBuilder, Tensor } from "../compiler/builder.ts";
import type { LayerSpec, ModelConfig } from "./config.ts";
import { applyHiddenAct } from "./activation.ts";
import { layerPrefix, moePrefix, specOf } from "./architectures/mod.ts";

/**
 * What a graph supplies to {@linkcode decoderLayers}.
 *
 * @example
 * ```ts ignore
 * const parts: DecoderParts = {
 *   param: (name, shape) => g.param(name, shape),
 *   linear: (x, name, rows, cols) => linear(g, x, name, rows, cols, "f32"),
 *   mixer: (layer, i, normed, name) => attentionBlock(g, normed, pos, opts(name)),
 *   experts: (i, x2, name) => moe(g, x2, { name, experts: 8, topK: 2, ff: 64 }).y,
 * };
 * ```
 */
export interface DecoderParts {
  /** A norm weight (or another parameter that is not a Linear weight). */
  param(name: string, shape: number[]): Tensor;
  /** `x·Wᵀ` with the Linear weight `name` `[rows, cols]`. */
  linear(x: Tensor, name: string, rows: number, cols: number): Tensor;
  /** Layer `i`'s mixer on its normed input (built in the mixer's scope `name`). */
  mixer(layer: LayerSpec, i: number, normed: Tensor, name: string): Tensor;
  /** Layer `i`'s routed experts on the normed `x2`, in the residual's dtype (scope `name`). */
  experts(i: number, x2: Tensor, name: string): Tensor;
}

/**
 * Runs the hidden rows `h` `[rows, d]` through every layer of `cfg` and the
 * final norm.
 *
 * @example
 * ```ts ignore
 * const hf = decoderLayers(g, cfg, embedded.h, parts); // then the LM head
 * ```
 */
export function decoderLayers(
  g: GraphBuilder,
  cfg: ModelConfig,
  h: Tensor,
  parts: DecoderParts,
): Tensor {
  const lay = specOf(cfg).layout;
  const d = cfg.hidden;
  const swiglu = (x: Tensor, prefix: string, ff: number) => {
    const n = lay.mlpNames;
    // ERNIE 4.5's `use_bias`: the dense MLPs and shared experts add biases.
    const w = (t: Tensor, part: string, rows: number, cols: number) => {
      const y = parts.linear(t, `${prefix}.${part}.weight`, rows, cols);
      return cfg.mlpBias ? y.add(parts.param(`${prefix}.${part}.bias`, [rows])) : y;
    };
    if (cfg.mlpActivation === "relu2") {
      // Nemotron-H: no gate, relu(up·x)².
      return w(applyHiddenAct(w(x, n.up, ff, d), "relu2"), n.down, d, ff);
    }
    // Falcon-H1's μP mlp_multipliers: on the gate before its activation, and on the output.
    const scale = (t: Tensor, m = 1) => (m === 1 ? t : t.mul(m));
    const gate = applyHiddenAct(scale(w(x, n.gate, ff, d), cfg.scaling?.mlpGate), cfg.hiddenAct);
    return scale(w(gate.mul(w(x, n.up, ff, d)), n.down, d, ff), cfg.scaling?.mlpDown);
  };
  // Granite scales each residual branch by a constant (μP) before adding it.
  const r = cfg.scaling?.residual ?? 1;
  const branch = (y: Tensor) => (r === 1 ? y : y.mul(r));
  // Pre-norm: a sublayer sees its normed input. FlexOlmo's post-norm: it sees the raw
  // residual and its output is normed instead.
  // Qwen3-Next stores its norm weights as offsets from 1.
  const normW = (name: string) => {
    const w = parts.param(`${name}.weight`, [d]);
    return cfg.normOffset ? w.add(cfg.normOffset) : w;
  };
  const norm = (x: Tensor, name: string) => x.rmsnorm(normW(name), cfg.normEps);
  const pre = (x: Tensor, name: string) => (cfg.postNorm ? x : norm(x, name));
  const post = (y: Tensor, name: string) => (cfg.postNorm ? norm(y, name) : y);
  cfg.pattern.forEach((layer, i) => {
    const p = layerPrefix(cfg, i);
    const mixerName = `${p}.${layer.mixer === "attention" ? lay.attention : lay.mamba}`;
    if (layer.mixer === "parallel") {
      // Falcon-H1: attention and Mamba-2 side by side on one normed input, each under
      // its μP factors, summed into the residual.
      const s = cfg.scaling;
      const times = (t: Tensor, m = 1) => (m === 1 ? t : t.mul(m));
      const normed = norm(h, `${p}.${lay.mixerNorm}`);
      const ssmName = `${p}.${lay.mamba}`, attnName = `${p}.${lay.attention}`;
      const ssm = g.scope(
        ssmName,
        () => times(parts.mixer({ ...layer, mixer: "mamba" }, i, normed, ssmName), s?.ssmOut),
      );
      const attn = g.scope(attnName, () => {
        const a = parts.mixer(
          { ...layer, mixer: "attention" },
          i,
          times(normed, s?.attentionIn),
          attnName,
        );
        return times(a, s?.attentionOut);
      });
      h = h.add(branch(ssm.add(attn)));
    } else if (layer.mixer !== "none") {
      // (Nemotron-H's MLP blocks have no token mixer.)
      h = h.add(g.scope(mixerName, () => {
        const n = `${p}.${lay.mixerNorm}`;
        return branch(post(parts.mixer(layer, i, pre(h, n), mixerName), n));
      }));
    }
    if (layer.ffn === "none") return;
    const ffnName = layer.ffn === "moe" ? moePrefix(cfg, i) : `${p}.${lay.mlp}`;
    h = g.scope(ffnName, () => {
      const n = `${p}.${lay.ffnNorm}`;
      const x2 = pre(h, n);
      if (layer.ffn !== "moe") return h.add(branch(post(swiglu(x2, ffnName, cfg.intermediate), n)));
      let y = parts.experts(i, x2, ffnName);
      const shared = cfg.moe!.sharedExpert;
      if (shared && lay.shared) {
        // A gated MLP on every token beside the routed experts; Qwen2-MoE gates it by σ(w·x).
        let s = swiglu(x2, `${p}.${lay.shared.expert}`, shared.ff);
        if (shared.gated) {
          s = s.mul(parts.linear(x2, `${p}.${lay.shared.gate}.weight`, 1, d).sigmoid());
        }
        y = y.add(s);
      }
      return h.add(branch(post(y, n)));
    });
  });
  return norm(h, lay.finalNorm);
}
