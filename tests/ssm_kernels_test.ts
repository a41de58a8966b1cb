/**
 * GPU conformance of the Mamba kernels in `ops/ssm_kernels.ts` against the
 * float64 references in `ops/ssm_reference.ts`, through a raw WebGPU harness
 * (no compiler, no runtime: the emitters are tested on their own contract).
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type ActType,
  buildShader,
  declareBindings,
  emitCausalConv1d,
  emitChunkedScan,
  emitConvStateUpdate,
  emitDecodeStep,
  emitSequentialScan,
  type Kernel,
  mixerParamsLayout,
  packMixerParams,
  type ScanSpec,
} from "../ops/ssm_kernels.ts";
import {
  causalConv1dRef,
  decodeStepRef,
  selectiveScanRef,
  softplus,
} from "../ops/ssm_reference.ts";

// ------------------------------------------------------------------ harness

let devicePromise: Promise<GPUDevice> | undefined;
function getDevice(): Promise<GPUDevice> {
  devicePromise ??= (async () => {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) throw new Error("No WebGPU adapter");
    const requiredFeatures: GPUFeatureName[] = adapter.features.has("shader-f16")
      ? ["shader-f16"]
      : [];
    return await adapter.requestDevice({ requiredFeatures });
  })();
  return devicePromise;
}

/** Host data for one binding: numbers plus the element type to store them as. */
interface HostBuf {
  data: ArrayLike<number>;
  type: "f32" | "f16";
}

function toBytes(h: HostBuf): Uint8Array<ArrayBuffer> {
  const arr = h.type === "f16" ? new Float16Array(h.data) : new Float32Array(h.data);
  // Buffer sizes must be multiples of 4 bytes; pad odd-length f16 data.
  const out = new Uint8Array(Math.max(4, Math.ceil(arr.byteLength / 4) * 4));
  out.set(new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength));
  return out;
}

function makeBuffer(device: GPUDevice, h: HostBuf): GPUBuffer {
  const bytes = toBytes(h);
  const buf = device.createBuffer({
    size: bytes.byteLength,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(buf, 0, bytes);
  return buf;
}

const pipelineCache = new Map<string, GPUComputePipeline>();
function pipelineFor(device: GPUDevice, k: Kernel): GPUComputePipeline {
  const code = buildShader(k);
  let p = pipelineCache.get(code);
  if (!p) {
    const module = device.createShaderModule({ code, label: k.label });
    p = device.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: "main" },
      label: k.label,
    });
    pipelineCache.set(code, p);
  }
  return p;
}

function encodeKernel(
  device: GPUDevice,
  pass: GPUComputePassEncoder,
  k: Kernel,
  bufs: Record<string, GPUBuffer>,
): void {
  const pipeline = pipelineFor(device, k);
  const entries = k.bindings.map((b, i) => {
    const buffer = bufs[b.name];
    if (!buffer) throw new Error(`Missing buffer "${b.name}" for ${k.label}`);
    return { binding: i, resource: { buffer } };
  });
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries }));
  pass.dispatchWorkgroups(...k.workgroups);
}

async function readBuffer(
  device: GPUDevice,
  buf: GPUBuffer,
  type: "f32" | "f16",
  n: number,
): Promise<Float64Array> {
  const staging = device.createBuffer({
    size: buf.size,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buf, 0, staging, 0, buf.size);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const raw = staging.getMappedRange().slice(0);
  staging.unmap();
  staging.destroy();
  const view = type === "f16" ? new Float16Array(raw, 0, n) : new Float32Array(raw, 0, n);
  return Float64Array.from(view);
}

/** Runs kernels in order in one pass and reads back the named outputs. */
async function run(
  kernels: Kernel[],
  inputs: Record<string, HostBuf>,
  outputs: Record<string, { type: "f32" | "f16"; n: number }>,
): Promise<Record<string, Float64Array>> {
  const device = await getDevice();
  const bufs: Record<string, GPUBuffer> = {};
  for (const [name, h] of Object.entries(inputs)) bufs[name] = makeBuffer(device, h);
  for (const [name, o] of Object.entries(outputs)) {
    bufs[name] ??= makeBuffer(device, { data: new Float32Array(o.n), type: o.type });
  }
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  for (const k of kernels) encodeKernel(device, pass, k, bufs);
  pass.end();
  device.queue.submit([enc.finish()]);
  const out: Record<string, Float64Array> = {};
  for (const [name, o] of Object.entries(outputs)) {
    out[name] = await readBuffer(device, bufs[name], o.type, o.n);
  }
  for (const b of Object.values(bufs)) b.destroy();
  return out;
}

// ------------------------------------------------------------------ data

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function uniform(r: () => number, n: number, lo: number, hi: number): Float64Array {
  const a = new Float64Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * r();
  return a;
}

/** Rounds through the storage type so the reference sees the GPU's inputs. */
function quant(a: Float64Array, type: ActType): Float64Array {
  return Float64Array.from(type === "f16" ? new Float16Array(a) : new Float32Array(a));
}

function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length);
  let scale = 1e-6, err = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    if (!Number.isFinite(got[i])) return Infinity;
    err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  return err / scale;
}

