/**
 * @file Raw-WebGPU conformance tests for `ops/matmul_kernel.ts`: every kernel
 * variant is run on random inputs and compared with a float64 CPU reference.
 *
 * The harness plays the compiler's part: it declares the bindings, the
 * `enable f16;` directive and trivial `in0_load` / `in1_load` / `out0_store`.
 */
import assert from "node:assert/strict";
import {
  emitMatmul,
  type MatmulKernel,
  type MatmulKernelSpec,
  type MatmulTile,
  naiveMatmul,
} from "../ops/matmul_kernel.ts";
import { mulberry32 as rng } from "../core/random.ts";

const adapter = await navigator.gpu.requestAdapter();
const hasF16 = adapter?.features.has("shader-f16") ?? false;
const device = adapter
  ? await adapter.requestDevice({
    requiredFeatures: hasF16 ? ["shader-f16"] : [],
  })
  : undefined;

/** The caller's half of the contract: bindings and load/store functions. */
function wrap(spec: MatmulKernelSpec, kernel: MatmulKernel): string {
  const t = spec.elem;
  return `${t === "f16" ? "enable f16;\n" : ""}
@group(0) @binding(0) var<storage, read> in0: array<${t}>;
@group(0) @binding(1) var<storage, read> in1: array<${t}>;
@group(0) @binding(2) var<storage, read_write> out0: array<${t}>;
fn in0_load(i: u32) -> ${t} { return in0[i]; }
fn in1_load(i: u32) -> ${t} { return in1[i]; }
fn out0_store(i: u32, v: ${t}) { out0[i] = v; }
${kernel.code}`;
}

function bytesOf(
  values: number[],
  elem: "f32" | "f16",
): Uint8Array<ArrayBuffer> {
  const arr = elem === "f32" ? new Float32Array(values) : new Float16Array(values);
  // Buffer sizes must be multiples of 4 bytes.
  const out = new Uint8Array(Math.ceil(arr.byteLength / 4) * 4 || 4);
  out.set(new Uint8Array(arr.buffer));
  return out;
}

