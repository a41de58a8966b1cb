/**
 * Expert scheduler benchmark: decode tokens/s of a small Mixtral-style model
 * (E = 8, k = 2) at 100 / 75 / 50 / 25 % of the expert bytes on the GPU, with
 * the scheduler (pinning by routing statistics gathered on a warm-up run) and
 * without statistics, plus hit rates, bytes moved and host round trips per token.
 *
 * Run: `deno run -A bench/scheduler_bench.ts` (env SCHED_TOKENS, SCHED_HIDDEN,
 * SCHED_FF, SCHED_LAYERS override the defaults 48 / 256 / 512 / 4).
 *
 * @module
 */
import { loadModel, type Model } from "../runtime/model.ts";
import { writeTinyMixtral } from "../tests/fixtures/tiny_checkpoints.ts";
import { requestDevice } from "../runtime/device.ts";
import { formatBytes, writeRoutingStats } from "../runtime/expert_plan.ts";

const env = (k: string, d: number) => Number(Deno.env.get(k) ?? d);
const TOKENS = env("SCHED_TOKENS", 48);
const d = env("SCHED_HIDDEN", 256), ff = env("SCHED_FF", 512), L = env("SCHED_LAYERS", 4);
const dir = await Deno.makeTempDir({ prefix: "kiln_sched_bench_" });
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
const device = await requestDevice();
const prompt = Array.from({ length: 16 }, (_, i) => (i * 37 + 11) % 512);

async function decodeRate(m: Model): Promise<{ tps: number; ids: number[] }> {
  // Warm-up compiles the plans.
  for await (const _ of m.generateIds(prompt, { maxTokens: 4 })) { /* warm */ }
  m.experts?.resetStats();
  const ids: number[] = [];
  const t0 = performance.now();
  let tFirst = 0;
  for await (const id of m.generateIds(prompt, { maxTokens: TOKENS + 1, readEvery: 8 })) {
    if (ids.length === 0) tFirst = performance.now();
    ids.push(id);
  }
  const t1 = performance.now();
  void t0;
  return { tps: (ids.length - 1) / ((t1 - tFirst) / 1000), ids };
}

const open = (memoryBudget?: number) =>
  loadModel(dir, { device, quiet: true, maxSeq: 128, memoryBudget });

const ref = await open();
const base = await decodeRate(ref);
const readbacksPerToken = ref.lastStats!.readbacks / ref.lastStats!.generatedTokens;
ref.dispose();
const probe = await open(Number.MAX_SAFE_INTEGER);
const p0 = probe.expertPlan!;
probe.dispose();
const expertTotal = p0.layers * p0.experts * p0.expertBytes;
console.log(
  `model: d=${d} ff=${ff} layers=${L} E=8 k=2; expert ${formatBytes(p0.expertBytes)}, ` +
    `experts ${formatBytes(expertTotal)}, non-expert ${
      formatBytes(p0.fixedBytes)
    }; ${TOKENS} tokens`,
);
console.log(
  `all-resident: ${base.tps.toFixed(1)} tok/s, ${readbacksPerToken.toFixed(3)} round trips/token`,
);
console.log(
  "| budget | variant | slots (rotating) | tok/s | × all-resident | hit rate | prefetch acc. | moved/token | round trips/token | ids match |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|");
// Statistics from one run at full residency-but-scheduled (decode routing of this prompt).
const statsRun = await open(p0.fixedBytes + (expertTotal - p0.expertBytes));
await decodeRate(statsRun);
const stats = statsRun.experts!.routingStats();
statsRun.dispose();
for (const frac of [1, 0.75, 0.5, 0.25]) {
  for (const variant of ["stats", "no stats"] as const) {
    if (frac === 1 && variant === "no stats") continue;
    const budget = p0.fixedBytes + Math.floor(frac * expertTotal);
    if (variant === "stats") await writeRoutingStats(dir, stats);
    else await Deno.remove(`${dir}/kiln_routing_stats.json`).catch(() => {});
    let m: Model;
    try {
      m = await open(budget);
    } catch (e) {
      console.log(`| ${frac * 100}% | ${variant} | — | ${(e as Error).message} |`);
      continue;
    }
    const r = await decodeRate(m);
    const s = m.experts?.summary();
    const rt = m.lastStats!.readbacks / m.lastStats!.generatedTokens +
      (s?.roundTripsPerToken ?? 0);
    console.log(
      `| ${frac * 100}% | ${variant} | ${m.expertPlan!.slots} (${m.expertPlan!.rotating}) | ${
        r.tps.toFixed(1)
      } | ${(r.tps / base.tps).toFixed(2)} | ${s ? (100 * s.hitRate).toFixed(0) + "%" : "100%"} | ${
        s ? (100 * s.prefetchAccuracy).toFixed(0) + "%" : "—"
      } | ${formatBytes(m.expertPlan!.bytesPerStep)} | ${rt.toFixed(3)} | ${
        r.ids.join() === base.ids.join() ? "yes" : "NO"
      } |`,
    );
    m.dispose();
  }
}
await Deno.remove(dir, { recursive: true });
