/**
 * Baked sizes vs run-time sizes, measured on the kernel that dominates a
 * prefill: the register-blocked matmul `[M, K] · [N, K]ᵀ` with M (the prompt
 * length) either baked into the WGSL as today or read from a storage buffer at
 * run time (the row count, the row tiles and the clamps derived from it in the
 * kernel), everything else equal. For each side: the compile time (pipeline
 * creation plus the driver's first-dispatch compile) and the run time (median
 * of 9 GPU submissions, wall). This is the measurement behind running prompts
 * as chunks of a few fixed lengths rather than one kernel for every length.
 *
 *     MESA_SHADER_CACHE_DISABLE=true deno run -A bench/runtime_shape_bench.ts
 *
 * @module
 */
import { compile, GraphBuilder, requestDevice } from "../mod.ts";

const device = await requestDevice();
const gpu = device.device;
const CASES: [number, number, number, string][] = [
  [200, 256, 1024, "rb8x16_wg1x16b_u1"],
  [200, 1024, 4096, "rb16x16_wg1x16b_u1"],
];

/** The WGSL with M read from `dims[0]` instead of baked in. */
function runtimeM(code: string, M: number, N: number, TM: number, tilesN: number): string {
  const tilesM = Math.ceil(M / TM);
  const decl = "@group(0) @binding(3) var<storage, read> dims: array<u32>;\n";
  let out = code.replace(/(@group\(0\) @binding\(2\)[^\n]*\n)/, `$1${decl}`);
  out = out.replace(
    "  let wg = wid.x;",
    `  let M_rt = dims[0];\n  let tilesM_rt = (M_rt + ${TM - 1}u) / ${TM}u;\n  let wg = wid.x;`,
  );
  out = out.replaceAll(`% ${tilesM}u;`, "% tilesM_rt;")
    .replaceAll(`wg / ${tilesN * tilesM}u;`, `wg / (${tilesN}u * tilesM_rt);`)
    .replaceAll(`b * ${M * N}u;`, `b * (M_rt * ${N}u);`)
    .replaceAll(`, ${M - 1}u);`, ", M_rt - 1u);")
    .replaceAll(`< ${M}u &&`, "< M_rt &&");
  for (const left of [`${M - 1}u`, ` ${M}u`, `% ${tilesM}u`, `${tilesN * tilesM}u`]) {
    if (out.includes(left)) throw new Error(`M is still baked into the WGSL (${left})`);
  }
  return out;
}

async function measure(code: string, bindings: GPUBuffer[], workgroups: readonly number[]) {
  const t0 = performance.now();
  const pipeline = await gpu.createComputePipelineAsync({
    layout: "auto",
    compute: { module: gpu.createShaderModule({ code }), entryPoint: "main" },
  });
  const group = gpu.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: bindings.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const dispatch = (n: readonly number[]) => {
    const enc = gpu.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(n[0], n[1], n[2]);
    pass.end();
    gpu.queue.submit([enc.finish()]);
    return gpu.queue.onSubmittedWorkDone();
  };
  await dispatch([0, 0, 0]);
  const compileMs = performance.now() - t0;
  const runs: number[] = [];
  for (let r = 0; r < 9; r++) {
    const t = performance.now();
    await dispatch(workgroups);
    runs.push(performance.now() - t);
  }
  return { compileMs, runMs: runs.sort((a, b) => a - b)[4] };
}

/** Copies `n` floats of `src` back to the host. */
async function readBack(src: GPUBuffer, n: number): Promise<Float32Array> {
  const dst = gpu.createBuffer({
    size: n * 4,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = gpu.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, dst, 0, n * 4);
  gpu.queue.submit([enc.finish()]);
  await dst.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(dst.getMappedRange().slice(0));
  dst.destroy();
  return out;
}

console.log(`adapter: ${device.adapterName}`);
console.log("| M×K×N | tile | M baked: compile ms | run ms | M at run time: compile ms | run ms |");
console.log("|---|---|---|---|---|---|");
for (const [M, K, N, tile] of CASES) {
  const g = new GraphBuilder();
  const [y] = g.apply("matmul", [g.input("x", [M, K]), g.param("w", [N, K])], {
    transA: false,
    transB: true,
    tile,
  });
  g.output("y", y);
  const exe = compile(g.build(), device, { params: { w: new Float32Array(N * K) } });
  const k = exe.plan({}).kernels[0];
  exe.dispose();
  const [, rows, cols, , wgCols] = /^matmul_rb(\d+)x(\d+)_wg(\d+)x(\d+)/.exec(k.label)!.map(Number);
  const buf = (bytes: number) =>
    gpu.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  const a = buf(M * K * 4), b = buf(N * K * 4), dims = buf(16);
  const c = gpu.createBuffer({
    size: M * N * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const rand = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898) % 1);
  gpu.queue.writeBuffer(a, 0, rand(M * K));
  gpu.queue.writeBuffer(b, 0, rand(N * K));
  gpu.queue.writeBuffer(dims, 0, new Uint32Array([M, 0, 0, 0]));
  const baked = await measure(k.code, [a, b, c], k.workgroups);
  const want = await readBack(c, M * N);
  const rt = await measure(
    runtimeM(k.code, M, N, rows, Math.ceil(N / (cols * wgCols))),
    [a, b, c, dims],
    k.workgroups,
  );
  const got = await readBack(c, M * N);
  if (got.some((v, i) => v !== want[i])) {
    throw new Error("the run-time-M kernel computed otherwise");
  }
  console.log(
    `| ${M}×${K}×${N} | ${tile} | ${baked.compileMs.toFixed(0)} | ${baked.runMs.toFixed(1)} | ${
      rt.compileMs.toFixed(0)
    } | ${rt.runMs.toFixed(1)} |`,
  );
  for (const x of [a, b, c, dims]) x.destroy();
}
device.destroy();
