/**
 * Builds the graphs of a causal language model (Mixtral, Mamba, Jamba, Qwen2-MoE,
 * OLMoE) from a normalised config: a prefill graph over T tokens and a one-token decode graph.
 * Both keep KV caches and SSM states in named device states, sample the next token
 * on the device and append it to a device-side log, so generation needs no host
 * round trip per token.
 *
 * Parameter names are Hugging Face's, except MoE experts, which Kiln stacks into
 * `[E, N, K]` tensors named `<layer prefix>.moe.{router,w1,w3,w2}`; see
 * {@linkcode checkpointSources} for the mapping back to checkpoint tensors.
 *
 * @module
 */

import { GraphBuilder, type Tensor } from "../compiler/builder.ts";
import type { Graph } from "../core/graph.ts";
import { callSite } from "../core/errors.ts";
import { attentionBlock, type AttentionBlockOptions } from "./attention.ts";
import { configMixer } from "./ssm_mixer.ts";
import { moe, type MoeOptions } from "./moe.ts";
import { routerHasBias } from "../ops/moe/mod.ts";
import { expertInputWidth, expertWidth, type LayerSpec, type ModelConfig } from "./config.ts";
import { moeActivationOf } from "./activation.ts";
import { decoderLayers } from "./decoder.ts";
import { expertTensor, moePrefix, selectionBiasTensor, specOf } from "./architectures/mod.ts";
import { checkRopeLength, ropeFrequencies } from "./rope_scaling.ts";
import { SLOT_POOL, STATES } from "./states.ts";
import { embedding, head as lmHead, linear, type WeightFormats } from "./weights.ts";

/**
 * Options of {@linkcode buildCausalLM}.
 *
 * @example
 * ```ts
 * import { buildCausalLM, type CausalLMOptions, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2,
 * });
 * const options: CausalLMOptions = {
 *   mode: "decode",
 *   maxSeq: 512,
 *   maxNew: 64,
 *   sampling: { temperature: 0.7, topP: 0.9 },
 * };
 * const graph = buildCausalLM(cfg, options);
 * ```
 */
export interface CausalLMOptions {
  /** `"prefill"`: T tokens from input `ids`; `"decode"`: one token from state `token`. */
  mode: "prefill" | "decode";
  /** KV-cache capacity in tokens (attention layers). */
  maxSeq: number;
  /** Capacity of the device-side log of generated ids. */
  maxNew: number;
  /** Sampling settings baked into the graph (greedy by default). */
  sampling?: { temperature?: number; topK?: number; topP?: number };
  /**
   * Compute dtype: `"f16"` stores weights, activations and KV caches in half
   * precision (SSM states and MoE routing stay f32). Default `"f32"`.
   */
  dtype?: "f32" | "f16";
  /**
   * Expert slots shared by every MoE layer (the expert scheduler's layout, see
   * `app/experts/`): weights in the pool `moe.slots.{w1,w3,w2}`
   * `[expertSlots, …]`, one `<layer>.slot_table` `[E]` u32 per layer, and a
   * `moe.usage` `[layers·E]` u32 state accumulating each layer's routed counts.
   * Absent: every layer stacks its own E experts.
   */
  expertSlots?: number;
  /**
   * Expert parallelism (needs `expertSlots`): each MoE layer also outputs its
   * input `<prefix>.moe_x` [T, d] f32 and router logits `<prefix>.moe_logits`
   * [T, E], and adds the input `<prefix>.moe_remote` [T, d] f32 (the summed
   * outputs of the experts held by other devices, written by the runner at a
   * host barrier after the router; zeros when none was chosen) to its output.
   */
  expertParallel?: boolean;
  /**
   * Router lookahead (decode graphs with `expertSlots`): at every MoE layer
   * but the first, the next MoE layer's router is applied to this layer's
   * input (Mixtral-offloading's prediction) and its top-k is logged per step in
   * the state `moe.lookahead` `[maxNew, layers·E]` u32 (1 = predicted; the
   * first MoE layer's entries are 0). The expert scheduler reads it with the
   * window's routing log to choose the next window's uploads.
   */
  moeLookahead?: boolean;
  /**
   * Parameters stored block-quantized (llama.cpp formats), by name: their
   * Linear layers and embeddings read the blocks and dequantize in the kernel.
   * Names of parameters that are not Linear weights or embeddings are ignored
   * (they stay dense): the built graph's `u32` parameters are the quantized ones.
   */
  weightFormats?: WeightFormats;
}

