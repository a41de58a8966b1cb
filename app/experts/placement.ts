/**
 * Expert placement under a GPU memory budget: how many expert slots fit, which
 * experts each layer pins, how many rotating slots the rest stream through, and
 * the routing statistics (`kiln_routing_stats.json`) that steer the choice.
 *
 * Layout: one slot pool shared by every MoE layer (`moe.slots.{w1,w3,w2}`,
 * `[slots, …]`). Pinned experts own a slot for good; the last `rotating` slots
 * are refilled from the host tier right before each layer that needs them (in
 * the same command buffer, so no host round trip), which is why any budget of at
 * least one layer's E experts (plus the non-expert bytes) runs every model.
 *
 * @module
 */

import { formatBytes } from "../../core/format.ts";

export { formatBytes };

/**
 * File name of the routing statistics stored beside a model.
 *
 * @example
 * ```ts
 * import { ROUTING_STATS_FILE } from "@kiln/kiln";
 * const path = `./Mixtral-8x7B-v0.1/${ROUTING_STATS_FILE}`; // …/kiln_routing_stats.json
 * ```
 */
export const ROUTING_STATS_FILE = "kiln_routing_stats.json";

/**
 * Routed (token, slot) pairs per layer and expert, summed over runs.
 *
 * @example
 * ```ts
 * import { planExperts, type RoutingStats } from "@kiln/kiln";
 * const stats: RoutingStats = { version: 1, layers: 2, experts: 4, counts: [[9, 1, 5, 0], [0, 7, 7, 1]] };
 * const plan = planExperts({
 *   layers: 2, experts: 4, topK: 2, expertBytes: 1 << 20, fixedBytes: 0, budget: 6 << 20, stats,
 * });
 * plan.pinned; // each layer pins its most used experts first
 * ```
 */
export interface RoutingStats {
  /** Format version (1). */
  readonly version: 1;
  /** MoE layers. */
  readonly layers: number;
  /** Experts per layer. */
  readonly experts: number;
  /** `counts[layer][expert]`. */
  readonly counts: readonly (readonly number[])[];
}

/**
 * Inputs of {@linkcode planExperts}.
 *
 * @example
 * ```ts
 * import { type ExpertPlanInput, parseBytes, planExperts } from "@kiln/kiln";
 * const input: ExpertPlanInput = {
 *   layers: 32, experts: 8, topK: 2, expertBytes: 352 << 20, fixedBytes: parseBytes("3GiB"),
 *   budget: parseBytes("40GiB"),
 * };
 * const plan = planExperts(input);
 * ```
 */
export interface ExpertPlanInput {
  /** MoE layers. */
  layers: number;
  /** Experts per layer E. */
  experts: number;
  /** Experts per token k. */
  topK: number;
  /** Bytes of one expert (w1 + w3 + w2). */
  expertBytes: number;
  /** Bytes planned before experts: non-expert weights, caches, activations. */
  fixedBytes: number;
  /** GPU memory budget in bytes. */
  budget: number;
  /** Routing statistics: the most used experts are pinned first. */
  stats?: RoutingStats;
  /**
   * Host memory budget in bytes for the host tier (absent: every non-pinned
   * expert has a host copy). Experts that do not fit are read from the
   * checkpoint files when needed; one expert of it is the read buffer.
   */
  hostBudget?: number;
}

/**
 * Where every expert lives.
 *
 * @example
 * ```ts
 * import { describeExpertPlan, type ExpertPlan, planExperts } from "@kiln/kiln";
 * const plan: ExpertPlan = planExperts({
 *   layers: 4, experts: 8, topK: 2, expertBytes: 1 << 20, fixedBytes: 0, budget: 16 << 20,
 * });
 * [plan.slots, plan.rotating, plan.allResident]; // [16, 6, false]
 * console.log(describeExpertPlan(plan));
 * ```
 */
export interface ExpertPlan {
  /** MoE layers. */
  readonly layers: number;
  /** Experts per layer. */
  readonly experts: number;
  /** Bytes of one expert. */
  readonly expertBytes: number;
  /** The budget the plan was made for. */
  readonly budget: number;
  /** Non-expert bytes (weights, caches, activations). */
  readonly fixedBytes: number;
  /** Smallest budget that runs: fixed bytes + one layer's experts. */
  readonly minimumBytes: number;
  /** Slots in the pool. */
  readonly slots: number;
  /** Pinned experts of each layer (each owns a slot). */
  readonly pinned: readonly (readonly number[])[];
  /** Slots at the end of the pool that non-pinned experts stream through. */
  readonly rotating: number;
  /** `table[layer][expert]` = slot (rotating experts get rotating slots in order). */
  readonly tables: readonly Uint32Array[];
  /** Expert bytes copied per forward pass (decode step or prefill). */
  readonly bytesPerStep: number;
  /** True when every expert is pinned (no copies at all). */
  readonly allResident: boolean;
  /** The host memory budget the plan was made for, if any. */
  readonly hostBudget?: number;
  /** Non-pinned experts of each layer with a copy in the host tier. */
  readonly host: readonly (readonly number[])[];
  /** Non-pinned experts of each layer read from the checkpoint files when needed. */
  readonly disk: readonly (readonly number[])[];
  /** Expert bytes read from the files per forward pass when every non-pinned expert streams. */
  readonly diskBytesPerStep: number;
}

