/**
 * Expert scheduler benchmark: decode tokens/s of a small Mixtral-style model
 * (E = 8, k = 2) at 100 / 75 / 50 / 25 % of the expert bytes on the GPU with
 * each expert policy: LRU and LFU cache (with the streamed fallback on miss
 * streaks, and LRU pure), streaming every non-pinned expert, and naive
 * on-demand loading; hit rates, bytes uploaded, host round trips and misses per
 * token, and whether the ids equal all-resident execution. No routing-stats
 * file: pins are the lowest expert ids — unless `SCHED_MODEL` names a trained
 * checkpoint (e.g. `assets/default_model`): then it runs on that model, from a
 * Moby-Dick prompt, with routing statistics gathered first on other text, so
 * routing has the temporal and cross-layer locality random weights lack.
 *
 * Then three more tables: expert parallelism over two devices (two adapters),
 * the router-lookahead predictor against the temporal one (pure LRU, so every
 * misprediction costs a rerun), and the disk tier (a host budget of one
 * expert: every expert not pinned on the GPU is read from the safetensors
 * file when needed).
 *
 * Run: `deno run -A bench/scheduler_bench.ts`, or
 * `SCHED_MODEL=assets/default_model deno run -A bench/scheduler_bench.ts` (env SCHED_TOKENS, SCHED_HIDDEN,
 * SCHED_FF, SCHED_LAYERS override the defaults 48 / 256 / 512 / 4).
 *
 * @module
 */
import { loadModel, type Model } from "../app/model/mod.ts";
import { writeTinyMixtral } from "../tests/fixtures/tiny_checkpoints.ts";
import { requestDevice } from "../runtime/device.ts";
import { formatBytes, ROUTING_STATS_FILE, writeRoutingStats } from "../app/experts/placement.ts";
import type { ExpertPolicy, ExpertPrefetch } from "../app/experts/mod.ts";
import type { LoadOptions } from "../app/model/mod.ts";

const env = (k: string, d: number) => Number(Deno.env.get(k) ?? d);
/** The prompt a trained model (SCHED_MODEL) continues: its routing is the real thing's. */
const TRAINED_PROMPT =
  "Call me Ishmael. Some years ago, never mind how long precisely, having little";
/** Other text, for the routing statistics the scheduler pins by. */
const STATS_PROMPT =
  "It was the whale, the white whale, that Ahab had sworn to hunt across the sea";
const TOKENS = env("SCHED_TOKENS", 48);
const READ_EVERY = env("SCHED_READ_EVERY", 8);
const d = env("SCHED_HIDDEN", 256), ff = env("SCHED_FF", 512), L = env("SCHED_LAYERS", 4);
const dir = await Deno.makeTempDir({ prefix: "kiln_sched_bench_" });
const TRAINED = Deno.env.get("SCHED_MODEL");
const device = await requestDevice();
let prompt: number[];
let E = 8;
if (TRAINED) {
  // A trained checkpoint, copied so the routing statistics written below stay out of it.
  for (const f of ["config.json", "model.safetensors", "tokenizer.json"]) {
    await Deno.copyFile(`${TRAINED}/${f}`, `${dir}/${f}`);
  }
  const m = await loadModel(dir, { device, quiet: true, maxSeq: 128 });
  prompt = m.tokenizer!.encode(TRAINED_PROMPT);
  E = m.expertPlan?.experts ??
    JSON.parse(await Deno.readTextFile(`${dir}/config.json`)).num_experts;
  m.dispose();
} else {
  await writeTinyMixtral(dir, {
    config: {
      hidden_size: d,
      intermediate_size: ff,
      num_hidden_layers: L,
      num_local_experts: 8,
      num_experts_per_tok: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      vocab_size: 512,
    },
    tokenizer: "none",
    seed: 1,
  });
  prompt = Array.from({ length: 16 }, (_, i) => (i * 37 + 11) % 512);
}

async function decodeRate(m: Model): Promise<{ tps: number; ids: number[] }> {
  // Warm-up compiles the plans.
  for await (const _ of m.generateIds(prompt, { maxTokens: 4 })) { /* warm */ }
  m.experts?.resetStats();
  m.parallel?.resetStats();
  const ids: number[] = [];
  const t0 = performance.now();
  let tFirst = 0;
  for await (const id of m.generateIds(prompt, { maxTokens: TOKENS + 1, readEvery: READ_EVERY })) {
    if (ids.length === 0) tFirst = performance.now();
    ids.push(id);
  }
  const t1 = performance.now();
  void t0;
  return { tps: (ids.length - 1) / ((t1 - tFirst) / 1000), ids };
}

