/**
 * `qmatmul`: activations times a block-quantized Linear weight, dequantized
 * inside the kernel as it is read. `x [..., K] · Wᵀ` with `W` `[N, K]` stored as
 * the raw bytes of a llama.cpp format (one row after another, as GGUF stores
 * it), bound as `u32` words. No f32 or f16 copy of the weight ever exists.
 *
 * The kernel is a many-row GEMV: each invocation owns 4 columns (weight rows)
 * and `R` activation rows, walks K one group at a time (see `./wgsl.ts`) and
 * folds the group's affine map in once: `acc += scale·Σ a·q − min·Σ a`. A
 * decode step (1–4 rows) is one row group; a prefill of `M` rows is
 * `⌈M / R⌉` row groups that each re-read the weight — still far fewer bytes than
 * an f16 weight for the 4–6-bit formats.
 *
 * A decode step (1–4 rows) against a weight bound whole takes a GEMV that
 * reads whole blocks instead, many weight rows an invocation sharing each
 * activation load: `./gemv_q4k.ts` for Q4_K, `./block_gemv.ts` for the rest
 * (on llvmpipe 1.6–2.9× the f16 GEMV where the group-wise kernel was
 * 0.5–1.1×). A weight split over bindings, or more rows, stays group-wise; a
 * GPU's prefill takes workgroup tiles (`./gpu_qgemm.ts`).
 *
 * @module
 */

import { allocHost, isFloat } from "../../core/dtype.ts";
import type { TensorType } from "../../core/graph.ts";
import { formatShape, numel } from "../../core/shape.ts";
import { GGML_TYPES, isQuantFormat, type QuantFormat } from "../../core/quant/formats.ts";
import { dequantize } from "../../core/quant/mod.ts";
import type { HostTensor, KernelContext, KernelEmission, OpDef } from "../types.ts";
import { flatIndex, grid, KernelIo } from "../wgsl/mod.ts";
import { QUANT_GROUP, quantReaders, quantRowBytes } from "./wgsl.ts";
import { emitQ4kGemv } from "./gemv_q4k.ts";
import { emitGpuQgemm } from "./gpu_qgemm.ts";
import { blockGemvColumns, blockGemvFormats, emitBlockGemv } from "./block_gemv.ts";

/**
 * Attributes of `qmatmul` and `qgather`: the weight's format and its logical
 * `[rows, cols]` (for `qmatmul` `[N, K]`, for `qgather` `[V, D]`).
 *
 * @example
 * ```ts
 * import type { QuantAttrs } from "./qmatmul.ts";
 * const attrs: QuantAttrs = { format: "q4_k", rows: 4096, cols: 14336 };
 * ```
 */
export interface QuantAttrs {
  /** The block format of the weight's bytes. */
  readonly format: QuantFormat;
  /** Logical rows of the weight (one quantized row each). */
  readonly rows: number;
  /** Logical columns: elements per row, a whole number of blocks. */
  readonly cols: number;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: string | number;
}

/**
 * u32 words holding a `[rows, cols]` weight of `format`: its bytes rounded up
 * to whole words.
 *
 * @example
 * ```ts
 * import { quantWords } from "./qmatmul.ts";
 * quantWords("q8_0", 2, 32); // 17
 * ```
 */
export function quantWords(format: QuantFormat, rows: number, cols: number): number {
  return Math.ceil(rows * quantRowBytes(format, cols) / 4);
}

/**
 * Checks a quantized weight operand against its attributes (`op` names the op
 * in errors): u32, flat, exactly the words the format needs.
 *
 * @example
 * ```ts
 * import { checkQuantWeight } from "./qmatmul.ts";
 * checkQuantWeight("qmatmul", { shape: [17], dtype: "u32" }, { format: "q8_0", rows: 2, cols: 32 });
 * ```
 */
export function checkQuantWeight(op: string, w: TensorType, attrs: QuantAttrs): void {
  const { format, rows, cols } = attrs;
  if (typeof format !== "string" || !isQuantFormat(format)) {
    throw new TypeError(`${op}: format ${JSON.stringify(format)} is not a supported block format`);
  }
  for (const [k, v] of [["rows", rows], ["cols", cols]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`${op}: ${k} must be a positive integer, got ${v}`);
    }
  }
  const block = GGML_TYPES[format].blockElems;
  if (cols % block !== 0) {
    throw new RangeError(
      `${op}: a ${format} row holds whole ${block}-element blocks; ${cols} columns do not`,
    );
  }
  const words = quantWords(format, rows, cols);
  if (w.dtype !== "u32" || w.shape.length !== 1 || w.shape[0] !== words) {
    throw new TypeError(
      `${op}: a ${format} weight of [${rows}, ${cols}] is u32[${words}] (its bytes as words), got ${w.dtype}${
        formatShape(w.shape)
      }`,
    );
  }
}