/**
 * Smallest budget for these sizes: the fixed bytes plus one layer's E experts
 * (prefill streams whole layers through the rotating slots).
 *
 * @example
 * ```ts
 * import { minimumBudget } from "./placement.ts";
 * minimumBudget({ experts: 8, expertBytes: 1 << 20, fixedBytes: 4 << 20 }); // 12 MiB
 * ```
 */
export function minimumBudget(
  p: { experts: number; expertBytes: number; fixedBytes: number },
): number {
  return p.fixedBytes + p.experts * p.expertBytes;
}

/**
 * Parses a byte size: a number of bytes, or `2GiB`, `512MiB`, `1.5GB`, `300M`.
 *
 * @example
 * ```ts
 * import { parseBytes } from "./placement.ts";
 * parseBytes("2GiB"); // 2147483648
 * ```
 */
export function parseBytes(s: string | number): number {
  if (typeof s === "number") {
    if (!Number.isFinite(s) || s <= 0) throw new RangeError(`Byte size must be > 0, got ${s}`);
    return Math.floor(s);
  }
  const m = /^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?)b?\s*$/i.exec(s);
  if (!m) {
    throw new SyntaxError(
      `Byte size must look like 2GiB, 512MiB, 1.5GB or a number of bytes, got "${s}"`,
    );
  }
  const pow = " kmgt".indexOf((m[2] || " ").toLowerCase());
  const base = m[3] || m[2] === "" ? 1024 : 1000;
  const v = Math.floor(Number(m[1]) * base ** pow);
  if (!(v > 0)) throw new RangeError(`Byte size must be > 0, got "${s}"`);
  return v;
}

/**
 * Plans expert placement: `slots = ⌊(budget − fixed) / expertBytes⌋` (at most
 * L·E), then the most pinned experts per layer such that the pinned slots plus
 * the largest layer's non-pinned experts fit. With statistics, each layer pins
 * its most used experts and the extra pins go to the layers whose pinned experts
 * would cover the most routed traffic; without, the lowest expert ids.
 * A budget below {@linkcode minimumBudget} is a RangeError naming the bytes needed.
 *
 * @example
 * ```ts
 * import { planExperts } from "./placement.ts";
 * const p = planExperts({
 *   layers: 4, experts: 8, topK: 2, expertBytes: 1 << 20, fixedBytes: 0, budget: 16 << 20,
 * });
 * console.log(p.pinned.map((x) => x.length), p.rotating); // [3, 3, 2, 2] 6
 * ```
 */
export function planExperts(input: ExpertPlanInput): ExpertPlan {
  const { layers: L, experts: E, expertBytes, fixedBytes, budget } = input;
  for (const [k, v] of Object.entries({ layers: L, experts: E, expertBytes })) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`planExperts: ${k} must be a positive integer, got ${v}`);
    }
  }
  const minimumBytes = minimumBudget({ experts: E, expertBytes, fixedBytes });
  if (!(budget >= minimumBytes)) {
    throw new RangeError(
      `GPU memory budget ${formatBytes(budget)} (${budget} bytes) is below the minimum ` +
        `${formatBytes(minimumBytes)} (${minimumBytes} bytes): ${formatBytes(fixedBytes)} of ` +
        `non-expert weights, caches and activations plus one layer's ${E} experts ` +
        `(${formatBytes(E * expertBytes)})`,
    );
  }
  const slots = Math.min(L * E, Math.floor((budget - fixedBytes) / expertBytes));
  const stats = input.stats && input.stats.layers === L && input.stats.experts === E
    ? input.stats
    : undefined;
  // Experts of each layer by use, most used first (ties: lower id).
  const order = Array.from(
    { length: L },
    (_, l) =>
      Array.from({ length: E }, (_, e) => e).sort((a, b) =>
        (stats ? stats.counts[l][b] - stats.counts[l][a] : 0) || a - b
      ),
  );
  let P: number[];
  if (slots >= L * E) P = new Array(L).fill(E);
  else {
    // Uniform base p with L·p + (E − p) ≤ slots, then extra pins one at a time.
    const p = L === 1 ? 0 : Math.min(E, Math.floor((slots - E) / (L - 1)));
    P = new Array(L).fill(p);
    const fits = () => P.reduce((a, b) => a + b, 0) + Math.max(...P.map((x) => E - x)) <= slots;
    for (;;) {
      let best = -1, gain = -1;
      for (let l = 0; l < L; l++) {
        if (P[l] >= E) continue;
        P[l]++;
        const ok = fits();
        P[l]--;
        if (!ok) continue;
        const g = stats ? stats.counts[l][order[l][P[l]]] : L - l;
        if (g > gain) [best, gain] = [l, g];
      }
      if (best < 0) break;
      P[best]++;
    }
  }
  const pinned = order.map((o, l) => o.slice(0, P[l]).sort((a, b) => a - b));
  const rotating = slots >= L * E ? 0 : Math.max(...P.map((x) => E - x));
  const pinnedTotal = P.reduce((a, b) => a + b, 0);
  const tables: Uint32Array[] = [];
  let next = 0;
  for (let l = 0; l < L; l++) {
    const t = new Uint32Array(E);
    const pin = new Set(pinned[l]);
    let r = 0;
    for (let e = 0; e < E; e++) t[e] = pin.has(e) ? next++ : pinnedTotal + r++;
    tables.push(t);
  }
  const streamed = P.reduce((a, x) => a + (E - x), 0);
  const tiers = hostTiers(input, pinned, order);
  return {
    layers: L,
    experts: E,
    expertBytes,
    budget,
    fixedBytes,
    minimumBytes,
    slots: pinnedTotal + rotating,
    pinned,
    rotating,
    tables,
    bytesPerStep: streamed * expertBytes,
    allResident: rotating === 0,
    ...tiers,
  };
}

