/**
 * A tiny causal language model for the lecture's synthetic tasks, built from
 * the library's layer builders, and a loop that trains it on the device:
 *
 *   embedding → N × (RMSNorm → mixer → residual [→ RMSNorm → SwiGLU → residual])
 *   → RMSNorm → head,
 *
 * with the mixer one of
 *
 * - `mamba`: `mambaMixer` (input-dependent Δ, B, C: the selective scan);
 * - `s4d`: the same block with the selective scan swapped for a time-invariant
 *   S4D layer (`s4Layer`, fixed A, B, C, Δ): in_proj → causal conv → SiLU →
 *   S4D → · SiLU(z) → out_proj, the Mamba paper's "S4 in the Mamba
 *   architecture" ablation (its Table 1);
 * - `attention`: causal multi-head softmax attention with RoPE. The batch is
 *   folded into the heads (`[T, B·heads, headDim]`) so one attention op serves
 *   every sequence; heads never mix, so this is exactly per-sequence attention.
 *
 * The loss is taken only at a fixed range of positions (the tasks score fixed
 * positions): the hidden rows there are sliced out before the head, so no
 * ignore index is needed and no logits are computed for unscored rows.
 *
 * @module
 */

import { mulberry32 } from "../../core/random.ts";
import type { Tensor } from "../../compiler/builder.ts";
import { TrainableBuilder } from "../../compiler/train/trainable.ts";
import { buildTrainStep, TRAIN_STATES } from "../../compiler/train/step.ts";
import { adamw } from "../../compiler/train/optimizers.ts";
import type { LrSchedule } from "../../compiler/train/schedule.ts";
import { softmaxCrossEntropy } from "../../compiler/train/cross_entropy.ts";
import { compile, type Executable } from "../../runtime/executable.ts";
import type { KilnDevice } from "../../runtime/device.ts";
import { conv1dCausal, mambaMixer } from "../../models/mamba.ts";
import { initS4, s4Layer } from "../../models/s4.ts";
import type { TaskBatch } from "./tasks.ts";

/** Which sequence mixer the blocks use. */
export type MixerKind = "mamba" | "s4d" | "attention";

/** Sizes of a {@linkcode buildSmallLM} model. */
export interface SmallLMConfig {
  /** Sequence mixer. */
  mixer: MixerKind;
  /** Vocabulary. */
  vocab: number;
  /** Width d. */
  d: number;
  /** Residual blocks. */
  layers: number;
  /** SSM state size N (mamba, s4d; default 16). */
  stateSize?: number;
  /** Inner width over d of the mamba / s4d block (default 2). */
  expand?: number;
  /** Attention heads (default 4). */
  heads?: number;
  /** SwiGLU width after each mixer; 0 for none (default 0). */
  mlp?: number;
  /** How the S4D layer computes (default "conv": FFT convolution). */
  s4Mode?: "conv" | "direct" | "recurrent";
}

/** Shapes of one training (or evaluation) graph. */
export interface SmallLMShape {
  /** Sequences per batch. */
  batch: number;
  /** Tokens per sequence. */
  seq: number;
  /** Scored positions `[from, to)` of every sequence. */
  scored: readonly [number, number];
}

const EPS = 1e-5;

function linear(g: TrainableBuilder, x: Tensor, name: string, rows: number, cols: number) {
  return x.matmul(g.param(`${name}.weight`, [rows, cols]), { transB: true });
}

/** The time-invariant twin of `mambaMixer`: its selective scan replaced by S4D. */
function s4dMixer(g: TrainableBuilder, x: Tensor, name: string, cfg: SmallLMConfig): Tensor {
  const [B, T, d] = x.shape as number[];
  const I = (cfg.expand ?? 2) * d;
  const xz = linear(g, x, `${name}.in_proj`, 2 * I, d);
  const u = conv1dCausal(xz.slice(2, 0, I), g.param(`${name}.conv1d.weight`, [I, 1, 4]), {
    bias: g.param(`${name}.conv1d.bias`, [I]),
    silu: true,
  });
  const y = s4Layer(g, u, {
    name: `${name}.s4`,
    H: I,
    N: cfg.stateSize ?? 16,
    init: "lin",
    mode: cfg.s4Mode ?? "conv",
    stateful: false,
  });
  const gated = y.mul(xz.slice(2, I, 2 * I).silu());
  return linear(g, gated.reshape([B * T, I]), `${name}.out_proj`, d, I).reshape([B, T, d]);
}

