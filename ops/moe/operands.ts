/**
 * How the MoE kernels reach their buffers: the op's layout says which operand
 * (input, output or scratch buffer j) holds each buffer the kernels name, and
 * {@linkcode MoeIo} hands the operand's name out through one
 * {@linkcode KernelIo} per kernel, recording the use (and the vec4 view of a
 * raw array) so the compiler declares exactly those bindings.
 *
 * @module
 */

import type { KernelTableName } from "../../core/kernel_tables.ts";
import type { DeviceCaps, KernelSource } from "../types.ts";
import { KernelIo } from "../wgsl/mod.ts";
import type { MoeRole, MoeScratchBuffer } from "./config.ts";

/**
 * Every buffer the MoE kernels use: the op's inputs (`x`, router weight `wg`
 * or given logits, `bias`, `mask`, slot `table`, expert weights, the experts'
 * biases `b1`, `b3`, `b2`), its outputs
 * (`y`, `logits`, `counts`, the losses `aux`, and with routing `kept` counts)
 * and the intermediates (see {@linkcode MoeScratchBuffer}; `topk_idx` and
 * `topk_w` are outputs when the op reports its routing).
 *
 * @example
 * ```ts
 * import type { MoeBuffer } from "./operands.ts";
 * const b: MoeBuffer = "w1";
 * ```
 */
export type MoeBuffer =
  | "x"
  | "wg"
  | "bias"
  | "mask"
  | "table"
  | "w1"
  | "w3"
  | "w2"
  | "b1"
  | "b3"
  | "b2"
  | "y"
  | "logits"
  | "counts"
  | "aux"
  | "kept"
  | MoeScratchBuffer;

/**
 * One operand of the op: input j (`in{j}`), output j (`out{j}`) or scratch
 * buffer j (`scratch{j}`).
 *
 * @example
 * ```ts
 * import type { MoeOperand } from "./operands.ts";
 * const x: MoeOperand = { kind: "in", j: 0 };
 * ```
 */
export interface MoeOperand {
  /** Which list of the op's operands. */
  readonly kind: "in" | "out" | "scratch";
  /** Position in that list. */
  readonly j: number;
  /**
   * How a kernel reads an input that is not one raw array (an expert weight
   * larger than one binding, bound in segments): `"vget"` through `in{j}_vget`
   * (vec4 reads) or `in{j}_load` (scalar reads), which pick the segment.
   * Absent: the raw array.
   */
  readonly via?: "vget";
  /** With `via: "vget"`: elements per binding segment (segment s starts at s · segElems). */
  readonly segElems?: number;
}

/**
 * The expert slabs one launch of a split kernel covers, `[from, to)`, and the
 * elements of one slab of each weight: the launch binds only the segments
 * holding those slabs, and tiles of other slabs leave at once.
 *
 * @example
 * ```ts
 * import type { SlabRange } from "./operands.ts";
 * const r: SlabRange = { from: 0, to: 4 };
 * ```
 */
export interface SlabRange {
  /** First slab. */
  readonly from: number;
  /** One past the last slab. */
  readonly to: number;
}

/**
 * Where each buffer the kernels use lives among the op's operands; a buffer
 * the layer lacks (no mask, no slot table) is absent.
 *
 * @example
 * ```ts
 * import type { MoeLayout } from "./operands.ts";
 * const layout: MoeLayout = { x: { kind: "in", j: 0 }, y: { kind: "out", j: 0 } };
 * ```
 */
export type MoeLayout = { readonly [B in MoeBuffer]?: MoeOperand };

/**
 * Everything an emitter needs besides the layer's config.
 *
 * @example
 * ```ts ignore
 * import type { MoeEmitContext } from "./operands.ts";
 * const ctx: MoeEmitContext = { layout, caps, yDirect: true, logitsIn: false, auxCounts: false };
 * ```
 */
export interface MoeEmitContext {
  /** Where each buffer lives. */
  readonly layout: MoeLayout;
  /** Device limits (grids are split by `maxWorkgroupsPerDim`). */
  readonly caps: DeviceCaps;
  /**
   * `y` may be indexed as a raw array (vec4 stores); false when a fused
   * epilogue or a split binding makes every store go through `out{j}_store`.
   */
  readonly yDirect: boolean;
  /**
   * Expert → slot indirection: when set (the number of slots S), `w1`, `w3`,
   * `w2` hold S expert slabs and expert e's weights are slab `table[e]`. A slot
   * ≥ S (`MOE_NONE`: the expert is on another device) makes the expert
   * contribute exactly 0: the decode GEMVs skip its pairs and its prefill tiles
   * write zero rows. Unset: slab e is expert e.
   */
  readonly slotTable?: number;
  /** `wg` holds given router logits `[T, E]`: the router only does softmax / top-k. */
  readonly logitsIn: boolean;
  /**
   * The aux kernel also writes the routed pairs per expert (all tokens, mask
   * ignored) to `counts` (and `kept`): paths without a sort kernel still report
   * counts.
   */
  readonly auxCounts: boolean;
}

/**
 * The operand names of one kernel, by MoE buffer, recorded through one
 * {@linkcode KernelIo}; {@linkcode MoeIo.kernel} turns the code into a
 * `KernelSource` carrying those uses and the vec4 views asked for.
 *
 * @example
 * ```ts
 * import { MoeIo } from "./operands.ts";
 * const io = new MoeIo({ x: { kind: "in", j: 0 }, y: { kind: "out", j: 0 } });
 * const code = `${io.arr("y")}[0] = ${io.vec("x", "f32", 4)}[0].x;`;
 * io.kernel("copy", "combine", code, [1, 1, 1]).uses; // ["out0", "in0"]
 * ```
 */
