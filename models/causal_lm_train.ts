/**
 * The training (and evaluation) graph of a causal language model, built from
 * the same architecture spec and layer builders as the inference graphs
 * (`causal_lm.ts`): B sequences of T tokens, no KV caches or SSM states, and
 * the mean next-token cross-entropy as the loss. Parameters keep their
 * inference names (Hugging Face's; MoE experts stacked), so a trained graph's
 * weights load into `buildCausalLM`'s graphs as they are.
 *
 * @module
 */

import type { Tensor } from "../compiler/builder.ts";
import type { TrainableBuilder } from "../compiler/train/trainable.ts";
import { softmaxCrossEntropy } from "../compiler/train/cross_entropy.ts";
import type { ModelConfig } from "./config.ts";
import { moePrefix, specOf } from "./architectures/mod.ts";
import { attentionBlock } from "./attention.ts";
import {
  attentionOptions,
  latentProjections,
  moeLayerOptions,
  scaleEmbeddings,
  scaleLogits,
} from "./causal_lm.ts";
import { checkRopeLength } from "./rope_scaling.ts";
import { configMixer } from "./ssm_mixer.ts";
import { moe, type MoeOutputs } from "./moe.ts";
import { routerHasBias } from "../ops/moe/mod.ts";
import { decoderLayers } from "./decoder.ts";
import { embedding, linear } from "./weights.ts";

/**
 * Options of {@linkcode buildTrainingLM}.
 *
 * @example
 * ```ts
 * import type { TrainingLMOptions } from "@kiln/kiln";
 * const o: TrainingLMOptions = { batch: 4, seq: 128 };
 * ```
 */
export interface TrainingLMOptions {
  /** Sequences per micro-batch B. */
  batch: number;
  /** Tokens per sequence T. */
  seq: number;
  /**
   * The loss from the final hidden states `[B·T, d]`, the LM head weight
   * `[V, d]` and the u32 targets `[B·T]` (default: logits, then
   * {@linkcode softmaxCrossEntropy}); a fused LM-head cross-entropy plugs in here.
   */
  headLoss?: (h: Tensor, head: Tensor, targets: Tensor) => Tensor;
  /**
   * Extra loss terms from the MoE layers' outputs (load-balancing, z-loss),
   * added to the cross-entropy; absent: none.
   */
  moeLoss?: (layers: readonly MoeOutputs[]) => Tensor | undefined;
  /**
   * Switch-style capacity factor of the MoE layers (> 0): each expert takes at
   * most `min(N, ⌊cf·N·k/E⌋)` of the `N = B·T` tokens of a micro-batch, the
   * rest skip it (their residual passes through). Absent: dropless.
   */
  capacityFactor?: number;
}

/**
 * What {@linkcode buildTrainingLM} built.
 *
 * @example
 * ```ts ignore
 * const { loss, logits } = buildTrainingLM(g, cfg, { batch: 2, seq: 16 });
 * ```
 */
export interface TrainingLM {
  /** Scalar loss (cross-entropy plus any MoE terms). */
  readonly loss: Tensor;
  /** Mean next-token cross-entropy alone. */
  readonly crossEntropy: Tensor;
  /** Builds the logits `[B·T, V]` (only when asked: training need not hold them). */
  readonly logits: () => Tensor;
  /** Outputs of the MoE layers, in layer order. */
  readonly moe: readonly MoeOutputs[];
}

/**
 * Builds the forward pass and loss of `cfg`'s model into `g` on the inputs
 * `ids` and `targets` (u32 `[B·T]`, sequence after sequence). Attention layers
 * run per sequence (causal within it); Mamba layers take the batch as `[B, T, d]`;
 * everything else works on the `B·T` rows at once. `g` is a
 * `TrainableBuilder` (its parameters are states, declared once and shared by
 * the per-sequence attention blocks), the graph is ready for `buildTrainStep`.
 *
 * @example
 * ```ts ignore
 * import { buildTrainingLM, buildTrainStep, parseConfig, sgd, TrainableBuilder } from "@kiln/kiln";
 * const cfg = parseConfig({ architectures: ["MixtralForCausalLM"], vocab_size: 64, hidden_size: 32,
 *   intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
 *   num_local_experts: 4, num_experts_per_tok: 2 });
 * const g = new TrainableBuilder();
 * const { loss } = buildTrainingLM(g, cfg, { batch: 2, seq: 16 });
 * buildTrainStep(g, loss, { optimizer: sgd(), schedule: { peak: 0.1, decay: "constant" } });
 * ```
 */