/** Causal attention with RoPE over every sequence at once (batch folded into heads). */
function attentionMixer(g: TrainableBuilder, x: Tensor, name: string, cfg: SmallLMConfig): Tensor {
  const [B, T, d] = x.shape as number[];
  const H = cfg.heads ?? 4, D = d / H;
  if (!Number.isInteger(D)) throw new RangeError(`SmallLM: d ${d} is not a multiple of heads ${H}`);
  const rows = x.reshape([B * T, d]);
  const pos = g.constant([0], [1], "u32");
  // [B·T, H·D] → [T, B·H, D]: each (sequence, head) pair is one attention head.
  const heads = (w: string) =>
    linear(g, rows, `${name}.${w}`, d, d).reshape([B, T, H, D]).transpose([1, 0, 2, 3])
      .reshape([T, B * H, D]);
  const q = heads("q_proj").rope(pos, 10000), k = heads("k_proj").rope(pos, 10000);
  const o = g.attention(q, k, heads("v_proj"), undefined, {
    causal: true,
    scale: 1 / Math.sqrt(D),
  });
  const back = o.reshape([T, B, d]).transpose([1, 0, 2]).reshape([B * T, d]);
  return linear(g, back, `${name}.o_proj`, d, d).reshape([B, T, d]);
}

/**
 * Builds the model on the inputs `ids` (u32 `[batch·seq]`) and `targets`
 * (u32 `[batch·(to − from)]`, the scored positions of each sequence in order);
 * returns the mean cross-entropy on the scored positions and their logits.
 */
export function buildSmallLM(
  g: TrainableBuilder,
  cfg: SmallLMConfig,
  shape: SmallLMShape,
): { loss: Tensor; logits: Tensor } {
  const { batch: B, seq: T, scored: [from, to] } = shape;
  if (!(Number.isInteger(from) && from >= 0 && to > from && to <= T)) {
    throw new RangeError(`SmallLM: scored range [${from}, ${to}) must lie within [0, ${T})`);
  }
  const d = cfg.d;
  const ids = g.input("ids", [B * T], "u32");
  const targets = g.input("targets", [B * (to - from)], "u32");
  let h = g.param("embed.weight", [cfg.vocab, d]).gather(ids).reshape([B, T, d]);
  for (let l = 0; l < cfg.layers; l++) {
    const p = `layers.${l}`;
    h = h.add(g.scope(`${p}.mixer`, () => {
      const x = h.rmsnorm(g.param(`${p}.norm.weight`, [d]), EPS);
      if (cfg.mixer === "attention") return attentionMixer(g, x, `${p}.mixer`, cfg);
      if (cfg.mixer === "s4d") return s4dMixer(g, x, `${p}.mixer`, cfg);
      return mambaMixer(g, x, {
        name: `${p}.mixer`,
        d,
        expand: cfg.expand ?? 2,
        stateSize: cfg.stateSize ?? 16,
        mode: "stateless",
      });
    }));
    const ff = cfg.mlp ?? 0;
    if (ff > 0) {
      h = h.add(g.scope(`${p}.mlp`, () => {
        const x = h.rmsnorm(g.param(`${p}.mlp_norm.weight`, [d]), EPS).reshape([B * T, d]);
        const a = linear(g, x, `${p}.mlp.gate_proj`, ff, d).silu();
        const y = linear(
          g,
          a.mul(linear(g, x, `${p}.mlp.up_proj`, ff, d)),
          `${p}.mlp.down_proj`,
          d,
          ff,
        );
        return y.reshape([B, T, d]);
      }));
    }
  }
  // Only the scored rows reach the head.
  const hs = h.slice(1, from, to).reshape([B * (to - from), d]);
  const logits = hs.rmsnorm(g.param("norm_f.weight", [d]), EPS)
    .matmul(g.param("lm_head.weight", [cfg.vocab, d]), { transB: true });
  return { loss: softmaxCrossEntropy(logits, targets), logits };
}

