/**
 * The `gpu` target's row kernels (ops/rows_gpu.ts: rmsnorm, layernorm and
 * softmax over the last axis) on lavapipe posing as a GPU (`cpuCores: 0`),
 * checked against the CPU reference at awkward rows and widths, f32 and f16,
 * with fused prologues and epilogues, register-cached and re-read rows,
 * segmented operands and rows past the grid limit; softmax of ±1e4 stays finite.
 *
 * Each workgroup-per-row case runs with the workgroup-memory tree and with
 * subgroup reductions. lavapipe exposes no `subgroups` feature to Deno, so
 * unless the device has it the subgroup kernels run with `subgroupAdd` /
 * `subgroupMax` and the two subgroup builtins rewritten into a workgroup-memory
 * emulation of subgroups of 4 to 128 invocations in invocation order: the
 * kernels' own cross-subgroup step (one slot per subgroup, a subgroup as wide
 * as the workgroup or wider) is what runs.
 */

import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import type { Tensor } from "../compiler/tensor.ts";
import type { Graph } from "../core/graph.ts";
import type { DType } from "../core/dtype.ts";
import type { TensorData } from "../core/host.ts";
import type { DeviceCaps, HostTensor } from "../core/types.ts";
import { compile } from "../runtime/executable.ts";
import { cpuDevice, type GpuDevice } from "../runtime/device.ts";
import type { Plan } from "../compiler/plan.ts";
import { emitterOf } from "../ops/targets.ts";
import { softmaxGpu } from "../ops/softmax_gpu.ts";
import { layernormGpu, rmsnormGpu } from "../ops/norm_gpu.ts";
import { assertClose, randomData } from "./_util.ts";
import { gpuTarget } from "./fixtures/gpu_target.ts";

interface Variant {
  readonly dev: GpuDevice;
  /** Subgroup kernels run through the emulation. */
  readonly emulate: boolean;
}

const variants = new Map<string, Variant>();
/** The device with `subgroups` as asked and `limits` lowered (its own pipeline cache). */
async function variant(subgroups: boolean, limits: Partial<DeviceCaps> = {}): Promise<Variant> {
  const key = JSON.stringify([subgroups, limits]);
  let v = variants.get(key);
  if (!v) {
    const dev = await gpuTarget();
    v = {
      dev: { ...dev, caps: { ...dev.caps, ...limits, subgroups }, pipelines: new Map() },
      emulate: subgroups && !dev.caps.subgroups,
    };
    variants.set(key, v);
  }
  return v;
}

/** Emulated subgroup sizes, taken in turn: WebGPU allows 4 to 128. */
const SUBGROUP_SIZES = [8, 4, 32, 128, 64, 16];
let turn = 0;

/**
 * WGSL of `code` with its subgroup operations done in workgroup memory, for
 * subgroups of `size` invocations tiling the workgroup in invocation order.
 */
function emulateSubgroups(code: string, size: number): string {
  const wg = Number(/@workgroup_size\((\d+)\)/.exec(code)![1]);
  const entry =
    /,\s*@builtin\(subgroup_size\) sgs: u32, @builtin\(subgroup_invocation_id\) sid: u32\) \{/;
  assert.match(code, entry);
  const body = code.replace(entry, `) {\n  let sgs = ${size}u;\n  let sid = t % ${size}u;`)
    .replaceAll("subgroupAdd(", "emu_sg(t, false, ")
    .replaceAll("subgroupMax(", "emu_sg(t, true, ");
  return `${body}
var<workgroup> emu_sg_v: array<f32, ${wg}>;
fn emu_sg(t: u32, is_max: bool, v: f32) -> f32 {
  workgroupBarrier();
  emu_sg_v[t] = v;
  workgroupBarrier();
  let first = t - t % ${size}u;
  var r = emu_sg_v[first];
  for (var i = 1u; i < ${size}u && first + i < ${wg}u; i = i + 1u) {
    let u = emu_sg_v[first + i];
    r = select(r + u, max(r, u), is_max);
  }
  workgroupBarrier();
  return r;
}
`;
}

/** Puts emulated pipelines under the subgroup kernels' real WGSL, where the executor looks. */
async function emulate(dev: GpuDevice, plan: Plan): Promise<void> {
  const size = SUBGROUP_SIZES[turn++ % SUBGROUP_SIZES.length];
  const device = dev.device;
  for (const k of plan.kernels) {
    if (!/subgroup(Add|Max)\(/.test(k.code) || dev.pipelines.has(k.code)) continue;
    const layout = device.createBindGroupLayout({
      entries: k.bindings.map((b, j) => ({
        binding: j,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: b.access === "read" ? "read-only-storage" as const : "storage" as const },
      })),
    });
    const code = emulateSubgroups(k.code, size);
    const pipeline = await device.createComputePipelineAsync({
      label: k.label,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module: device.createShaderModule({ label: k.label, code }), entryPoint: "main" },
    });
    dev.pipelines.set(k.code, pipeline);
  }
}