interface ScanCase {
  B: number;
  L: number;
  I: number;
  N: number;
  act: ActType;
  gate: boolean;
  h0: boolean;
  final: boolean;
  softplus: boolean;
  packedBc: boolean;
  /** Fixed post-softplus delta, for the extreme-delta cases. */
  deltaConst?: number;
}

function scanData(c: ScanCase, seed: number) {
  const r = rng(seed);
  const { B, L, I, N, act } = c;
  const u = quant(uniform(r, B * L * I, -2, 2), act);
  const delta = quant(
    c.deltaConst !== undefined
      ? new Float64Array(B * L * I).fill(c.deltaConst)
      : c.softplus
      ? uniform(r, B * L * I, -5, 1)
      : uniform(r, B * L * I, 0.001, 0.3),
    act,
  );
  // S4D-Real-like A = −(n+1) with a random per-channel scale, rounded to f32.
  const a = new Float64Array(I * N);
  for (let i = 0; i < I; i++) {
    const s = 0.5 + r();
    for (let n = 0; n < N; n++) a[i * N + n] = Math.fround(-(n + 1) * s);
  }
  const bMat = quant(uniform(r, B * L * N, -1, 1), act);
  const cMat = quant(uniform(r, B * L * N, -1, 1), act);
  const d = quant(uniform(r, I, -1, 1), "f32");
  const z = c.gate ? quant(uniform(r, B * L * I, -3, 3), act) : undefined;
  const dtBias = c.softplus ? quant(uniform(r, I, -2, 0), "f32") : undefined;
  const h0 = c.h0 ? quant(uniform(r, B * I * N, -1, 1), "f32") : undefined;
  return { u, delta, a, bMat, cMat, d, z, dtBias, h0 };
}

function packBc(B: number, L: number, N: number, bMat: Float64Array, cMat: Float64Array) {
  // A made-up x_proj row [dt_rank = 3 | B | C | pad 1] to exercise stride and offsets.
  const stride = 3 + 2 * N + 1;
  const bc = new Float64Array(B * L * stride);
  for (let r = 0; r < B * L; r++) {
    for (let n = 0; n < N; n++) {
      bc[r * stride + 3 + n] = bMat[r * N + n];
      bc[r * stride + 3 + N + n] = cMat[r * N + n];
    }
  }
  return { bc, layout: { stride, bOffset: 3, cOffset: 3 + N } };
}

async function runScan(
  c: ScanCase,
  kind: "chunked" | "sequential",
  chunk: number,
  seed: number,
): Promise<{ yErr: number; hErr: number; y: Float64Array }> {
  const data = scanData(c, seed);
  const { B, L, I, N, act } = c;
  const ref = selectiveScanRef({ batch: B, length: L, channels: I, state: N }, {
    ...data,
    deltaSoftplus: c.softplus,
  });
  const layout = mixerParamsLayout(I, N, 0);
  const params = packMixerParams(layout, { a: data.a, d: data.d, dtBias: data.dtBias });
  const packed = c.packedBc ? packBc(B, L, N, data.bMat, data.cMat) : undefined;
  const spec: ScanSpec = {
    batch: B,
    length: L,
    channels: I,
    state: N,
    act,
    gate: c.gate,
    initialState: c.h0,
    finalState: c.final,
    deltaSoftplus: c.softplus,
    bc: packed?.layout,
    chunk,
  };
  const inputs: Record<string, HostBuf> = {
    u: { data: data.u, type: act },
    delta: { data: data.delta, type: act },
    params: { data: params, type: "f32" },
  };
  if (packed) inputs.bc = { data: packed.bc, type: act };
  else {
    inputs.b_mat = { data: data.bMat, type: act };
    inputs.c_mat = { data: data.cMat, type: act };
  }
  if (data.z) inputs.z = { data: data.z, type: act };
  const outputs: Record<string, { type: "f32" | "f16"; n: number }> = {
    y: { type: act, n: B * L * I },
  };
  let kernels: Kernel[];
  let hName = "h_final";
  if (kind === "chunked") {
    const plan = emitChunkedScan(spec);
    kernels = plan.kernels;
    for (const s of plan.scratch) {
      inputs[s.name] = { data: new Float32Array(s.elements), type: "f32" };
    }
    if (data.h0) inputs.h0 = { data: data.h0, type: "f32" };
    if (c.final) outputs.h_final = { type: "f32", n: B * I * N };
  } else {
    kernels = [emitSequentialScan(spec)];
    hName = "state";
    if (c.h0 || c.final) {
      inputs.state = { data: data.h0 ?? new Float64Array(B * I * N), type: "f32" };
      outputs.state = { type: "f32", n: B * I * N };
    }
  }
  const got = await run(kernels, inputs, outputs);
  const yErr = maxRelErr(got.y, ref.y);
  const hErr = c.final ? maxRelErr(got[hName], ref.hFinal) : 0;
  return { yErr, hErr, y: got.y };
}