/**
 * Seeded initial values of the model's parameters: embeddings N(0, 1), linear
 * and conv weights uniform ±1/√fan_in (PyTorch's default, as Mamba keeps it),
 * norms 1; the Mamba mixer as Hugging Face initialises it (A_log = log(1..N),
 * D = 1, Δ log-uniform in [0.001, 0.1] through dt_proj's bias), the S4D layer
 * as `initS4` ("lin": Aₙ = −½ + iπn, B = 1, C complex normal, same Δ range).
 */
export function initSmallLM(
  trainables: ReadonlyMap<string, Tensor>,
  cfg: SmallLMConfig,
  seed: number,
): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  let k = 0;
  for (const [name, t] of trainables) {
    const shape = t.shape as number[];
    const n = shape.reduce((a, b) => a * b, 1), last = shape[shape.length - 1];
    const rand = mulberry32(seed * 1000 + k++);
    const uniform = (b: number) => Float32Array.from({ length: n }, () => (2 * rand() - 1) * b);
    const s4 = /\.s4\.(A|B|C|log_dt|D)$/.exec(name);
    if (s4) {
      const I = shape[0];
      const p = initS4({ H: I, N: cfg.stateSize ?? 16, init: "lin", seed: seed * 1000 + k });
      out[name] = p[s4[1] as "A" | "B" | "C" | "log_dt" | "D"];
    } else if (/norm\w*\.weight$/.test(name)) out[name] = new Float32Array(n).fill(1);
    else if (name.endsWith(".A_log")) {
      out[name] = Float32Array.from({ length: n }, (_, i) => Math.log((i % last) + 1));
    } else if (name.endsWith(".D")) out[name] = new Float32Array(n).fill(1);
    else if (name.endsWith("dt_proj.bias")) {
      const [lo, hi] = [Math.log(0.001), Math.log(0.1)];
      out[name] = Float32Array.from({ length: n }, () => {
        const dt = Math.exp(lo + rand() * (hi - lo));
        return dt + Math.log(-Math.expm1(-dt)); // softplus⁻¹(Δ)
      });
    } else if (name.endsWith("dt_proj.weight")) out[name] = uniform(last ** -0.5);
    else if (name.endsWith("conv1d.bias")) out[name] = uniform(0.5); // ±1/√k, k = 4
    else if (name === "embed.weight") {
      out[name] = Float32Array.from(
        { length: n },
        () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand()),
      );
    } else if (name.endsWith(".bias")) out[name] = new Float32Array(n);
    else out[name] = uniform(1 / Math.sqrt(last));
  }
  return out;
}

/** Training settings of a {@linkcode SmallLMRun}. */
export interface SmallLMTraining {
  /** Learning rate by update (AdamW). */
  schedule: LrSchedule;
  /** AdamW weight decay on the projection matrices (default 0.1). */
  weightDecay?: number;
  /** Global gradient-norm clip (default 1). */
  clipNorm?: number;
  /** Seed of the initial weights. */
  seed: number;
  /** Updates between loss readbacks (the device keeps this many losses). */
  logEvery: number;
}

/** The scored targets of `b` (its columns `[from, to)`) as u32, row after row. */
export function scoredTargets(b: TaskBatch, [from, to]: readonly [number, number]): Uint32Array {
  const out = new Uint32Array(b.batch * (to - from));
  for (let r = 0; r < b.batch; r++) {
    for (let t = from; t < to; t++) {
      const v = b.targets[r * b.length + t];
      if (v < 0) throw new RangeError(`scoredTargets: position ${t} of row ${r} is not scored`);
      out[r * (to - from) + t - from] = v;
    }
  }
  return out;
}

