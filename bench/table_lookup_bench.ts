/**
 * What a run-time-indexed table costs the adapter, three ways: the lattice
 * formats' codebooks as private arrays of 64 words picked by a switch (how
 * `ops/quant/wgsl_lattice.ts` read them until the constant tables of
 * `core/kernel_tables.ts`), a storage buffer (what GPUs bind a table as), and
 * a uniform buffer (what CPU adapters bind it as). Each invocation makes `--lookups` dependent pseudo-random
 * lookups into a table of `--words` u32 words (IQ2_XS's codebook is 512); the
 * pipeline's first-use time (the driver's compile) and the time a dispatch
 * takes are printed, all three side by side in one process. Raw WebGPU, no
 * Kiln kernels: it measures the adapter.
 *
 *     deno run -A bench/table_lookup_bench.ts [--words 512] [--lookups 8192]
 *
 * @module
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: { words: { type: "string" }, lookups: { type: "string" } },
});
const WORDS = Number(values.words ?? 512), LOOKUPS = Number(values.lookups ?? 8192);
const WG = 8, GROUPS = 8, CHUNK = 64;
if (WORDS % CHUNK !== 0) throw new RangeError(`--words must be a multiple of ${CHUNK}`);

const adapter = await navigator.gpu.requestAdapter();
if (!adapter) throw new Error("no WebGPU adapter");
const device = await adapter.requestDevice();
const table = new Uint32Array(WORDS).map((_, i) => Math.imul(i, 2654435761) >>> 0);

const loop = (get: string) => `
@compute @workgroup_size(${WG}) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  var acc = 0u;
  var idx = gid.x * 7919u;
  for (var it = 0u; it < ${LOOKUPS}u; it++) {
    idx = idx * 1103515245u + 12345u;
    acc = acc ^ ${get}((idx >> 16u) % ${WORDS}u);
  }
  out[gid.x] = acc ^ tab_used();
}`;
const head = `@group(0) @binding(0) var<storage, read_write> out: array<u32>;`;
const chunks = Array.from({ length: WORDS / CHUNK }, (_, c) => {
  const part = Array.from(table.subarray(c * CHUNK, (c + 1) * CHUNK), (w) => `${w}u`);
  return `var<private> g${c}: array<u32, ${CHUNK}> = array<u32, ${CHUNK}>(${part.join(",")});`;
});
const cases: Record<string, string> = {
  "private arrays + switch": `${head}
@group(0) @binding(1) var<storage, read> tab: array<u32>;
${chunks.join("\n")}
fn tab_used() -> u32 { return tab[0]; }
fn gw(i: u32) -> u32 {
  switch (i / ${CHUNK}u) {
${
    Array.from(
      { length: WORDS / CHUNK - 1 },
      (_, c) => `    case ${c}u: { return g${c}[i % ${CHUNK}u]; }`,
    ).join("\n")
  }
    default: { return g${WORDS / CHUNK - 1}[i % ${CHUNK}u]; }
  }
}
${loop("gw")}`,
  "storage buffer": `${head}
@group(0) @binding(1) var<storage, read> tab: array<u32>;
fn tab_used() -> u32 { return 0u; }
fn gw(i: u32) -> u32 { return tab[i]; }
${loop("gw")}`,
  "uniform buffer": `${head}
@group(0) @binding(1) var<uniform> tab: array<vec4<u32>, ${WORDS / 4}>;
fn tab_used() -> u32 { return 0u; }
fn gw(i: u32) -> u32 { return tab[i / 4u][i % 4u]; }
${loop("gw")}`,
};

const out = device.createBuffer({ size: GROUPS * WG * 4, usage: GPUBufferUsage.STORAGE });
const tab = device.createBuffer({
  size: WORDS * 4,
  usage: GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
});
device.queue.writeBuffer(tab, 0, table);
console.log(`# ${WORDS}-word table, ${LOOKUPS} lookups × ${GROUPS * WG} invocations`);
console.log("| table in | first use (compile) ms | ms a dispatch |");
console.log("| --- | ---: | ---: |");
for (const [name, code] of Object.entries(cases)) {
  const t0 = performance.now();
  const module = device.createShaderModule({ code });
  const pipe = device.createComputePipeline({ layout: "auto", compute: { module } });
  const bind = device.createBindGroup({
    layout: pipe.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: out } }, { binding: 1, resource: { buffer: tab } }],
  });
  const run = async (reps: number) => {
    const enc = device.createCommandEncoder();
    for (let r = 0; r < reps; r++) {
      const pass = enc.beginComputePass();
      pass.setPipeline(pipe);
      pass.setBindGroup(0, bind);
      pass.dispatchWorkgroups(GROUPS);
      pass.end();
    }
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  await run(1);
  const compile = performance.now() - t0;
  // One dispatch and eleven in a submission: the difference is ten dispatches
  // without the submission's round trip.
  const a = performance.now();
  await run(1);
  const b = performance.now();
  await run(11);
  const per = (performance.now() - b - (b - a)) / 10;
  console.log(`| ${name} | ${compile.toFixed(0)} | ${per.toFixed(2)} |`);
}
device.destroy();
