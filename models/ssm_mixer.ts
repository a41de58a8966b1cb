/**
 * The SSM mixer a config's Mamba layers run — Mamba's (`mambaMixer`, with
 * Jamba's and Falcon-Mamba's inner norms) or Mamba-2's (`mamba2Mixer`) — built
 * the same way for inference and training graphs.
 *
 * @module
 */

import type { GraphBuilder, Tensor } from "../compiler/builder.ts";
import type { ModelConfig } from "./config.ts";
import { mambaMixer } from "./mamba.ts";
import { mamba2Mixer } from "./mamba2.ts";
import { gatedDeltaNetMixer } from "./gated_delta_net.ts";
import { shortConvMixer } from "./short_conv.ts";
import type { WeightFormats } from "./weights.ts";

/**
 * How {@linkcode configMixer} builds one layer's mixer.
 *
 * @example
 * ```ts
 * import type { ConfigMixerOptions } from "@kiln/kiln";
 * const options: ConfigMixerOptions = { mode: "stateless" };
 * ```
 */
export interface ConfigMixerOptions {
  /** `"prefill"`, `"decode"` or `"stateless"` (see `mambaMixer`). */
  mode: "prefill" | "decode" | "stateless";
  /** Prefill: u32 `[1]`, the last real row (later rows are padding). */
  last?: Tensor;
  /** Projections stored block-quantized, by parameter name. */
  weightFormats?: WeightFormats;
}

/**
 * One Mamba layer's mixer as `cfg.mamba` describes it, on x `[B, L, d]`.
 *
 * @example
 * ```ts
 * import { configMixer, GraphBuilder, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 1,
 * });
 * const g = new GraphBuilder();
 * const x = g.input("x", [1, "L", 32]);
 * g.output("y", configMixer(g, x, "backbone.layers.0.mixer", cfg, { mode: "stateless" }));
 * ```
 */
export function configMixer(
  g: GraphBuilder,
  x: Tensor,
  name: string,
  cfg: ModelConfig,
  options: ConfigMixerOptions,
): Tensor {
  const m = cfg.mamba;
  if (!m) throw new TypeError(`configMixer "${name}": ${cfg.architecture} has no Mamba settings`);
  const common = {
    name,
    d: cfg.hidden,
    stateSize: m.stateSize,
    convKernel: m.convKernel,
    mode: options.mode,
    last: options.last,
    useBias: m.projBias,
    useConvBias: m.convBias,
    weightFormats: options.weightFormats,
    ...(cfg.hiddenAct ? { convAct: cfg.hiddenAct } : {}),
  };
  if (m.shortConv) {
    return shortConvMixer(g, x, {
      name,
      d: cfg.hidden,
      kernel: m.convKernel,
      bias: m.shortConv.bias,
      mode: options.mode,
      last: options.last,
      weightFormats: options.weightFormats,
    });
  }
  if (m.gatedDelta) {
    // Qwen3-Next's linear attention: its conv has no bias and its norm ε is rms_norm_eps.
    return gatedDeltaNetMixer(g, x, {
      name,
      d: cfg.hidden,
      ...m.gatedDelta,
      convKernel: m.convKernel,
      eps: cfg.normEps,
      mode: options.mode,
      last: options.last,
      weightFormats: options.weightFormats,
      ...(cfg.hiddenAct ? { convAct: cfg.hiddenAct } : {}),
    });
  }
  if (m.ssd) {
    return mamba2Mixer(g, x, {
      ...common,
      heads: m.ssd.heads,
      headDim: m.ssd.headDim,
      groups: m.ssd.groups,
      normGroups: m.ssd.normGroups,
      dtLimit: m.ssd.dtLimit,
      eps: cfg.normEps,
      // Falcon-H1's μP factors, its out_proj bias and how its gate meets the norm.
      ...(m.outProjBias !== undefined ? { outBias: m.outProjBias } : {}),
      ...(m.ssd.inScale !== undefined ? { inScale: m.ssd.inScale } : {}),
      ...(m.ssd.projScale ? { projScale: m.ssd.projScale } : {}),
      ...(m.ssd.gatedNorm ? { gatedNorm: m.ssd.gatedNorm } : {}),
    });
  }
  return mambaMixer(g, x, {
    ...common,
    expand: m.inner / cfg.hidden,
    dtRank: m.dtRank,
    jamba: m.innerNorms && !m.weightlessNorms,
    weightlessNorms: m.weightlessNorms !== undefined,
    eps: m.weightlessNorms?.eps ?? cfg.normEps,
  });
}