/** CPU reference outputs by case, shared by a case's tree and subgroup runs. */
const references = new Map<string, Record<string, HostTensor>>();

/**
 * Runs `graph` on the variant and on the CPU reference: every output agrees,
 * the plan is exactly `labels` (in any order). Returns the device's outputs.
 */
async function check(
  v: Variant,
  graph: Graph,
  inputs: Record<string, TensorData>,
  dtype: DType,
  labels: readonly string[],
  what: string,
  reference = what,
): Promise<{ out: Record<string, ArrayLike<number>>; code: string }> {
  const g = compile(graph, v.dev);
  try {
    if (v.emulate) await emulate(v.dev, g.plan());
    const got = await g.run(inputs);
    let want = references.get(reference);
    if (!want) {
      want = await compile(graph, cpuDevice()).run(inputs);
      references.set(reference, want);
    }
    const plan = g.lastPlan!.kernels.map((k) => k.label);
    assert.deepEqual([...plan].sort(), [...labels].sort(), what);
    const tol = dtype === "f16" ? 2e-2 : 2e-4;
    for (const name of Object.keys(want)) {
      assertClose(got[name].data, want[name].data, tol, tol, `${what}: ${name}`);
    }
    return {
      out: Object.fromEntries(Object.entries(got).map(([k, t]) => [k, t.data])),
      code: g.lastPlan!.kernels.map((k) => k.code).join("\n"),
    };
  } finally {
    g.dispose();
  }
}

/** The kernel shape each width gets (label after `<op>_gpu_`), without `_sg`. */
const SHAPE: Record<number, string> = {
  1: "thread",
  7: "thread",
  12: "thread_v4", // 12 floats: in registers
  33: "thread", // 33 > 16 floats: re-read
  60: "thread_v4", // re-read
  64: "wg64_v4", // 16 vec4s: 16 of 64 invocations busy
  100: "wg64_v4",
  1030: "wg256", // 5 per invocation, in registers
  1032: "wg256_v4",
  4097: "wg256", // 17 per invocation: re-read
  8200: "wg256_v4", // 9 vec4s per invocation: re-read
};

/**
 * The three row ops on `x` (`[rows, d]`). `fused`: rmsnorm with a prologue and
 * an epilogue, layernorm with an epilogue, softmax with a prologue; else
 * rmsnorm bare, layernorm with a prologue, softmax with an epilogue. Returns
 * the plan's labels.
 */
function rowOps(g: GraphBuilder, x: Tensor, fused: boolean, shape: string): string[] {
  const d = x.shape[1] as number;
  const w = g.input("w", [d], x.dtype);
  const b = g.input("b", [d], x.dtype);
  if (fused) {
    g.output("rms", x.mul(2).rmsnorm(w, 1e-5).silu());
    g.output("ln", x.layernorm(w, b, 1e-5).silu());
    g.output("sm", x.mul(0.5).softmax(-1));
    return [
      `prologue+rmsnorm_gpu_${shape}+1ew`,
      `layernorm_gpu_${shape}+1ew`,
      `prologue+softmax_gpu_${shape}`,
    ];
  }
  g.output("rms", x.rmsnorm(w, 1e-5));
  g.output("ln", x.add(1).layernorm(w, b, 1e-5));
  g.output("sm", x.softmax(-1).silu());
  return [`rmsnorm_gpu_${shape}`, `prologue+layernorm_gpu_${shape}`, `softmax_gpu_${shape}+1ew`];
}

/** Which forms (true: fused, false: bare) run on the tree and subgroup variants. */
interface Forms {
  readonly tree: readonly boolean[];
  readonly sg: readonly boolean[];
}

/**
 * Checks the row ops at `rows` × `d` in the given forms on the tree and (for
 * rows wide enough to reduce across a workgroup) subgroup variants.
 */
