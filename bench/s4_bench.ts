/**
 * S4 prefill: FFT convolution vs the direct O(L²) convolution (and the
 * sequential recurrence, for reference) for one S4D-Lin layer, B = 1, H = 64,
 * N = 64 (32 stored conjugate pairs), L = 1024 … 8192.
 *
 * On load it prints a side-by-side table (median wall time of submit → work
 * done, the representations interleaved so a shared machine's load hits them
 * alike) and `uptime`; the `Deno.bench` cases then time the same runs.
 *
 * Run: `deno bench -A bench/s4_bench.ts` (S4_BENCH_QUICK=1: L ≤ 2048 only).
 *
 * @module
 */
import { compile, GraphBuilder, requestDevice } from "../mod.ts";
import { initS4, s4Layer, type S4Mode, s4ParamRecord } from "../models/s4.ts";
import { interleavedMedians } from "./_timing.ts";

const device = await requestDevice();
const [H, N] = [64, 64];
const quick = Deno.env.get("S4_BENCH_QUICK") === "1";
const lengths = quick ? [1024, 2048] : [1024, 2048, 4096, 8192];
const modes: S4Mode[] = ["conv", "direct", "recurrent"];
const params = s4ParamRecord("s4", initS4({ H, N, init: "lin", seed: 1 }));

async function prepared(mode: S4Mode, L: number) {
  const g = new GraphBuilder();
  const x = g.input("x", [1, L, H]);
  g.output("y", s4Layer(g, x, { name: "s4", H, N, mode, stateful: true }));
  const exe = compile(g.build(), device, { params });
  const xs = Float32Array.from({ length: L * H }, (_, i) => Math.sin(i * 0.013));
  const run = await exe.prepare({ x: xs });
  return async () => {
    const enc = device.device.createCommandEncoder();
    run.encode(enc);
    device.device.queue.submit([enc.finish()]);
    await device.device.queue.onSubmittedWorkDone();
  };
}

async function uptime(): Promise<string> {
  try {
    const out = await new Deno.Command("uptime").output();
    return new TextDecoder().decode(out.stdout).trim();
  } catch {
    return "(uptime unavailable)";
  }
}

const runs = new Map<string, () => Promise<void>>();
console.log(`uptime before: ${await uptime()}`);
console.log(`S4D-Lin prefill, B = 1, H = ${H}, N = ${N}: median ms (interleaved)`);
console.log("L\tfft conv\tdirect\trecurrent\tdirect / fft");
for (const L of lengths) {
  const fns = await Promise.all(modes.map((m) => prepared(m, L)));
  modes.forEach((m, i) => runs.set(`${m} ${L}`, fns[i]));
  const med = await interleavedMedians(fns, L >= 8192 ? 3 : 5);
  console.log(
    `${L}\t${med[0].toFixed(1)}\t\t${med[1].toFixed(1)}\t${med[2].toFixed(1)}\t\t${
      (med[1] / med[0]).toFixed(1)
    }×`,
  );
}
console.log(`uptime after: ${await uptime()}`);

for (const L of lengths) {
  for (const mode of modes) {
    Deno.bench({
      name: `s4 prefill L=${L} ${mode === "conv" ? "fft conv" : mode}`,
      group: `s4 L=${L}`,
      baseline: mode === "conv",
      n: L >= 4096 ? 3 : 10,
      warmup: 1,
      fn: runs.get(`${mode} ${L}`)!,
    });
  }
}
