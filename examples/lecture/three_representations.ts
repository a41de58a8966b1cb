/**
 * Lecture experiment 2 — three representations, one model.
 *
 * An S4D layer is a continuous-time system x' = Ax + Bu, y = Cx discretised
 * (zero-order hold or bilinear) and then computed either as a recurrence
 * (one state update per token: how it decodes) or as a convolution with the
 * kernel K̄ = (CB̄, CĀB̄, CĀ²B̄, …) (FFT or direct: how it trains and
 * prefills). This script checks on the WebGPU device that the recurrence,
 * the FFT convolution and the direct convolution give the float64 reference's
 * output to f32 precision for both discretisations, that the two
 * discretisations approach each other as the step Δ shrinks (they are two
 * approximations of one continuous system), and measures why the recurrence
 * matters: the decode cost per token of the SSM layer stays flat with the
 * context while an attention layer's grows linearly.
 *
 * Run: `deno run -A examples/lecture/three_representations.ts [--quick] [--out DIR]`
 *
 * @module
 */

import {
  compile,
  cpuDevice,
  GraphBuilder,
  initS4,
  requestDevice,
  s4Layer,
  type S4Mode,
  s4ParamRecord,
} from "../../mod.ts";
import { lineChartSvg } from "../../app/plot/svg.ts";
import { experimentArgs, markdownTable, writeResults } from "./report.ts";

const args = experimentArgs();
const device = await requestDevice();
const T = args.quick ? 128 : 1024;
const H = 16, N = 32;

function s4Graph(mode: S4Mode, discretisation: "zoh" | "bilinear", t: number | string) {
  const g = new GraphBuilder();
  const x = g.input("x", [1, t, H]);
  g.output("y", s4Layer(g, x, { name: "s4", H, N, mode, discretisation, stateful: false }));
  return g.build();
}

/** Max |a − b| over max |b|. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let e = 0, s = 0;
  for (let i = 0; i < b.length; i++) {
    e = Math.max(e, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return e / s;
}

const x = Float32Array.from({ length: T * H }, (_, i) => Math.sin(i * 0.37) + Math.cos(i * 0.011));
console.log(`S4D layer: H = ${H} channels, N = ${N} states, T = ${T} tokens, init "lin"\n`);
const rows: string[][] = [];
const outputs: Record<string, Float32Array> = {};
for (const disc of ["zoh", "bilinear"] as const) {
  const params = s4ParamRecord("s4", initS4({ H, N, init: "lin", seed: 3 }));
  const ref = compile(s4Graph("recurrent", disc, T), cpuDevice(), { params });
  const want = (await ref.run({ x })).y.data as Float32Array;
  ref.dispose();
  outputs[disc] = want;
  for (const mode of ["recurrent", "conv", "direct"] as const) {
    const exe = compile(s4Graph(mode, disc, T), device, { params });
    const got = (await exe.run({ x })).y.data;
    exe.dispose();
    rows.push([disc, mode, relErr(got, want).toExponential(2)]);
  }
}
const agreement = markdownTable(
  ["discretisation", "computed as", "max error over max magnitude, vs float64"],
  rows,
);
console.log(agreement);

// ZOH and bilinear are two discretisations of the same continuous system: their
// outputs differ by O(Δ²) per step and meet as Δ shrinks.
const dtRows: string[][] = [];
for (const dt of [0.1, 0.01, 0.001, 0.0001]) {
  const p = initS4({ H, N, init: "lin", seed: 3, dtMin: dt, dtMax: dt });
  const out: Record<string, ArrayLike<number>> = {};
  for (const disc of ["zoh", "bilinear"] as const) {
    const exe = compile(s4Graph("conv", disc, T), device, { params: s4ParamRecord("s4", p) });
    out[disc] = (await exe.run({ x })).y.data;
    exe.dispose();
  }
  dtRows.push([String(dt), relErr(out.bilinear, out.zoh).toExponential(2)]);
}
const discTable = markdownTable(
  ["Δ", "max difference bilinear vs ZOH, over max magnitude"],
  dtRows,
);
console.log(discTable);

// Decode cost per token vs context: the SSM's recurrence touches a fixed-size
// state; attention reads every cached key and value.
const contexts = args.quick ? [64, 256, 1024] : [256, 1024, 4096, 16384];
const heads = 16, dHead = 64;
const gpuMs = async (
  exe: ReturnType<typeof compile>,
  inputs: Record<string, Float32Array | Uint32Array>,
) => {
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const { kernels } = await exe.profile(inputs);
    runs.push(kernels.reduce((s, k) => s + k.ns, 0) / 1e6);
  }
  return runs.sort((a, b) => a - b)[2];
};
const ssmG = new GraphBuilder();
const width = heads * dHead;
ssmG.output(
  "y",
  s4Layer(ssmG, ssmG.input("x", [1, 1, width]), { name: "s4", H: width, N: 16, mode: "recurrent" }),
);
const ssm = compile(ssmG.build(), device, {
  params: s4ParamRecord("s4", initS4({ H: width, N: 16, init: "lin" })),
});
const costRows: string[][] = [];
const ssmPts: [number, number][] = [], attnPts: [number, number][] = [];
for (const C of contexts) {
  const ssmMs = await gpuMs(ssm, { x: new Float32Array(width) });
  const g = new GraphBuilder();
  const q = g.input("q", [1, heads, dHead]);
  const k = g.param("k", [C, heads, dHead]), v = g.param("v", [C, heads, dHead]);
  g.output("o", g.attention(q, k, v, g.input("pos", [1], "u32"), { causal: true }));
  const cache = Float32Array.from({ length: C * width }, (_, i) => Math.sin(i));
  const attn = compile(g.build(), device, { params: { k: cache, v: cache } });
  const attnMs = await gpuMs(attn, {
    q: new Float32Array(width).fill(0.1),
    pos: Uint32Array.of(C - 1),
  });
  attn.dispose();
  ssmPts.push([C, ssmMs]);
  attnPts.push([C, attnMs]);
  costRows.push([String(C), ssmMs.toFixed(3), attnMs.toFixed(3)]);
}
ssm.dispose();
const costTable = markdownTable(
  [
    "context",
    `S4D recurrence (H ${width}, N 16) ms/token`,
    `attention (${heads}×${dHead}) ms/token`,
  ],
  costRows,
);
console.log(costTable);
const svg = lineChartSvg({
  title: "decode cost per token vs context (GPU kernel time)",
  xLabel: "context (tokens)",
  yLabel: "ms per token",
  logX: true,
  series: [
    { label: "S4D recurrence", points: ssmPts, markers: true },
    { label: "attention", points: attnPts, markers: true },
  ],
});
await writeResults(args, "three_representations", {
  svg,
  md: `### Three representations, one model\n\n${agreement}\n${discTable}\n${costTable}`,
});
