/**
 * Hugging Face `config.json` for the architectures Kiln runs, parsed and checked
 * into one normalised shape. Errors name the file and the field.
 *
 * @module
 */

/**
 * Architectures Kiln can build from a config.
 *
 * @example
 * ```ts
 * import { type Architecture, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2,
 * });
 * const arch: Architecture = cfg.architecture; // "MambaForCausalLM"
 * ```
 */
export type Architecture = "MixtralForCausalLM" | "MambaForCausalLM" | "JambaForCausalLM";

/** The architectures, for messages. */
export const ARCHITECTURES: readonly Architecture[] = [
  "MixtralForCausalLM",
  "MambaForCausalLM",
  "JambaForCausalLM",
];

/**
 * Mixer of one layer.
 *
 * @example
 * ```ts
 * import { type MixerKind, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2,
 * });
 * const mixers: MixerKind[] = cfg.pattern.map((l) => l.mixer); // ["mamba", "mamba"]
 * ```
 */
export type MixerKind = "attention" | "mamba";
/**
 * Feed-forward of one layer.
 *
 * @example
 * ```ts
 * import { type FfnKind, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2,
 * });
 * const ffns: FfnKind[] = cfg.pattern.map((l) => l.ffn); // ["none", "none"]
 * ```
 */
export type FfnKind = "moe" | "mlp" | "none";

/**
 * Attention settings (Mixtral, Jamba).
 *
 * @example
 * ```ts
 * import type { AttentionConfig } from "@kiln/kiln";
 * const mixtral: AttentionConfig = {
 *   heads: 32,
 *   kvHeads: 8,
 *   headDim: 128,
 *   ropeTheta: 1e6,
 *   slidingWindow: 0,
 * };
 * ```
 */
export interface AttentionConfig {
  /** Query heads. */
  readonly heads: number;
  /** Key/value heads (grouped-query attention). */
  readonly kvHeads: number;
  /** Size of one head. */
  readonly headDim: number;
  /** RoPE base, or 0 for no rotary embedding (Jamba). */
  readonly ropeTheta: number;
  /** Sliding window length, or 0 for none. */
  readonly slidingWindow: number;
}

/**
 * Mamba mixer settings (Mamba, Jamba).
 *
 * @example
 * ```ts
 * import { type MambaConfig, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2,
 * });
 * const m: MambaConfig = cfg.mamba!;
 * [m.stateSize, m.inner, m.convKernel]; // [4, 64, 4]
 * ```
 */
export interface MambaConfig {
  /** SSM state size N. */
  readonly stateSize: number;
  /** Inner width I = expand · hidden. */
  readonly inner: number;
  /** Causal conv kernel width. */
  readonly convKernel: number;
  /** Rank of Δ's projection. */
  readonly dtRank: number;
  /** in_proj/out_proj have biases. */
  readonly projBias: boolean;
  /** conv1d has a bias. */
  readonly convBias: boolean;
  /** RMSNorms on Δ, B and C inside the mixer (Jamba). */
  readonly innerNorms: boolean;
}

/**
 * MoE settings (Mixtral, Jamba).
 *
 * @example
 * ```ts
 * import type { MoeConfig } from "@kiln/kiln";
 * const mixtral: MoeConfig = { experts: 8, topK: 2, normTopk: true };
 * ```
 */
export interface MoeConfig {
  /** Experts E. */
  readonly experts: number;
  /** Experts per token k. */
  readonly topK: number;
  /** Renormalise the top-k probabilities (Mixtral yes, Jamba no). */
  readonly normTopk: boolean;
}

/**
 * A normalised model config.
 *
 * @example
 * ```ts
 * import { type ModelConfig, parseConfig } from "@kiln/kiln";
 * const cfg: ModelConfig = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2,
 * });
 * [cfg.hidden, cfg.layers, cfg.vocabSize]; // [32, 2, 64]
 * ```
 */
