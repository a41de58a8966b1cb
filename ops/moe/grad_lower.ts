/**
 * The lowering of `moe_grad`: the forward's router (given the logits) and sort
 * kernels recompute the routing and the expert-sorted rows, then the backward
 * kernels of `grad_kernels.ts` run over them.
 *
 * @module
 */

import { formatShape } from "../../core/shape.ts";
import type { KernelContext, KernelEmission, ScratchSpec } from "../types.ts";
import { flatKernel, KernelIo } from "../wgsl/mod.ts";
import { activationOf, expertBiasOf, groupLimitOf } from "./attrs.ts";
import { resolveMoeConfig, routerHasBias } from "./config.ts";
import type { MoeGradAttrs } from "./grad.ts";
import {
  emitGradDh,
  emitGradHidden,
  emitGradRowsX,
  emitGradW13,
  emitGradW2,
} from "./grad_gemms.ts";
import {
  emitGradCombine,
  emitGradCounts,
  emitGradGatherDy,
  emitGradRouter,
  MOE_GRAD_SCRATCH,
  moeGradScratchLength,
} from "./grad_kernels.ts";
import type { MoeBuffer, MoeEmitContext, MoeOperand } from "./operands.ts";
import { emitRouter } from "./router.ts";
import { emitSort } from "./sort.ts";

/** No tokens: every gradient is zero (dx and dz are empty). */
function emitZeros(ctx: KernelContext<MoeGradAttrs>): KernelEmission {
  const kernels = ctx.outputs.map((_, j) => j).filter((j) => j >= 2).map((j) => {
    const io = new KernelIo();
    const n = ctx.outputs[j].shape.reduce((a, b) => a * b, 1);
    return flatKernel(`moe_grad_zero${j}`, n, ctx.caps, `  ${io.store(j, "i", "0.0")};`, "", io);
  });
  return { kernels };
}

/**
 * The kernels of `moe_grad` for concrete operands (the op's `lower.emit`).
 *
 * @example
 * ```ts ignore
 * const { kernels, scratch } = emitMoeGrad({ attrs, inputs, outputs, caps });
 * kernels.map((k) => k.role); // ["router", "sort", "grad_hidden", …]
 * ```
 */
export function emitMoeGrad(ctx: KernelContext<MoeGradAttrs>): KernelEmission {
  const { attrs, inputs, outputs, caps } = ctx;
  const [T, d] = inputs[0].shape;
  if (T === 0) return emitZeros(ctx);
  const biases = expertBiasOf({ ...attrs, dense: false });
  for (const j of [0, 1, 2, 3, 4, 10, ...(biases ? [11, 12, 13] : [])]) {
    if (!inputs[j].direct) {
      throw new RangeError(
        `moe_grad: input ${j} ${
          formatShape(inputs[j].shape)
        } exceeds the device's storage binding size (${caps.maxBindingSize} bytes)`,
      );
    }
  }
  const c = resolveMoeConfig({
    T,
    d,
    ff: inputs[2].shape[1],
    E: attrs.experts,
    k: attrs.topK,
    router: attrs.router,
    normTopk: attrs.normTopk,
    routedScaling: attrs.routedScaling,
    ...groupLimitOf(attrs),
    capacityFactor: attrs.capacityFactor > 0 ? attrs.capacityFactor : undefined,
    activation: activationOf({ ...attrs, dense: false }),
    alpha: typeof attrs.alpha === "number" ? attrs.alpha : undefined,
    limit: typeof attrs.limit === "number" ? attrs.limit : undefined,
    expertBias: biases,
  });
  const scratch: ScratchSpec[] = MOE_GRAD_SCRATCH.map((b) => ({
    length: Math.max(1, moeGradScratchLength(c, b)),
    type: ["topk_idx", "sorted_token", "tile_expert", "slot_pos", "counts"].includes(b)
      ? "u32"
      : "f32",
  }));
  scratch.forEach((s, j) => {
    if (s.length * 4 > caps.maxBindingSize) {
      throw new RangeError(
        `moe_grad: intermediate ${MOE_GRAD_SCRATCH[j]} (${
          s.length * 4
        } bytes for ${T} tokens) exceeds the device's storage binding size; run fewer tokens at once`,
      );
    }
  });
  const at = (b: MoeBuffer & (typeof MOE_GRAD_SCRATCH)[number]): MoeOperand => ({
    kind: "scratch",
    j: MOE_GRAD_SCRATCH.indexOf(b),
  });
  // The forward's router reads the given logits (input 1) as `wg` and the sort
  // writes the routed counts to scratch: the same kernels, so the same routing.
  const layout: { [B in MoeBuffer]?: MoeOperand } = {
    x: { kind: "in", j: 0 },
    wg: { kind: "in", j: 1 },
    logits: at("logits"),
    probs: at("probs"),
    topk_idx: at("topk_idx"),
    topk_w: at("topk_w"),
    sorted_token: at("sorted_token"),
    sorted_w: at("sorted_w"),
    tile_expert: at("tile_expert"),
    slot_pos: at("slot_pos"),
    counts: at("counts"),
  };
  if (routerHasBias(attrs.router)) layout.bias = { kind: "in", j: 10 };
  const emit: MoeEmitContext = {
    layout,
    caps,
    yDirect: outputs[0].direct,
    logitsIn: true,
    auxCounts: false,
  };
  const kernels = [
    emitRouter(c, emit),
    emitSort(c, emit),
    emitGradGatherDy(c, caps),
    emitGradDh(c, caps),
    emitGradHidden(c, caps),
    emitGradW2(c, caps),
    emitGradW13(c, caps),
    emitGradRowsX(c, caps),
    emitGradCombine(c, caps),
    emitGradCounts(c),
    emitGradRouter(c, caps),
  ];
  return { kernels, scratch };
}
