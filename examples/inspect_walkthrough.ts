/**
 * Inspection walk-through: from DSL to IR dump, fused plan, buffers and WGSL, and
 * per-kernel GPU times. Run with `deno run -A examples/inspect_walkthrough.ts`.
 */
import { compile, dumpGraph, GraphBuilder, requestDevice } from "../mod.ts";

const g = new GraphBuilder();
const x = g.input("x", ["T", 128]);
const w = g.param("w", [128, 128]);
// Softmax attention-style scores: matmul, scale, softmax, then a gated output.
const s = x.matmul(w).mul(1 / Math.sqrt(128)).softmax(-1);
g.output("y", s.mul(x.sigmoid()).sum(-1));
const graph = g.build();

console.log("== 1. The IR as written (one line per op, with your file:line)");
console.log(dumpGraph(graph));

const device = await requestDevice();
const exe = compile(graph, device, { params: { w: new Float32Array(128 * 128).fill(0.01) } });

console.log("\n== 2. After fold/CSE/DCE");
console.log(dumpGraph(exe.graph));

console.log("\n== 3. The plan for T = 32: kernels, fused ops, grids, buffers, peak bytes");
console.log(exe.inspect({ T: 32 }));

console.log("\n== 4. The WGSL of the first kernel");
console.log(exe.plan({ T: 32 }).kernels[0].code);

if (device.timestamps) {
  console.log("\n== 5. GPU time per kernel (timestamp queries)");
  const x = new Float32Array(32 * 128).fill(1);
  await exe.run({ x }); // the first dispatch of a pipeline includes the driver's shader compile
  const { kernels } = await exe.profile({ x });
  for (const k of kernels) console.log(`  ${k.label.padEnd(30)} ${(k.ns / 1e3).toFixed(1)} µs`);
}
exe.dispose();
device.destroy();