// ------------------------------------------------------------------ tests

const CHUNK = 64;
const LENGTHS = [1, CHUNK - 1, CHUNK, CHUNK + 1, 4099];
const BASE = { B: 2, I: 37, packedBc: false };

const FULL: Omit<ScanCase, "L"> = {
  ...BASE,
  N: 16,
  act: "f32",
  gate: true,
  h0: true,
  final: true,
  softplus: true,
};
const BARE: Omit<ScanCase, "L"> = {
  ...BASE,
  N: 4,
  act: "f32",
  gate: false,
  h0: false,
  final: false,
  softplus: false,
  packedBc: true,
};
const HALF: Omit<ScanCase, "L"> = { ...FULL, act: "f16", h0: false };

for (
  const [name, base, tol] of [
    ["N=16 z h0 final softplus f32", FULL, 2e-5],
    ["N=4 bare packed-BC f32", BARE, 2e-5],
    ["N=16 z final softplus f16", HALF, 2e-3],
  ] as const
) {
  Deno.test(`chunked scan matches reference: ${name}`, async () => {
    for (const L of LENGTHS) {
      const { yErr, hErr } = await runScan({ ...base, L }, "chunked", CHUNK, L * 7 + 1);
      assert.ok(yErr < tol, `L=${L}: y rel err ${yErr}`);
      assert.ok(hErr < tol, `L=${L}: h_final rel err ${hErr}`);
    }
  });
}

Deno.test("sequential scan matches reference", async () => {
  for (const L of [1, 65, 4099]) {
    for (const base of [FULL, BARE]) {
      const { yErr, hErr } = await runScan({ ...base, L }, "sequential", CHUNK, L * 3 + 2);
      assert.ok(yErr < 2e-5, `L=${L}: y rel err ${yErr}`);
      assert.ok(hErr < 2e-5, `L=${L}: state rel err ${hErr}`);
    }
  }
  const { yErr } = await runScan({ ...HALF, L: 300 }, "sequential", CHUNK, 9);
  assert.ok(yErr < 2e-3, `f16: y rel err ${yErr}`);
});

Deno.test("chunked scan: default chunk size and odd chunk sizes", async () => {
  for (const chunk of [128, 37, 1]) {
    const { yErr, hErr } = await runScan({ ...FULL, L: 300 }, "chunked", chunk, chunk);
    assert.ok(yErr < 2e-5 && hErr < 2e-5, `chunk=${chunk}: ${yErr} ${hErr}`);
  }
});

Deno.test("scan stays finite for extreme delta", async () => {
  for (const deltaConst of [1e-4, 20]) {
    for (const kind of ["chunked", "sequential"] as const) {
      for (const act of ["f32", "f16"] as const) {
        const c: ScanCase = { ...FULL, act, softplus: false, L: 200, deltaConst };
        const { yErr, hErr, y } = await runScan(c, kind, CHUNK, 5);
        assert.ok(y.every(Number.isFinite), `${kind} ${act} delta=${deltaConst}: non-finite y`);
        const tol = act === "f16" ? 3e-3 : 5e-5;
        assert.ok(yErr < tol && hErr < tol, `${kind} ${act} delta=${deltaConst}: ${yErr} ${hErr}`);
      }
    }
  }
  // Raw delta far outside softplus' comfortable range.
  const r = rng(3);
  const c: ScanCase = { ...FULL, L: 130 };
  const data = scanData(c, 11);
  for (let k = 0; k < data.delta.length; k++) data.delta[k] = r() < 0.5 ? -100 : 100;
  const ref = selectiveScanRef({ batch: c.B, length: c.L, channels: c.I, state: c.N }, {
    ...data,
    deltaSoftplus: true,
  });
  assert.ok(ref.y.every(Number.isFinite));
  assert.equal(softplus(100), 100);
});

