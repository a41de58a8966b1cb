import type { MatmulKernel } from "../ops/matmul_kernel.ts";

/** A standalone f32 shader around a matmul kernel body: the bindings and load/store functions the compiler would declare. */
export function wrapMatmul(kernel: MatmulKernel): string {
  return `@group(0) @binding(0) var<storage, read> in0: array<f32>;
@group(0) @binding(1) var<storage, read> in1: array<f32>;
@group(0) @binding(2) var<storage, read_write> out0: array<f32>;
fn in0_load(i: u32) -> f32 { return in0[i]; }
fn in1_load(i: u32) -> f32 { return in1[i]; }
fn out0_store(i: u32, v: f32) { out0[i] = v; }
${kernel.code}`;
}
