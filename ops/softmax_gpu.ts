/**
 * GPU-shaped softmax over the last axis, the `gpu` target's entry for
 * `softmax` (see `ops/targets.ts`): one workgroup per row with vec4 loads and
 * subgroup reductions where the device allows, one invocation per row for rows
 * under 64 wide (shapes and thresholds in `rows_gpu.ts`).
 *
 * Rows that fit in registers take three passes over the registers: the max,
 * then `e = exp(x − max)` kept in place and summed, then `e / sum` written — one
 * `exp` per element. Longer rows are read twice: an online pass keeps a running
 * max and a sum rescaled when the max grows (one `exp` per vector plus one per
 * element), the row's max and the rescaled sums are reduced, then the write
 * pass reads the row again. Either way values of ±1e4 stay finite, and a row of
 * all −∞ gives NaN (0/0) as in PyTorch and the portable kernels.
 *
 * Softmax over another axis, empty rows and small devices take the portable
 * kernels (`softmax.ts`), whose column shape already gives neighbouring
 * invocations neighbouring elements.
 *
 * @module
 */

import { normAxis } from "../core/shape.ts";
import { F32_LOWEST } from "./reduce.ts";
import { planRows, RowWriter } from "./rows_gpu.ts";
import { emitSoftmax, type SoftmaxAttrs } from "./softmax.ts";
import type { KernelEmitter } from "./types.ts";

/**
 * The `gpu` target's `softmax` emitter: a workgroup (or, under 64 wide, an
 * invocation) per row of the last axis; the portable kernels for other axes
 * and where no row plan fits.
 *
 * @example
 * ```ts
 * import { TARGET_TABLES } from "./targets.ts";
 * import { softmaxGpu } from "./softmax_gpu.ts";
 * TARGET_TABLES.gpu.emitters.softmax === softmaxGpu; // true
 * ```
 */
export const softmaxGpu: KernelEmitter<SoftmaxAttrs> = (ctx) => {
  const x = ctx.inputs[0];
  const axis = normAxis(ctx.attrs.axis, x.shape.length, "softmax");
  if (axis !== x.shape.length - 1) return emitSoftmax(ctx);
  const d = x.shape[axis];
  const n = x.shape.reduce((a, b) => a * b, 1);
  const plan = planRows(ctx.caps, d === 0 ? 0 : n / d, d);
  if (!plan) return emitSoftmax(ctx);
  const w = new RowWriter(plan, ctx);
  const T = w.unitOf(ctx.outputs[0].dtype);
  let body: string;
  if (plan.cached) {
    body = `  var m: f32 = ${F32_LOWEST};
${w.each((x) => `      m = max(m, ${w.hmax(x)});`, "fill")}
${w.reduce("max", "m", "gm")}
  var sm: f32 = 0.0;
${
      w.each(
        (x) => `      let e = exp(${x} - gm);\n      xs[k] = e;\n      sm = sm + ${w.hsum("e")};`,
        "read",
      )
    }
${w.reduce("sum", "sm", "gs")}
${w.each((x) => `      ${w.store("rb + q", `${T}(${x} / gs)`)}`, "read")}`;
  } else {
    // Online: rescale the running sum only when a unit raises the max.
    body = `  var m: f32 = ${F32_LOWEST};
  var sm: f32 = 0.0;
${
      w.each(
        (x) =>
          `      let mx = ${w.hmax(x)};
      if (mx > m) { sm = sm * exp(m - mx); m = mx; }
      let e = exp(${x} - m);
      sm = sm + ${w.hsum("e")};`,
        "load",
      )
    }
${w.reduce("max", "m", "gm")}
${w.reduce("sum", "sm * exp(m - gm)", "gs")}
${w.each((x) => `      ${w.store("rb + q", `${T}(exp(${x} - gm) / gs)`)}`, "load")}`;
  }
  return { kernels: [w.finish("softmax", body)] };
};