Deno.test("causal conv1d with prefix state, silu and state update", async () => {
  const B = 2, I = 37, K = 4;
  for (const S of [K - 1, K]) {
    for (const act of ["f32", "f16"] as const) {
      const r = rng(S * 10 + (act === "f16" ? 1 : 0));
      const L = 150;
      const x = quant(uniform(r, B * L * I, -2, 2), act);
      const w = quant(uniform(r, I * K, -1, 1), "f32");
      const bias = quant(uniform(r, I, -1, 1), "f32");
      const state = quant(uniform(r, B * I * S, -2, 2), "f32");
      const dims = { batch: B, length: L, channels: I, kernel: K };
      const ref = causalConv1dRef(dims, x, w, bias, { state, stateLen: S, silu: true });
      const layout = mixerParamsLayout(I, 0, K);
      const spec = { ...dims, act, silu: true, prefixState: true, stateLen: S, timeTile: 32 };
      const got = await run(
        [emitCausalConv1d(spec), emitConvStateUpdate(spec)],
        {
          x: { data: x, type: act },
          params: { data: packMixerParams(layout, { convW: w, convB: bias }), type: "f32" },
          conv_state: { data: state, type: "f32" },
        },
        { y: { type: act, n: B * L * I }, conv_state: { type: "f32", n: B * I * S } },
      );
      const tol = act === "f16" ? 2e-3 : 1e-6;
      assert.ok(maxRelErr(got.y, ref.y) < tol, `S=${S} ${act}: y`);
      assert.ok(maxRelErr(got.conv_state, ref.state) < 1e-6, `S=${S} ${act}: state`);
    }
  }
  // L shorter than the state: part of the new state comes from the old one.
  const dims = { batch: 1, length: 2, channels: 5, kernel: 4 };
  const x = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const state = Array.from({ length: 5 * 4 }, (_, k) => -k);
  const ref = causalConv1dRef(dims, x, new Float64Array(20).fill(1), new Float64Array(5), {
    state,
    stateLen: 4,
  });
  const spec = { ...dims, prefixState: true, stateLen: 4 };
  const got = await run([emitConvStateUpdate(spec)], {
    x: { data: x, type: "f32" },
    conv_state: { data: state, type: "f32" },
  }, { conv_state: { type: "f32", n: 20 } });
  assert.deepEqual(Array.from(got.conv_state), Array.from(ref.state));
});

