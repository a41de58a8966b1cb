/**
 * Soak: many load/generate/dispose cycles of a tiny model, then many
 * compile/run/dispose cycles of a small graph, printing resident memory
 * (`Deno.memoryUsage().rss`), live WebGPU devices and live GPU buffers (count
 * and bytes, counted by wrapping each device's `createBuffer`/`destroy`) at the
 * start, the middle and the end. A leak shows as growth per cycle; the target
 * is ≤ 5% RSS growth over 150 load/dispose cycles after the warm-up.
 *
 * Each model cycle loads without a device, so the model runs on the shared
 * default device (`defaultDevice()`; requesting a device per model grew RSS
 * by tens of MiB per cycle, even destroyed, until V8 collected it);
 * `--shared-device` passes one requested device to every cycle instead. The
 * test suite keeps a short version
 * (`tests/dispose_test.ts`: no growth in live buffers over 5 cycles).
 *
 * RSS without a garbage collection mostly measures what V8 has not collected
 * yet: Deno frees a device's (and a pipeline's) native memory when V8 collects
 * its JS wrapper, and V8 does not see that memory, so it collects late. Run
 * with `--v8-flags=--expose-gc` and every sample is taken after a full
 * collection: memory still held then is retained, i.e. leaked.
 *
 * Usage:
 *   deno run -A [--v8-flags=--expose-gc] bench/soak.ts [--cycles 150] [--runs 150]
 *     [--warmup 10] [--shared-device]
 *
 * @module
 */

import { loadModel } from "../app/model/mod.ts";
import { GraphBuilder } from "../compiler/builder.ts";
import { formatBytes } from "../core/format.ts";
import { type GpuDevice, requestDevice } from "../runtime/device.ts";
import { compile } from "../runtime/executable.ts";
import { trackAdapters } from "../tests/fixtures/gpu_tracker.ts";
import { writeTinyMixtral } from "../tests/fixtures/tiny_checkpoints.ts";

/** `--name N` or `--name=N` (a count), else `fallback`. */
function count(name: string, fallback: number): number {
  const i = Deno.args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return fallback;
  const text = Deno.args[i].includes("=") ? Deno.args[i].split("=")[1] : Deno.args[i + 1];
  const v = Number(text);
  if (!Number.isInteger(v) || v < 0) {
    throw new RangeError(`--${name} must be an integer >= 0, got ${JSON.stringify(text)}`);
  }
  return v;
}
const known = /^--(cycles|runs|warmup)(=.*)?$|^--shared-device$|^\d+$/;
const stray = Deno.args.find((a) => !known.test(a));
if (stray) throw new TypeError(`soak: unknown argument ${JSON.stringify(stray)}`);
const cycles = count("cycles", 150), runs = count("runs", 150), warmup = count("warmup", 10);
const sharedDevice = Deno.args.includes("--shared-device");

const tracker = trackAdapters();
const mib = (n: number) => (n / 2 ** 20).toFixed(1);

interface Sample {
  label: string;
  rss: number;
  buffers: number;
  bytes: number;
  devices: number;
  ms: number;
}

const gc = (globalThis as { gc?: () => void }).gc;

function sample(label: string, t0: number): Sample {
  gc?.(); // with --v8-flags=--expose-gc: retained memory only
  const live = tracker.liveBuffers();
  return {
    label,
    rss: Deno.memoryUsage().rss,
    buffers: live.count,
    bytes: live.bytes,
    devices: tracker.liveDevices(),
    ms: performance.now() - t0,
  };
}

function print(title: string, samples: Sample[], base: Sample): void {
  console.log(`\n${title}`);
  console.log(
    "  point              RSS MiB   vs warm   live devices   live buffers   buffer bytes",
  );
  for (const s of samples) {
    const growth = ((s.rss / base.rss - 1) * 100).toFixed(1);
    console.log(
      `  ${s.label.padEnd(17)}${mib(s.rss).padStart(9)}${`${growth}%`.padStart(10)}` +
        `${String(s.devices).padStart(15)}${String(s.buffers).padStart(15)}` +
        `${formatBytes(s.bytes).padStart(15)}`,
    );
  }
}

/** Runs `n` cycles of `body`, sampling at the start, after warm-up, the middle and the end. */
async function soak(
  title: string,
  n: number,
  body: (i: number) => Promise<void>,
): Promise<void> {
  if (n === 0) return;
  const t0 = performance.now();
  const samples = [sample("start", t0)];
  const warm = Math.min(warmup, n - 1);
  let base = samples[0];
  let last = t0, firstMs = 0, lastMs = 0;
  for (let i = 0; i < n; i++) {
    await body(i);
    const now = performance.now();
    if (i < warm) firstMs += now - last;
    if (i >= n - warm) lastMs += now - last;
    last = now;
    if (i + 1 === warm) samples.push(base = sample(`after ${warm} (warm)`, t0));
    if (i + 1 === Math.floor(n / 2)) samples.push(sample(`after ${i + 1}`, t0));
  }
  samples.push(sample(`after ${n} (end)`, t0));
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  const how = gc ? "after a full GC" : "without a GC";
  print(`${title}: ${n} cycles in ${secs} s, RSS sampled ${how}`, samples, base);
  const end = samples[samples.length - 1];
  if (warm > 0) {
    console.log(
      `  RSS growth after warm-up: ${((end.rss / base.rss - 1) * 100).toFixed(1)}% ` +
        `(${mib(end.rss - base.rss)} MiB over ${n - warm} cycles); mean cycle ` +
        `${(firstMs / warm).toFixed(0)} ms in the first ${warm}, ${
          (lastMs / warm).toFixed(0)
        } ms in the last ${warm}`,
    );
  }
}

const dir = await Deno.makeTempDir({ prefix: "kiln_soak_" });
try {
  await writeTinyMixtral(dir, {});
  let shared: GpuDevice | undefined;
  if (sharedDevice) shared = await requestDevice();
  await soak(
    `load/generate/dispose (tiny Mixtral, ${
      shared ? "one device passed in" : "the default device"
    })`,
    cycles,
    async (i) => {
      const model = await loadModel(dir, { device: shared, quiet: true, maxSeq: 32 });
      for await (const _ of model.generateIds([1, 2, 3], { maxTokens: 8, seed: i })) { /* */ }
      model.dispose();
    },
  );
  shared?.destroy();

  const dev = await requestDevice();
  const g = new GraphBuilder();
  const x = g.input("x", ["T", 64]);
  const s = g.state("s", [64]);
  const y = x.matmul(g.param("w", [64, 64]), { transB: true }).silu();
  g.assign(s, s.add(y.sum(0)));
  g.output("y", y);
  const graph = g.build();
  const w = new Float32Array(64 * 64).fill(0.01);
  await soak("compile/run/dispose (small graph, one device)", runs, async (i) => {
    const exe = compile(graph, dev, { params: { w } });
    await exe.run({ x: new Float32Array(64 * (1 + (i % 4))) });
    await exe.submit({ x: new Float32Array(64) });
    await exe.readStates(["s"]);
    exe.dispose();
  });
  dev.destroy();
} finally {
  tracker.stop();
  await Deno.remove(dir, { recursive: true });
}