async function runKernel(
  spec: MatmulKernelSpec,
  kernel: MatmulKernel,
  a: number[],
  b: number[],
): Promise<number[]> {
  assert.ok(device);
  const outCount = spec.batch * spec.M * spec.N;
  const esize = spec.elem === "f32" ? 4 : 2;
  const outBytes = Math.ceil((outCount * esize) / 4) * 4;
  const make = (data: Uint8Array<ArrayBuffer>) => {
    const buf = device.createBuffer({
      size: data.byteLength,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    device.queue.writeBuffer(buf, 0, data);
    return buf;
  };
  const bufA = make(bytesOf(a, spec.elem));
  const bufB = make(bytesOf(b, spec.elem));
  const bufC = device.createBuffer({
    size: outBytes,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const read = device.createBuffer({
    size: outBytes,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code: wrap(spec, kernel) });
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const error = await device.popErrorScope();
  if (error) {
    throw new Error(`${kernel.label}: ${error.message}\n${wrap(spec, kernel)}`);
  }
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [bufA, bufB, bufC].map((buffer, binding) => ({
      binding,
      resource: { buffer },
    })),
  });
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(...kernel.workgroups);
  pass.end();
  encoder.copyBufferToBuffer(bufC, 0, read, 0, outBytes);
  device.queue.submit([encoder.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const raw = read.getMappedRange().slice(0);
  read.unmap();
  for (const buf of [bufA, bufB, bufC, read]) buf.destroy();
  const typed = spec.elem === "f32"
    ? new Float32Array(raw, 0, outCount)
    : new Float16Array(raw, 0, outCount);
  return Array.from(typed);
}

interface Case {
  M: number;
  N: number;
  K: number;
  batch?: number;
  transA?: boolean;
  transB?: boolean;
  /** "full": own matrix per batch; "bcast": stride 0; a number: explicit stride. */
  aStride?: "full" | "bcast" | number;
  bStride?: "full" | "bcast" | number;
  elem?: "f32" | "f16";
  direct?: boolean;
  tile?: MatmulTile;
  maxWorkgroupsPerDim?: number;
  naive?: boolean;
}

function specOf(c: Case): MatmulKernelSpec {
  const stride = (s: Case["aStride"], size: number) =>
    s === "bcast" ? 0 : typeof s === "number" ? s : size;
  return {
    batch: c.batch ?? 1,
    M: c.M,
    N: c.N,
    K: c.K,
    transA: c.transA ?? false,
    transB: c.transB ?? false,
    aBatchStride: stride(c.aStride, c.M * c.K),
    bBatchStride: stride(c.bStride, c.K * c.N),
    elem: c.elem ?? "f32",
    aDirect: c.direct ?? true,
    bDirect: c.direct ?? true,
    cDirect: c.direct ?? true,
    maxInvocations: 256,
    maxWorkgroupStorage: 16384,
    maxWorkgroupsPerDim: c.maxWorkgroupsPerDim ?? 65535,
    tile: c.tile,
  };
}

/** Random inputs (rounded to the storage type) and the float64 reference. */
function reference(spec: MatmulKernelSpec, seed: number) {
  const { batch, M, N, K } = spec;
  const rand = rng(seed);
  const round = spec.elem === "f16" ? (x: number) => new Float16Array([x])[0] : Math.fround;
  const aLen = (batch - 1) * spec.aBatchStride + M * K;
  const bLen = (batch - 1) * spec.bBatchStride + K * N;
  const a = Array.from({ length: aLen }, () => round(rand() * 2 - 1));
  const b = Array.from({ length: bLen }, () => round(rand() * 2 - 1));
  const c = new Float64Array(batch * M * N);
  for (let bi = 0; bi < batch; bi++) {
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let k = 0; k < K; k++) {
          const ai = bi * spec.aBatchStride +
            (spec.transA ? k * M + m : m * K + k);
          const bj = bi * spec.bBatchStride +
            (spec.transB ? n * K + k : k * N + n);
          acc += a[ai] * b[bj];
        }
        c[(bi * M + m) * N + n] = acc;
      }
    }
  }
  return { a, b, c };
}

async function check(c: Case, seed: number): Promise<void> {
  const spec = specOf(c);
  const { a, b, c: want } = reference(spec, seed);
  const kernels = [emitMatmul(spec)];
  if (c.naive ?? true) kernels.push(naiveMatmul(spec));
  for (const kernel of kernels) {
    for (const dim of kernel.workgroups) {
      assert.ok(dim >= 1 && dim <= spec.maxWorkgroupsPerDim, kernel.label);
    }
    const got = await runKernel(spec, kernel, a, b);
    // f32: accumulation error grows ~sqrt(K); f16 adds output rounding (2^-11).
    const rtol = 1e-5 * Math.sqrt(spec.K);
    const ftol = spec.elem === "f16" ? 1e-3 : 0;
    for (let i = 0; i < want.length; i++) {
      const err = Math.abs(got[i] - want[i]);
      const tol = rtol * (1 + Math.abs(want[i])) + ftol * Math.abs(want[i]);
      if (!(err <= tol)) {
        assert.fail(
          `${kernel.label} ${JSON.stringify(c)}: C[${i}] = ${got[i]}, want ${
            want[i]
          } (err ${err}, tol ${tol})`,
        );
      }
    }
  }
}

const cases: [string, Case][] = [
  ["1x1x1", { M: 1, N: 1, K: 1 }],
  ["3x5x7 NN", { M: 3, N: 5, K: 7 }],
  ["3x5x7 TN", { M: 3, N: 5, K: 7, transA: true }],
  ["3x5x7 NT", { M: 3, N: 5, K: 7, transB: true }],
  ["3x5x7 TT", { M: 3, N: 5, K: 7, transA: true, transB: true }],
  ["17x63x65 NN", { M: 17, N: 63, K: 65 }],
  ["65x129x100 NT", { M: 65, N: 129, K: 100, transB: true }],
  ["63x17x129 TN", { M: 63, N: 17, K: 129, transA: true }],
  ["100x3x129 TT", { M: 100, N: 3, K: 129, transA: true, transB: true }],
  ["batch 3, broadcast B", {
    M: 17,
    N: 33,
    K: 40,
    batch: 3,
    bStride: "bcast",
  }],
  ["batch 2, broadcast A, NT", {
    M: 9,
    N: 31,
    K: 18,
    batch: 2,
    aStride: "bcast",
    transB: true,
  }],
  ["batch 2, padded strides, TT", {
    M: 5,
    N: 7,
    K: 11,
    batch: 2,
    aStride: 60,
    bStride: 80,
    transA: true,
    transB: true,
  }],
  ["GEMV 1x64x4096 NT (split-K)", {
    M: 1,
    N: 64,
    K: 4096,
    transB: true,
  }],
  ["GEMV 3x1000x300 NN", { M: 3, N: 1000, K: 300 }],
  ["indirect load/store 30x40x50", { M: 30, N: 40, K: 50, direct: false }],
  ["indirect split-K 2x20x700 NT", {
    M: 2,
    N: 20,
    K: 700,
    transB: true,
    direct: false,
  }],
  ["tile override: 2-D workgroup, unroll tail", {
    M: 37,
    N: 29,
    K: 19,
    tile: {
      kind: "register",
      rowsPerThread: 3,
      colsPerThread: 4,
      wgCols: 4,
      wgRows: 2,
      colLayout: "strided",
      kUnroll: 4,
    },
  }],
  ["tile override: split-K with ragged chunks", {
    M: 5,
    N: 37,
    K: 301,
    transA: true,
    tile: {
      kind: "splitk",
      rowsPerThread: 2,
      colsPerThread: 3,
      wgCols: 5,
      wgRows: 7,
      colLayout: "blocked",
      kUnroll: 1,
    },
  }],
  ["grid spread over y/z", {
    M: 8,
    N: 8,
    K: 4,
    batch: 20,
    maxWorkgroupsPerDim: 6,
    tile: {
      kind: "register",
      rowsPerThread: 2,
      colsPerThread: 2,
      wgCols: 2,
      wgRows: 1,
      colLayout: "blocked",
      kUnroll: 1,
    },
  }],
];

const f16Cases: [string, Case][] = [
  ["f16 33x65x70 NN", { M: 33, N: 65, K: 70, elem: "f16" }],
  ["f16 17x9x129 TT", {
    M: 17,
    N: 9,
    K: 129,
    transA: true,
    transB: true,
    elem: "f16",
  }],
  ["f16 GEMV 1x100x300 NT", { M: 1, N: 100, K: 300, transB: true, elem: "f16" }],
  ["f16 indirect batch 2", {
    M: 7,
    N: 13,
    K: 21,
    batch: 2,
    elem: "f16",
    direct: false,
  }],
];

const opts = { sanitizeResources: false, sanitizeOps: false };
let seed = 1;
for (const [name, c] of cases) {
  const s = seed++;
  Deno.test({
    name: `matmul ${name}`,
    ignore: !device,
    ...opts,
    fn: () => check(c, s),
  });
}
for (const [name, c] of f16Cases) {
  const s = seed++;
  Deno.test({
    name: `matmul ${name}`,
    ignore: !device || !hasF16,
    ...opts,
    fn: () => check(c, s),
  });
}

Deno.test("matmul default tiles pick split-K only for tiny grids", () => {
  const big = specOf({ M: 1024, N: 1024, K: 1024 });
  assert.match(emitMatmul(big).label, /^matmul_rb32x16/);
  assert.match(emitMatmul(specOf({ M: 100, N: 64, K: 64 })).label, /^matmul_rb24x16/);
  assert.match(
    emitMatmul(specOf({ M: 1, N: 64, K: 4096, transB: true })).label,
    /^matmul_splitk/,
  );
  const gemv = emitMatmul(specOf({ M: 1, N: 4096, K: 4096, transB: true }));
  assert.match(gemv.label, /^matmul_rb1x16/);
});

Deno.test("matmul emitters reject bad specs", () => {
  assert.throws(
    () => emitMatmul(specOf({ M: 0, N: 1, K: 1 })),
    RangeError,
  );
  assert.throws(
    () =>
      emitMatmul({
        ...specOf({ M: 4, N: 4, K: 4 }),
        tile: {
          kind: "register",
          rowsPerThread: 1,
          colsPerThread: 1,
          wgCols: 64,
          wgRows: 8,
          colLayout: "blocked",
          kUnroll: 1,
        },
      }),
    /invocations per workgroup/,
  );
  assert.throws(
    () =>
      naiveMatmul({
        ...specOf({ M: 65536, N: 65536, K: 2 }),
      }),
    /too large for u32/,
  );
});
