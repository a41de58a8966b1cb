/**
 * The lowering of `moe`: the operand layout (which input, output or scratch
 * buffer holds each buffer the kernels name), the path for the token count,
 * and the kernel sequence of that path.
 *
 * @module
 */

import { formatShape, numel } from "../../core/shape.ts";
import type { KernelContext, KernelEmission, KernelSource } from "../types.ts";
import { flatKernel, KernelIo, u32 } from "../wgsl/mod.ts";
import {
  configOf,
  inputName,
  type MoeAttrs,
  moePath,
  optionalInputs,
  routingOf,
  slotsOf,
} from "./attrs.ts";
import { type MoePath, moeScratch, type ResolvedMoeConfig, resolveMoeConfig } from "./config.ts";
import { emitDecodeGemv1, emitDecodeGemv2 } from "./decode_gemv.ts";
import {
  emitCombine,
  emitDenseGemm1,
  emitDenseGemm2,
  emitGroupedGemm1,
  emitGroupedGemm2,
} from "./grouped_gemm.ts";
import { emitAuxLoss } from "./losses.ts";
import type { MoeBuffer, MoeEmitContext, MoeOperand } from "./operands.ts";
import { emitRouter } from "./router.ts";
import { emitSort } from "./sort.ts";

/**
 * The kernels of one forward pass in launch order. `"prefill"`: router, sort,
 * GEMM 1, GEMM 2, combine (+ aux); `"decode"`: router, GEMV 1, GEMV 2 (+ aux);
 * `"dense"`: router, dense GEMM 1, dense GEMM 2 (+ aux). Six launches at most,
 * whatever E is.
 *
 * @example
 * ```ts ignore
 * const ks = moeKernels(c, "prefill", true, ctx);
 * ks.map((k) => k.role); // ["router", "sort", "gemm1", "gemm2", "combine", "aux"]
 * ```
 */
export function moeKernels(
  c: ResolvedMoeConfig,
  path: MoePath,
  aux: boolean,
  ctx: MoeEmitContext,
): KernelSource[] {
  const ks: KernelSource[] = [emitRouter(c, ctx)];
  if (path === "prefill") {
    ks.push(
      emitSort(c, ctx),
      emitGroupedGemm1(c, ctx),
      emitGroupedGemm2(c, ctx),
      emitCombine(c, ctx),
    );
  } else {
    if (c.capacityFactor !== undefined) {
      throw new RangeError(
        `MoE ${path} path is dropless: received capacityFactor ${c.capacityFactor}`,
      );
    }
    if (path === "decode") ks.push(emitDecodeGemv1(c, ctx), emitDecodeGemv2(c, ctx));
    else ks.push(emitDenseGemm1(c, ctx), emitDenseGemm2(c, ctx));
  }
  if (aux) ks.push(emitAuxLoss(c, ctx));
  return ks;
}

/** No tokens: counts (and kept counts) and losses are zero, the other outputs empty. */
function emitEmpty(ctx: KernelContext<MoeAttrs>): KernelEmission {
  const E = ctx.attrs.experts;
  const io = new KernelIo();
  const kept = routingOf(ctx.attrs) ? ` ${io.out(6)}[i] = 0u;` : "";
  const body = `  if (i < ${u32(E)}) { ${io.out(2)}[i] = 0u;${kept} }
  if (i < 2u) { ${io.out(3)}[i] = 0.0; }`;
  const k = flatKernel("moe_empty", Math.max(E, 2), ctx.caps, body, "", io);
  return { kernels: [{ ...k, role: "empty" }] };
}

const IN = (j: number): MoeOperand => ({ kind: "in", j });
const OUT = (j: number): MoeOperand => ({ kind: "out", j });

/**
 * The kernels of `moe` for concrete operands (the op's `lower.emit`).
 *
 * @example
 * ```ts ignore
 * const { kernels, scratch } = emitMoe({ attrs, inputs, outputs, caps });
 * ```
 */
export function emitMoe(ctx: KernelContext<MoeAttrs>): KernelEmission {
  const { attrs, inputs, outputs, caps } = ctx;
  const x = inputs[0];
  const d = x.shape[x.shape.length - 1];
  const T = numel(x.shape) / d;
  if (T === 0) return emitEmpty(ctx);
  const wdt = inputs[2].dtype === "f16" ? "f16" : "f32";
  if (wdt === "f16" && !caps.f16) {
    throw new TypeError('moe: f16 expert weights need a device with the "shader-f16" feature');
  }
  inputs.forEach((op, j) => {
    if (!op.direct) {
      throw new RangeError(
        `moe: ${inputName(attrs, inputs.length, j)} ${
          formatShape(op.shape)
        } exceeds the device's storage binding size (${caps.maxBindingSize} bytes); ` +
          `split the experts over layers`,
      );
    }
  });
  for (let j = 1; j < outputs.length; j++) {
    if (!outputs[j].direct) {
      throw new RangeError(
        `moe: output ${j} ${formatShape(outputs[j].shape)} exceeds the device's binding size`,
      );
    }
  }
  const c = resolveMoeConfig(configOf(attrs, x.shape, inputs[2].shape, wdt));
  const path = moePath(attrs, T);
  const routing = routingOf(attrs);
  const opt = optionalInputs(attrs, inputs.length);
  const layout: { [B in MoeBuffer]?: MoeOperand } = {
    x: IN(0),
    wg: IN(1),
    w1: IN(2),
    w3: IN(3),
    w2: IN(4),
    y: OUT(0),
    logits: OUT(1),
    counts: OUT(2),
    aux: OUT(3),
  };
  if (opt.bias !== undefined) layout.bias = IN(opt.bias);
  if (opt.mask !== undefined) layout.mask = IN(opt.mask);
  if (opt.table !== undefined) layout.table = IN(opt.table);
  if (routing) Object.assign(layout, { topk_idx: OUT(4), topk_w: OUT(5), kept: OUT(6) });
  const { specs, at } = moeScratch(c, path, routing);
  for (const [b, j] of Object.entries(at)) layout[b as MoeBuffer] = { kind: "scratch", j };
  const emit: MoeEmitContext = {
    layout,
    caps,
    yDirect: outputs[0].direct,
    slotTable: opt.table !== undefined ? slotsOf(attrs) : undefined,
    logitsIn: attrs.logitsIn === true,
    auxCounts: path !== "prefill",
  };
  // The losses (and, off the prefill path, the counts the aux kernel writes) are for
  // training and statistics: inference graphs that read none of them skip the kernel.
  const read = (j: number) => j < outputs.length && outputs[j].used !== false;
  const aux = read(3) || (path !== "prefill" && (read(2) || read(6)));
  return { kernels: moeKernels(c, path, aux, emit), scratch: specs };
}
