/**
 * The GPU-shaped quantized matmul (prefill on a GPU): workgroup tiles of
 * 64 activation rows × 64 weight rows, K walked 32 elements at a time; each
 * step the workgroup dequantizes its 64 × 32 weight tile from the blocks into
 * workgroup memory (a group's scale and min decoded once per four elements)
 * beside the 64 × 32 activation tile, and each of 256 threads accumulates a
 * 4 × 4 block of outputs from them. Weight bytes are read once per 64
 * activation rows, never as an f32/f16 copy in memory.
 *
 * @module
 */

import type { QuantFormat } from "../../core/quant/formats.ts";
import type { KernelSource } from "../types.ts";
import { grid, KernelIo } from "../wgsl/mod.ts";
import { QUANT_GROUP, quantReaders, quantRowBytes } from "./wgsl.ts";

/**
 * Shape of a GPU-shaped quantized matmul; see {@linkcode emitGpuQgemm}.
 *
 * @example
 * ```ts
 * import type { GpuQgemmSpec } from "./gpu_qgemm.ts";
 * const s: GpuQgemmSpec = { format: "q4_k", M: 512, N: 4096, K: 4096, elem: "f32", aDirect: true, wDirect: true, cDirect: true, maxWorkgroupsPerDim: 65535 };
 * ```
 */
export interface GpuQgemmSpec {
  /** Block format of the weight. */
  format: QuantFormat;
  /** Activation rows. */
  M: number;
  /** Weight rows (outputs per activation row). */
  N: number;
  /** Row length (a whole number of the format's blocks). */
  K: number;
  /** Activation and output storage type. */
  elem: "f32" | "f16";
  /** `in0` may be indexed directly. */
  aDirect: boolean;
  /** `in1` is one binding (else read through its segment loader). */
  wDirect: boolean;
  /** `out0` may be written directly. */
  cDirect: boolean;
  /** Device limit `maxComputeWorkgroupsPerDimension`. */
  maxWorkgroupsPerDim: number;
}

const TILE = 64;
const KSTEP = 32;

/**
 * Emits the tiled quantized matmul `out[m, n] = Σ_k in0[m, k] · W[n, k]`
 * (256 threads a workgroup, 16 KiB of workgroup memory).
 *
 * @example
 * ```ts
 * import { emitGpuQgemm } from "./gpu_qgemm.ts";
 * const k = emitGpuQgemm({ format: "q8_0", M: 100, N: 70, K: 256, elem: "f32", aDirect: true, wDirect: true, cDirect: true, maxWorkgroupsPerDim: 65535 });
 * k.workgroups; // [4, 1, 1]
 * ```
 */
export function emitGpuQgemm(spec: GpuQgemmSpec): KernelSource {
  const { format, M, N, K, elem } = spec;
  const io = new KernelIo();
  const G = QUANT_GROUP[format];
  const rowBytes = quantRowBytes(format, K);
  const tilesN = Math.ceil(N / TILE), tilesM = Math.ceil(M / TILE);
  const workgroups = grid(tilesN * tilesM, spec.maxWorkgroupsPerDim);
  const word = (i: string) => spec.wDirect ? `${io.in(1)}[${i}]` : io.load(1, i);
  const loadA = (i: string) => spec.aDirect ? `f32(${io.in(0)}[${i}])` : `f32(${io.load(0, i)})`;
  const store = (i: string, v: string) =>
    spec.cDirect ? `${io.out(0)}[${i}] = ${v};` : `${io.store(0, i, v)};`;
  const code = `${quantReaders(format, word, "q", (t) => io.table(t))}
var<workgroup> ta: array<f32, ${TILE * KSTEP}>;
var<workgroup> tw: array<f32, ${TILE * KSTEP}>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let tile = wid.x + wid.y * ${workgroups[0]}u;
  let n0 = (tile % ${tilesN}u) * ${TILE}u;
  let m0 = (tile / ${tilesN}u) * ${TILE}u;
  let tn = li % 16u;
  let tm = li / 16u;
  var acc: array<array<f32, 4>, 4>;
  for (var k0 = 0u; k0 < ${K}u; k0 += ${KSTEP}u) {
    // Activations: 2048 values, 8 a thread (rows past M read the last row).
    for (var e = 0u; e < 8u; e++) {
      let idx = e * 256u + li;
      let r = min(m0 + idx / ${KSTEP}u, ${M - 1}u);
      ta[idx] = ${loadA(`r * ${K}u + k0 + idx % ${KSTEP}u`)};
    }
    // Weights: 64 rows × 8 four-element pieces, 2 a thread, dequantized on the way.
    for (var e = 0u; e < 2u; e++) {
      let p = e * 256u + li;
      let row = p / 8u;
      let kk = k0 + (p % 8u) * 4u;
      let rb = min(n0 + row, ${N - 1}u) * ${rowBytes}u;
      let g = kk / ${G}u;
      let sm = q_qg(rb, g);
      let v = sm.x * q_qc(rb, g, (kk % ${G}u) / 4u) - sm.y;
      let o = row * ${KSTEP}u + (p % 8u) * 4u;
      tw[o] = v.x; tw[o + 1u] = v.y; tw[o + 2u] = v.z; tw[o + 3u] = v.w;
    }
    workgroupBarrier();
    for (var k = 0u; k < ${KSTEP}u; k++) {
      var a: array<f32, 4>;
      var w: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        a[i] = ta[(tm * 4u + i) * ${KSTEP}u + k];
        w[i] = tw[(tn * 4u + i) * ${KSTEP}u + k];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] = fma(a[i], w[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + tm * 4u + i;
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + tn * 4u + j;
      if (m < ${M}u && n < ${N}u) { ${store(`m * ${N}u + n`, `${elem}(acc[i][j])`)} }
    }
  }
}`;
  return {
    label: `qgemm_${format}_tile64x64`,
    code,
    workgroups,
    uses: io.uses,
    choice: {
      algorithm: "qgemm_tile64x64",
      reason: `gpu: ${format} weight tiles dequantized into workgroup memory`,
    },
  };
}
