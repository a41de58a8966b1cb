/**
 * Expert parallelism: a MoE model's experts split across several GPU devices.
 * Activations move, weights stay.
 *
 * Placement ({@linkcode planDevices}): in every MoE layer each device holds the
 * same number of experts. Without a budget the split is balanced; with a
 * per-device budget the home device (device 0, which also holds every
 * non-expert weight, cache and activation) keeps as many experts as fit and the
 * rest are spread over the other devices; with routing statistics the most used
 * experts stay home. Each device keeps its experts in its own slot pool
 * (`moe.slots.*`) with one slot table per layer; an expert held elsewhere has
 * the table entry `0xFFFFFFFF`, which the MoE kernels treat as "adds exactly
 * 0" (its pairs are skipped).
 *
 * Data path of one forward pass (DSL → graph → plan → runtime):
 * - the home graph (`buildCausalLM(…, { expertParallel: true })`) outputs each
 *   MoE layer's input `moe_x` and router logits `moe_logits`, and adds an input
 *   `moe_remote` to the layer's output (the residual add fuses behind it);
 * - the run is split by host barriers (`RunOptions.barriers`) right after each
 *   such layer's router kernel: the kernels so far are submitted, `moe_x` and
 *   `moe_logits` come back in one readback, and the host repeats the router's
 *   top-k selection on the logits (`selection.ts`: the kernel's rule; for the
 *   `sigmoid_bias` router a near-tie counts every expert as possibly chosen).
 *   Devices none of whose experts may have been chosen are skipped; each
 *   other device runs its experts-only graph (the same `moe` op, given the
 *   logits instead of the router weight, so it selects the same experts) on the
 *   same x and returns its partial output in one readback (devices run in
 *   parallel). The host sums the partial outputs and writes them into
 *   `moe_remote`; then the rest of the home pass is submitted.
 *
 * Cost: one host round trip per MoE layer with remote experts per forward
 * pass, plus one per remote device whose experts were chosen (Deno's readback
 * is ~10 ms on a software adapter, so a decode step costs about two round trips
 * per such layer; the stats count them). Activation bytes per layer and token:
 * (d + E)·4 down from home, (d + E)·4 up to and d·4 back from each device used,
 * d·4 up to home.
 *
 * Quantized experts (`quantize`, or a GGUF file's blocks): every device's slot
 * pool holds word-padded blocks in one format per weight kind across layers
 * (`unifyExpertFormats`, as the single-device pool), uploads copy block bytes,
 * and the placement counts an expert in its block bytes. The expert kernels
 * are the single-device ones, so the bit-identity below holds for them too.
 *
 * Correctness: with top-k ≤ 2 the result is bit-identical to single-device
 * execution: the single-device decode GEMV sums `0 + w₀·o₀ + w₁·o₁` in slot
 * order, and a split gives `(0 + w₀·o₀) + (0 + w₁·o₁)` — with one term zero
 * on each side every intermediate sum is exact (x + 0 = x), as long as the
 * shader compiler does not contract `y + w·o` into a fused multiply-add
 * (lavapipe does not; the tests check bit equality). With k ≥ 3 a token whose
 * experts sit on several devices is summed in another order: results then
 * differ from single-device ones by float reassociation (a few ulps).
 *
 * @module
 */

import { GraphBuilder } from "../../compiler/builder.ts";
import type { Plan } from "../../compiler/plan.ts";
import { moe } from "../../models/moe.ts";
import { type MoeActivation, routerHasBias } from "../../ops/moe/mod.ts";
import { SLOT_POOL } from "../../models/states.ts";
import { type GpuDevice, type KilnDevice, whileDeviceAlive } from "../../runtime/device.ts";
import { compile, type Executable } from "../../runtime/executable.ts";
import type { GpuExecutable, HostBarriers } from "../../runtime/gpu_executor.ts";
import { formatBytes } from "./placement.ts";
import type { WeightSource } from "../model/source.ts";
import { type DevicePlan, ELSEWHERE } from "./device_plan.ts";
import { moeRouterKernel } from "./router_kernel.ts";
import { type HostRouting, routeOnHost } from "./selection.ts";
import { type ExpertFormats, type ExpertTensorName, ExpertTiers } from "./tiers.ts";

/**
 * How a layer routes, as the other devices repeat it: the home router's kind
 * and its weight options (`moe`'s).
 *
 * @example
 * ```ts
 * import type { RemoteRouting } from "./parallel.ts";
 * const glm: RemoteRouting = { topK: 8, router: "sigmoid_bias", routedScaling: 2.5, normTopk: true };
 * ```
 */
