/**
 * Decode GEMV against a quantized weight versus f16 and f32: one token times a
 * Mixtral-sized `[N, K]` weight, 4096×14336 both ways (w1/w3: N = 14336; w2:
 * K = 14336). Prints bytes read per call and the median time of a batch of
 * calls, every variant measured side by side in one run (interleaved rounds).
 *
 * Usage: `deno run -A bench/quant_gemv_bench.ts [--reps 9] [--batch 8] [--small]`
 * (`--small`: 1024×3584, for a quick look; `--shape N,K`: one shape).
 *
 * @module
 */

import { testBlocks } from "../tests/fixtures/quant_blocks.ts";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { requestDevice } from "../runtime/device.ts";
import type { QuantFormat } from "../core/quant/formats.ts";
import { quantWords } from "../ops/quant/mod.ts";
import { mulberry32 } from "../core/random.ts";
import { interleavedMedians } from "./_timing.ts";

const args = Deno.args;
const opt = (name: string, dflt: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const reps = opt("--reps", 9), batch = opt("--batch", 8);
const small = args.includes("--small");
const dev = await requestDevice();
const shapeArg = args.indexOf("--shape");
const shapes: [number, number][] = shapeArg >= 0
  ? [args[shapeArg + 1].split(",").map(Number) as [number, number]]
  : small
  ? [[3584, 1024], [1024, 3584]]
  : [[14336, 4096], [4096, 14336]];
const only = args.indexOf("--formats");
const formats = (only >= 0 ? args[only + 1].split(",") : [
  "f32",
  "f16",
  "q8_0",
  "q6_k",
  "q5_k",
  "q4_k",
  "q3_k",
  "q2_k",
  "q4_0",
  "q4_1",
  "q5_0",
  "q5_1",
]) as (
  | "f32"
  | "f16"
  | QuantFormat
)[];

console.log(
  `adapter: ${dev.adapterName}; batch ${batch}, ${reps} rounds`,
);
for (const [N, K] of shapes) {
  const r = mulberry32(N + K);
  const dense = Float32Array.from({ length: N * K }, () => (r() * 2 - 1) * 0.05);
  const x = Float32Array.from({ length: K }, () => r() * 2 - 1);
  const runs: (() => Promise<unknown>)[] = [];
  const bytes: number[] = [];
  for (const f of formats) {
    if (f === "f16" && !dev.caps.f16) continue;
    const g = new GraphBuilder();
    const xin = g.input("x", [1, K], f === "f16" ? "f16" : "f32");
    let y;
    let params: Record<string, Float32Array | Float16Array | Uint32Array>;
    if (f === "f32" || f === "f16") {
      y = xin.matmul(g.param("w", [N, K], f), { transB: true });
      params = { w: f === "f16" ? Float16Array.from(dense) : dense };
      bytes.push(N * K * (f === "f16" ? 2 : 4));
    } else {
      const words = new Uint32Array(quantWords(f, N, K));
      // The lattice formats Kiln only reads: random blocks at the weights' scale.
      new Uint8Array(words.buffer).set(testBlocks(f, dense, r));
      y = g.apply("qmatmul", [xin, g.param("w", [words.length], "u32")], {
        format: f,
        rows: N,
        cols: K,
      })[0];
      params = { w: words };
      bytes.push(words.byteLength);
    }
    g.output("y", y);
    const exe = compile(g.build(), dev, { params });
    const gx = await exe.prepare({ x: f === "f16" ? Float16Array.from(x) : x });
    runs.push(async () => {
      const enc = dev.device.createCommandEncoder();
      for (let i = 0; i < batch; i++) gx.encode(enc);
      dev.device.queue.submit([enc.finish()]);
      await dev.device.queue.onSubmittedWorkDone();
    });
  }
  const ms = await interleavedMedians(runs, reps);
  const names = formats.filter((f) => f !== "f16" || dev.caps.f16);
  const f16 = names.indexOf("f16");
  const base = f16 >= 0 ? f16 : 0;
  console.log(`\nN=${N} K=${K} (one token)`);
  console.log(
    "format  MB read  ms/call  GB/s   bytes vs " + names[base] + "  speed vs " + names[base],
  );
  names.forEach((f, i) => {
    const per = ms[i] / batch;
    console.log(
      `${f.padEnd(6)} ${(bytes[i] / 1e6).toFixed(1).padStart(8)} ${per.toFixed(2).padStart(8)} ${
        (bytes[i] / per / 1e6).toFixed(1).padStart(6)
      }   ${(bytes[i] / bytes[base]).toFixed(3).padStart(13)}  ${
        (ms[base] / ms[i]).toFixed(2).padStart(13)
      }×`,
    );
  });
}