const open = (memoryBudget?: number, expertPolicy?: ExpertPolicy) =>
  loadModel(dir, { device, quiet: true, maxSeq: 128, memoryBudget, expertPolicy });

// The all-resident reference stays loaded: every row is timed side by side with it
// (row, reference, row, reference; means), since the host's speed drifts within
// minutes and a ratio to a baseline taken earlier would measure the drift.
const ref = await open();
const base = await decodeRate(ref);
const baseRt = ref.lastStats!.readbacks / ref.lastStats!.generatedTokens;

/** Decode rate of `m` and of the reference, alternating twice; `m`'s stats are from its last run. */
async function sideBySide(m: Model): Promise<{ tps: number; ids: number[]; baseTps: number }> {
  const a = await decodeRate(m);
  const b = await decodeRate(ref);
  const c = await decodeRate(m);
  const d = await decodeRate(ref);
  return { tps: (a.tps + c.tps) / 2, ids: c.ids, baseTps: (b.tps + d.tps) / 2 };
}
const probe = await open(Number.MAX_SAFE_INTEGER);
const p0 = probe.expertPlan!;
probe.dispose();
const expertTotal = p0.layers * p0.experts * p0.expertBytes;
console.log(
  `model: ${TRAINED ?? `d=${d} ff=${ff} layers=${L} (random weights)`}, E=${E} k=2; expert ${
    formatBytes(p0.expertBytes)
  }, experts ${formatBytes(expertTotal)}, non-expert ${
    formatBytes(p0.fixedBytes)
  }; ${TOKENS} tokens, readEvery ${READ_EVERY}`,
);
if (TRAINED) {
  // Routing statistics from other text than the benchmark's prompt (so the pins are a
  // prediction, not a replay), written beside the copy: every load below pins by them.
  const m = await open(p0.fixedBytes + Math.floor(0.5 * expertTotal), "lru");
  const ids = m.tokenizer!.encode(STATS_PROMPT);
  for await (const _ of m.generateIds(ids, { maxTokens: 96 })) { /* routing recorded */ }
  const stats = m.experts!.routingStats();
  await writeRoutingStats(dir, stats);
  m.dispose();
  console.log(
    `routing stats (${ROUTING_STATS_FILE}, from ${ids.length + 96} tokens of other text):`,
  );
  stats.counts.forEach((row, l) => {
    const sum = row.reduce((x, y) => x + y, 0);
    console.log(`  MoE layer ${l}: ${row.map((c) => `${(100 * c / sum).toFixed(0)}%`).join(" ")}`);
  });
}
console.log(
  `all-resident: ${base.tps.toFixed(1)} tok/s, ${baseRt.toFixed(3)} round trips/token`,
);
console.log(
  "| budget | policy | slots (rotating) | tok/s | × all-resident | × naive | hit rate | uploaded/token | round trips/token | misses/token | ids match |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|---|");
const VARIANTS = [
  ["naive", "naive", true],
  ["lru", "lru (+fallback)", true],
  ["lru", "lru (pure)", false],
  ["lfu", "lfu (+fallback)", true],
  ["stream", "stream", true],
] as const;
for (const frac of [1, 0.75, 0.5, 0.25]) {
  const budget = p0.fixedBytes + Math.floor(frac * expertTotal);
  let naiveTps = NaN;
  for (const [policy, name, fallback] of VARIANTS) {
    if (frac === 1 && name !== "lru (+fallback)") continue;
    let m: Model;
    try {
      m = await open(budget, policy);
    } catch (e) {
      console.log(`| ${frac * 100}% | ${name} | — | ${(e as Error).message} |`);
      continue;
    }
    if (m.experts) m.experts.streamOnMisses = fallback;
    const r = await sideBySide(m);
    if (policy === "naive") naiveTps = r.tps;
    const x = m.experts;
    const s = x?.summary();
    const steps = Math.max(1, x?.stats.decodeSteps ?? 0);
    const rt = s ? s.roundTripsPerToken : baseRt;
    console.log(
      `| ${frac * 100}% | ${frac === 1 ? "all resident" : name} | ${m.expertPlan!.slots} (${
        m.expertPlan!.rotating
      }) | ${r.tps.toFixed(1)} | ${(r.tps / r.baseTps).toFixed(2)} | ${
        Number.isNaN(naiveTps) ? "—" : (r.tps / naiveTps).toFixed(2)
      } | ${s ? (100 * s.hitRate).toFixed(0) + "%" : "100%"} | ${
        formatBytes(s ? s.bytesPerToken : 0)
      } | ${rt.toFixed(2)} | ${x ? (x.stats.misses / steps).toFixed(2) : "0"} | ${
        r.ids.join() === base.ids.join() ? "yes" : "NO"
      } |`,
    );
    m.dispose();
  }
}