export class MoeIo {
  readonly #io = new KernelIo();
  readonly #layout: MoeLayout;
  readonly #types: Record<string, string> = {};
  readonly #fns: string[] = [];

  /** Names for the buffers of `layout`. */
  constructor(layout: MoeLayout) {
    this.#layout = layout;
  }

  /** True when the layer has buffer `b`. */
  has(b: MoeBuffer): boolean {
    return this.#layout[b] !== undefined;
  }

  #at(b: MoeBuffer): MoeOperand {
    const at = this.#layout[b];
    if (!at) throw new Error(`internal: the MoE layout has no buffer "${b}"`);
    return at;
  }

  /**
   * Whether buffer `b` is one whole binding read as a raw array (no segment
   * accessors), so it may be viewed with another element type.
   *
   * @example
   * ```ts
   * import { MoeIo } from "./operands.ts";
   * new MoeIo({ w1: { kind: "in", j: 2 } }).whole("w1"); // true
   * ```
   */
  whole(b: MoeBuffer): boolean {
    return this.#at(b).via === undefined;
  }

  /** The raw array holding buffer `b` (scalar elements). */
  arr(b: MoeBuffer): string {
    const { kind, j } = this.#at(b);
    return kind === "in" ? this.#io.in(j) : kind === "out" ? this.#io.out(j) : this.#io.scratch(j);
  }

  /**
   * The raw array holding buffer `b`, seen as `vec4<elem>` when `lanes` is 4
   * (the same bytes, four elements an index); scalar when 1.
   */
  vec(b: MoeBuffer, elem: "f32" | "f16" | "u32", lanes: number): string {
    const name = this.arr(b);
    if (lanes === 4) this.#types[name] = `vec4<${elem}>`;
    return name;
  }

  /**
   * A reader of weight buffer `b` as `lanes`-wide `elem` values: given a WGSL
   * vec index it returns the expression of that vector (scalar when `lanes` is
   * 1). A raw array when the buffer is one binding; through the segment-picking
   * accessors (`in{j}_vget`, `in{j}_load`) when it is bound in segments.
   *
   * @example
   * ```ts
   * import { MoeIo } from "./operands.ts";
   * const io = new MoeIo({ w1: { kind: "in", j: 2, via: "vget" } });
   * io.weight("w1", "f16", 4)("k"); // "in2_vget(k)"
   * ```
   */
  weight(
    b: MoeBuffer,
    elem: "f32" | "f16" | "u32",
    lanes: number,
    slabs?: SlabRange & { readonly slabElems: number },
  ): (i: string) => string {
    const at = this.#at(b);
    if (slabs !== undefined && at.via === "vget" && at.kind === "in" && at.segElems) {
      return this.#segmentReader(b, at.j, at.segElems, elem, lanes, slabs);
    }
    if (at.via === undefined) {
      const name = this.vec(b, elem, lanes);
      return (i) => `${name}[${i}]`;
    }
    if (at.kind !== "in") throw new Error(`internal: MoE buffer "${b}" is not an input`);
    const j = at.j;
    if (lanes === 4) {
      this.#types[`in${j}`] = `vec4<${elem}>`;
      return (i) => this.#io.vget(j, i);
    }
    return (i) => this.#io.load(j, i);
  }

  /**
   * A helper `moe_<b>_seg(i)` reading vector i of weight `b` from only the
   * segments that hold slabs `[from, to)`, named one by one (`in{j}_s{s}`).
   */
  #segmentReader(
    b: MoeBuffer,
    j: number,
    segElems: number,
    elem: "f32" | "f16" | "u32",
    lanes: number,
    r: SlabRange & { readonly slabElems: number },
  ): (i: string) => string {
    const first = Math.floor((r.from * r.slabElems) / segElems);
    const last = Math.floor((r.to * r.slabElems - 1) / segElems);
    const type = lanes === 4 ? `vec4<${elem}>` : elem;
    if (lanes === 4) this.#types[`in${j}`] = type;
    const per = segElems / lanes;
    const lines: string[] = [];
    for (let s = first; s <= last; s++) {
      const seg = this.#io.segment(j, s);
      const cond = s === last ? "" : `if (i < ${(s + 1) * per}u) `;
      lines.push(`  ${cond}{ return ${seg}[i - ${s * per}u]; }`);
    }
    const name = `moe_${b}_seg`;
    this.#fns.push(`fn ${name}(i: u32) -> ${type} {\n${lines.join("\n")}\n}`);
    return (i) => `${name}(${i})`;
  }

  /** The constant table `name` (`KernelIo.table`): a lattice weight's codebook. */
  table(name: KernelTableName): string {
    return this.#io.table(name);
  }

  /** Adds helper functions (a quantized weight's readers) to the kernel's code. */
  helper(code: string): void {
    if (!this.#fns.includes(code)) this.#fns.push(code);
  }

  /** `out{j}_store(i, v)` of output buffer `b` (a call, without the semicolon). */
  store(b: MoeBuffer, i: string, v: string): string {
    const { kind, j } = this.#at(b);
    if (kind !== "out") throw new Error(`internal: MoE buffer "${b}" is not an output`);
    return this.#io.store(j, i, v);
  }

  /** The kernel: its code with the uses recorded so far and the vec4 views asked for. */
  kernel(
    label: string,
    role: MoeRole,
    code: string,
    workgroups: readonly [number, number, number],
  ): KernelSource {
    const full = this.#fns.length ? `${code}\n${this.#fns.join("\n")}\n` : code;
    const arrayTypes = { ...this.#types };
    return { label, role, code: full, workgroups, arrayTypes, uses: this.#io.uses };
  }
}
