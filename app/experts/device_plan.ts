/**
 * Expert parallelism's placement: which of several GPU devices holds each
 * expert of every MoE layer, under a per-device budget or balanced (see
 * `parallel.ts` for how a forward pass uses it).
 *
 * @module
 */

import { formatBytes, type RoutingStats } from "./placement.ts";
import type { ExpertFormats } from "./tiers.ts";

/**
 * Slot table entry of an expert held by another device (the MoE kernels skip
 * its pairs: it adds exactly 0).
 *
 * @example
 * ```ts
 * import { ELSEWHERE } from "./device_plan.ts";
 * const table = new Uint32Array(8).fill(ELSEWHERE); // no expert of the layer on this device
 * ```
 */
export const ELSEWHERE = 0xffffffff;

/**
 * Inputs of {@linkcode planDevices}.
 *
 * @example
 * ```ts
 * import { type DevicePlanInput, planDevices } from "@kiln/kiln";
 * const input: DevicePlanInput = {
 *   devices: 2, layers: 4, experts: 8, expertBytes: 1 << 20, fixedBytes: 8 << 20,
 *   remoteFixedBytes: 1 << 20,
 * };
 * planDevices(input).counts; // [4, 4]: a balanced split without a budget
 * ```
 */
export interface DevicePlanInput {
  /** Number of devices (≥ 2); device 0 is the home device. */
  devices: number;
  /** MoE layers. */
  layers: number;
  /** Experts per layer. */
  experts: number;
  /**
   * Bytes of one expert as a slot holds it: values of the compute dtype, or
   * word-padded blocks when `formats` is given.
   */
  expertBytes: number;
  /** Block formats of quantized experts (`expertBytes` counts their blocks); absent: dense. */
  formats?: ExpertFormats;
  /** Home device bytes before experts: non-expert weights, caches, activations. */
  fixedBytes: number;
  /** Bytes another device needs besides experts (its activations). */
  remoteFixedBytes: number;
  /** GPU memory budget of each device; absent: a balanced split. */
  budget?: number;
  /** Routing statistics: the most used experts of each layer stay home. */
  stats?: RoutingStats;
}

/**
 * Which device holds every expert.
 *
 * @example
 * ```ts
 * import { describeDevicePlan, type DevicePlan, planDevices } from "@kiln/kiln";
 * const plan: DevicePlan = planDevices({
 *   devices: 2, layers: 2, experts: 8, expertBytes: 1024, fixedBytes: 0, remoteFixedBytes: 0,
 * });
 * plan.owner[0]; // Uint8Array [0, 0, 0, 0, 1, 1, 1, 1]
 * console.log(describeDevicePlan(plan));
 * ```
 */
export interface DevicePlan {
  /** Number of devices. */
  readonly devices: number;
  /** MoE layers. */
  readonly layers: number;
  /** Experts per layer. */
  readonly experts: number;
  /** Bytes of one expert (word-padded blocks when `formats` is set). */
  readonly expertBytes: number;
  /** Block formats of quantized experts; absent: dense. */
  readonly formats?: ExpertFormats;
  /** The per-device budget the plan was made for, if any. */
  readonly budget?: number;
  /** Smallest per-device budget that holds every expert (with `budget`; else 0). */
  readonly minimumBytes: number;
  /** Home device bytes before experts. */
  readonly fixedBytes: number;
  /** Other devices' bytes before experts. */
  readonly remoteFixedBytes: number;
  /** Experts each device holds in every layer. */
  readonly counts: readonly number[];
  /** `owner[layer][expert]` = device index. */
  readonly owner: readonly Uint8Array[];
  /** `tables[device][layer][expert]` = slot in that device's pool, `0xFFFFFFFF` elsewhere. */
  readonly tables: readonly (readonly Uint32Array[])[];
  /** Slots of each device's pool (its experts in all layers). */
  readonly slots: readonly number[];
}

/**
 * Plans the split of experts across devices (see the module doc). With a
 * budget that cannot hold every expert on these devices: a RangeError naming
 * the smallest budget that can.
 *
 * @example
 * ```ts
 * import { planDevices } from "./device_plan.ts";
 * const p = planDevices({
 *   devices: 2, layers: 4, experts: 8, expertBytes: 100, fixedBytes: 1000, remoteFixedBytes: 0,
 *   budget: 1000 + 4 * 6 * 100, // home holds 6 experts per layer, the other device 2
 * });
 * p.counts; // [6, 2]
 * ```
 */
