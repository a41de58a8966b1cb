/**
 * Inclusive (or exclusive) prefix sum along an axis, forward or reversed.
 *
 * Floats accumulate in f32 (f16 inputs too; the result is rounded once per
 * element on store); i32 and u32 accumulate in their own type and wrap on overflow.
 *
 * Lowering: a tensor is viewed as `[outer, L, inner]` lines along the axis.
 * - Many lines, or short lines: one thread per line walks the axis sequentially.
 * - Few long lines (e.g. `[1, 100000]`): a three-pass chunked scan — (1) one
 *   thread per chunk sums it into a scratch buffer, (2) one workgroup per line
 *   scans the chunk sums (per-thread runs, then a Hillis–Steele scan in workgroup
 *   memory), (3) one thread per chunk rescans it from its carry and stores. No
 *   pass depends on inter-workgroup forward progress, which WebGPU does not give.
 *
 * @module
 */

import { allocHost, type DType, isFloat, roundHost } from "../core/dtype.ts";
import { normAxis } from "../core/shape.ts";
import { flatKernel, flatWorkgroupSize, grid, KernelIo, lit } from "./wgsl/mod.ts";
import type { KernelEmission, OpDef, ScratchSpec } from "./types.ts";
import { splitAt } from "./layout.ts";
import { groupIndex } from "./wgsl/grid.ts";

/**
 * Attributes of `cumsum`.
 *
 * @example
 * ```ts
 * import { type CumsumAttrs, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const attrs: CumsumAttrs = { axis: -1, exclusive: true, reverse: false };
 * g.output("y", g.apply("cumsum", [g.input("x", [8])], attrs)[0]); // x.cumsum(-1, { exclusive: true })
 * ```
 */
export interface CumsumAttrs {
  /** Axis scanned. */
  readonly axis: number;
  /** Exclude the current element. */
  readonly exclusive: boolean;
  /** Scan from the end. */
  readonly reverse: boolean;
  /** Attributes are plain records, so graphs stay serialisable. */
  [k: string]: number | boolean;
}

/** Accumulator type of a dtype. */
function accOf(dtype: DType): "f32" | "i32" | "u32" {
  return isFloat(dtype) ? "f32" : (dtype as "i32" | "u32");
}

/** Lines shorter than this, or more lines than `CHUNKED_MAX_LINES`, use the sequential kernel. */
const CHUNKED_MIN_LENGTH = 1024;
const CHUNKED_MAX_LINES = 2048;
/** Total threads the chunked passes aim for. */
const CHUNKED_TARGET_THREADS = 8192;

