/**
 * GPU-shaped RMSNorm and LayerNorm, the `gpu` target's entries for `rmsnorm`
 * and `layernorm` (see `ops/targets.ts`): one workgroup per row with vec4 loads
 * and subgroup reductions where the device allows, one invocation per row for
 * rows under 64 wide (the shapes and their thresholds are in `rows_gpu.ts`).
 *
 * The arithmetic is the portable kernels' (`norm.ts`) term for term — RMSNorm
 * `w · T(x · rsqrt(mean(x²) + eps))` with the weight product in the storage
 * dtype, LayerNorm two-pass `(x − mean) · rstd · w + b` in f32 — so the two
 * targets differ only in summation order. The fusion contract is the op's: a
 * prologue on x (read through `in0_load`), an epilogue on the output (written
 * through `out0_store`). Empty rows and small devices take the portable kernels.
 *
 * @module
 */

import { emitNorm, type NormAttrs } from "./norm.ts";
import { planRows, RowWriter } from "./rows_gpu.ts";
import type { KernelContext, KernelEmission, KernelEmitter } from "./types.ts";
import { f32 } from "./wgsl/mod.ts";

/** Emits the GPU-shaped norm kernel, or the portable one where no row plan fits. */
function emitNormGpu(op: "rmsnorm" | "layernorm", ctx: KernelContext<NormAttrs>): KernelEmission {
  const x = ctx.inputs[0];
  const t = ctx.outputs[0].dtype;
  const d = x.shape[x.shape.length - 1];
  const n = x.shape.reduce((a, b) => a * b, 1);
  const plan = planRows(ctx.caps, d === 0 ? 0 : n / d, d);
  if (!plan) return emitNorm(op, ctx);
  const w = new RowWriter(plan, ctx);
  const V = w.unit;
  const eps = f32(Math.fround(ctx.attrs.eps), `${op}: eps`);
  const dLit = f32(d);
  const firstPass = plan.cached ? "fill" : "load";
  const again = plan.cached ? "read" : "load";
  const T = w.unitOf(t);
  let body: string;
  if (op === "rmsnorm") {
    body = `  var acc = ${V}(0.0);
${w.each((x) => `      acc = acc + ${x} * ${x};`, firstPass)}
${w.reduce("sum", w.hsum("acc"), "ss")}
  let rs = 1.0 / sqrt(ss / ${dLit} + ${eps});
${w.each((x) => `      ${w.store("rb + q", `${w.raw(1, "q")} * ${T}(${x} * rs)`)}`, again)}`;
  } else {
    body = `  var acc = ${V}(0.0);
${w.each((x) => `      acc = acc + ${x};`, firstPass)}
${w.reduce("sum", w.hsum("acc"), "tot")}
  let mean = tot / ${dLit};
  var sq = ${V}(0.0);
${w.each((x) => `      let dx = ${x} - mean;\n      sq = sq + dx * dx;`, again)}
${w.reduce("sum", w.hsum("sq"), "var2")}
  let rstd = 1.0 / sqrt(var2 / ${dLit} + ${eps});
${
      w.each(
        (x) =>
          `      ${
            w.store("rb + q", `${T}((${x} - mean) * rstd * ${w.load(1, "q")} + ${w.load(2, "q")})`)
          }`,
        again,
      )
    }`;
  }
  return { kernels: [w.finish(op, body)] };
}

/**
 * The `gpu` target's `rmsnorm` emitter: a workgroup (or, under 64 wide, an
 * invocation) per row; the portable kernel where no row plan fits.
 *
 * @example
 * ```ts
 * import { TARGET_TABLES } from "./targets.ts";
 * import { rmsnormGpu } from "./norm_gpu.ts";
 * TARGET_TABLES.gpu.emitters.rmsnorm === rmsnormGpu; // true
 * ```
 */
export const rmsnormGpu: KernelEmitter<NormAttrs> = (ctx) => emitNormGpu("rmsnorm", ctx);

/**
 * The `gpu` target's `layernorm` emitter: a workgroup (or, under 64 wide, an
 * invocation) per row; the portable kernel where no row plan fits.
 *
 * @example
 * ```ts
 * import { TARGET_TABLES } from "./targets.ts";
 * import { layernormGpu } from "./norm_gpu.ts";
 * TARGET_TABLES.gpu.emitters.layernorm === layernormGpu; // true
 * ```
 */
export const layernormGpu: KernelEmitter<NormAttrs> = (ctx) => emitNormGpu("layernorm", ctx);