export function buildTrainingLM(
  g: TrainableBuilder,
  cfg: ModelConfig,
  options: TrainingLMOptions,
): TrainingLM {
  const { batch: B, seq: T } = options;
  for (const [what, v] of [["batch", B], ["seq", T]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`buildTrainingLM: ${what} must be a positive integer, got ${v}`);
    }
  }
  checkRopeLength(cfg.attention?.rope, T, "buildTrainingLM: seq");
  const cf = options.capacityFactor;
  if (cf !== undefined && !(typeof cf === "number" && Number.isFinite(cf) && cf > 0)) {
    throw new RangeError(`buildTrainingLM: capacityFactor must be a finite number > 0, got ${cf}`);
  }
  const lay = specOf(cfg).layout;
  const d = cfg.hidden;
  const dt = "f32";
  const ids = g.input("ids", [B * T], "u32");
  const targets = g.input("targets", [B * T], "u32");
  const embedName = `${lay.embed}.weight`;
  const embedded = embedding(g, ids, embedName, cfg.vocabSize, d, dt);
  let looked = embedded.h;
  if (cfg.paddingIdx !== undefined) {
    // nn.Embedding(padding_idx): the pad row reads as any other, but its lookups
    // send no gradient back (a tied LM head still trains it).
    const real = ids.notEqual(cfg.paddingIdx).reshape([B * T, 1]);
    looked = looked.where(real, looked.stopGradient());
  }
  const h = scaleEmbeddings(cfg, looked); // [B·T, d]
  const pos = g.constant([0], [1], "u32");
  const moes: MoeOutputs[] = [];
  const hLast = decoderLayers(g, cfg, h, {
    param: (name, shape) => g.param(name, shape, dt),
    linear: (x, name, rows, cols) => linear(g, x, name, rows, cols, dt),
    mixer: (layer, _i, normed, name) => {
      if (layer.mixer === "attention") {
        // One causal attention per sequence; the weights are shared (declared once).
        const opts = attentionOptions(cfg, layer, name, {});
        const seqs = Array.from(
          { length: B },
          (_, b) =>
            attentionBlock(g, B === 1 ? normed : normed.slice(0, b * T, (b + 1) * T), pos, opts),
        );
        return B === 1 ? seqs[0] : g.concat(seqs, 0);
      }
      return configMixer(g, normed.reshape([B, T, d]), name, cfg, { mode: "stateless" })
        .reshape([B * T, d]);
    },
    experts: (_i, x2, name) => {
      const lat = latentProjections(
        cfg,
        name,
        (x, n, rows, cols) => linear(g, x, n, rows, cols, dt),
      );
      const opts = { ...moeLayerOptions(g, cfg, x2, name), capacityFactor: cf };
      const out = moe(g, lat.down(x2), opts);
      moes.push(out);
      return lat.up(out.y);
    },
  });
  // Logits ÷ s is (h ÷ s)·Wᵀ: dividing h keeps a fused LM-head loss in play.
  const hf = scaleLogits(cfg, hLast);
  const headW = cfg.tieEmbeddings
    ? embedded.table
    : g.param(`${lay.lmHead}.weight`, [cfg.vocabSize, d], dt);
  // The same product `linear` / `head` build for inference, on the one head weight.
  const headB = cfg.lmHeadBias ? g.param(`${lay.lmHead}.bias`, [cfg.vocabSize], dt) : undefined;
  const logits = () => {
    const z = hf.matmul(headW, { transB: true });
    return headB ? z.add(headB) : z;
  };
  if (options.headLoss && headB) {
    throw new TypeError(
      `${cfg.architecture}: the cross-entropy fused with the LM head has no head bias; ` +
        "train this model without it",
    );
  }
  const ce = options.headLoss
    ? options.headLoss(hf, headW, targets)
    : softmaxCrossEntropy(logits(), targets);
  const extra = options.moeLoss?.(moes);
  return { loss: extra ? ce.add(extra) : ce, crossEntropy: ce, logits, moe: moes };
}

/**
 * Parameters a training step must not update: weights in all but name that
 * PyTorch keeps as buffers — the expert selection bias of a `sigmoid_bias`
 * router (GLM-4.5's and DeepSeek-V3's `e_score_correction_bias`, balanced by
 * a rule outside the loss). They get no gradient, but an optimizer with
 * decoupled weight decay would still shrink them; they load and save as the
 * others do.
 *
 * @example
 * ```ts
 * import { frozenParams, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({ architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32,
 *   state_size: 4, num_hidden_layers: 2 });
 * frozenParams(cfg).size; // 0
 * ```
 */
export function frozenParams(cfg: ModelConfig): Set<string> {
  if (!routerHasBias(cfg.moe?.router ?? "softmax_topk")) return new Set();
  return new Set(
    cfg.pattern.flatMap((p, i) => (p.ffn === "moe" ? [`${moePrefix(cfg, i)}.bias`] : [])),
  );
}

/**
 * The activation-checkpointing segments of a model: one per layer (the
 * `checkpoint` of `buildTrainStep` / `GraphBuilder.grad`), so a training step
 * keeps only what enters and leaves each layer and recomputes the rest.
 *
 * @example
 * ```ts
 * import { layerCheckpoints, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({ architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32,
 *   state_size: 4, num_hidden_layers: 2 });
 * layerCheckpoints(cfg).test("backbone.layers.1.mixer"); // true
 * ```
 */
export function layerCheckpoints(cfg: ModelConfig): RegExp {
  const prefix = specOf(cfg).layout.layers.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`^${prefix}\\.\\d+(?=\\.|$)`);
}