const pct = (v: number) => (Number.isNaN(v) ? "—" : `${(100 * v).toFixed(0)}%`);
const match = (ids: number[]) => (ids.join() === base.ids.join() ? "yes" : "NO");
const budgetOf = (frac: number) => p0.fixedBytes + Math.floor(frac * expertTotal);

// Expert parallelism: two devices from two adapter requests.
const device2 = await requestDevice();
console.log("\nexpert parallelism (2 devices):");
console.log(
  "| budget per device | experts per layer (home, other) | tok/s | × all-resident | round trips/token | activations moved/token | remote trips skipped | ids match |",
);
console.log("|---|---|---|---|---|---|---|---|");
for (const frac of [undefined, 0.5]) {
  const opts: LoadOptions = { devices: [device, device2], quiet: true, maxSeq: 128 };
  if (frac !== undefined) opts.memoryBudget = budgetOf(frac);
  const m = await loadModel(dir, opts);
  const r = await sideBySide(m);
  const x = m.parallel!, st = x.stats, n = Math.max(1, st.decodeSteps);
  console.log(
    `| ${frac === undefined ? "none (balanced)" : `${frac * 100}% of expert bytes`} | ${
      x.plan.counts.join(", ")
    } | ${r.tps.toFixed(1)} | ${(r.tps / r.baseTps).toFixed(2)} | ${
      (st.decodeRoundTrips / n).toFixed(2)
    } | ${formatBytes(st.decodeActivationBytes / n)} | ${st.skipped} of ${st.barriers} | ${
      match(r.ids)
    } |`,
  );
  m.dispose();
}

// Prefetch predictors, pure LRU (no streamed fallback windows).
console.log("\nprefetch predictor (lru, pure cache mode):");
console.log(
  "| budget | prefetch | tok/s | hit rate | misses/token | uploaded/token | temporal accuracy | lookahead accuracy | ids match |",
);
console.log("|---|---|---|---|---|---|---|---|---|");
for (const frac of [0.75, 0.5]) {
  for (const prefetch of ["temporal", "lookahead", "both"] as ExpertPrefetch[]) {
    const m = await loadModel(dir, {
      device,
      quiet: true,
      maxSeq: 128,
      memoryBudget: budgetOf(frac),
      expertPolicy: "lru",
      prefetch,
    });
    m.experts!.streamOnMisses = false;
    const r = await decodeRate(m);
    const x = m.experts!, s = x.summary(), n = Math.max(1, x.stats.decodeSteps);
    console.log(
      `| ${frac * 100}% | ${prefetch} | ${r.tps.toFixed(1)} | ${pct(s.hitRate)} | ${
        (x.stats.misses / n).toFixed(2)
      } | ${formatBytes(s.bytesPerToken)} | ${pct(s.temporalAccuracy)} | ${
        pct(s.lookaheadAccuracy)
      } | ${match(r.ids)} |`,
    );
    m.dispose();
  }
}

// Disk tier: a host budget of one expert (the read buffer).
console.log("\ndisk tier (host budget: one expert):");
console.log(
  "| budget | policy | tok/s | × all-resident | read from disk/token | uploaded/token | round trips/token | ids match |",
);
console.log("|---|---|---|---|---|---|---|---|");
for (const frac of [0.5, 0.25]) {
  for (const policy of ["lru", "stream"] as ExpertPolicy[]) {
    let m: Model;
    try {
      m = await loadModel(dir, {
        device,
        quiet: true,
        maxSeq: 128,
        memoryBudget: budgetOf(frac),
        hostMemoryBudget: p0.expertBytes,
        expertPolicy: policy,
      });
    } catch (e) {
      console.log(`| ${frac * 100}% | ${policy} | ${(e as Error).message} |`);
      continue;
    }
    const r = await sideBySide(m);
    const s = m.experts!.summary();
    console.log(
      `| ${frac * 100}% | ${policy}${policy === "lru" ? " (+fallback)" : ""} | ${
        r.tps.toFixed(1)
      } | ${(r.tps / r.baseTps).toFixed(2)} | ${formatBytes(s.diskBytesPerToken)} | ${
        formatBytes(s.bytesPerToken)
      } | ${s.roundTripsPerToken.toFixed(2)} | ${match(r.ids)} |`,
    );
    m.dispose();
  }
}
ref.dispose();
await Deno.remove(dir, { recursive: true });