/** The weight's bytes of a host tensor, dequantized to f32 `[rows · cols]`. */
export function dequantizeHost(w: HostTensor, attrs: QuantAttrs): Float32Array {
  const d = w.data;
  const bytes = new Uint8Array(
    d.buffer,
    d.byteOffset,
    attrs.rows * quantRowBytes(attrs.format, attrs.cols),
  );
  return dequantize(attrs.format, bytes, attrs.rows * attrs.cols);
}

function inferQmatmul([x, w]: readonly TensorType[], attrs: QuantAttrs): TensorType[] {
  checkQuantWeight("qmatmul", w, attrs);
  if (!isFloat(x.dtype)) {
    throw new TypeError(`qmatmul: activations must be f32 or f16, got ${x.dtype}`);
  }
  const K = x.shape[x.shape.length - 1];
  if (x.shape.length < 1 || K !== attrs.cols) {
    throw new RangeError(
      `qmatmul: activations ${formatShape(x.shape)} must end in the weight's ${attrs.cols} columns`,
    );
  }
  return [{ shape: [...x.shape.slice(0, -1), attrs.rows], dtype: x.dtype }];
}

function referenceQmatmul(
  [x, w]: readonly HostTensor[],
  attrs: QuantAttrs,
  [out]: readonly { shape: readonly number[] }[],
) {
  const W = dequantizeHost(w, attrs);
  const N = attrs.rows, K = attrs.cols;
  const M = numel(out.shape) / N;
  const res = allocHost(x.dtype, M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) acc += x.data[m * K + k] * W[n * K + k];
      res[m * N + n] = acc;
    }
  }
  return res;
}

/**
 * Rows of activations one invocation owns: all of a decode step's (up to 4),
 * else 8, which measured as the balance between re-reading the weight per row
 * group and registers per invocation on llvmpipe.
 */
function rowsPerInvocation(M: number): number {
  return M <= 4 ? M : 8;
}

