import type { MatmulKernel } from "../ops/matmul/mod.ts";

/** What the harness declares: the three operands bound whole, and their accessors. */
const DECLARED: ReadonlySet<string> = new Set([
  "in0",
  "in1",
  "out0",
  "in0_load",
  "in1_load",
  "out0_store",
]);

/** A standalone f32 shader around a matmul kernel body: the bindings and load/store functions the compiler would declare. */
export function wrapMatmul(kernel: MatmulKernel): string {
  // The kernel records what it uses; the harness declares a fixed set (the bind
  // group has all three buffers), so a use outside it would not compile.
  const missing = kernel.uses.filter((s) => !DECLARED.has(s));
  if (missing.length > 0) {
    throw new TypeError(
      `wrapMatmul: ${kernel.label} uses ${missing.join(", ")}, which the harness does not declare`,
    );
  }
  return `@group(0) @binding(0) var<storage, read> in0: array<f32>;
@group(0) @binding(1) var<storage, read> in1: array<f32>;
@group(0) @binding(2) var<storage, read_write> out0: array<f32>;
fn in0_load(i: u32) -> f32 { return in0[i]; }
fn in1_load(i: u32) -> f32 { return in1[i]; }
fn out0_store(i: u32, v: f32) { out0[i] = v; }
${kernel.code}`;
}
