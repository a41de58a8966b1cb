/**
 * Padded runs of the Mamba state ops (`last` inputs): a prompt padded up to a
 * compiled chunk length must leave the conv and scan states exactly as its
 * real rows alone would. Each kernel against the CPU reference, and the
 * reference against the unpadded op run on the real rows only.
 */
import assert from "node:assert/strict";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import type { HostArray } from "../core/dtype.ts";
import { cpuDevice, type KilnDevice, requestDevice } from "../runtime/device.ts";
import { convStateUpdate, type ScanOptions, selectiveScan } from "../models/mamba.ts";
import { assertClose, gpu, randomData, rng } from "./_util.ts";

const B = 2, I = 36, N = 4;

/** The scan graph over `L` rows (a concrete length), padded with a `last` input or not. */
function scanGraph(L: number, padded: boolean, algorithm: ScanOptions["algorithm"], chunk = 0) {
  const g = new GraphBuilder();
  const u = g.input("u", [B, L, I]);
  const dt = g.input("dt", [B, L, I]);
  const opts: ScanOptions = {
    softplus: true,
    finalState: true,
    algorithm,
    chunk,
    z: g.input("z", [B, L, I]),
    deltaBias: g.param("dtb", [I]),
    initialState: g.input("h0", [B, I, N]),
  };
  if (padded) opts.last = g.input("last", [1], "u32");
  const [y, h] = selectiveScan(
    u.silu(), // a fused prologue on u
    dt,
    g.param("A", [I, N]),
    g.input("Bm", [B, L, N]),
    g.input("Cm", [B, L, N]),
    g.param("D", [I]),
    opts,
  );
  g.output("y", y);
  g.output("h", h);
  return g.build();
}

/** The first `n` rows of each batch row of a `[B, L, W]` array. */
function firstRows(a: HostArray, L: number, W: number, n: number): Float32Array {
  const out = new Float32Array(B * n * W);
  for (let b = 0; b < B; b++) out.set(a.subarray(b * L * W, (b * L + n) * W), b * n * W);
  return out;
}

function scanInputs(L: number, seed: number): Record<string, HostArray> {
  return {
    u: randomData(B * L * I, "f32", seed),
    dt: randomData(B * L * I, "f32", seed + 1, -3, 1),
    z: randomData(B * L * I, "f32", seed + 2),
    Bm: randomData(B * L * N, "f32", seed + 3, -1, 1),
    Cm: randomData(B * L * N, "f32", seed + 4, -1, 1),
    h0: randomData(B * I * N, "f32", seed + 5, -1, 1),
  };
}

function scanParams(seed: number): Record<string, HostArray> {
  const r = rng(seed);
  return {
    A: new Float32Array(I * N).map((_, j) => -((j % N) + 1) * (0.5 + r())),
    D: randomData(I, "f32", seed + 1, -1, 1),
    dtb: randomData(I, "f32", seed + 2, -1, 0.5),
  };
}

Deno.test("selective_scan with last: padding rows leave the state alone, every algorithm", async () => {
  const params = scanParams(7);
  const raster = await gpu();
  // The GPU target's kernels too (one channel a thread, chunked unless one chunk covers L).
  const gpuTarget = await requestDevice({ limits: { cpuCores: 0 } });
  const cases: [ScanOptions["algorithm"], number, KilnDevice][] = [
    ["auto", 0, raster],
    ["chunked", 8, raster],
    ["sequential", 0, raster],
    ["auto", 0, gpuTarget],
  ];
  for (const [algorithm, chunk, device] of cases) {
    for (const L of [1, 5, 37, 130]) {
      const padded = scanGraph(L, true, algorithm, chunk);
      const exe = compile(padded, device, { params });
      const ref = compile(padded, cpuDevice(), { params });
      for (const last of new Set([0, Math.floor(L / 2), L - 1])) {
        const what = `${
          device === raster ? "raster" : "gpu target"
        } ${algorithm} chunk ${chunk} L ${L} last ${last}`;
        const inputs: Record<string, HostArray> = {
          ...scanInputs(L, L + last),
          last: new Uint32Array([last]),
        };
        const got = await exe.run(inputs);
        const want = await ref.run(inputs);
        // The reference itself: the plain scan over the real rows alone.
        const n = last + 1;
        const plain = compile(scanGraph(n, false, "sequential"), cpuDevice(), { params });
        const cut: Record<string, HostArray> = { h0: inputs.h0 };
        for (const k of ["u", "dt", "z"]) cut[k] = firstRows(inputs[k], L, I, n);
        for (const k of ["Bm", "Cm"]) cut[k] = firstRows(inputs[k], L, N, n);
        const alone = await plain.run(cut);
        assertClose(want.h.data, alone.h.data, 0, 0, `${what}: reference state`);
        assertClose(firstRows(want.y.data, L, I, n), alone.y.data, 0, 0, `${what}: reference y`);
        assertClose(got.h.data, want.h.data, 1e-4, 1e-5, `${what}: final state`);
        // Every row, padding included: computed from the kept state, never stale memory.
        assertClose(got.y.data, want.y.data, 1e-4, 1e-5, `${what}: y`);
      }
      exe.dispose();
    }
  }
});