/**
 * Splits the non-pinned experts between the host tier and the files: with a
 * host budget too small for all of them, the most used (by statistics, else
 * lowest layer and id) keep a host copy in `budget − one expert` (the read
 * buffer); the rest are read from the checkpoint when needed.
 */
function hostTiers(
  input: ExpertPlanInput,
  pinned: readonly (readonly number[])[],
  order: readonly (readonly number[])[],
): Pick<ExpertPlan, "hostBudget" | "host" | "disk" | "diskBytesPerStep"> {
  const { layers: L, experts: E, expertBytes: eb, hostBudget } = input;
  const free: [number, number][] = [];
  pinned.forEach((pin, l) => {
    const p = new Set(pin);
    for (const e of order[l]) if (!p.has(e)) free.push([l, e]);
  });
  let keep = free.length;
  if (hostBudget !== undefined) {
    if (!(hostBudget >= eb)) {
      throw new RangeError(
        `Host memory budget ${formatBytes(hostBudget)} (${hostBudget} bytes) is below the ` +
          `minimum ${formatBytes(eb)} (${eb} bytes): one expert, the read buffer of experts ` +
          `streamed from the checkpoint files`,
      );
    }
    if (free.length * eb > hostBudget) keep = Math.floor(hostBudget / eb) - 1;
  }
  const c = input.stats && input.stats.layers === L && input.stats.experts === E
    ? input.stats.counts
    : undefined;
  const ranked = [...free].sort((a, b) => (c ? c[b[0]][b[1]] - c[a[0]][a[1]] : 0));
  const host = Array.from({ length: L }, () => [] as number[]);
  const disk = Array.from({ length: L }, () => [] as number[]);
  ranked.forEach(([l, e], i) => (i < keep ? host : disk)[l].push(e));
  for (const t of [host, disk]) for (const row of t) row.sort((a, b) => a - b);
  return {
    hostBudget,
    host,
    disk,
    diskBytesPerStep: (free.length - keep) * eb,
  };
}

/**
 * Text description of a plan, for `kiln inspect --gpu-memory`.
 *
 * @example
 * ```ts
 * import { describeExpertPlan, planExperts } from "./placement.ts";
 * const p = planExperts({ layers: 2, experts: 4, topK: 2, expertBytes: 1024, fixedBytes: 0, budget: 6144 });
 * console.log(describeExpertPlan(p));
 * ```
 */
export function describeExpertPlan(p: ExpertPlan): string {
  const lines = [
    `expert plan: budget ${formatBytes(p.budget)}, non-expert ${formatBytes(p.fixedBytes)}, ` +
    `minimum ${formatBytes(p.minimumBytes)}`,
    `  ${p.slots} expert slots of ${formatBytes(p.expertBytes)} (${p.rotating} rotating), ` +
    `${p.layers * p.experts} experts in ${p.layers} layers`,
  ];
  if (p.hostBudget !== undefined) {
    const n = p.host.reduce((a, r) => a + r.length, 0);
    lines.push(
      `  host budget ${formatBytes(p.hostBudget)}: ${n} experts in host memory ` +
        `(${formatBytes(n * p.expertBytes)}), ${
          p.disk.reduce((a, r) => a + r.length, 0)
        } read from the checkpoint files when needed`,
    );
  }
  p.pinned.forEach((pin, l) => {
    const disk = p.disk[l].length
      ? `; host [${idRuns(p.host[l])}], disk [${idRuns(p.disk[l])}]`
      : "";
    lines.push(
      `  layer ${l}: GPU [${idRuns(pin)}] (${pin.length}/${p.experts}), streamed ${
        p.experts - pin.length
      }${disk}`,
    );
  });
  lines.push(
    `  expected bytes moved per token: ${formatBytes(p.bytesPerStep)}` +
      (p.allResident ? " (all experts resident)" : "") +
      (p.hostBudget !== undefined
        ? `; read from disk per token: ${formatBytes(p.diskBytesPerStep)} when streaming, ` +
          `only misses of disk experts with the cache`
        : ""),
  );
  return lines.join("\n");
}