async function checkRows(
  rows: number,
  d: number,
  dtype: DType,
  forms: Forms,
  limits: Partial<DeviceCaps> = {},
): Promise<void> {
  const inputs = {
    x: randomData(rows * d, dtype, rows + d),
    w: randomData(d, dtype, 7, 0.5, 1.5),
    b: randomData(d, dtype, 8),
  };
  // Rows under 64 wide reduce in one invocation: no subgroup variant to run.
  for (const subgroups of d < 64 ? [false] : [false, true]) {
    const v = await variant(subgroups, limits);
    const shape = SHAPE[d] + (subgroups ? "_sg" : "");
    for (const fused of subgroups ? forms.sg : forms.tree) {
      const g = new GraphBuilder();
      const labels = rowOps(g, g.input("x", [rows, d], dtype), fused, shape);
      const form = `${rows}x${d} ${dtype} ${fused ? "fused" : "bare"} ${JSON.stringify(limits)}`;
      const what = `${form}${subgroups ? " subgroups" : ""}`;
      const { code } = await check(v, g.build(), inputs, dtype, labels, what, form);
      if (limits.maxBindingSize && !fused) {
        // x, bound bare, is read by segment: whole vectors where d allows.
        assert.match(code, d % 4 === 0 ? /\bin0_vget\(/ : /\bin0_s1\b/, what);
      }
    }
  }
}

async function dtypes(): Promise<DType[]> {
  return (await gpuTarget()).caps.f16 ? ["f32", "f16"] : ["f32"];
}

Deno.test("gpu row kernels: rows 1/3/129 × widths 1/7/64/100/4097, f32 and f16, fused and bare", async () => {
  // f32 on the tree runs both forms everywhere; f16 and the subgroup variant
  // take the two forms in turn (each op meets direct and fused operands in each).
  let i = 0;
  for (const dtype of await dtypes()) {
    for (const rows of [1, 3, 129]) {
      for (const d of [1, 7, 64, 100, 4097]) {
        const turn = [i++ % 2 === 0];
        await checkRows(rows, d, dtype, { tree: dtype === "f32" ? [true, false] : turn, sg: turn });
      }
    }
  }
});

Deno.test("gpu row kernels: cached and re-read rows, vec4 and scalar, both shapes", async () => {
  let i = 0;
  for (const dtype of await dtypes()) {
    for (const d of [12, 33, 60, 1030, 8200]) {
      const turn = i++ % 2 === 0;
      await checkRows(3, d, dtype, { tree: [turn], sg: [!turn] });
    }
  }
});

Deno.test("gpu row kernels: segmented operands and rows past the grid limit", async () => {
  // 3 rows of 1030/1032 floats exceed a 4 KiB binding: x (bare) is read by
  // segment — whole vectors for 1032 — and the outputs are written by segment.
  const small = { maxBindingSize: 4096 };
  await checkRows(3, 1030, "f32", { tree: [false, true], sg: [false] }, small);
  await checkRows(3, 1032, "f32", { tree: [false], sg: [false] }, small);
  // 64 workgroups per dimension: 129 rows spill into y, as do 4100 thread rows.
  const grid = { maxWorkgroupsPerDim: 64 };
  await checkRows(129, 100, "f32", { tree: [true], sg: [false] }, grid);
  await checkRows(4100, 7, "f32", { tree: [true], sg: [] }, grid);
});

Deno.test("gpu softmax: values of ±1e4 stay finite, f32 and f16", async () => {
  for (const dtype of await dtypes()) {
    for (const d of [7, 100, 4097]) {
      for (const subgroups of d < 64 ? [false] : [false, true]) {
        const g = new GraphBuilder();
        const x = g.input("x", [3, d], dtype);
        g.output("p", x.softmax(-1));
        g.output("q", x.mul(2).softmax(-1));
        const shape = SHAPE[d] + (subgroups ? "_sg" : "");
        const { out } = await check(
          await variant(subgroups),
          g.build(),
          { x: randomData(3 * d, dtype, d, -1e4, 1e4) },
          dtype,
          [`softmax_gpu_${shape}`, `prologue+softmax_gpu_${shape}`],
          `softmax ±1e4 3x${d} ${dtype}${subgroups ? " subgroups" : ""}`,
        );
        for (const p of Object.values(out)) {
          assert.ok(Array.from(p).every(Number.isFinite), `softmax ±1e4 3x${d} ${dtype}`);
        }
      }
    }
  }
});

Deno.test("gpu row kernels: registered for the gpu target; softmax over another axis stays portable", async () => {
  assert.equal(emitterOf("rmsnorm", "gpu"), rmsnormGpu);
  assert.equal(emitterOf("layernorm", "gpu"), layernormGpu);
  assert.equal(emitterOf("softmax", "gpu"), softmaxGpu);
  const g = new GraphBuilder();
  g.output("p", g.input("x", [5, 70, 3]).softmax(1));
  await check(
    await variant(false),
    g.build(),
    { x: randomData(5 * 70 * 3, "f32", 9, -8, 8) },
    "f32",
    ["softmax_col"],
    "softmax axis 1",
  );
});