Deno.test("conv_state_update with last keeps the last real inputs", async () => {
  const device = await gpu();
  const S = 3;
  for (const L of [1, 2, 5, 40]) {
    const g = new GraphBuilder();
    const x = g.input("x", [B, L, I]);
    const s = g.state("s", [B, I, S]);
    g.assign(s, convStateUpdate(s, x.mul(x), g.input("last", [1], "u32")));
    const graph = g.build();
    for (const last of new Set([0, 1, Math.floor(L / 2), L - 1].filter((t) => t < L))) {
      const start = randomData(B * I * S, "f32", 30 + L);
      const xin = randomData(B * L * I, "f32", 40 + last);
      const exe = compile(graph, device);
      const ref = compile(graph, cpuDevice());
      for (const e of [exe, ref]) {
        e.writeState("s", start);
        await e.run({ x: xin, last: new Uint32Array([last]) });
      }
      // What the state holds: (state ++ x²)'s S entries before row last + 1.
      const want = new Float32Array(B * I * S);
      for (let b = 0; b < B; b++) {
        for (let i = 0; i < I; i++) {
          for (let sl = 0; sl < S; sl++) {
            const p = last + 1 - S + sl;
            want[(b * I + i) * S + sl] = p >= 0
              ? Math.fround(xin[(b * L + p) * I + i] ** 2)
              : start[(b * I + i) * S + S + p];
          }
        }
      }
      const what = `L ${L} last ${last}`;
      assertClose((await ref.readState("s")).data, want, 1e-7, 0, `${what}: reference`);
      assertClose((await exe.readState("s")).data, want, 1e-7, 0, `${what}: kernel`);
      exe.dispose();
    }
  }
});

Deno.test("padded state ops reject a bad last and have no gradient", () => {
  const g = new GraphBuilder();
  const x = g.input("x", [1, 4, I]);
  const s = g.state("s", [1, I, 3]);
  assert.throws(
    () => convStateUpdate(s, x, g.input("bad", [2], "u32")),
    /conv_state_update.*last must be u32 \[1\], got u32\[2\]/,
  );
  assert.throws(
    () =>
      selectiveScan(
        x,
        x,
        g.param("A", [I, N]),
        g.input("b", [1, 4, N]),
        g.input("c", [1, 4, N]),
        g.param("D", [I]),
        {
          last: g.input("f", [1], "f32"),
        },
      ),
    /selective_scan.*last must be u32 \[1\], got f32\[1\]/,
  );
  const t = new GraphBuilder();
  const u = t.param("u", [1, 4, I]);
  const [y] = selectiveScan(
    u,
    u,
    t.param("A", [I, N]),
    t.param("b", [1, 4, N]),
    t.param("c", [1, 4, N]),
    t.param("D", [I]),
    {
      last: t.input("last", [1], "u32"),
    },
  );
  const loss = y.reshape([4 * I]).sum(0);
  assert.throws(() => t.grad(loss, [u]), /selective_scan with a `last` input/);
});
