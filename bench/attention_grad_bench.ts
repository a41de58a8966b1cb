/**
 * Attention forward vs backward (T = 1024, Hq = Hkv = 8, D = 64, causal, f32).
 *
 * One executable computes the forward and the gradients of q, k, v of
 * `Σ attention(q, k, v)·r`; its per-kernel GPU times (timestamp queries, the
 * minimum over a few runs: the machine is shared) are split into the forward
 * (`attention`, which also saves the log-sum-exp) and the backward kernels (the
 * delta reduction, `attention_dq`, `attention_dkv`). The effective rates count
 * 4·D FLOPs per visible (query, key) pair for the forward and 14·D for the
 * backward (dQ 6·D, dK/dV 8·D).
 *
 * Run: `deno run -A bench/attention_grad_bench.ts` (`T=…` to change the length).
 *
 * @module
 */
import { compile, GraphBuilder, requestDevice } from "../mod.ts";

const T = Number(Deno.env.get("T") ?? 1024), H = 8, D = 64;
const dev = await requestDevice();

function rand(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    a = (a * 1664525 + 1013904223) >>> 0;
    return (a / 4294967296) * 2 - 1;
  });
}

const g = new GraphBuilder();
const q = g.input("q", [T, H, D]);
const k = g.input("k", [T, H, D]);
const v = g.input("v", [T, H, D]);
const r = g.input("r", [T, H, D]);
const o = g.attention(q, k, v, undefined, { causal: true });
const [dq, dk, dv] = g.grad(o.mul(r).reshape([-1]).sum(0), [q, k, v]);
g.output("dq", dq);
g.output("dk", dk);
g.output("dv", dv);
const exe = compile(g.build(), dev);
const inputs = {
  q: rand(T * H * D, 1),
  k: rand(T * H * D, 2),
  v: rand(T * H * D, 3),
  r: rand(T * H * D, 4),
};

const t0 = performance.now();
await exe.run(inputs); // pipelines compile here
const compileMs = performance.now() - t0;
const best = new Map<string, number>();
for (let rep = 0; rep < 5; rep++) {
  const p = await exe.profile(inputs);
  const sums = new Map<string, number>();
  for (const k of p.kernels) sums.set(k.label, (sums.get(k.label) ?? 0) + k.ns / 1e6);
  for (const [l, ms] of sums) best.set(l, Math.min(best.get(l) ?? Infinity, ms));
}
const pairs = H * T * (T + 1) / 2;
let fwd = 0, bwd = 0;
const rows: string[] = [];
for (const [label, ms] of best) {
  const forward = label.split("+")[0] === "attention";
  if (forward) fwd += ms;
  else bwd += ms;
  rows.push(`  ${label.padEnd(28)} ${ms.toFixed(2).padStart(9)} ms${forward ? "  (forward)" : ""}`);
}
const gflops = (flopsPerPair: number, ms: number) =>
  (pairs * flopsPerPair * D / (ms * 1e6)).toFixed(2);
console.log(`attention T=${T} H=${H} D=${D} causal f32 on ${dev.adapterName}`);
console.log(rows.join("\n"));
console.log(
  `forward ${fwd.toFixed(2)} ms (${gflops(4, fwd)} GFLOP/s), backward ${bwd.toFixed(2)} ms (${
    gflops(14, bwd)
  } GFLOP/s), backward/forward ${(bwd / fwd).toFixed(2)}×; first run (compile) ${
    compileMs.toFixed(0)
  } ms`,
);
exe.dispose();