/**
 * Builds the prefill or decode graph.
 *
 * Inputs: prefill — `ids` u32 [T], `pos` u32 [1] (position of ids[0]), `last` u32 [1]
 * (row whose logits are sampled; later rows are padding, which the recurrent
 * states skip and attention's causal mask keeps from every real row), `seed`,
 * `step` u32 [1]; decode — `pos`, `seed`,
 * `step`. Outputs: `logits` [T, vocab] (decode: [1, vocab]). States: KV caches, SSM
 * states, `token` (the last sampled id) and `generated` (ids by step).
 *
 * @example
 * ```ts
 * import { buildCausalLM, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2,
 * });
 * const graph = buildCausalLM(cfg, { mode: "prefill", maxSeq: 128, maxNew: 32 });
 * ```
 */
export function buildCausalLM(cfg: ModelConfig, options: CausalLMOptions): Graph {
  const g = new GraphBuilder();
  // Every node's call site is the caller's line, found once: a stack trace per
  // op (formatted with source maps) cost ~0.1 s per graph of the demo model.
  return g.at(callSite(), () => causalLM(g, cfg, options));
}

function causalLM(g: GraphBuilder, cfg: ModelConfig, options: CausalLMOptions): Graph {
  const lay = specOf(cfg).layout;
  const d = cfg.hidden;
  const decode = options.mode === "decode";
  const pos = g.input("pos", [1], "u32");
  const seed = g.input("seed", [1], "u32");
  const step = g.input("step", [1], "u32");
  const token = g.state(STATES.token, [1], "u32");
  const ids = decode ? token : g.input("ids", ["T"], "u32");
  // The prefill's row to sample; rows after it are padding (a prompt padded up
  // to a compiled chunk length), which the recurrent states skip.
  const last = decode ? undefined : g.input("last", [1], "u32");
  const T = decode ? 1 : "T";
  const dt = options.dtype ?? "f32";
  const param = (name: string, shape: number[]) => g.param(name, shape, dt);
  const formats = options.weightFormats ?? {};
  const embedName = `${lay.embed}.weight`;
  const embedded = embedding(g, ids, embedName, cfg.vocabSize, d, dt, formats);
  let h = scaleEmbeddings(cfg, embedded.h); // [T, d]
  const usage: Tensor[] = [];
  const lookahead = decode && options.expertSlots !== undefined && options.moeLookahead === true;
  const moeAt = cfg.pattern.flatMap((p, i) => (p.ffn === "moe" ? [i] : []));
  // With lookahead each router is applied twice: declared once, up front.
  const routers = new Map(
    lookahead
      ? moeAt.map((i) => [i, g.param(`${moePrefix(cfg, i)}.router`, [cfg.moe!.experts, d])])
      : [],
  );
  const predicted: Tensor[] = [];
  // Each layer part is built in a scope named like its module (`model.layers.3.self_attn`),
  // so plans and profiles say which part every kernel belongs to.
  h = decoderLayers(g, cfg, h, {
    param,
    linear: (x, name, rows, cols) => linear(g, x, name, rows, cols, dt, formats),
    mixer: (layer, _i, normed, name) =>
      layer.mixer === "attention"
        ? attentionBlock(g, normed, pos, attentionOptions(cfg, layer, name, options))
        : mamba(g, normed, name, cfg, T, formats, last),
    experts: (i, x2, name) => {
      const lat = latentProjections(
        cfg,
        name,
        (x, n, rows, cols) => linear(g, x, n, rows, cols, dt, formats),
      );
      // Routing runs in f32; f16 models keep f16 expert weights. Without latent
      // projections the experts' input is the router's.
      const toF32 = (t: Tensor) => (dt === "f16" ? t.cast("f32") : t);
      const xr = toF32(x2);
      const xe = lat.down(x2);
      const xin = xe === x2 ? xr : toF32(xe);
      if (lookahead) {
        const j = moeAt.indexOf(i);
        const E = cfg.moe!.experts;
        if (j === 0) predicted.push(g.constant(new Uint32Array(E), [1, E], "u32"));
        if (j + 1 < moeAt.length) {
          // The next MoE layer's router on this layer's input: its top-k (ties included).
          const la = xr.matmul(routers.get(moeAt[j + 1])!, { transB: true }); // [1, E]
          const [v] = la.topk(cfg.moe!.topK);
          const kth = v.slice(1, cfg.moe!.topK - 1, cfg.moe!.topK);
          predicted.push(la.greaterEqual(kth));
        }
      }
      const m = moe(g, xin, {
        ...moeLayerOptions(g, cfg, xr, name, routers.get(i)),
        weightDtype: dt,
        weightFormat: formats[`${name}.w1`],
        w2Format: formats[`${name}.w2`],
        slots: options.expertSlots ? { count: options.expertSlots, pool: SLOT_POOL } : undefined,
      });
      if (options.expertSlots) usage.push(m.counts);
      let y = m.y;
      if (options.expertParallel) {
        g.output(`${name}.moe_x`, xin);
        g.output(`${name}.moe_logits`, m.logits);
        // Other devices' experts add exactly 0 here; their sum comes in through this input.
        y = y.add(g.input(`${name}.moe_remote`, [T, expertInputWidth(cfg)]));
      }
      return lat.up(dt === "f16" ? y.cast("f16") : y);
    },
  });
  const product = cfg.tieEmbeddings // [T, vocab]
    ? lmHead(g, h, embedded.table, embedName, cfg.vocabSize, d, formats)
    : linear(g, h, `${lay.lmHead}.weight`, cfg.vocabSize, d, dt, formats);
  const logits = scaleLogits(
    cfg,
    cfg.lmHeadBias ? product.add(g.param(`${lay.lmHead}.bias`, [cfg.vocabSize], dt)) : product,
  );
  g.output("logits", dt === "f16" ? logits.cast("f32") : logits);

  // Sample the next token on the device and log it: the decode loop feeds it back
  // through the `token` state and the host reads `generated` every few steps.
  const rows = decode ? logits : logits.gather(last!);
  const next = rows.sample(seed, step, options.sampling ?? {});
  g.assign(token, next);
  const generated = g.state(STATES.generated, [options.maxNew], "u32");
  g.assign(generated, generated.writeRows(next, step));
  if (usage.length > 0) {
    // Routed (token, slot) pairs per layer and expert, summed over every run.
    const st = g.state(STATES.moeUsage, [usage.length * cfg.moe!.experts], "u32");
    const all = usage.length === 1 ? usage[0] : g.concat(usage, 0);
    g.assign(st, st.add(all));
    // Per-step routing log (row `step`: each layer's routed counts; a decode row
    // is the chosen-expert set): the cache scheduler checks residency with it.
    const LE = usage.length * cfg.moe!.experts;
    const log = g.state(STATES.moeLog, [options.maxNew, LE], "u32");
    g.assign(log, log.writeRows(all.reshape([1, LE]), step));
    if (lookahead) {
      const st = g.state(STATES.moeLookahead, [options.maxNew, LE], "u32");
      const row = predicted.length === 1 ? predicted[0] : g.concat(predicted, 1);
      g.assign(st, st.writeRows(row.reshape([1, LE]), step));
    }
  }
  return g.build();
}