export interface ModelConfig {
  /** Which architecture. */
  readonly architecture: Architecture;
  /** Vocabulary size. */
  readonly vocabSize: number;
  /** Model width. */
  readonly hidden: number;
  /** FFN width (experts and dense MLPs). */
  readonly intermediate: number;
  /** Number of layers. */
  readonly layers: number;
  /** RMSNorm epsilon. */
  readonly normEps: number;
  /** lm_head shares the embedding matrix. */
  readonly tieEmbeddings: boolean;
  /** Per layer: mixer and feed-forward kinds. */
  readonly pattern: readonly { readonly mixer: MixerKind; readonly ffn: FfnKind }[];
  /** Attention settings, when any layer uses attention. */
  readonly attention?: AttentionConfig;
  /** Mamba settings, when any layer uses Mamba. */
  readonly mamba?: MambaConfig;
  /** MoE settings, when any layer uses MoE. */
  readonly moe?: MoeConfig;
  /** End-of-sequence token id(s) from the config, if given. */
  readonly eosTokenIds: readonly number[];
  /** Beginning-of-sequence token id, if given. */
  readonly bosTokenId?: number;
}

type Json = Record<string, unknown>;

function field(json: Json, file: string) {
  const int = (name: string, fallback?: number): number => {
    const v = json[name] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw new TypeError(
        `${file}: field "${name}" must be a non-negative integer, got ${
          JSON.stringify(json[name])
        }`,
      );
    }
    return v;
  };
  const num = (name: string, fallback?: number): number => {
    const v = json[name] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new TypeError(
        `${file}: field "${name}" must be a number, got ${JSON.stringify(json[name])}`,
      );
    }
    return v;
  };
  const bool = (name: string, fallback: boolean): boolean => {
    const v = json[name] ?? fallback;
    if (typeof v !== "boolean") {
      throw new TypeError(`${file}: field "${name}" must be a boolean, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  return { int, num, bool };
}

function ids(v: unknown): number[] {
  if (typeof v === "number") return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === "number");
  return [];
}

/**
 * Parses a Hugging Face `config.json` object. `file` is used in error messages.
 *
 * @example
 * ```ts
 * import { parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 100, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2, expand: 2, conv_kernel: 4,
 * });
 * cfg.pattern.length; // 2
 * ```
 */
export function parseConfig(json: unknown, file = "config.json"): ModelConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new SyntaxError(`${file}: expected a JSON object`);
  }
  const j = json as Json;
  const archs = j.architectures;
  const arch = Array.isArray(archs)
    ? archs.find((a) => ARCHITECTURES.includes(a as Architecture))
    : undefined;
  if (!arch) {
    throw new TypeError(
      `${file}: architecture ${
        JSON.stringify(archs ?? j.model_type)
      } is not supported (supported: ${ARCHITECTURES.join(", ")})`,
    );
  }
  const { int, num, bool } = field(j, file);
  const hidden = int("hidden_size");
  const layers = int("num_hidden_layers");
  const vocabSize = int("vocab_size");
  const eosTokenIds = ids(j.eos_token_id);
  const bosTokenId = typeof j.bos_token_id === "number" ? j.bos_token_id : undefined;
  if (hidden === 0 || layers === 0 || vocabSize === 0) {
    throw new RangeError(`${file}: hidden_size, num_hidden_layers and vocab_size must be > 0`);
  }
  const attention = (ropeTheta: number): AttentionConfig => {
    const heads = int("num_attention_heads");
    const kvHeads = int("num_key_value_heads", heads);
    if (heads === 0 || hidden % heads !== 0) {
      throw new RangeError(
        `${file}: hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}`,
      );
    }
    if (kvHeads === 0 || heads % kvHeads !== 0) {
      throw new RangeError(
        `${file}: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`,
      );
    }
    const sw = j.sliding_window;
    return {
      heads,
      kvHeads,
      headDim: typeof j.head_dim === "number" ? j.head_dim : hidden / heads,
      ropeTheta,
      slidingWindow: typeof sw === "number" ? sw : 0,
    };
  };
  const moe = (expertsField: string, normTopk: boolean): MoeConfig => {
    const experts = int(expertsField);
    const topK = int("num_experts_per_tok");
    if (topK < 1 || topK > experts) {
      throw new RangeError(
        `${file}: num_experts_per_tok ${topK} must be between 1 and ${expertsField} ${experts}`,
      );
    }
    return { experts, topK, normTopk };
  };
  const dtRankOf = (name: string): number => {
    const v = j[name];
    if (v === undefined || v === "auto") return Math.ceil(hidden / 16);
    return int(name);
  };

  if (arch === "MixtralForCausalLM") {
    return {
      architecture: arch,
      vocabSize,
      hidden,
      intermediate: int("intermediate_size"),
      layers,
      normEps: num("rms_norm_eps", 1e-5),
      tieEmbeddings: bool("tie_word_embeddings", false),
      pattern: Array.from(
        { length: layers },
        () => ({ mixer: "attention" as const, ffn: "moe" as const }),
      ),
      attention: attention(num("rope_theta", 1e6)),
      moe: moe("num_local_experts", true),
      eosTokenIds,
      bosTokenId,
    };
  }
  if (arch === "MambaForCausalLM") {
    // HF stores intermediate_size = int(expand · hidden); prefer it when present.
    const expand = num("expand", 2);
    const inner = typeof j.intermediate_size === "number"
      ? int("intermediate_size")
      : Math.floor(expand * hidden);
    return {
      architecture: arch,
      vocabSize,
      hidden,
      intermediate: 0,
      layers,
      normEps: num("layer_norm_epsilon", 1e-5),
      tieEmbeddings: bool("tie_word_embeddings", true),
      pattern: Array.from(
        { length: layers },
        () => ({ mixer: "mamba" as const, ffn: "none" as const }),
      ),
      mamba: {
        stateSize: int("state_size", 16),
        inner,
        convKernel: int("conv_kernel", 4),
        dtRank: dtRankOf("time_step_rank"),
        projBias: bool("use_bias", false),
        convBias: bool("use_conv_bias", true),
        innerNorms: false,
      },
      eosTokenIds,
      bosTokenId,
    };
  }
  // Jamba: attention every attn_layer_period layers (at the offset), MoE FFN every
  // expert_layer_period layers (at the offset), Mamba and dense MLP elsewhere.
  const attnPeriod = int("attn_layer_period", 8), attnOffset = int("attn_layer_offset", 4);
  const expertPeriod = int("expert_layer_period", 2), expertOffset = int("expert_layer_offset", 1);
  if (attnPeriod === 0 || expertPeriod === 0) {
    throw new RangeError(`${file}: layer periods must be > 0`);
  }
  // HF uses the sparse block only where the layer's expert count exceeds 1.
  const expertsTotal = int("num_experts", 16);
  const pattern = Array.from({ length: layers }, (_, i) => ({
    mixer: (i % attnPeriod === attnOffset ? "attention" : "mamba") as MixerKind,
    ffn: (i % expertPeriod === expertOffset && expertsTotal > 1 ? "moe" : "mlp") as FfnKind,
  }));
  const expand = int("mamba_expand", 2);
  return {
    architecture: arch,
    vocabSize,
    hidden,
    intermediate: int("intermediate_size"),
    layers,
    normEps: num("rms_norm_eps", 1e-6),
    tieEmbeddings: bool("tie_word_embeddings", false),
    pattern,
    // Jamba's eager attention ignores sliding_window (only HF's flash path applies it).
    attention: pattern.some((p) => p.mixer === "attention")
      ? { ...attention(0), slidingWindow: 0 }
      : undefined,
    mamba: pattern.some((p) => p.mixer === "mamba")
      ? {
        stateSize: int("mamba_d_state", 16),
        inner: expand * hidden,
        convKernel: int("mamba_d_conv", 4),
        dtRank: dtRankOf("mamba_dt_rank"),
        projBias: bool("mamba_proj_bias", false),
        convBias: bool("mamba_conv_bias", true),
        innerNorms: true,
      }
      : undefined,
    moe: pattern.some((p) => p.ffn === "moe") ? moe("num_experts", false) : undefined,
    eosTokenIds,
    bosTokenId,
  };
}

/**
 * Reads and parses `dir/config.json`.
 *
 * @example
 * ```ts ignore
 * import { readConfig } from "@kiln/kiln";
 * const cfg = await readConfig("./Mixtral-8x7B-v0.1");
 * ```
 */
export async function readConfig(dir: string): Promise<ModelConfig> {
  const file = `${dir.replace(/\/$/, "")}/config.json`;
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new TypeError(`${file}: not found (is ${dir} a model folder?)`);
    }
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  return parseConfig(json, file);
}
