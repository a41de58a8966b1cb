/**
 * LFM2's short convolution (HF `Lfm2ShortConv`), the token mixer of its
 * `"conv"` layers: `in_proj` yields B, C and x (`[3d, d]`, in that order);
 * B·x passes a causal depthwise conv of `conv_L_cache` taps with no
 * activation; C gates its output; `out_proj` maps back. `conv_bias` puts biases
 * on all three (`in_proj.bias`, `conv.conv.bias`, `out_proj.bias`). Its one
 * state, the conv's last inputs, is named as a Mamba mixer's `conv_state`, so
 * caches, resets and prefix reuse treat it alike.
 *
 * @module
 */

import type { GraphBuilder, Tensor } from "../compiler/builder.ts";
import type { DType } from "../core/dtype.ts";
import { mixerConv, mixerMode } from "./mamba.ts";
import { linear as linearLayer, type WeightFormats } from "./weights.ts";

/**
 * Options of {@linkcode shortConvMixer}.
 *
 * @example
 * ```ts
 * import type { ShortConvOptions } from "@kiln/kiln";
 * const options: ShortConvOptions = { name: "model.layers.0.conv", d: 64, kernel: 3 };
 * ```
 */
export interface ShortConvOptions {
  /** Parameter/state prefix, e.g. `model.layers.0.conv`. */
  name: string;
  /** Model width d (`hidden_size`). */
  d: number;
  /** Conv taps (`conv_L_cache`, default 3). */
  kernel?: number;
  /** Biases on in_proj, the conv and out_proj (`conv_bias`, default false). */
  bias?: boolean;
  /** `"prefill"` (default), `"decode"` or `"stateless"`, as `mambaMixer`'s. */
  mode?: "prefill" | "decode" | "stateless";
  /** Prefill only: u32 `[1]`, the last real row (later rows are padding). */
  last?: Tensor;
  /** Dtype of the parameters (default: x's). */
  paramDType?: DType;
  /** Projections stored block-quantized, by parameter name (see `linear`). */
  weightFormats?: WeightFormats;
}

/**
 * HF `Lfm2ShortConv` on x `[B, L, d]` (decode: `[B, 1, d]`).
 *
 * @example
 * ```ts
 * import { GraphBuilder, shortConvMixer } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", [1, "L", 16]);
 * g.output("y", shortConvMixer(g, x, { name: "conv", d: 16 }));
 * ```
 */
export function shortConvMixer(g: GraphBuilder, x: Tensor, o: ShortConvOptions): Tensor {
  const { d } = o, k = o.kernel ?? 3;
  if (!Number.isInteger(k) || k < 1) {
    throw new RangeError(`shortConvMixer "${o.name}": kernel must be a positive integer, got ${k}`);
  }
  const mode = mixerMode("shortConvMixer", o.name, x, d, o.mode);
  const pdt = o.paramDType ?? x.dtype;
  const linear = (t: Tensor, w: string, rows: number) => {
    const y = linearLayer(g, t, `${o.name}.${w}.weight`, rows, d, pdt, o.weightFormats ?? {});
    return o.bias ? y.add(g.param(`${o.name}.${w}.bias`, [rows], pdt)) : y;
  };
  const bcx = linear(x, "in_proj", 3 * d);
  const [B, C, xx] = [0, 1, 2].map((i) => bcx.slice(2, i * d, (i + 1) * d));
  const { u } = mixerConv(g, B.mul(xx), {
    name: o.name,
    kernel: k,
    mode,
    convBias: o.bias ?? false,
    last: o.last,
    dtype: pdt,
    act: "none",
    convName: "conv",
  });
  return linear(C.mul(u), "out_proj", d);
}
