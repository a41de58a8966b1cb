/**
 * The reference matmul kernel: one invocation per output element, scalar
 * loads. It is the floor the tiled kernels are measured against.
 *
 * @module
 */

import { KernelIo, u32 as u } from "../wgsl/mod.ts";
import {
  checkSpec,
  linearWorkgroup,
  type MatmulKernel,
  type MatmulKernelSpec,
  operandHelpers,
  spreadGrid,
} from "./spec.ts";

/**
 * Emits the reference kernel: one invocation per output element, scalar
 * loads. It is the floor that benchmarks compare `emitMatmul` to.
 *
 * @example
 * ```ts
 * import { naiveMatmul } from "./naive.ts";
 * const k = naiveMatmul({
 *   batch: 2, M: 3, N: 5, K: 7, transA: false, transB: false,
 *   aBatchStride: 21, bBatchStride: 0, elem: "f32",
 *   aDirect: true, bDirect: true, cDirect: true,
 *   maxInvocations: 256, maxWorkgroupStorage: 16384, maxWorkgroupsPerDim: 65535,
 * });
 * console.log(k.workgroups); // [1, 1, 1]
 * ```
 */
export function naiveMatmul(spec: MatmulKernelSpec): MatmulKernel {
  checkSpec(spec);
  const io = new KernelIo();
  const { M, N, K, batch } = spec;
  const wgSize = Math.min(64, spec.maxInvocations);
  const outputs = batch * M * N;
  const total = Math.ceil(outputs / wgSize);
  const grid = spreadGrid(total, spec.maxWorkgroupsPerDim);
  const aIdx = spec.transA ? `aBase + k * ${u(M)} + m` : `aBase + m * ${u(K)} + k`;
  const bIdx = spec.transB ? `bBase + n * ${u(K)} + k` : `bBase + k * ${u(N)} + n`;
  const code = `${operandHelpers(spec, io)}
@compute @workgroup_size(${wgSize})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
${linearWorkgroup(grid, total)}  let i = wg * ${u(wgSize)} + lid;
  if (i >= ${u(outputs)}) { return; }
  let n = i % ${u(N)};
  let m = (i / ${u(N)}) % ${u(M)};
  let b = i / ${u(M * N)};
  let aBase = b * ${u(spec.aBatchStride)};
  let bBase = b * ${u(spec.bBatchStride)};
  var acc = 0.0;
  for (var k = 0u; k < ${u(K)}; k++) {
    acc = fma(mm_a(${aIdx}), mm_b(${bIdx}), acc);
  }
  mm_c(i, acc);
}
`;
  return { code, workgroups: grid, label: "matmul_naive", uses: io.uses };
}