export interface RemoteRouting extends HostRouting {
  /** Renormalise the chosen weights (default true). */
  normTopk?: boolean;
  /** `sigmoid_bias`: factor on the weights (default 1). */
  routedScaling?: number;
  /** The experts' gated activation (default `"swiglu"`; not `"swiglu_oai"`). */
  activation?: MoeActivation;
}

/**
 * The experts-only graph another device runs: `y = moe(x)` over the experts it
 * holds, routed by the given logits (not a router weight) — and, for the
 * `sigmoid_bias` router, the layer's selection bias, an input `bias [E]` —
 * with one slot pool for all its layers and the layer's slot table as a
 * parameter rewritten per call.
 * With `formats`, the pool holds the experts' blocks (u32 words per slot).
 *
 * @example
 * ```ts
 * import { buildRemoteExperts } from "./parallel.ts";
 * const g = buildRemoteExperts({ d: 64, ff: 128, experts: 8, topK: 2, slots: 4 });
 * [...g.inputs.keys()]; // ["x", "logits"]
 * const q = buildRemoteExperts({
 *   d: 256, ff: 256, experts: 8, topK: 2, slots: 4, formats: { w13: "q4_k", w2: "q4_k" },
 * });
 * q.values[q.params.get("moe.slots.w1")!].shape; // [4, 9216]: 144-byte blocks, 256 rows
 * ```
 */
export function buildRemoteExperts(
  o: RemoteRouting & {
    d: number;
    ff: number;
    experts: number;
    slots: number;
    dtype?: "f32" | "f16";
    formats?: ExpertFormats;
  },
): ReturnType<GraphBuilder["build"]> {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", o.d]);
  const logits = g.input("logits", ["T", o.experts]);
  const sig = routerHasBias(o.router ?? "softmax_topk");
  const m = moe(g, x, {
    name: "remote",
    experts: o.experts,
    topK: o.topK,
    ff: o.ff,
    router: o.router ?? "softmax_topk",
    normTopk: o.normTopk ?? true,
    // The layer's selection bias, given per run as the slot table is.
    ...(sig ? { selectionBias: g.input("bias", [o.experts]) } : {}),
    ...(o.routedScaling !== undefined ? { routedScaling: o.routedScaling } : {}),
    ...(o.groups ? { groups: o.groups } : {}),
    ...(o.activation && o.activation !== "swiglu" ? { activation: o.activation } : {}),
    weightDtype: o.dtype ?? "f32",
    weightFormat: o.formats?.w13,
    w2Format: o.formats?.w2,
    slots: { count: o.slots, pool: SLOT_POOL },
    logits,
  });
  g.output("y", m.y);
  return g.build();
}

/**
 * Counters of expert-parallel execution, cumulative since load (or `resetStats`).
 *
 * @example
 * ```ts ignore
 * import { type ParallelStats, loadModel } from "@kiln/kiln";
 * const model = await loadModel("./tiny-mixtral", { devices: 2 });
 * for await (const _ of model.generateIds([1, 2, 3], { maxTokens: 8 })) { /* … *\/ }
 * const s: ParallelStats = model.parallel!.stats;
 * console.log(s.roundTrips / s.decodeSteps, "host round trips per token");
 * ```
 */
export interface ParallelStats {
  /** Forward passes (prefill and decode). */
  steps: number;
  /** Decode steps (one token each). */
  decodeSteps: number;
  /** Host barriers passed (MoE layers with experts elsewhere, per pass). */
  barriers: number;
  /** Host round trips: one readback of x and logits per barrier, one per remote device run. */
  roundTrips: number;
  /** Of those, during decode. */
  decodeRoundTrips: number;
  /** Remote device runs (a device whose experts some token chose). */
  remoteRuns: number;
  /** Barriers where no token chose another device's expert (no remote trip). */
  skipped: number;
  /** Activation bytes moved between host and devices (both ways, all devices). */
  activationBytes: number;
  /** Of those, during decode. */
  decodeActivationBytes: number;
  /** Routed (token, slot) pairs per device. */
  pairs: number[];
  /** Milliseconds spent in barriers (readbacks, remote runs, writes). */
  barrierMs: number;
}

/**
 * Runs the experts of a model held by other devices (see the module doc).
 *
 * @example
 * ```ts ignore
 * import { loadModel, requestDevice } from "@kiln/kiln";
 * const devices = [await requestDevice(), await requestDevice()];
 * const model = await loadModel("./tiny-mixtral", { devices });
 * await model.forward([1, 2, 3]);
 * console.log(model.parallel?.report()); // split, round trips, bytes moved
 * ```
 */
