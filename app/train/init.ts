/**
 * Fresh, seeded weights following Hugging Face's `_init_weights` for each
 * architecture, by Kiln parameter name (MoE experts stacked):
 *
 * - Mixtral, Qwen2-MoE, OLMoE, Qwen3-MoE, Jamba: Linear (and Jamba's Conv1d) weights
 *   normal(0, `initializer_range`), biases 0, embeddings normal(0,
 *   `initializer_range`), RMSNorm gains 1;
 * - Mamba, Falcon-Mamba: embeddings normal(0, `initializer_range`); other Linear and Conv1d
 *   weights keep PyTorch's default (kaiming-uniform, a = √5: uniform
 *   ±1/√fan_in), conv bias likewise, Linear biases 0; `dt_proj.weight`
 *   uniform ±`time_step_rank`^−½·`time_step_scale` (or that constant);
 *   `dt_proj.bias` the inverse softplus of Δ log-uniform in
 *   [`time_step_min`, `time_step_max`], floored at `time_step_floor`;
 * - Mamba-2: Linear weights normal(0, `initializer_range`) except `out_proj`
 *   and conv1d (kaiming-uniform), conv bias 0, `dt_bias` as Mamba's `dt_proj.bias`;
 * - every Mamba mixer: `A_log` = log(1..N) per channel (Mamba-2: log(1..H)), `D` = 1.
 * - Qwen3-Next: the decoder's norms (which scale by 1 + weight) 0, the DeltaNet's gated
 *   norm 1, `dt_bias` 1, `A_log` = log U(0, 16).
 *
 * Each tensor draws from its own stream, seeded by the run's seed and the
 * tensor's name, so a tensor's values do not depend on which others exist.
 *
 * @module
 */

import { mulberry32 } from "../../core/random.ts";
import type { ModelConfig } from "../../models/config.ts";

/** FNV-1a of `s`, mixed with `seed`: one stream per tensor. */
function streamSeed(seed: number, s: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

function normal(n: number, std: number, rand: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    // Box–Muller: two normals from two uniforms (1 − u keeps the log finite).
    const r = Math.sqrt(-2 * Math.log(1 - rand()));
    const t = 2 * Math.PI * rand();
    out[i] = std * r * Math.cos(t);
    if (i + 1 < n) out[i + 1] = std * r * Math.sin(t);
  }
  return out;
}

function uniform(n: number, bound: number, rand: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => (2 * rand() - 1) * bound);
}

/**
 * The initial value of parameter `name` of shape `shape` (row-major).
 * `initializerRange` is the config's `initializer_range` (Hugging Face's
 * defaults: 0.02, Mamba 0.1).
 *
 * @example
 * ```ts ignore
 * const w = initParam(cfg, "model.layers.0.self_attn.q_proj.weight", [64, 64], { seed: 1 });
 * ```
 */
export function initParam(
  cfg: ModelConfig,
  name: string,
  shape: readonly number[],
  options: { seed: number; initializerRange?: number },
): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const rand = mulberry32(streamSeed(options.seed, name));
  const mamba2 = cfg.architecture === "Mamba2ForCausalLM";
  const mambaArch = cfg.architecture === "MambaForCausalLM" ||
    cfg.architecture === "FalconMambaForCausalLM" || mamba2;
  const std = options.initializerRange ?? (mambaArch ? 0.1 : 0.02);
  const last = shape[shape.length - 1];
  // Qwen3-Next's norms scale by 1 + weight: its init zeroes them (the DeltaNet's gated
  // norm excepted, a plain weight of ones); dt_bias 1 and A_log = log U(0, 16).
  const offset = cfg.normOffset !== undefined;
  if (offset && /\.linear_attn\.norm\.weight$/.test(name)) return new Float32Array(n).fill(1);
  if (/(^|\.)(\w*norm\w*|norm_f)\.weight$/.test(name)) {
    return new Float32Array(n).fill(offset ? 0 : 1);
  }
  if (offset && /\.dt_bias$/.test(name)) return new Float32Array(n).fill(1);
  if (offset && /\.A_log$/.test(name)) {
    return Float32Array.from({ length: n }, () => Math.log(16 * (1 - rand())));
  }
  if (/\.A_log$/.test(name)) {
    return Float32Array.from({ length: n }, (_, i) => Math.log((i % last) + 1));
  }
  if (/\.D$/.test(name)) return new Float32Array(n).fill(1);
  const dtInit = cfg.mamba?.dtInit ?? {
    min: 0.001,
    max: 0.1,
    floor: 1e-4,
    scale: 1,
    scheme: "random" as const,
  };
  // Nemotron-H's Mamba-2 draws Δ's bias as Mamba-2's does.
  const nemotron = cfg.architecture === "NemotronHForCausalLM";
  if ((mambaArch || nemotron) && /(dt_proj\.bias|mixer\.dt_bias)$/.test(name)) {
    const lo = Math.log(dtInit.min), hi = Math.log(dtInit.max);
    return Float32Array.from({ length: n }, () => {
      const dt = Math.max(Math.exp(lo + rand() * (hi - lo)), dtInit.floor);
      return dt + Math.log(-Math.expm1(-dt)); // softplus⁻¹(Δ)
    });
  }
  // BambaMixer's init (Granite's and Falcon-H1's too): Δ's bias 1 in every head.
  const bambaMixer = cfg.architecture === "GraniteMoeHybridForCausalLM" ||
    cfg.architecture === "BambaForCausalLM" || cfg.architecture === "FalconH1ForCausalLM";
  if (bambaMixer && /\.dt_bias$/.test(name)) {
    return new Float32Array(n).fill(1);
  }
  // GPT-OSS's experts' biases (Kiln's stacked b1/b3/b2) start at zero; its router
  // bias (`router_bias`) and sinks are drawn normal(0, std) as the weights are.
  if (/\.b[123]$/.test(name)) return new Float32Array(n);
  if (/\.bias$/.test(name)) {
    // PyTorch's Conv1d default keeps its bias in Mamba; every Linear bias is zeroed.
    if (mambaArch && !mamba2 && /conv1d\.bias$/.test(name)) {
      return uniform(n, 1 / Math.sqrt(cfg.mamba!.convKernel), rand);
    }
    return new Float32Array(n);
  }
  if (/embed_tokens\.weight$|embeddings\.weight$|embedding\.weight$/.test(name)) {
    const w = normal(n, std, rand);
    // PreTrainedModel._init_weights zeroes nn.Embedding's padding_idx row.
    const pad = cfg.paddingIdx;
    if (pad !== undefined && shape.length === 2) w.fill(0, pad * last, (pad + 1) * last);
    return w;
  }
  if (!mambaArch) return normal(n, std, rand);
  // Mamba2PreTrainedModel: Linear layers normal(0, std), then conv1d and out_proj kaiming.
  if (mamba2 && !/(conv1d|out_proj)\.weight$/.test(name)) return normal(n, std, rand);
  if (/dt_proj\.weight$/.test(name)) {
    const s = cfg.mamba!.dtRank ** -0.5 * dtInit.scale;
    return dtInit.scheme === "constant" ? new Float32Array(n).fill(s) : uniform(n, s, rand);
  }
  // kaiming_uniform(a=√5) is uniform ±1/√fan_in; fan_in is the last axis ([out, in], conv [I, 1, k]).
  return uniform(n, 1 / Math.sqrt(last), rand);
}