/** Prefix sum. */
export const cumsum: OpDef<CumsumAttrs> = {
  arity: 1,
  attrNames: ["axis", "exclusive", "reverse"],
  infer([x], a) {
    normAxis(a.axis, x.shape.length, "cumsum");
    return [{ shape: x.shape, dtype: x.dtype }];
  },
  reference([x], a, [out]) {
    const { outer, d: L, inner } = splitAt(x.shape, normAxis(a.axis, x.shape.length, "cumsum"));
    const res = allocHost(out.dtype, x.data.length);
    const step = isFloat(x.dtype)
      ? (s: number, v: number) => roundHost("f32", s + v)
      : x.dtype === "i32"
      ? (s: number, v: number) => (s + v) | 0
      : (s: number, v: number) => (s + v) >>> 0;
    for (let o = 0; o < outer; o++) {
      for (let n = 0; n < inner; n++) {
        let acc = 0;
        for (let p = 0; p < L; p++) {
          const k = a.reverse ? L - 1 - p : p;
          const idx = (o * L + k) * inner + n;
          if (a.exclusive) {
            res[idx] = acc;
            acc = step(acc, x.data[idx]);
          } else {
            acc = step(acc, x.data[idx]);
            res[idx] = acc;
          }
        }
      }
    }
    return [res];
  },
  lower: {
    kind: "kernel",
    prologue: true,
    epilogue: true,
    emit({ attrs, inputs, caps }): KernelEmission {
      const shape = inputs[0].shape;
      const T = inputs[0].dtype;
      const A = accOf(T);
      const { outer, d: L, inner } = splitAt(shape, normAxis(attrs.axis, shape.length, "cumsum"));
      const lines = outer * inner;
      // Nothing to scan or to write (an empty axis, or no lines).
      if (lines * L === 0) return { kernels: [] };
      // Element of line `line` at logical position `p` (after the reverse flip).
      const lineBase = (line: string) =>
        inner === 1
          ? `${line} * ${L}u`
          : `(${line} / ${inner}u) * ${L * inner}u + ${line} % ${inner}u`;
      const pos = (p: string) => {
        const k = attrs.reverse ? `(${L - 1}u - ${p})` : p;
        return inner === 1 ? k : `${k} * ${inner}u`;
      };
      const zero = lit(0, A);
      const visit = (io: KernelIo, idx: string, store: boolean) =>
        !store
          ? `acc = acc + ${A}(${io.load(0, idx)});`
          : attrs.exclusive
          ? `let j = ${idx};\n    let x = ${A}(${io.load(0, "j")});\n    ${
            io.store(0, "j", `${T}(acc)`)
          };\n    acc = acc + x;`
          : `let j = ${idx};\n    acc = acc + ${A}(${io.load(0, "j")});\n    ${
            io.store(0, "j", `${T}(acc)`)
          };`;

      if (L < CHUNKED_MIN_LENGTH || lines > CHUNKED_MAX_LINES) {
        const io = new KernelIo();
        const body = `  let base = ${lineBase("i")};
  var acc = ${zero};
  for (var p = 0u; p < ${L}u; p = p + 1u) {
    ${visit(io, `base + ${pos("p")}`, true)}
  }`;
        return { kernels: [flatKernel("cumsum", lines, caps, body, "", io)] };
      }

      // Chunked three-pass scan.
      const C = Math.min(4096, Math.max(16, Math.ceil((lines * L) / CHUNKED_TARGET_THREADS)));
      const chunks = Math.ceil(L / C);
      const scratch: ScratchSpec[] = [{ length: lines * chunks, type: A }];
      /** One thread per chunk: sums it (pass 1) or rescans it from its carry (pass 3). */
      const chunkKernel = (label: string, store: boolean) => {
        const io = new KernelIo();
        const sums = io.scratch(0);
        const body = `  let line = i / ${chunks}u;
  let ch = i % ${chunks}u;
  let base = ${lineBase("line")};
  let p0 = ch * ${C}u;
  let p1 = min(p0 + ${C}u, ${L}u);
  var acc = ${store ? `${sums}[i]` : zero};
  for (var p = p0; p < p1; p = p + 1u) {
    ${visit(io, `base + ${pos("p")}`, store)}
  }${store ? "" : `\n  ${sums}[i] = acc;`}`;
        return flatKernel(label, lines * chunks, caps, body, "", io);
      };

      // Enough threads that each scans about 8 chunk sums; a power of two for the tree.
      const cap = Math.min(256, flatWorkgroupSize(caps));
      let wg = 1;
      while (wg * 2 <= cap && wg < Math.ceil(chunks / 8)) wg *= 2;
      const run = Math.ceil(chunks / wg);
      const wgs = grid(lines, caps.maxWorkgroupsPerDim);
      const io = new KernelIo();
      const sums = io.scratch(0);
      // Exclusive scan of each line's chunk sums, in place.
      const carry = `var<workgroup> cumsum_part: array<${A}, ${wg}>;

@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let line = ${groupIndex(wgs)};
  if (line >= ${lines}u) { return; }
  let base = line * ${chunks}u;
  let c0 = min(t * ${run}u, ${chunks}u);
  let c1 = min(c0 + ${run}u, ${chunks}u);
  var total = ${zero};
  for (var c = c0; c < c1; c = c + 1u) { total = total + ${sums}[base + c]; }
  cumsum_part[t] = total;
  for (var s = 1u; s < ${wg}u; s = s * 2u) {
    workgroupBarrier();
    var add = ${zero};
    if (t >= s) { add = cumsum_part[t - s]; }
    workgroupBarrier();
    cumsum_part[t] = cumsum_part[t] + add;
  }
  workgroupBarrier();
  var acc = ${zero};
  if (t > 0u) { acc = cumsum_part[t - 1u]; }
  for (var c = c0; c < c1; c = c + 1u) {
    let v = ${sums}[base + c];
    ${sums}[base + c] = acc;
    acc = acc + v;
  }
}`;
      return {
        kernels: [
          chunkKernel("chunks", false),
          { label: "carry", code: carry, workgroups: wgs, uses: io.uses },
          chunkKernel("fixup", true),
        ],
        scratch,
      };
    },
  },
};