export class ExpertParallel {
  /** The placement. */
  readonly plan: DevicePlan;
  /** Parameter prefix of each MoE layer. */
  readonly prefixes: readonly string[];
  /** Counters. */
  stats: ParallelStats;
  /** True while decode steps run. */
  decoding = false;
  readonly #home: GpuDevice;
  readonly #remote: Executable[];
  readonly #barriers = new WeakMap<Plan, HostBarriers>();
  readonly #routing: HostRouting;
  readonly #bias: readonly Float32Array[] | undefined;
  #disposed = false;

  private constructor(
    home: GpuDevice,
    plan: DevicePlan,
    prefixes: readonly string[],
    remote: Executable[],
    routing: HostRouting,
    bias: readonly Float32Array[] | undefined,
  ) {
    this.#home = home;
    this.plan = plan;
    this.prefixes = prefixes;
    this.#remote = remote;
    this.#routing = routing;
    this.#bias = bias;
    this.stats = emptyStats(plan.devices);
  }

  /**
   * Loads the home device's experts into `home`'s slot pool and tables, and each
   * other device's experts into its experts-only executable: values of `dtype`,
   * or blocks of `shape.formats` (the formats `home` was built with).
   *
   * @example
   * ```ts ignore
   * const ep = await ExpertParallel.load(model.prefill, devices, ckpt, plan, prefixes, names, {
   *   d: 4096, ff: 14336, topK: 2, normTopk: true, dtype: "f16",
   * });
   * ```
   */
  static async load(
    home: Executable,
    devices: readonly KilnDevice[],
    ckpt: WeightSource,
    plan: DevicePlan,
    prefixes: readonly string[],
    tensorName: ExpertTensorName,
    shape: RemoteRouting & {
      d: number;
      ff: number;
      dtype: "f32" | "f16";
      /** Block formats of quantized experts (the plan counts their bytes). */
      formats?: ExpertFormats;
      /** `sigmoid_bias`: each MoE layer's selection bias `[E]`, in `prefixes` order. */
      selectionBias?: readonly Float32Array[];
    },
  ): Promise<ExpertParallel> {
    checkDevices(devices);
    if (devices.length !== plan.devices) {
      throw new TypeError(
        `ExpertParallel: the plan is for ${plan.devices} devices, got ${devices.length}`,
      );
    }
    if (home.device !== devices[0]) {
      throw new TypeError("ExpertParallel: the home executable must run on devices[0]");
    }
    const { d, ff, dtype, formats, selectionBias, ...routing } = shape;
    const E = plan.experts;
    const sig = routerHasBias(routing.router ?? "softmax_topk");
    if (sig !== (selectionBias !== undefined)) {
      throw new TypeError(
        "ExpertParallel: the selection biases are given exactly for the sigmoid_bias and " +
          "softmax_bias routers",
      );
    }
    if (
      selectionBias && (selectionBias.length !== plan.layers ||
        selectionBias.some((b) => b.length !== E))
    ) {
      throw new RangeError(
        `ExpertParallel: expected ${plan.layers} selection biases of ${E} values, one a layer`,
      );
    }
    const remote: Executable[] = [];
    try {
      for (let dev = 1; dev < plan.devices; dev++) {
        const g = buildRemoteExperts({
          ...routing,
          d,
          ff,
          experts: E,
          slots: Math.max(1, plan.slots[dev]),
          dtype,
          formats,
        });
        remote.push(compile(g, devices[dev]));
      }
      const pools: Executable[] = [home, ...remote];
      for (let dev = 0; dev < plan.devices; dev++) {
        const exe = pools[dev];
        // The scheduler's slot pool: values or word-padded blocks, size-checked reads.
        const tiers = ExpertTiers.allocate(exe, dtype, ckpt, tensorName, formats);
        if (tiers.expertBytes !== plan.expertBytes) {
          throw new RangeError(
            `ExpertParallel: device ${dev}'s slots hold experts of ${tiers.expertBytes} bytes, ` +
              `the plan counts ${plan.expertBytes}`,
          );
        }
        if (dev === 0) {
          const t: Record<string, Uint32Array> = {};
          prefixes.forEach((p, l) => t[`${p}.slot_table`] = plan.tables[0][l]);
          exe.setParams(t);
        } else {
          exe.setParams({ "remote.slot_table": plan.tables[dev][0] });
        }
        for (let l = 0; l < plan.layers; l++) {
          for (let e = 0; e < E; e++) {
            const slot = plan.tables[dev][l][e];
            if (slot !== ELSEWHERE) await tiers.read(l, e, slot);
          }
        }
        // No host tier: nothing to free, and `ckpt` is the caller's to close.
        tiers.useDisk(undefined);
      }
    } catch (e) {
      for (const r of remote) r.dispose();
      throw e;
    }
    return new ExpertParallel(
      devices[0] as GpuDevice,
      plan,
      prefixes,
      remote,
      routing,
      selectionBias,
    );
  }