/** Checks parsed JSON as {@linkcode RoutingStats}; returns an error message or the stats. */
function validateStats(v: unknown): RoutingStats | string {
  if (typeof v !== "object" || v === null) return "not a JSON object";
  const o = v as Record<string, unknown>;
  if (o.version !== 1) return `unsupported version ${JSON.stringify(o.version)} (expected 1)`;
  const L = o.layers, E = o.experts;
  if (!Number.isInteger(L) || (L as number) < 1) return `layers must be >= 1, got ${L}`;
  if (!Number.isInteger(E) || (E as number) < 1) return `experts must be >= 1, got ${E}`;
  if (!Array.isArray(o.counts) || o.counts.length !== L) {
    return `counts must be ${L} rows, got ${Array.isArray(o.counts) ? o.counts.length : "none"}`;
  }
  for (const [l, row] of (o.counts as unknown[]).entries()) {
    if (!Array.isArray(row) || row.length !== E) return `counts[${l}] must have ${E} entries`;
    for (const c of row) {
      if (!Number.isInteger(c) || c < 0) return `counts[${l}] holds ${c}, not a count`;
    }
  }
  return { version: 1, layers: L as number, experts: E as number, counts: o.counts as number[][] };
}

/**
 * Reads `kiln_routing_stats.json` from a model folder. A missing file gives
 * undefined; a corrupt one, or one for another shape, warns on stderr and gives
 * undefined (the plan then falls back to no statistics).
 *
 * @example
 * ```ts ignore
 * const stats = await readRoutingStats("./tiny-mixtral", { layers: 2, experts: 4 });
 * ```
 */
export async function readRoutingStats(
  dir: string,
  expect?: { layers: number; experts: number },
): Promise<RoutingStats | undefined> {
  const path = `${dir.replace(/\/$/, "")}/${ROUTING_STATS_FILE}`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    console.warn(`kiln: ignoring ${path}: invalid JSON (${(e as Error).message})`);
    return undefined;
  }
  const r = validateStats(parsed);
  if (typeof r === "string") {
    console.warn(`kiln: ignoring ${path}: ${r}`);
    return undefined;
  }
  if (expect && (r.layers !== expect.layers || r.experts !== expect.experts)) {
    console.warn(
      `kiln: ignoring ${path}: it is for ${r.layers} layers × ${r.experts} experts, ` +
        `the model has ${expect.layers} × ${expect.experts}`,
    );
    return undefined;
  }
  return r;
}

/**
 * Writes routing statistics beside a model (merging counts with an existing
 * valid file when `merge` is set).
 *
 * @example
 * ```ts ignore
 * await writeRoutingStats("./tiny-mixtral", { version: 1, layers: 1, experts: 2, counts: [[3, 1]] });
 * ```
 */
export async function writeRoutingStats(
  dir: string,
  stats: RoutingStats,
  merge = false,
): Promise<void> {
  const r = validateStats(stats);
  if (typeof r === "string") throw new TypeError(`writeRoutingStats: ${r}`);
  let counts = r.counts.map((row) => [...row]);
  if (merge) {
    const old = await readRoutingStats(dir, r);
    if (old) counts = counts.map((row, l) => row.map((c, e) => c + old.counts[l][e]));
  }
  const path = `${dir.replace(/\/$/, "")}/${ROUTING_STATS_FILE}`;
  await Deno.writeTextFile(
    path,
    JSON.stringify({ version: 1, layers: r.layers, experts: r.experts, counts }) + "\n",
  );
}

/** Expert ids as runs (`0-45, 50, 52-60`): a 128-expert layer fits on a line. */
function idRuns(ids: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < ids.length;) {
    let j = i;
    while (j + 1 < ids.length && ids[j + 1] === ids[j] + 1) j++;
    out.push(
      j > i + 1 ? `${ids[i]}-${ids[j]}` : j === i + 1 ? `${ids[i]}, ${ids[j]}` : `${ids[i]}`,
    );
    i = j + 1;
  }
  return out.join(", ");
}
