/**
 * @file Conformance tests for the matmul kernels (`ops/matmul/`): every kernel
 * variant is compiled from a graph on the test device, run on random inputs and
 * compared with a float64 CPU reference.
 *
 * A case picks its variant through the op's `tile` attribute: `"tiled"` (the
 * tile `chooseTile` picks by shape), a tile name (a forced tile) or `"naive"`
 * (one invocation per output); `direct: false` reaches every operand through
 * its accessor function by fusing a prologue into both inputs and an epilogue
 * into the output.
 */
import assert from "node:assert/strict";
import { GraphBuilder, type Tensor } from "../compiler/builder.ts";
import type { DType } from "../core/dtype.ts";
import type { TensorData } from "../core/host.ts";
import { mulberry32 as rng } from "../core/random.ts";
import {
  emitMatmul,
  type MatmulKernelSpec,
  type MatmulTile,
  naiveMatmul,
  parseTile,
  tileName,
} from "../ops/matmul/mod.ts";
import type { GpuDevice } from "../runtime/device.ts";
import { compile } from "../runtime/executable.ts";
import { gpu } from "./_util.ts";

const device = await gpu();
const hasF16 = device.caps.f16;

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

/** Host data of the storage type, zero-padded to `length`. */
function hostData(values: readonly number[], elem: "f32" | "f16", length: number): TensorData {
  const out = elem === "f16" ? new Float16Array(length) : new Float32Array(length);
  out.set(values);
  return out;
}

/**
 * The graph of a case: `c = matmul(a, b, { transA, transB, tile })`. An operand
 * with a batch stride of its own is an input `[batch, stride]` whose rows are
 * sliced to one matrix each and reshaped; a broadcast one is a single matrix.
 */
function graphOf(spec: MatmulKernelSpec, c: Case, tile: string | undefined) {
  const g = new GraphBuilder();
  const dtype: DType = spec.elem;
  const { batch, M, N, K } = spec;
  const operand = (
    name: string,
    stride: Case["aStride"],
    matrix: number[],
    strideElems: number,
  ): Tensor => {
    const size = matrix[0] * matrix[1];
    if (batch === 1 || stride === "bcast") return g.input(name, matrix, dtype);
    if (typeof stride !== "number") return g.input(name, [batch, ...matrix], dtype);
    return g.input(name, [batch, strideElems], dtype).slice(1, 0, size).reshape([
      batch,
      ...matrix,
    ]);
  };
  let a = operand("a", c.aStride, spec.transA ? [K, M] : [M, K], spec.aBatchStride);
  let b = operand("b", c.bStride, spec.transB ? [N, K] : [K, N], spec.bBatchStride);
  const direct = c.direct ?? true;
  if (!direct) [a, b] = [a.add(0), b.add(0)];
  const attrs = tile === undefined
    ? { transA: spec.transA, transB: spec.transB }
    : { transA: spec.transA, transB: spec.transB, tile };
  const [y] = g.apply("matmul", [a, b], attrs);
  g.output("c", direct ? y : y.add(0));
  return g.build();
}

/** The input data of a case, laid out as {@linkcode graphOf} declares it. */
function inputsOf(spec: MatmulKernelSpec, c: Case, a: number[], b: number[]) {
  const len = (stride: Case["aStride"], data: number[], s: number) =>
    spec.batch > 1 && typeof stride === "number" ? spec.batch * s : data.length;
  return {
    a: hostData(a, spec.elem, len(c.aStride, a, spec.aBatchStride)),
    b: hostData(b, spec.elem, len(c.bStride, b, spec.bBatchStride)),
  };
}

/** The test device, with a lower grid limit when a case asks for one. */
function deviceOf(c: Case): GpuDevice {
  if (c.maxWorkgroupsPerDim === undefined) return device;
  return { ...device, caps: { ...device.caps, maxWorkgroupsPerDim: c.maxWorkgroupsPerDim } };
}

/** The plan label of the matmul kernel of a plan (the emitted kernel's label). */
function matmulLabel(labels: readonly string[]): string {
  const found = labels.find((l) => /(^|\+)(matmul|gemv)_/.test(l));
  assert.ok(found, labels.join());
  return found.replace(/^prologue\+/, "").replace(/\+\d+ew$/, "");
}