  /**
   * Compiles the other devices' pipelines for a prompt of T tokens and for
   * decode (T = 1) before a timed run; nothing is dispatched.
   */
  async prepare(T: number, d: number): Promise<void> {
    this.#live();
    const E = this.plan.experts;
    for (const r of this.#remote) {
      for (const t of new Set([T, 1])) {
        const inputs: Record<string, Float32Array> = {
          x: new Float32Array(t * d),
          logits: new Float32Array(t * E),
        };
        if (this.#bias) inputs.bias = this.#bias[0];
        await r.prepare(inputs);
      }
    }
  }

  /** Counts one forward pass (called by the runner). */
  countStep(): void {
    this.stats.steps++;
    if (this.decoding) this.stats.decodeSteps++;
  }

  /**
   * Host barriers of a home plan: after the router kernel of every MoE layer
   * that has experts on other devices. Pass as `RunOptions.barriers`.
   */
  barriers(plan: Plan): HostBarriers {
    this.#live();
    const have = this.#barriers.get(plan);
    if (have) return have;
    const map = new Map<number, (exe: GpuExecutable) => Promise<void>>();
    this.prefixes.forEach((p, l) => {
      if (this.plan.counts[0] === this.plan.experts) return;
      const at = moeRouterKernel(plan, p);
      const xOut = plan.outputs.get(`${p}.moe_x`), lOut = plan.outputs.get(`${p}.moe_logits`);
      const rIn = plan.inputs.get(`${p}.moe_remote`);
      if (!xOut || !lOut || !rIn) {
        throw new Error(`internal: MoE layer ${p} has no expert-parallel router in the plan`);
      }
      map.set(at + 1, (exe) => this.#exchange(exe, l, xOut, lOut, rIn));
    });
    this.#barriers.set(plan, map);
    return map;
  }

  async #exchange(
    exe: GpuExecutable,
    l: number,
    xOut: { slot: number; offset: number; shape: readonly number[] },
    lOut: { slot: number; offset: number; shape: readonly number[] },
    rIn: { slot: number; offset: number },
  ): Promise<void> {
    this.#live();
    const t0 = performance.now();
    const st = this.stats;
    const device = this.#home.device;
    const T = xOut.shape[0], d = xOut.shape[1], E = this.plan.experts;
    const xBytes = T * d * 4, lBytes = T * E * 4;
    const staging = device.createBuffer({
      size: xBytes + lBytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(exe.buffer(xOut.slot), xOut.offset, staging, 0, xBytes);
    enc.copyBufferToBuffer(exe.buffer(lOut.slot), lOut.offset, staging, xBytes, lBytes);
    let x: Float32Array, logits: Float32Array;
    try {
      device.queue.submit([enc.finish()]);
      await whileDeviceAlive(this.#home, staging.mapAsync(GPUMapMode.READ));
      const all = staging.getMappedRange();
      x = new Float32Array(all.slice(0, xBytes));
      logits = new Float32Array(all.slice(xBytes, xBytes + lBytes));
    } finally {
      staging.destroy(); // a failed readback too: one buffer per barrier would pile up
    }
    let moved = xBytes + lBytes;
    let trips = 1;
    // The router kernel's selection, repeated: devices no token may have chosen are skipped.
    const owner = this.plan.owner[l];
    const used = new Set<number>();
    const bias = this.#bias?.[l];
    for (let t = 0; t < T; t++) {
      const { chosen, possible } = routeOnHost(this.#routing, logits, t, E, bias);
      for (const e of chosen) st.pairs[owner[e]]++;
      for (const e of possible) if (owner[e] !== 0) used.add(owner[e]);
    }
    st.barriers++;
    if (used.size === 0) st.skipped++;
    else {
      const parts = await Promise.all([...used].map(async (dev) => {
        const r = this.#remote[dev - 1];
        r.setParams({ "remote.slot_table": this.plan.tables[dev][l] });
        const { y } = await r.run({ x, logits, ...(bias ? { bias } : {}) });
        return y.data as Float32Array;
      }));
      trips += parts.length;
      st.remoteRuns += parts.length;
      moved += parts.length * (xBytes + lBytes + E * 4 + xBytes) + xBytes;
      const sum = parts[0];
      for (let i = 1; i < parts.length; i++) {
        for (let j = 0; j < sum.length; j++) sum[j] = Math.fround(sum[j] + parts[i][j]);
      }
      device.queue.writeBuffer(exe.buffer(rIn.slot), rIn.offset, sum as Float32Array<ArrayBuffer>);
    }
    st.roundTrips += trips;
    st.activationBytes += moved;
    if (this.decoding) {
      st.decodeRoundTrips += trips;
      st.decodeActivationBytes += moved;
    }
    st.barrierMs += performance.now() - t0;
  }

  /** Zeroes the counters. */
  resetStats(): void {
    this.stats = emptyStats(this.plan.devices);
  }

  /** A printable report: the split and the counters. */
  report(): string {
    const st = this.stats, p = this.plan;
    const n = Math.max(1, st.decodeSteps);
    const total = st.pairs.reduce((a, b) => a + b, 0) || 1;
    const lines = [
      `expert parallelism: ${p.devices} devices, experts per layer [${p.counts.join(", ")}]` +
      (p.formats
        ? ` in ${p.formats.w13}/${p.formats.w2} blocks, ${p.expertBytes} bytes an expert`
        : ""),
      ...p.counts.map((_, dev) =>
        `  device ${dev}${dev === 0 ? " (home)" : ""}: ${p.slots[dev]} experts, ${
          formatBytes(p.slots[dev] * p.expertBytes)
        }, ${(100 * st.pairs[dev] / total).toFixed(1)}% of routed pairs`
      ),
      `  ${st.steps} passes, ${st.decodeSteps} decode steps: ${
        (st.decodeRoundTrips / n).toFixed(2)
      } host round trips/token, ${formatBytes(st.decodeActivationBytes / n)} activations ` +
      `moved/token, ${st.remoteRuns} remote runs, ${st.skipped} of ${st.barriers} barriers ` +
      `skipped the remote trip, ${st.barrierMs.toFixed(0)} ms in barriers`,
    ];
    return lines.join("\n");
  }

  /**
   * Frees the other devices' executables. Idempotent; `prepare` and `barriers`
   * then throw a TypeError saying so.
   */
  dispose(): void {
    this.#disposed = true;
    for (const r of this.#remote) r.dispose();
    this.#remote.length = 0;
  }

  /** Throws once disposed: the other devices' executables are freed. */
  #live(): void {
    if (this.#disposed) {
      throw new TypeError("ExpertParallel was disposed (with its model); load the model again");
    }
  }
}

function emptyStats(n: number): ParallelStats {
  return {
    steps: 0,
    decodeSteps: 0,
    barriers: 0,
    roundTrips: 0,
    decodeRoundTrips: 0,
    remoteRuns: 0,
    skipped: 0,
    activationBytes: 0,
    decodeActivationBytes: 0,
    pairs: new Array(n).fill(0),
    barrierMs: 0,
  };
}

/**
 * Checks a device list for expert parallelism: at least two distinct GPU
 * devices. Throws a TypeError naming the offending entry.
 *
 * @example
 * ```ts
 * import { checkDevices } from "./parallel.ts";
 * try {
 *   checkDevices([]);
 * } catch (e) {
 *   console.log((e as Error).message); // "devices: expected at least 2 GPU devices, got 0"
 * }
 * ```
 */
export function checkDevices(devices: unknown): asserts devices is GpuDevice[] {
  if (!Array.isArray(devices)) {
    throw new TypeError(`devices: expected an array of GPU devices, got ${typeof devices}`);
  }
  if (devices.length < 2) {
    throw new TypeError(`devices: expected at least 2 GPU devices, got ${devices.length}`);
  }
  devices.forEach((dev, i) => {
    if (typeof dev !== "object" || dev === null || (dev as GpuDevice).kind !== "gpu") {
      throw new TypeError(
        `devices[${i}] is not a GPU device (got ${
          dev === null
            ? "null"
            : typeof dev === "object"
            ? (dev as { kind?: string }).kind
            : typeof dev
        }); use requestDevice()`,
      );
    }
    const j = devices.indexOf(dev);
    if (j !== i) {
      throw new TypeError(`devices[${i}] is the same device as devices[${j}]`);
    }
  });
}