Deno.test("prefill (conv + chunked scan) then decode steps equals the full sequence", async () => {
  const B = 2, I = 37, N = 16, K = 4, L = 130, M = 5, T = L + M;
  for (const S of [K, K - 1]) {
    const r = rng(42 + S);
    const xPre = uniform(r, B * T * I, -2, 2).map(Math.fround);
    const delta = uniform(r, B * T * I, -4, 1).map(Math.fround);
    const bMat = uniform(r, B * T * N, -1, 1).map(Math.fround);
    const cMat = uniform(r, B * T * N, -1, 1).map(Math.fround);
    const z = uniform(r, B * T * I, -3, 3).map(Math.fround);
    const a = new Float64Array(I * N).map((_, k) => Math.fround(-((k % N) + 1) * (0.5 + r())));
    const d = uniform(r, I, -1, 1).map(Math.fround);
    const dtBias = uniform(r, I, -2, 0).map(Math.fround);
    const convW = uniform(r, I * K, -1, 1).map(Math.fround);
    const convB = uniform(r, I, -1, 1).map(Math.fround);

    // Reference: the whole sequence at once.
    const conv = causalConv1dRef(
      { batch: B, length: T, channels: I, kernel: K },
      xPre,
      convW,
      convB,
      {
        silu: true,
      },
    );
    const full = selectiveScanRef({ batch: B, length: T, channels: I, state: N }, {
      u: conv.y,
      delta,
      a,
      bMat,
      cMat,
      d,
      z,
      dtBias,
      deltaSoftplus: true,
    });
    // The float64 decode reference agrees with it too (checks the oracle itself).
    {
      const pre = causalConv1dRef(
        { batch: B, length: L, channels: I, kernel: K },
        sliceRows(xPre, B, T, I, 0, L),
        convW,
        convB,
        { silu: true, stateLen: S },
      );
      const scan = selectiveScanRef({ batch: B, length: L, channels: I, state: N }, {
        u: pre.y,
        delta: sliceRows(delta, B, T, I, 0, L),
        a,
        bMat: sliceRows(bMat, B, T, N, 0, L),
        cMat: sliceRows(cMat, B, T, N, 0, L),
        d,
        z: sliceRows(z, B, T, I, 0, L),
        dtBias,
        deltaSoftplus: true,
      });
      const cs = pre.state, ss = scan.hFinal;
      for (let m = 0; m < M; m++) {
        const y = decodeStepRef(
          { batch: B, channels: I, state: N, kernel: K, stateLen: S },
          {
            x: sliceRows(xPre, B, T, I, L + m, L + m + 1),
            delta: sliceRows(delta, B, T, I, L + m, L + m + 1),
            bMat: sliceRows(bMat, B, T, N, L + m, L + m + 1),
            cMat: sliceRows(cMat, B, T, N, L + m, L + m + 1),
            z: sliceRows(z, B, T, I, L + m, L + m + 1),
            a,
            d,
            dtBias,
            convW,
            convB,
            deltaSoftplus: true,
          },
          cs,
          ss,
        );
        assert.ok(maxRelErr(y, sliceRows(full.y, B, T, I, L + m, L + m + 1)) < 1e-12);
      }
    }

    // GPU: conv prefill + state, chunked scan with final state, M decode steps.
    const device = await getDevice();
    const layout = mixerParamsLayout(I, N, K);
    const params = packMixerParams(layout, { a, d, dtBias, convW, convB });
    const convSpec = {
      batch: B,
      length: L,
      channels: I,
      kernel: K,
      silu: true,
      stateLen: S,
      layout,
    };
    const plan = emitChunkedScan({
      batch: B,
      length: L,
      channels: I,
      state: N,
      gate: true,
      finalState: true,
      deltaSoftplus: true,
      layout,
      chunk: 64,
    });
    const decode = emitDecodeStep({
      batch: B,
      channels: I,
      state: N,
      kernel: K,
      stateLen: S,
      gate: true,
      deltaSoftplus: true,
      bc: { stride: 2 * N, bOffset: 0, cOffset: N },
      layout,
    });
    const f32 = (data: ArrayLike<number>): GPUBuffer => makeBuffer(device, { data, type: "f32" });
    const bc = new Float64Array(M * B * 2 * N);
    for (let m = 0; m < M; m++) {
      for (let b = 0; b < B; b++) {
        for (let n = 0; n < N; n++) {
          bc[(m * B + b) * 2 * N + n] = bMat[(b * T + L + m) * N + n];
          bc[(m * B + b) * 2 * N + N + n] = cMat[(b * T + L + m) * N + n];
        }
      }
    }
    const stepMajor = (src: Float64Array): Float64Array => {
      const out = new Float64Array(M * B * I);
      for (let m = 0; m < M; m++) {
        out.set(sliceRows(src, B, T, I, L + m, L + m + 1), m * B * I);
      }
      return out;
    };
    const bufs: Record<string, GPUBuffer> = {
      x: f32(sliceRows(xPre, B, T, I, 0, L)),
      params: f32(params),
      conv_state: f32(new Float32Array(B * I * S)),
      y: f32(new Float32Array(B * L * I)),
      u: f32(new Float32Array(B * L * I)),
      delta: f32(sliceRows(delta, B, T, I, 0, L)),
      b_mat: f32(sliceRows(bMat, B, T, N, 0, L)),
      c_mat: f32(sliceRows(cMat, B, T, N, 0, L)),
      z: f32(sliceRows(z, B, T, I, 0, L)),
      chunk_sum: f32(new Float32Array(plan.scratch[0].elements)),
      chunk_state: f32(new Float32Array(plan.scratch[1].elements)),
      h_final: f32(new Float32Array(B * I * N)),
    };
    const steps = {
      x: f32(stepMajor(xPre)),
      delta: f32(stepMajor(delta)),
      z: f32(stepMajor(z)),
      bc: f32(bc),
    };
    const dec: Record<string, GPUBuffer> = {
      x: f32(new Float32Array(B * I)),
      delta: f32(new Float32Array(B * I)),
      z: f32(new Float32Array(B * I)),
      bc: f32(new Float32Array(B * 2 * N)),
      params: bufs.params,
      conv_state: bufs.conv_state,
      ssm_state: bufs.h_final,
      y: f32(new Float32Array(B * I)),
    };
    const yDecode = f32(new Float32Array(M * B * I));
    const enc = device.createCommandEncoder();
    let pass = enc.beginComputePass();
    encodeKernel(device, pass, emitCausalConv1d(convSpec), { ...bufs, y: bufs.u });
    encodeKernel(device, pass, emitConvStateUpdate(convSpec), bufs);
    for (const k of plan.kernels) encodeKernel(device, pass, k, bufs);
    pass.end();
    // Keep the whole decode loop in one encoder: copy each step's inputs in,
    // run the step, copy y out.
    for (let m = 0; m < M; m++) {
      for (
        const [name, per] of [["x", B * I], ["delta", B * I], ["z", B * I], [
          "bc",
          B * 2 * N,
        ]] as const
      ) {
        enc.copyBufferToBuffer(steps[name], m * per * 4, dec[name], 0, per * 4);
      }
      pass = enc.beginComputePass();
      encodeKernel(device, pass, decode, dec);
      pass.end();
      enc.copyBufferToBuffer(dec.y, 0, yDecode, m * B * I * 4, B * I * 4);
    }
    device.queue.submit([enc.finish()]);
    const yPre = await readBuffer(device, bufs.y, "f32", B * L * I);
    const yDec = await readBuffer(device, yDecode, "f32", M * B * I);
    const errPre = maxRelErr(yPre, sliceRows(full.y, B, T, I, 0, L));
    const errDec = maxRelErr(yDec, stepMajor(full.y));
    for (
      const g of [...Object.values(bufs), ...Object.values(steps), ...Object.values(dec), yDecode]
    ) {
      if (g !== bufs.params && g !== bufs.conv_state && g !== bufs.h_final) g.destroy();
    }
    bufs.params.destroy();
    bufs.conv_state.destroy();
    bufs.h_final.destroy();
    assert.ok(errPre < 2e-5, `S=${S}: prefill y rel err ${errPre}`);
    assert.ok(errDec < 2e-5, `S=${S}: decode y rel err ${errDec}`);
  }
});