/**
 * The embedded rows times the config's embedding multiplier (Granite's μP),
 * for the inference and training graphs alike.
 *
 * @example
 * ```ts ignore
 * const h = scaleEmbeddings(cfg, embedding(g, ids, name, vocab, d, "f32").h);
 * ```
 */
export function scaleEmbeddings(cfg: ModelConfig, h: Tensor): Tensor {
  const m = cfg.scaling?.embedding ?? 1;
  return m === 1 ? h : h.mul(m);
}

/**
 * The LM head's output divided by the config's logit divisor (Granite's
 * `logits_scaling`), for the inference and training graphs alike.
 *
 * @example
 * ```ts ignore
 * const logits = scaleLogits(cfg, h.matmul(table, { transB: true }));
 * ```
 */
export function scaleLogits(cfg: ModelConfig, logits: Tensor): Tensor {
  const s = cfg.scaling?.logits ?? 1;
  return s === 1 ? logits : logits.div(s);
}

/**
 * The attention block options of one layer, from the config (shared by the
 * inference graphs and the training graph, `models/causal_lm_train.ts`).
 *
 * @example
 * ```ts ignore
 * const o = attentionOptions(cfg, cfg.pattern[0], "model.layers.0.self_attn", { maxSeq: 64 });
 * ```
 */