async function check(c: Case, seed: number): Promise<void> {
  const spec = specOf(c);
  const { a, b, c: want } = reference(spec, seed);
  const tiles = [c.tile ? tileName(c.tile) : "tiled"];
  if (c.naive ?? true) tiles.push("naive");
  for (const tile of tiles) {
    const exe = compile(graphOf(spec, c, tile), deviceOf(c));
    try {
      const plan = exe.plan();
      const label = matmulLabel(plan.kernels.map((k) => k.label));
      for (const kernel of plan.kernels) {
        for (const dim of kernel.workgroups) {
          assert.ok(dim >= 1 && dim <= spec.maxWorkgroupsPerDim, kernel.label);
        }
      }
      const got = (await exe.run(inputsOf(spec, c, a, b))).c.data;
      // f32: accumulation error grows ~sqrt(K); f16 adds output rounding (2^-11).
      const rtol = 1e-5 * Math.sqrt(spec.K);
      const ftol = spec.elem === "f16" ? 1e-3 : 0;
      for (let i = 0; i < want.length; i++) {
        const err = Math.abs(got[i] - want[i]);
        const tol = rtol * (1 + Math.abs(want[i])) + ftol * Math.abs(want[i]);
        if (!(err <= tol)) {
          assert.fail(
            `${label} ${JSON.stringify(c)}: C[${i}] = ${got[i]}, want ${
              want[i]
            } (err ${err}, tol ${tol})`,
          );
        }
      }
    } finally {
      exe.dispose();
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
    ...opts,
    fn: () => check(c, s),
  });
}
for (const [name, c] of f16Cases) {
  const s = seed++;
  Deno.test({
    name: `matmul ${name}`,
    ignore: !hasF16,
    ...opts,
    fn: () => check(c, s),
  });
}

/** The label of the kernel the plan of `a @ b` gets (nothing runs). */
function plannedLabel(c: Case, tile?: string): string {
  const exe = compile(graphOf(specOf(c), c, tile), device);
  try {
    return matmulLabel(exe.plan().kernels.map((k) => k.label));
  } finally {
    exe.dispose();
  }
}

Deno.test("matmul default tiles pick split-K only for tiny grids", () => {
  // The register block grows with the work per run (its compile time grows faster).
  assert.match(plannedLabel({ M: 4096, N: 4096, K: 1024 }), /^matmul_rb32x16/);
  assert.match(plannedLabel({ M: 1024, N: 1024, K: 1024 }), /^matmul_rb16x16/);
  assert.match(plannedLabel({ M: 100, N: 64, K: 64 }), /^matmul_rb8x16/);
  assert.match(plannedLabel({ M: 200, N: 4096, K: 8192 }), /^matmul_rb24x16/);
  // One row against a [N, K] weight takes the GEMV unless told "tiled": the
  // tiled kernel with the tile picked by shape.
  assert.match(
    plannedLabel({ M: 1, N: 64, K: 4096, transB: true }, "tiled"),
    /^matmul_splitk/,
  );
  const gemv = plannedLabel({ M: 1, N: 4096, K: 4096, transB: true }, "tiled");
  assert.match(gemv, /^matmul_rb1x16/);
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

Deno.test("matmul's tile attribute names a kernel; names that fit nothing are errors", () => {
  // A tile's name is its kernel's label without "matmul_", and names it back.
  for (const [, c] of cases) {
    if (!c.tile) continue;
    assert.deepEqual(parseTile(tileName(c.tile)), c.tile);
    assert.equal(plannedLabel(c, tileName(c.tile)), `matmul_${tileName(c.tile)}`);
  }
  assert.equal(plannedLabel({ M: 3, N: 5, K: 7 }, "naive"), "matmul_naive");
  assert.equal(parseTile("naive"), undefined);
  const g = new GraphBuilder();
  const a = g.input("a", [4, 8]), b = g.input("b", [8, 4]);
  for (const tile of ["bogus", "rb4x4_wg1x4b", "rb0x4_wg1x4b_u1", "splitk4_rb1x4_wg0s"]) {
    assert.throws(
      () => g.apply("matmul", [a, b], { transA: false, transB: false, tile }),
      (e: Error) => e instanceof RangeError && e.message.includes(`tile "${tile}"`),
      tile,
    );
  }
  // Device limits are checked when the kernel is emitted.
  assert.throws(
    () => plannedLabel({ M: 4, N: 4, K: 8 }, "rb1x1_wg8x512b_u1"),
    /invocations per workgroup/,
  );
  // Partially broadcast batches have one kernel: a tile cannot be honoured.
  const p = new GraphBuilder();
  const [y] = p.apply("matmul", [p.input("a", [2, 1, 5, 6]), p.input("b", [1, 3, 6, 4])], {
    transA: false,
    transB: false,
    tile: "tiled",
  });
  p.output("y", y);
  const exe = compile(p.build(), device);
  try {
    assert.throws(() => exe.plan(), /tile "tiled" cannot be honoured/);
  } finally {
    exe.dispose();
  }
});
