/**
 * The lowering of `moe`: the operand layout (which input, output or scratch
 * buffer holds each buffer the kernels name), the path for the token count,
 * and the kernel sequence of that path.
 *
 * @module
 */

import { formatShape, numel } from "../../core/shape.ts";
import type {
  KernelContext,
  KernelEmission,
  KernelOperand,
  KernelSource,
  ScratchSpec,
} from "../types.ts";
import { flatKernel, KernelIo, segmentElems, u32 } from "../wgsl/mod.ts";
import { byteSize } from "../../core/dtype.ts";
import { quantWords } from "../quant/mod.ts";
import {
  configOf,
  inputName,
  type MoeAttrs,
  moePath,
  optionalInputs,
  routingOf,
  slotsOf,
} from "./attrs.ts";
import {
  type MoePath,
  moeScratch,
  type MoeTile,
  type ResolvedMoeConfig,
  resolveMoeConfig,
} from "./config.ts";
import { gemm1Weights } from "./activation.ts";
import { emitDecodeGemv1, emitDecodeGemv2 } from "./decode_gemv.ts";
import {
  emitCombine,
  emitDenseGemm1,
  emitDenseGemm2,
  emitGroupedGemm1,
  emitGroupedGemm2,
} from "./grouped_gemm.ts";
import { emitAuxLoss } from "./losses.ts";
import type { MoeBuffer, MoeEmitContext, MoeOperand, SlabRange } from "./operands.ts";
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
  const W13: MoeBuffer[] = gemm1Weights(c);
  if (path === "prefill") {
    ks.push(
      emitSort(c, ctx),
      ...bySlabs((r) => emitGroupedGemm1(c, ctx, r), W13, c, ctx),
      ...bySlabs((r) => emitGroupedGemm2(c, ctx, r), ["w2"], c, ctx),
      emitCombine(c, ctx),
    );
  } else {
    if (c.capacityFactor !== undefined) {
      throw new RangeError(
        `MoE ${path} path is dropless: received capacityFactor ${c.capacityFactor}`,
      );
    }
    if (path === "decode") {
      ks.push(...bySlabs((r) => emitDecodeGemv1(c, ctx, r), W13, c, ctx), emitDecodeGemv2(c, ctx));
    } else {
      ks.push(...bySlabs((r) => emitDenseGemm1(c, ctx, r), W13, c, ctx), emitDenseGemm2(c, ctx));
    }
  }
  if (aux) ks.push(emitAuxLoss(c, ctx));
  return ks;
}

/**
 * A kernel over expert weights `mats` as one launch, or — when the weights are
 * bound in segments and one launch would need more storage buffers than the
 * device has — as several launches, each over a run of whole expert slabs
 * whose segments fit beside the kernel's other buffers (the launches write
 * disjoint rows, so the result is the same). Kernels that sum over experts
 * (decode GEMV 2, dense GEMM 2) are never split.
 *
 * @example
 * ```ts ignore
 * bySlabs((r) => emitGroupedGemm1(c, ctx, r), ["w1", "w3"], c, ctx).length; // 1 when it fits
 * ```
 */