export function attentionOptions(
  cfg: ModelConfig,
  layer: LayerSpec,
  name: string,
  options: Partial<Pick<CausalLMOptions, "maxSeq" | "dtype" | "weightFormats">>,
): AttentionBlockOptions {
  const a = cfg.attention!;
  if (options.maxSeq !== undefined) checkRopeLength(a.rope, options.maxSeq, "maxSeq");
  // An odd frequency count's table is not the op's own θ^(−2i/rotaryDim): give it.
  const settings = a.rope ??
    (a.ropeFreqDim ? { type: "default" as const, theta: a.ropeTheta, factor: 1 } : undefined);
  const rope = settings
    ? ropeFrequencies(a.ropeFreqDim ?? a.rotaryDim ?? a.headDim, settings)
    : undefined;
  return {
    name,
    heads: a.heads,
    kvHeads: a.kvHeads,
    headDim: a.headDim,
    ropeTheta: layer.nope ? null : a.ropeTheta || null,
    ropeScaling: rope && !layer.nope
      ? { invFreq: rope.invFreq, scale: rope.attentionFactor }
      : undefined,
    slidingWindow: (layer.window ?? a.slidingWindow) || null,
    maxSeq: options.maxSeq,
    dtype: options.dtype ?? "f32",
    qkvBias: a.qkvBias,
    outBias: a.outBias,
    qkNormEps: a.qkNorm ? cfg.normEps : undefined,
    qkNormPerHead: a.qkNormPerHead,
    ...(a.qkNorm && cfg.normOffset ? { qkNormOffset: cfg.normOffset } : {}),
    ...(a.outputGate ? { outputGate: true } : {}),
    ...(a.qkNormAfterRope ? { qkNormAfterRope: true } : {}),
    ...(specOf(cfg).layout.qkNorm ? { qkNormNames: specOf(cfg).layout.qkNorm } : {}),
    ...(specOf(cfg).layout.attentionOut ? { outName: specOf(cfg).layout.attentionOut } : {}),
    clipQkv: a.clipQkv,
    weightFormats: options.weightFormats,
    scale: a.scale,
    rotaryDim: a.rotaryDim,
    ...(a.ropeInterleave ? { ropeInterleave: true } : {}),
    ...(a.keyScale !== undefined ? { keyScale: a.keyScale } : {}),
    sinks: a.sinks,
    ...(a.mla ? { mla: a.mla } : {}),
  };
}

/**
 * Nemotron 3's latent projections around MoE layer `name`'s experts
 * (`moe_latent_size`, the layout's `moeLatent` Linear layers, through `linear`):
 * `down` maps the layer's input to the experts' width, `up` their output back;
 * both the identity for a config without latent experts.
 *
 * @example
 * ```ts ignore
 * const lat = latentProjections(cfg, "backbone.layers.1.mixer", lin);
 * const y = lat.up(moe(g, lat.down(x), options).y);
 * ```
 */
export function latentProjections(
  cfg: ModelConfig,
  name: string,
  linear: (x: Tensor, name: string, rows: number, cols: number) => Tensor,
): { down: (x: Tensor) => Tensor; up: (y: Tensor) => Tensor } {
  const L = cfg.moe?.latent, names = specOf(cfg).layout.moeLatent;
  if (!L || !names) return { down: (x) => x, up: (y) => y };
  const d = cfg.hidden;
  return {
    down: (x) => linear(x, `${name}.${names.down}.weight`, L, d),
    up: (y) => linear(y, `${name}.${names.up}.weight`, d, L),
  };
}

/**
 * The {@linkcode moe} options a config's MoE layer `name` takes on its input
 * `x`, for the inference and training graphs alike: sizes, routing, the
 * experts' activation and biases. A router with a bias (GPT-OSS) gives the
 * layer its logits `x·Wᵀ + b`, computed here from `${name}.router` (or
 * `router`, when the caller declared it) and `${name}.router_bias`.
 *
 * @example
 * ```ts ignore
 * const m = moe(g, x2, { ...moeLayerOptions(g, cfg, x2, "model.layers.0.mlp"), weightDtype: "f32" });
 * ```
 */
export function moeLayerOptions(
  g: GraphBuilder,
  cfg: ModelConfig,
  x: Tensor,
  name: string,
  router?: Tensor,
): MoeOptions {
  const mc = cfg.moe!;
  const act = mc.activation;
  // A router bias, or latent experts (whose input is not the router's), take logits made here.
  const made = mc.routerBias || mc.latent
    ? x.matmul(router ?? g.param(`${name}.router`, [mc.experts, cfg.hidden]), { transB: true })
    : undefined;
  const logits = made && mc.routerBias
    ? made.add(g.param(`${name}.router_bias`, [mc.experts]))
    : made;
  return {
    name,
    experts: mc.experts,
    topK: mc.topK,
    ff: expertWidth(cfg),
    router: mc.router ?? "softmax_topk",
    normTopk: mc.normTopk,
    ...(mc.routedScaling !== undefined ? { routedScaling: mc.routedScaling } : {}),
    ...(mc.groups ? { groups: mc.groups } : {}),
    ...(logits ? { logits } : { routerWeight: router }),
    ...(act?.kind === "swiglu_oai"
      ? { activation: act.kind, alpha: act.alpha, limit: act.limit }
      : act
      ? { activation: act.kind }
      : cfg.hiddenAct
      ? { activation: moeActivationOf(cfg.hiddenAct) }
      : {}),
    ...(mc.expertBias ? { expertBias: true } : {}),
  };
}

