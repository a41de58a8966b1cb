/**
 * Compile time beside run time for the register tiles of the matmul kernel on
 * the current adapter: the cost of a tile choice is its run time times the runs
 * it serves plus its compile time, which on CPU adapters (LLVM at the first
 * dispatch) grows with the unrolled register block. For each shape and tile:
 * the compile (pipeline creation and the driver's first-dispatch compile,
 * measured by `prepare`) and the median run time of 5 runs.
 *
 *     MESA_SHADER_CACHE_DISABLE=true deno run -A bench/matmul_compile_bench.ts
 *
 * @module
 */
import { compile, GraphBuilder, requestDevice } from "../mod.ts";

const device = await requestDevice();
const SHAPES: [number, number, number][] = [[64, 256, 1024], [256, 256, 1024], [256, 1024, 4096]];
const TILES = [
  "rb32x16_wg1x16b_u1",
  "rb24x16_wg1x16b_u1",
  "rb16x16_wg1x16b_u1",
  "rb8x16_wg1x16b_u1",
  "rb8x8_wg1x16b_u1",
];
console.log(`adapter: ${device.adapterName}`);
console.log("| M×K×N | tile | compile ms | run ms (median of 5) | GFLOP/s |");
console.log("|---|---|---|---|---|");
for (const [M, K, N] of SHAPES) {
  for (const tile of TILES) {
    const g = new GraphBuilder();
    const [y] = g.apply("matmul", [g.input("x", [M, K]), g.param("w", [N, K])], {
      transA: false,
      transB: true,
      tile,
    });
    g.output("y", y);
    const w = new Float32Array(N * K).fill(0.01);
    const exe = compile(g.build(), device, { params: { w } });
    const x = new Float32Array(M * K).fill(1);
    let t = performance.now();
    await exe.prepare({ x });
    const compileMs = performance.now() - t;
    const runs: number[] = [];
    for (let r = 0; r < 5; r++) {
      t = performance.now();
      await exe.run({ x });
      runs.push(performance.now() - t);
    }
    const ms = runs.sort((a, b) => a - b)[2];
    console.log(
      `| ${M}×${K}×${N} | ${tile} | ${compileMs.toFixed(0)} | ${ms.toFixed(1)} | ${
        (2 * M * N * K / ms / 1e6).toFixed(1)
      } |`,
    );
    exe.dispose();
  }
}
device.destroy();
