/**
 * Routing measurements shared by the lecture's MoE experiments
 * (`load_balancing.ts`, `specialisation.ts`): a forward-only graph of a model
 * that reports, per MoE layer, the routed (token, slot) pairs per expert and
 * the router logits of every token, on a fixed batch; the load statistics
 * Switch and Mixtral report (coefficient of variation, max/mean); per-token
 * top-k experts from router logits; and SVG panels side by side.
 *
 * The graph is the training graph's forward (`buildTrainingLM`), the same
 * layer builders and parameter names as inference, so it routes exactly as
 * `loadModel`'s model does (a test checks its logits against the prefill's).
 *
 * @module
 */

import { TrainableBuilder } from "../../compiler/train/trainable.ts";
import { buildTrainingLM } from "../../models/causal_lm_train.ts";

import { parseConfig } from "../../models/architectures/mod.ts";
import type { ModelConfig } from "../../models/config.ts";
import { compile, type Executable } from "../../runtime/executable.ts";
import { defaultDevice, type KilnDevice } from "../../runtime/device.ts";
import { loadWeightsIntoStates } from "../../app/train/checkpoint.ts";

/** What one probe run measured. */
export interface RoutingReading {
  /** Mean next-token cross-entropy (nats) of the batch. */
  loss: number;
  /** Per MoE layer (layer order): routed (token, slot) pairs per expert `[E]`. */
  counts: Uint32Array[];
  /** Per MoE layer: router logits `[B·T, E]`, row per token. */
  logits: Float32Array[];
}

/** A compiled forward that reads a model's routing on `batch × seq` token windows. */
export interface RoutingProbe {
  /** The model's config. */
  readonly cfg: ModelConfig;
  /** The executable (its states are the model's weights, or shared with another's). */
  readonly exe: Executable;
  /** Runs one window batch: `ids` and `targets` are `[batch·seq]`. */
  run(ids: Uint32Array, targets: Uint32Array): Promise<RoutingReading>;
}

/**
 * A routing probe for `cfg` on `batch × seq` tokens. With `shareWith` (a
 * `Trainer`'s executable) it reads the live weights of a run in training;
 * without, write the weights into `exe`'s states (see {@linkcode loadRoutingProbe}).
 */
export function routingProbe(
  cfg: ModelConfig,
  options: { batch: number; seq: number; device: KilnDevice; shareWith?: Executable },
): RoutingProbe {
  const g = new TrainableBuilder();
  const lm = buildTrainingLM(g, cfg, { batch: options.batch, seq: options.seq });
  if (lm.moe.length === 0) {
    throw new TypeError(
      `routingProbe: the model (${cfg.architecture}) has no MoE layer to measure`,
    );
  }
  g.output("loss", lm.crossEntropy);
  lm.moe.forEach((m, i) => {
    g.output(`counts${i}`, m.counts);
    g.output(`logits${i}`, m.logits);
  });
  const exe = compile(g.build(), options.device, { shareWith: options.shareWith });
  return {
    cfg,
    exe,
    async run(ids, targets) {
      const r = await exe.run({ ids, targets });
      return {
        loss: r.loss.data[0],
        counts: lm.moe.map((_, i) => Uint32Array.from(r[`counts${i}`].data)),
        logits: lm.moe.map((_, i) => Float32Array.from(r[`logits${i}`].data)),
      };
    },
  };
}

/**
 * A routing probe holding the weights of the Hugging Face model folder `dir`
 * (config.json and safetensors, as `loadModel` reads them).
 */
export async function loadRoutingProbe(
  dir: string,
  options: { batch: number; seq: number; device?: KilnDevice },
): Promise<RoutingProbe> {
  const cfg = parseConfig(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)));
  const device = options.device ?? await defaultDevice();
  const probe = routingProbe(cfg, { ...options, device });
  await loadWeightsIntoStates(probe.exe, cfg, dir);
  return probe;
}

/** Load statistics of one layer's per-expert counts. */
export interface LoadStats {
  /** Coefficient of variation: population standard deviation / mean (0 = balanced). */
  cv: number;
  /** Largest count / mean count (1 = balanced, E = everything on one expert). */
  maxOverMean: number;
}

/** CV and max/mean of per-expert counts (Switch Transformer's load measures). */
export function loadStats(counts: ArrayLike<number>): LoadStats {
  const n = counts.length;
  if (n === 0) throw new RangeError("loadStats: no experts");
  let sum = 0, max = -Infinity;
  for (let i = 0; i < n; i++) {
    sum += counts[i];
    max = Math.max(max, counts[i]);
  }
  const mean = sum / n;
  if (!(mean > 0)) throw new RangeError(`loadStats: counts sum to ${sum}, nothing was routed`);
  let v = 0;
  for (let i = 0; i < n; i++) v += (counts[i] - mean) ** 2;
  return { cv: Math.sqrt(v / n) / mean, maxOverMean: max / mean };
}

/**
 * The `k` largest router logits' expert ids per row of `logits [rows, E]`,
 * best first (a tie goes to the lower id, as the router's top-k does).
 */
export function topKExperts(logits: Float32Array, experts: number, k: number): Uint32Array {
  if (!Number.isInteger(k) || k < 1 || k > experts) {
    throw new RangeError(`topKExperts: k must be in [1, ${experts}], got ${k}`);
  }
  if (logits.length % experts !== 0) {
    throw new RangeError(`topKExperts: ${logits.length} logits are not rows of ${experts}`);
  }
  const rows = logits.length / experts;
  const out = new Uint32Array(rows * k);
  const taken = new Uint8Array(experts);
  for (let r = 0; r < rows; r++) {
    taken.fill(0);
    for (let s = 0; s < k; s++) {
      let best = -1;
      for (let e = 0; e < experts; e++) {
        if (!taken[e] && (best < 0 || logits[r * experts + e] > logits[r * experts + best])) {
          best = e;
        }
      }
      taken[best] = 1;
      out[r * k + s] = best;
    }
  }
  return out;
}