export function planDevices(input: DevicePlanInput): DevicePlan {
  const { devices: n, layers: L, experts: E, expertBytes: eb } = input;
  if (!Number.isInteger(n) || n < 2 || n > 255) {
    throw new RangeError(`planDevices: devices must be an integer in [2, 255], got ${n}`);
  }
  for (const [k, v] of Object.entries({ layers: L, experts: E, expertBytes: eb })) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`planDevices: ${k} must be a positive integer, got ${v}`);
    }
  }
  const F0 = input.fixedBytes, Fr = input.remoteFixedBytes;
  // Per-layer capacity of a device under the budget.
  const perLayer = (fixed: number) =>
    input.budget === undefined
      ? E
      : Math.max(0, Math.min(E, Math.floor((input.budget - fixed) / eb / L)));
  let counts: number[];
  let minimumBytes = 0;
  if (input.budget === undefined) {
    counts = Array.from({ length: n }, (_, d) => Math.floor(E / n) + (d < E % n ? 1 : 0));
  } else {
    // The smallest per-device budget: the best home share h.
    minimumBytes = Infinity;
    for (let h = 0; h <= E; h++) {
      const rest = Math.ceil((E - h) / (n - 1));
      minimumBytes = Math.min(minimumBytes, Math.max(F0 + h * L * eb, Fr + rest * L * eb));
    }
    const h = perLayer(F0), r = perLayer(Fr);
    if (h + (n - 1) * r < E) {
      throw new RangeError(
        `GPU memory budget ${formatBytes(input.budget)} (${input.budget} bytes) per device is ` +
          `below the minimum ${formatBytes(minimumBytes)} (${minimumBytes} bytes) for ${n} ` +
          `devices: the home device needs ${formatBytes(F0)} of non-expert weights, caches and ` +
          `activations, the others ${formatBytes(Fr)}, and together they must hold all ` +
          `${L * E} experts of ${formatBytes(eb)}`,
      );
    }
    counts = [h];
    let left = E - h;
    for (let d = 1; d < n; d++) {
      const share = Math.min(r, Math.ceil(left / (n - d)));
      counts.push(share);
      left -= share;
    }
  }
  const stats = input.stats && input.stats.layers === L && input.stats.experts === E
    ? input.stats
    : undefined;
  const owner: Uint8Array[] = [];
  for (let l = 0; l < L; l++) {
    const order = Array.from({ length: E }, (_, e) => e).sort((a, b) =>
      (stats ? stats.counts[l][b] - stats.counts[l][a] : 0) || a - b
    );
    const o = new Uint8Array(E);
    let i = 0;
    counts.forEach((c, d) => {
      for (let j = 0; j < c; j++) o[order[i++]] = d;
    });
    owner.push(o);
  }
  const slots = new Array(n).fill(0);
  const tables = Array.from(
    { length: n },
    (_, d) =>
      owner.map((o) => {
        const t = new Uint32Array(E).fill(ELSEWHERE);
        for (let e = 0; e < E; e++) if (o[e] === d) t[e] = slots[d]++;
        return t;
      }),
  );
  return {
    devices: n,
    layers: L,
    experts: E,
    expertBytes: eb,
    ...(input.formats ? { formats: input.formats } : {}),
    budget: input.budget,
    minimumBytes,
    fixedBytes: F0,
    remoteFixedBytes: Fr,
    counts,
    owner,
    tables,
    slots,
  };
}

/**
 * Text description of a device plan, for `kiln inspect --devices N`.
 *
 * @example
 * ```ts
 * import { describeDevicePlan, planDevices } from "./device_plan.ts";
 * const p = planDevices({
 *   devices: 2, layers: 1, experts: 4, expertBytes: 1024, fixedBytes: 0, remoteFixedBytes: 0,
 * });
 * console.log(describeDevicePlan(p)); // "expert parallelism over 2 devices …"
 * ```
 */
export function describeDevicePlan(p: DevicePlan): string {
  const lines = [
    `expert parallelism over ${p.devices} devices` +
    (p.budget !== undefined
      ? `: budget ${formatBytes(p.budget)} per device, minimum ${formatBytes(p.minimumBytes)}`
      : " (balanced split)"),
  ];
  if (p.formats) {
    // Exact bytes: a small model's experts would all print as the same rounded figure.
    lines.push(
      `  experts in ${describeFormats(p.formats)}: ${formatBytes(p.expertBytes)} ` +
        `(${p.expertBytes} bytes) each`,
    );
  }
  p.counts.forEach((c, dev) => {
    const fixed = dev === 0 ? p.fixedBytes : p.remoteFixedBytes;
    lines.push(
      `  device ${dev}${dev === 0 ? " (home)" : ""}: ${c} experts per layer, ${
        p.slots[dev]
      } in all, ` +
        `${formatBytes(p.slots[dev] * p.expertBytes)} of experts + ${formatBytes(fixed)}`,
    );
  });
  p.owner.forEach((o, l) => {
    const per = p.counts.map((_, dev) => [...o.keys()].filter((e) => o[e] === dev));
    lines.push(
      `  layer ${l}: ${per.map((es, dev) => `device ${dev} [${es.join(", ")}]`).join(", ")}`,
    );
  });
  return lines.join("\n");
}

/** "q4_k blocks" or "q4_k (w1, w3) / q6_k (w2) blocks". */
function describeFormats(f: ExpertFormats): string {
  return f.w13 === f.w2 ? `${f.w13} blocks` : `${f.w13} (w1, w3) / ${f.w2} (w2) blocks`;
}
