/**
 * Quantizing speed: each format's encoder on one thread (`quantize`) against
 * the worker pool (`QuantPool`, every core by default), side by side on one
 * tensor, interleaved rounds, medians; then, with `--model`, `kiln quantize` of
 * the ~100M Mixtral-style model (random weights) with `--threads 1` and with
 * the pool, checking the two files are the same bytes.
 *
 * ```sh
 * deno run -A bench/quantize_bench.ts [--formats q4_k,q8_0,…] [--elems 4194304] [--reps 3]
 *   [--threads N] [--model q4_k]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { quantize } from "../core/quant/codecs.ts";
import type { QuantFormat } from "../core/quant/formats.ts";
import { mulberry32 } from "../core/random.ts";
import { QuantPool } from "../app/quantize_pool.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { interleavedMedians } from "./_timing.ts";
import { MIXTRAL_100M } from "./mixtral_100m.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    formats: { type: "string", default: "q4_k,q5_k,q6_k,q8_0,q4_0,q3_k,q2_k,iq4_xs,iq3_xxs,iq3_s" },
    elems: { type: "string", default: String(1 << 22) },
    reps: { type: "string", default: "3" },
    threads: { type: "string" },
    model: { type: "string" },
  },
});
const formats = values.formats.split(",").filter(Boolean) as QuantFormat[];
const elems = Number(values.elems);
const reps = Number(values.reps);
const threads = values.threads === undefined ? undefined : Number(values.threads);

using pool = new QuantPool({ threads });
console.log(
  `${
    new Date().toISOString()
  }; ${pool.threads} threads (logical cores: ${navigator.hardwareConcurrency})`,
);
const r = mulberry32(7);
const x = new Float32Array(elems).map(() => r() + r() + r() - 1.5);

console.log("\n| format | 1 thread, M elements/s | pool, M elements/s | speed-up | same bytes |");
console.log("| ------ | ---------------------- | ------------------ | -------- | ---------- |");
for (const f of formats) {
  let one: Uint8Array = new Uint8Array(0), many: Uint8Array = new Uint8Array(0);
  const [t1, tp] = await interleavedMedians([
    () => Promise.resolve(one = quantize(f, x)),
    async () => many = await pool.quantize(f, x),
  ], reps);
  const same = one.length === many.length && one.every((b, i) => b === many[i]);
  const rate = (ms: number) => (elems / ms / 1e3).toFixed(2);
  console.log(
    `| ${f} | ${rate(t1)} | ${rate(tp)} | ${(t1 / tp).toFixed(2)}× | ${same ? "yes" : "**no**"} |`,
  );
}
if (pool.fallback) console.log(`\n(the pool encoded on this thread: ${pool.fallback})`);

if (values.model) {
  const type = values.model;
  const dir = await Deno.makeTempDir({ prefix: "kiln_quantize_bench_" });
  try {
    await writeRandomCheckpoint(join(dir, "m"), MIXTRAL_100M, { seed: 1 });
    const cli = new URL("../cli.ts", import.meta.url).pathname;
    const run = async (n: string | undefined) => {
      const out = join(dir, `m_${n ?? "all"}.gguf`);
      const args = ["run", "-A", cli, "quantize", join(dir, "m"), "--type", type, "-o", out];
      if (n) args.push("--threads", n);
      const t0 = performance.now();
      const p = await new Deno.Command(Deno.execPath(), { args: [...args, "--quiet"] }).output();
      if (!p.success) throw new Error(new TextDecoder().decode(p.stderr));
      return { ms: performance.now() - t0, bytes: await Deno.readFile(out) };
    };
    const a = await run("1");
    const b = await run(threads === undefined ? undefined : String(threads));
    const same = a.bytes.length === b.bytes.length && a.bytes.every((v, i) => v === b.bytes[i]);
    console.log(
      `\nkiln quantize of the ~100M Mixtral-style model to ${type}: --threads 1 ` +
        `${(a.ms / 1000).toFixed(1)} s, pool ${(b.ms / 1000).toFixed(1)} s ` +
        `(${(a.ms / b.ms).toFixed(2)}×), same file: ${same ? "yes" : "NO"}`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