/**
 * One model being trained on the device: AdamW updates with no readback, the
 * loss log read every `logEvery` updates, and an evaluation graph sharing the
 * weights that scores argmax accuracy on held-out batches.
 */
export class SmallLMRun {
  /** The model's sizes. */
  readonly cfg: SmallLMConfig;
  /** Training batch shape. */
  readonly shape: SmallLMShape;
  /** Trainable scalars. */
  readonly paramCount: number;
  readonly #exe: Executable;
  readonly #logEvery: number;
  #eval?: { exe: Executable; batch: number };
  #updates = 0;
  #logged = 0;
  /** Training loss of every update read back so far, by update (1-based). */
  readonly losses: [number, number][] = [];

  /** Builds, compiles and initialises the model on `device`. */
  constructor(device: KilnDevice, cfg: SmallLMConfig, shape: SmallLMShape, t: SmallLMTraining) {
    this.cfg = cfg;
    this.shape = shape;
    this.#logEvery = t.logEvery;
    const g = new TrainableBuilder();
    const { loss } = buildSmallLM(g, cfg, shape);
    buildTrainStep(g, loss, {
      optimizer: adamw({
        weightDecay: t.weightDecay ?? 0.1,
        // Only projection / embedding matrices decay: not A_log, the S4D A, B, C, norms or D.
        decay: (name, s) => name.endsWith(".weight") && s.length >= 2,
      }),
      schedule: t.schedule,
      clipNorm: t.clipNorm ?? 1,
      logEvery: t.logEvery,
    });
    this.paramCount = [...g.trainables.values()]
      .reduce((a, p) => a + (p.shape as number[]).reduce((x, y) => x * y, 1), 0);
    this.#exe = compile(g.build(), device);
    for (const [name, v] of Object.entries(initSmallLM(g.trainables, cfg, t.seed))) {
      this.#exe.writeState(name, v);
    }
  }

  /** Updates applied. */
  get updates(): number {
    return this.#updates;
  }

  /** One AdamW update on `b` (no readback). */
  async step(b: TaskBatch): Promise<void> {
    await this.#exe.submit({
      ids: Uint32Array.from(b.ids),
      targets: scoredTargets(b, this.shape.scored),
    });
    this.#updates++;
    if (this.#updates % this.#logEvery === 0) await this.readLosses();
  }

  /** Reads the losses logged since the last read into {@linkcode SmallLMRun.losses}. */
  async readLosses(): Promise<void> {
    if (this.#logged === this.#updates) return;
    const log = (await this.#exe.readState(TRAIN_STATES.losses)).data;
    for (let s = this.#logged; s < this.#updates; s++) {
      this.losses.push([s + 1, log[s % this.#logEvery]]);
    }
    this.#logged = this.#updates;
  }

  /** Argmax accuracy and mean cross-entropy on the scored positions of held-out batches. */
  async evaluate(batches: readonly TaskBatch[]): Promise<{ accuracy: number; loss: number }> {
    const B = batches[0].batch;
    if (this.#eval?.batch !== B) {
      this.#eval?.exe.dispose();
      const g = new TrainableBuilder();
      const { loss, logits } = buildSmallLM(g, this.cfg, { ...this.shape, batch: B });
      g.output("loss", loss);
      g.output("pred", logits.argmax(-1));
      this.#eval = {
        exe: compile(g.build(), this.#exe.device, { shareWith: this.#exe }),
        batch: B,
      };
    }
    let hit = 0, n = 0, lossSum = 0;
    for (const b of batches) {
      const targets = scoredTargets(b, this.shape.scored);
      const r = await this.#eval.exe.run({ ids: Uint32Array.from(b.ids), targets });
      const pred = r.pred.data;
      for (let i = 0; i < targets.length; i++) if (pred[i] === targets[i]) hit++;
      n += targets.length;
      lossSum += r.loss.data[0];
    }
    return { accuracy: hit / n, loss: lossSum / batches.length };
  }

  /** Frees the executables. */
  dispose(): void {
    this.#eval?.exe.dispose();
    this.#exe.dispose();
  }
}