function mamba(
  g: GraphBuilder,
  x: Tensor,
  name: string,
  cfg: ModelConfig,
  T: number | string,
  weightFormats: WeightFormats,
  last: Tensor | undefined,
): Tensor {
  const y = configMixer(g, x.reshape([1, T, cfg.hidden]), name, cfg, {
    mode: last ? "prefill" : "decode",
    last,
    weightFormats,
  });
  return y.reshape([T, cfg.hidden]);
}

/**
 * How one Kiln parameter is read from checkpoint tensors.
 *
 * @example
 * ```ts
 * import { buildCausalLM, checkpointSources, type ParamSource, parseConfig } from "@kiln/kiln";
 * const cfg = parseConfig({
 *   architectures: ["MambaForCausalLM"], vocab_size: 64, hidden_size: 32, state_size: 4,
 *   num_hidden_layers: 2,
 * });
 * const graph = buildCausalLM(cfg, { mode: "prefill", maxSeq: 64, maxNew: 8 });
 * const src: ParamSource = checkpointSources(cfg, graph).get("backbone.norm_f.weight")!;
 * src.tensors; // ["backbone.norm_f.weight"]
 * ```
 */
export interface ParamSource {
  /** Checkpoint tensor names; several are stacked in order (MoE experts). */
  readonly tensors: readonly string[];
  /**
   * The parameter stacks its tensors along a first axis the checkpoint tensors
   * lack (MoE experts: `[E, …]` from E tensors `[…]`), even when E is 1.
   */
  readonly stacked?: boolean;
  /**
   * The checkpoint tensor's shape when it is not the parameter's (the same
   * values: ERNIE 4.5's selection bias is stored `[1, E]`); absent: the same.
   */
  readonly shape?: readonly number[];
}

/**
 * Maps every parameter of a model graph to the checkpoint tensors it is read from.
 *
 * @example
 * ```ts ignore
 * const src = checkpointSources(cfg, graph);
 * src.get("model.layers.0.block_sparse_moe.w1"); // experts.0.w1.weight … experts.7.w1.weight
 * ```
 */
export function checkpointSources(cfg: ModelConfig, graph: Graph): Map<string, ParamSource> {
  const out = new Map<string, ParamSource>();
  const lay = specOf(cfg).layout;
  const E = cfg.moe?.experts ?? 0;
  // Kiln stacks each MoE layer's experts: `<moe prefix>.{router,w1,w3,w2}`.
  const stacked = new Map<string, ParamSource>();
  cfg.pattern.forEach((p, i) => {
    if (p.ffn !== "moe") return;
    const base = moePrefix(cfg, i);
    stacked.set(`${base}.router`, { tensors: [`${base}.${lay.router}.weight`] });
    if (routerHasBias(cfg.moe!.router ?? "softmax_topk")) {
      // DeepSeek-V3's, GLM-4.5's and ERNIE 4.5's expert selection bias.
      const row = lay.selectionBias?.row ? { shape: [1, E] } : {};
      stacked.set(`${base}.bias`, { tensors: [selectionBiasTensor(cfg, i)], ...row });
    }
    if (cfg.moe!.routerBias) {
      stacked.set(`${base}.router_bias`, { tensors: [`${base}.${lay.router}.bias`] });
    }
    const biases = lay.expertBiases;
    if (cfg.moe!.expertBias && biases) {
      const each = { b1: biases.gate, b3: biases.up, b2: biases.down };
      for (const [w, t] of Object.entries(each)) {
        stacked.set(`${base}.${w}`, { tensors: [`${base}.${lay.experts}.${t}`] });
      }
    }
    for (const w of ["w1", "w3", "w2"] as const) {
      stacked.set(`${base}.${w}`, {
        tensors: Array.from({ length: E }, (_, e) => expertTensor(cfg, i, e, w)),
        stacked: true,
      });
    }
  });
  for (const name of graph.params.keys()) {
    out.set(name, stacked.get(name) ?? { tensors: [name] });
  }
  return out;
}