/** Rows [t0, t1) of a [B, T, W] tensor, as [B, t1 − t0, W]. */
function sliceRows(
  a: ArrayLike<number>,
  B: number,
  T: number,
  W: number,
  t0: number,
  t1: number,
): Float64Array {
  const out = new Float64Array(B * (t1 - t0) * W);
  for (let b = 0; b < B; b++) {
    for (let t = t0; t < t1; t++) {
      for (let w = 0; w < W; w++) out[(b * (t1 - t0) + t - t0) * W + w] = a[(b * T + t) * W + w];
    }
  }
  return out;
}

Deno.test("emitter contract: bindings, limits, dispatch sizes", () => {
  const spec = { batch: 1, length: 8192, channels: 256, state: 16 };
  const seq = emitSequentialScan(spec);
  const plan = emitChunkedScan(spec);
  assert.deepEqual(seq.workgroups, [4, 1, 1]);
  const chunked = plan.kernels[2].workgroups;
  assert.ok(chunked[0] * chunked[1] * chunked[2] >= 32 * 4);
  assert.match(
    declareBindings(seq),
    /^@group\(0\) @binding\(0\) var<storage, read> u: array<f32>;/,
  );
  assert.ok(!seq.code.includes("@binding") && !seq.code.includes("enable f16"));
  const h = emitSequentialScan({ ...spec, act: "f16" });
  assert.ok(h.f16 && buildShader(h).startsWith("enable f16;"));
  for (const k of [seq, ...plan.kernels]) assert.ok(k.bindings.length <= 8);
  // Nine bindings (z + separate B/C) exceed the default limit of 8.
  assert.throws(
    () => emitDecodeStep({ batch: 1, channels: 8, state: 4, kernel: 4, gate: true }),
    RangeError,
  );
  assert.doesNotThrow(() =>
    emitDecodeStep({ batch: 1, channels: 8, state: 4, kernel: 4, gate: true, maxBindings: 9 })
  );
  assert.throws(() => emitChunkedScan({ ...spec, length: 0 }), RangeError);
  assert.throws(
    () => emitCausalConv1d({ batch: 1, length: 4, channels: 4, kernel: 4, stateLen: 2 }),
    RangeError,
  );
});