export function bySlabs(
  make: (slabs?: SlabRange) => KernelSource,
  mats: readonly MoeBuffer[],
  c: ResolvedMoeConfig,
  ctx: MoeEmitContext,
): KernelSource[] {
  const whole = make();
  const ats = mats.map((b) => ctx.layout[b]);
  const segElems = ats[0]?.segElems;
  if (segElems === undefined || ats.some((a) => a?.via !== "vget" || a.segElems !== segElems)) {
    return [whole];
  }
  const ins = new Set(ats.map((a) => `in${a!.j}`));
  const other = new Set(
    // A constant table counts too: GPUs bind it as one more storage buffer.
    whole.uses.map((u) => u.match(/^(in\d+|out\d+|scratch\d+|table_\w+)/)![1]).filter((b) =>
      !ins.has(b)
    ),
  ).size;
  const slabs = ctx.slotTable ?? c.E;
  // Elements of one slab as bound: u32 words for block-quantized weights.
  const f = mats.includes("w2") ? c.w2Format : c.weightFormat;
  const slabElems = f ? quantWords(f, c.ff, c.d) : c.ff * c.d;
  const segsOf = (from: number, to: number) =>
    mats.length *
    (Math.floor((to * slabElems - 1) / segElems) - Math.floor((from * slabElems) / segElems) + 1);
  const budget = ctx.caps.maxStorageBuffers - other;
  if (segsOf(0, slabs) <= budget) return [whole];
  const out: KernelSource[] = [];
  for (let from = 0; from < slabs;) {
    let to = from + 1;
    // One slab over the budget is left to the compiler's storage-buffer check.
    while (to < slabs && segsOf(from, to + 1) <= budget) to++;
    out.push(make({ from, to }));
    from = to;
  }
  return out;
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

/** Expert weight input j: the raw array, or read through its segment accessors. */
function weightIn(op: KernelOperand, j: number, caps: KernelContext<MoeAttrs>["caps"]): MoeOperand {
  // `moe` takes no prologues: an input that is not direct is bound in segments.
  if (op.direct) return IN(j);
  const segElems = segmentElems(caps.maxBindingSize, caps.offsetAlignment, byteSize(op.dtype));
  return { kind: "in", j, via: "vget", segElems };
}

/**
 * Everything `moe`'s kernels are emitted from for concrete operands: the
 * resolved config, the path, whether the aux kernel runs, the operand layout
 * and the scratch buffers. Undefined for zero tokens. Target emitters (the
 * `gpu` table's `moeGpu`) build on it and swap kernels of {@linkcode moeKernels}.
 *
 * @example
 * ```ts ignore
 * const p = prepareMoe(ctx);
 * if (p) moeKernels(p.c, p.path, p.aux, p.emit);
 * ```
 */
export interface MoePrepared {
  /** The resolved config. */
  readonly c: ResolvedMoeConfig;
  /** The kernel sequence. */
  readonly path: MoePath;
  /** The aux kernel runs. */
  readonly aux: boolean;
  /** Layout and device context of the emitters. */
  readonly emit: MoeEmitContext;
  /** The scratch buffers of the path. */
  readonly scratch: ScratchSpec[];
}

/**
 * The kernels of `moe` for concrete operands (the op's `lower.emit`).
 *
 * @example
 * ```ts ignore
 * const { kernels, scratch } = emitMoe({ attrs, inputs, outputs, caps });
 * ```
 */
export function emitMoe(ctx: KernelContext<MoeAttrs>): KernelEmission {
  const p = prepareMoe(ctx);
  if (p === undefined) return emitEmpty(ctx);
  return { kernels: moeKernels(p.c, p.path, p.aux, p.emit), scratch: p.scratch };
}

/**
 * Checks the operands of `moe` and resolves its config, path and layout (see
 * {@linkcode MoePrepared}); undefined for zero tokens. `tile` overrides the
 * GEMM tile (a target's kernels may want taller row tiles from the sort).
 *
 * @example
 * ```ts ignore
 * const p = prepareMoe({ attrs, inputs, outputs, caps });
 * ```
 */
export function prepareMoe(
  ctx: KernelContext<MoeAttrs>,
  tile?: Partial<MoeTile>,
): MoePrepared | undefined {
  const { attrs, inputs, outputs, caps } = ctx;
  const x = inputs[0];
  const d = x.shape[x.shape.length - 1];
  const T = numel(x.shape) / d;
  if (T === 0) return undefined;
  const wdt = inputs[2].dtype === "f16" ? "f16" : "f32";
  if (wdt === "f16" && !caps.f16) {
    throw new TypeError('moe: f16 expert weights need a device with the "shader-f16" feature');
  }
  // Expert weights (inputs 2–4) larger than one binding are bound in segments and
  // read through the accessors that pick the segment; every other input is one array.
  const WEIGHTS = [2, 3, 4];
  inputs.forEach((op, j) => {
    if (!op.direct && !WEIGHTS.includes(j)) {
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
  const c = resolveMoeConfig({ ...configOf(attrs, x.shape, inputs[2].shape, wdt), tile });
  const path = moePath(attrs, T);
  const routing = routingOf(attrs);
  const opt = optionalInputs(attrs, inputs.length);
  const layout: { [B in MoeBuffer]?: MoeOperand } = {
    x: IN(0),
    wg: IN(1),
    w1: weightIn(inputs[2], 2, caps),
    w3: weightIn(inputs[3], 3, caps),
    w2: weightIn(inputs[4], 4, caps),
    y: OUT(0),
    logits: OUT(1),
    counts: OUT(2),
    aux: OUT(3),
  };
  if (opt.bias !== undefined) layout.bias = IN(opt.bias);
  for (const b of ["b1", "b3", "b2"] as const) {
    const j = opt[b];
    if (j !== undefined) layout[b] = IN(j);
  }
  if (opt.mask !== undefined) layout.mask = IN(opt.mask);
  if (opt.table !== undefined) layout.table = IN(opt.table);
  if (routing) Object.assign(layout, { topk_idx: OUT(4), topk_w: OUT(5), kept: OUT(6) });
  const { specs, at } = moeScratch(c, path, routing);
  for (const [b, j] of Object.entries(at)) {
    layout[b as MoeBuffer] = { kind: "scratch", j };
    const bytes = specs[j].length * (specs[j].type === "f16" ? 2 : 4);
    if (bytes > caps.maxBindingSize) {
      throw new RangeError(
        `moe: intermediate ${b} (${bytes} bytes for ${T} tokens) exceeds the device's storage ` +
          `binding size (${caps.maxBindingSize} bytes); run fewer tokens at once`,
      );
    }
  }
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
  return { c, path, aux, emit, scratch: specs };
}