function emitQmatmul(ctx: KernelContext<QuantAttrs>): KernelEmission {
  const [x, w] = ctx.inputs;
  const out = ctx.outputs[0];
  const { format, rows: N, cols: K } = ctx.attrs;
  const M = numel(x.shape) / K;
  if (M === 0) return { kernels: [] };
  if (format === "q4_k" && M <= 4 && w.direct) {
    const k = emitQ4kGemv({
      rows: M,
      N,
      K,
      elem: out.dtype === "f16" ? "f16" : "f32",
      aDirect: x.direct,
      cDirect: out.direct,
      maxWorkgroupsPerDim: ctx.caps.maxWorkgroupsPerDim,
      // A CPU rasteriser shares activation loads over many rows; a GPU wants threads.
      // (at least 16 invocations, so small N still spreads over the cores).
      columns: ctx.caps.cpuCores > 0
        ? Math.max(4, Math.min(16, 2 ** Math.floor(Math.log2(N / 16))))
        : 4,
    });
    return { kernels: [k] };
  }
  if (M <= 4 && w.direct && blockGemvFormats(format, K, N)) {
    // The other formats' decode GEMVs, a block at a time in the same style.
    const k = emitBlockGemv({
      format,
      rows: M,
      N,
      K,
      elem: out.dtype === "f16" ? "f16" : "f32",
      aDirect: x.direct,
      cDirect: out.direct,
      maxWorkgroupsPerDim: ctx.caps.maxWorkgroupsPerDim,
      columns: blockGemvColumns(format, M, N, ctx.caps.cpuCores > 0),
    });
    return { kernels: [k] };
  }
  if (ctx.caps.cpuCores === 0 && M > 4) {
    // A GPU: workgroup tiles with the weight tile dequantized into shared memory.
    const k = emitGpuQgemm({
      format,
      M,
      N,
      K,
      elem: out.dtype === "f16" ? "f16" : "f32",
      aDirect: x.direct,
      wDirect: w.direct,
      cDirect: out.direct,
      maxWorkgroupsPerDim: ctx.caps.maxWorkgroupsPerDim,
    });
    return { kernels: [k] };
  }
  const R = rowsPerInvocation(M);
  const C = 4;
  const G = QUANT_GROUP[format];
  const rowBytes = quantRowBytes(format, K);
  const io = new KernelIo();
  const elem = out.dtype === "f16" ? "f16" : "f32";
  const colGroups = Math.ceil(N / C);
  const invocations = colGroups * Math.ceil(M / R);
  const WG = Math.ceil(invocations / 16) < 4 ? 8 : 16;
  const workgroups = grid(Math.ceil(invocations / WG), ctx.caps.maxWorkgroupsPerDim);
  const word = (i: string) => w.direct ? `${io.in(1)}[${i}]` : io.load(1, i);
  const K4 = K / 4;
  const loadA = (r: number) =>
    x.direct
      ? `vec4<f32>(${io.in(0)}[m${r} * ${K4}u + k4])`
      : `vec4<f32>(${
        [0, 1, 2, 3].map((e) => `f32(${io.load(0, `m${r} * ${K}u + k4 * 4u + ${e}u`)})`).join(", ")
      })`;
  const lines: string[] = [];
  const rs = Array.from({ length: R }, (_, r) => r);
  const cs = Array.from({ length: C }, (_, c) => c);
  for (const r of rs) lines.push(`  let m${r} = min(mb + ${r}u, ${M - 1}u);`);
  for (const c of cs) lines.push(`  let rb${c} = min(n0 + ${c}u, ${N - 1}u) * ${rowBytes}u;`);
  for (const r of rs) for (const c of cs) lines.push(`  var acc_${r}_${c} = 0.0;`);
  lines.push(`  for (var g = 0u; g < ${K / G}u; g++) {`);
  for (const r of rs) lines.push(`    var sa${r} = vec4<f32>(0.0);`);
  for (const r of rs) for (const c of cs) lines.push(`    var qa_${r}_${c} = vec4<f32>(0.0);`);
  lines.push(`    for (var i = 0u; i < ${G / 4}u; i++) {`);
  lines.push(`      let k4 = g * ${G / 4}u + i;`);
  for (const c of cs) lines.push(`      let q${c} = q_qc(rb${c}, g, i);`);
  for (const r of rs) {
    lines.push(`      let a${r} = ${loadA(r)};`, `      sa${r} += a${r};`);
    for (const c of cs) lines.push(`      qa_${r}_${c} = fma(a${r}, q${c}, qa_${r}_${c});`);
  }
  lines.push(`    }`);
  for (const c of cs) lines.push(`    let sm${c} = q_qg(rb${c}, g);`);
  for (const r of rs) {
    lines.push(`    let s${r} = dot(sa${r}, vec4<f32>(1.0));`);
    for (const c of cs) {
      lines.push(
        `    acc_${r}_${c} += sm${c}.x * dot(qa_${r}_${c}, vec4<f32>(1.0)) - sm${c}.y * s${r};`,
      );
    }
  }
  lines.push(`  }`);
  for (const r of rs) {
    for (const c of cs) {
      const i = `(mb + ${r}u) * ${N}u + n0 + ${c}u`;
      const v = `${elem}(acc_${r}_${c})`;
      lines.push(
        `  if (mb + ${r}u < ${M}u && n0 + ${c}u < ${N}u) { ${
          out.direct ? `${io.out(0)}[${i}] = ${v};` : `${io.store(0, i, v)};`
        } }`,
      );
    }
  }
  const code = `${quantReaders(format, word, "q", (t) => io.table(t))}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let inv = ${flatIndex(workgroups, WG)};
  if (inv >= ${invocations}u) { return; }
  let n0 = (inv % ${colGroups}u) * ${C}u;
  let mb = (inv / ${colGroups}u) * ${R}u;
${lines.join("\n")}
}`;
  const arrayTypes: Record<string, string> = {};
  if (x.direct) arrayTypes.in0 = `vec4<${elem}>`;
  return {
    kernels: [{
      label: `qmatmul_${format}_r${R}x${C}`,
      code,
      workgroups,
      uses: io.uses,
      arrayTypes,
      choice: {
        algorithm: `qgemv_r${R}x${C}`,
        reason: `${format} weight dequantized per ${G}-element group as it is read`,
      },
    }],
  };
}

/**
 * `qmatmul(x [..., K], w u32[words]) → [..., N]`: `x · Wᵀ` with `W` the
 * `[N, K]` quantized weight of the attributes.
 */
export const qmatmul: OpDef<QuantAttrs> = {
  arity: 2,
  attrNames: ["format", "rows", "cols"],
  infer: inferQmatmul,
  reference: (inputs, attrs, outs) => [referenceQmatmul(inputs, attrs, outs)],
  // A prologue may feed the activations (a norm, say); the weight is read raw.
  lower: { kind: "kernel", prologue: [0], epilogue: true, emit: emitQmatmul },
};
