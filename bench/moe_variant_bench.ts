/**
 * What GPT-OSS's expert features cost: the same routed MoE layer as Mixtral's
 * SwiGLU experts, with per-expert biases, and with biases plus the clamped
 * `swiglu_oai` activation; and what Nemotron 3's ungated `relu2` experts save
 * (W1 and W2 only) — prefill (T = 256) and decode (T = 1), GPU time from
 * timestamp queries (kernel sums, so the ~10 ms host round trip is left out),
 * the four layers taking turns round after round. f32 weights and MXFP4
 * weights (GPT-OSS's published format).
 *
 * ```sh
 * deno run -A bench/moe_variant_bench.ts [--rounds 5]
 * ```
 *
 * @module
 */

import { GraphBuilder } from "../compiler/builder.ts";
import { moe, type MoeOptions } from "../models/moe.ts";
import { compile, type Executable } from "../runtime/executable.ts";
import { requestDevice } from "../runtime/device.ts";
import { quantize } from "../core/quant/mod.ts";
import type { QuantFormat } from "../core/quant/formats.ts";
import { mulberry32 } from "../core/random.ts";

const arg = (name: string, fallback: number) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : fallback;
};
const rounds = arg("--rounds", 5);
const device = await requestDevice();
if (!device.timestamps) throw new Error("this bench needs timestamp queries");
const d = 512, ff = 1536, E = 8, k = 2;

const rand = mulberry32(7);
const fill = (n: number, s: number) => Float32Array.from({ length: n }, () => (2 * rand() - 1) * s);
const weights = {
  router: fill(E * d, 1),
  w1: fill(E * ff * d, 2 / Math.sqrt(d)),
  w3: fill(E * ff * d, 2 / Math.sqrt(d)),
  w2: fill(E * d * ff, 1 / Math.sqrt(ff)),
  b1: fill(E * ff, 0.5),
  b3: fill(E * ff, 0.5),
  b2: fill(E * d, 0.5),
};

/** Each expert's `[rows, cols]` slab quantized, as the loader stores block weights. */
function blocks(w: Float32Array, f: QuantFormat, rows: number, cols: number): Uint32Array {
  const per = rows * cols;
  const slabs = Array.from(
    { length: E },
    (_, e) => quantize(f, w.subarray(e * per, (e + 1) * per)),
  );
  const words = Math.ceil(slabs[0].length / 4);
  const out = new Uint8Array(E * words * 4);
  slabs.forEach((s, e) => out.set(s, e * words * 4));
  return new Uint32Array(out.buffer);
}

type Variant = "swiglu" | "swiglu+bias" | "oai+bias" | "relu2";

function layer(v: Variant, format: QuantFormat | undefined): Executable {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", d]);
  const o: MoeOptions = {
    name: "m",
    experts: E,
    topK: k,
    ff,
    ...(format ? { weightFormat: format } : {}),
    ...(v === "swiglu" || v === "relu2" ? {} : { expertBias: true }),
    ...(v === "oai+bias" ? { activation: "swiglu_oai" as const } : {}),
    ...(v === "relu2" ? { activation: "relu2" as const } : {}),
  };
  g.output("y", moe(g, x, o).y);
  const params: Record<string, Float32Array | Uint32Array> = {
    "m.router": weights.router,
    "m.w1": format ? blocks(weights.w1, format, ff, d) : weights.w1,
    "m.w2": format ? blocks(weights.w2, format, d, ff) : weights.w2,
  };
  if (v !== "relu2") params["m.w3"] = format ? blocks(weights.w3, format, ff, d) : weights.w3;
  if (v !== "swiglu" && v !== "relu2") {
    Object.assign(params, { "m.b1": weights.b1, "m.b3": weights.b3, "m.b2": weights.b2 });
  }
  return compile(g.build(), device, { params });
}

const gpuMs = async (exe: Executable, x: Float32Array) =>
  (await exe.profile({ x })).kernels.reduce((a, kk) => a + kk.ns, 0) / 1e6;
const median = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];

const variants: Variant[] = ["swiglu", "swiglu+bias", "oai+bias", "relu2"];
const rows: string[] = [];
for (const format of [undefined, "mxfp4"] as const) {
  const exes = variants.map((v) => layer(v, format));
  for (const T of [256, 1]) {
    const x = fill(T * d, 1);
    for (const exe of exes) await exe.run({ x }); // compile outside the timing
    const ms: number[][] = variants.map(() => []);
    for (let r = 0; r < rounds; r++) {
      for (const [i, exe] of exes.entries()) ms[i].push(await gpuMs(exe, x));
    }
    const m = ms.map(median);
    rows.push(
      `| ${format ?? "f32"} | ${T} | ${m.map((v) => v.toFixed(2)).join(" | ")} | ${
        (m[2] / m[0]).toFixed(2)
      }× | ${(m[3] / m[0]).toFixed(2)}× |`,
    );
  }
  for (const exe of exes) exe.dispose();
}
const load = new TextDecoder().decode((await new Deno.Command("uptime").output()).stdout).trim();
console.log(`MoE layer d ${d}, ff ${ff}, E ${E}, k ${k}; GPU ms (median of ${rounds}); ${load}`);
console.log(
  "| weights | T | swiglu | swiglu + biases | swiglu_oai + biases | relu2 (ungated) | " +
    "oai+bias / swiglu | relu2 / swiglu |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
for (const r of rows) console.log(r);
