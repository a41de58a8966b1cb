/**
 * WGSL emission: turns a scheduled group with concrete shapes into kernel source,
 * declaring exactly the bindings the code uses. Elementwise clusters are inlined as
 * straight-line `let`s; broadcasting becomes index arithmetic on constants.
 *
 * @module
 */

import { byteSize, type DType } from "../core/dtype.ts";
import type { Graph } from "../core/graph.ts";
import { numel, stridesOf } from "../core/shape.ts";
import { opDef } from "../ops/registry.ts";
import { WGSL_MATH_PRELUDE } from "../ops/unary.ts";
import { literal } from "../ops/elementwise.ts";
export { grid } from "../ops/dispatch.ts";
import type { Cluster } from "./passes/fuse.ts";

/** What a binding refers to before memory is planned: a value, or a scratch buffer of the group. */
export type BufferRef = { readonly value: number } | { readonly scratch: number };

/** How a kernel binds one range of a value or scratch buffer. */
export interface KernelBinding {
  /** The value or scratch buffer. */
  readonly ref: BufferRef;
  /** Byte offset within it. */
  readonly offset: number;
  /** Byte size (multiple of 4). */
  readonly size: number;
  /** Read-only or read-write storage. */
  readonly access: "read" | "read_write";
}

/** WGSL index expression for reading `from` broadcast to `to` at flat index `i`. */
export function broadcastIndex(to: readonly number[], from: readonly number[], i: string): string {
  const n = numel(from);
  if (n === numel(to) && from.length <= to.length) {
    const pad = [...new Array(to.length - from.length).fill(1), ...from];
    if (pad.every((d, k) => d === to[k])) return i;
  }
  if (n === 1) return "0u";
  const pad = [...new Array(to.length - from.length).fill(1), ...from];
  // Suffix broadcast ([N] against [M, N]): one modulo.
  let lead = 0;
  while (lead < to.length && pad[lead] === 1) lead++;
  if (pad.slice(lead).every((d, k) => d === to[lead + k])) return `(${i} % ${n}u)`;
  const toStrides = stridesOf(to);
  const fromStrides = stridesOf(pad);
  const terms: string[] = [];
  for (let k = 0; k < to.length; k++) {
    if (pad[k] === 1 || to[k] === 1) continue;
    const coord = k === 0 ? `(${i} / ${toStrides[k]}u)` : `((${i} / ${toStrides[k]}u) % ${to[k]}u)`;
    terms.push(fromStrides[k] === 1 ? coord : `${coord} * ${fromStrides[k]}u`);
  }
  return terms.length ? `(${terms.join(" + ")})` : "0u";
}

/** Collects bindings, helper functions and body lines for one kernel. */
export class KernelBuilder {
  readonly bindings: KernelBinding[] = [];
  readonly decls: string[] = [];
  readonly fns = new Map<string, string>();
  usesF16 = false;
  #bound = new Map<string, string>();
  readonly #maxBinding: number;
  readonly #align: number;

  constructor(maxBindingSize: number, offsetAlignment: number) {
    this.#maxBinding = maxBindingSize;
    this.#align = offsetAlignment;
  }

  #type(dtype: DType | string): string {
    if (/\bf16\b/.test(dtype)) this.usesF16 = true;
    return dtype;
  }

  /**
   * Binds `count` elements of `dtype` of `ref` under `name`. Returns an accessor:
   * `direct` when a single binding covers it, else segment loads/stores via functions
   * named `${name}_get` / `${name}_set`.
   */
  bind(
    name: string,
    ref: BufferRef,
    count: number,
    dtype: DType | string,
    access: "read" | "read_write",
    declType?: string,
  ): { direct: boolean; load: (i: string) => string; store: (i: string, v: string) => string } {
    const type = this.#type(dtype);
    const elem = dtype === "f16" ? 2 : 4;
    const bytes = count * elem;
    if (bytes <= this.#maxBinding) {
      this.#declare(name, ref, 0, bytes, declType ? this.#type(declType) : type, access);
      return {
        direct: true,
        load: (i) => `${name}[${i}]`,
        store: (i, v) => `${name}[${i}] = ${v};`,
      };
    }
    // Split into segments that each fit a binding and start on an aligned offset.
    const segElems = Math.floor(Math.floor(this.#maxBinding / this.#align) * this.#align / elem);
    const segs = Math.ceil(count / segElems);
    const loads: string[] = [];
    const stores: string[] = [];
    // A vector element type (vec4 reads of a weight) declares the segments as vector
    // arrays and adds `${name}_vget(i)` indexing whole vectors; segment starts are
    // aligned to 256 bytes, so no vector straddles two segments.
    const lanes = declType && /^vec4</.test(declType) && access === "read" ? 4 : 1;
    const vloads: string[] = [];
    for (let s = 0; s < segs; s++) {
      const start = s * segElems;
      const len = Math.min(segElems, count - start);
      const seg = `${name}_s${s}`;
      const cond = s === segs - 1 ? "" : `if (i < ${start + len}u) `;
      if (lanes === 4) {
        this.#declare(seg, ref, start * elem, len * elem, this.#type(declType!), access);
        loads.push(`  ${cond}{ let q = i - ${start}u; return ${seg}[q / 4u][q % 4u]; }`);
        const vcond = s === segs - 1 ? "" : `if (i < ${(start + len) / 4}u) `;
        vloads.push(`  ${vcond}{ return ${seg}[i - ${start / 4}u]; }`);
      } else {
        this.#declare(seg, ref, start * elem, len * elem, type, access);
        loads.push(`  ${cond}{ return ${seg}[i - ${start}u]; }`);
      }
      stores.push(`  ${cond}{ ${seg}[i - ${start}u] = v; return; }`);
    }
    this.fns.set(`${name}_get`, `fn ${name}_get(i: u32) -> ${type} {\n${loads.join("\n")}\n}`);
    if (lanes === 4) {
      this.fns.set(
        `${name}_vget`,
        `fn ${name}_vget(i: u32) -> ${declType} {\n${vloads.join("\n")}\n}`,
      );
    }
    if (access === "read_write") {
      this.fns.set(`${name}_set`, `fn ${name}_set(i: u32, v: ${type}) {\n${stores.join("\n")}\n}`);
    }
    return {
      direct: false,
      load: (i) => `${name}_get(${i})`,
      store: (i, v) => `${name}_set(${i}, ${v});`,
    };
  }

  #declare(
    name: string,
    ref: BufferRef,
    offset: number,
    bytes: number,
    type: string,
    access: "read" | "read_write",
  ) {
    if (this.#bound.has(name)) return;
    this.#bound.set(name, name);
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    this.bindings.push({ ref, offset, size, access });
    this.decls.push(`var<storage, ${access}> ${name}: array<${type}>;`);
  }

  /** Final WGSL: declarations of used bindings, used helper functions, then `body`. */
  finish(
    body: string,
    extraFns: readonly string[] = [],
  ): { code: string; bindings: KernelBinding[] } {
    // Keep only what the entry point reaches: "auto"-style minimal binding sets keep
    // us under maxStorageBuffersPerShaderStage and avoid binding unused buffers.
    const fnEntries = [...this.fns.entries()];
    let used = body + extraFns.join("\n");
    const keptFns: string[] = [];
    let changed = true;
    const taken = new Set<string>();
    while (changed) {
      changed = false;
      for (const [name, src] of fnEntries) {
        if (taken.has(name) || !new RegExp(`\\b${name}\\b`).test(used)) continue;
        taken.add(name);
        keptFns.push(src);
        used += "\n" + src;
        changed = true;
      }
    }
    const bindings: KernelBinding[] = [];
    const decls: string[] = [];
    this.decls.forEach((d, k) => {
      const name = d.match(/> (\w+):/)![1];
      if (!new RegExp(`\\b${name}\\b`).test(used)) return;
      decls.push(`@group(0) @binding(${bindings.length}) ${d}`);
      bindings.push(this.bindings[k]);
    });
    const all = [...decls, WGSL_MATH_PRELUDE, ...keptFns, ...extraFns, body].join("\n");
    const header = /\bf16\b/.test(all) ? "enable f16;\n" : "";
    return { code: header + all, bindings };
  }
}

/** Concrete shape of each value, looked up by id. */
export type ShapeOf = (value: number) => readonly number[];

/**
 * Emits the straight-line body of a cluster evaluated at flat index `idx`.
 * `leaf(v)` returns an expression loading materialised value `v` at a given index;
 * `given` pre-names values (an epilogue's incoming `v`). Returns the lines and the
 * WGSL name of each value computed.
 */
export function emitCluster(
  graph: Graph,
  cluster: Cluster,
  shapeOf: ShapeOf,
  idx: string,
  leaf: (value: number, index: string) => string,
  given: ReadonlyMap<number, string> = new Map(),
  prefix = "v",
): { lines: string[]; names: Map<number, string> } {
  const names = new Map<number, string>(given);
  const lines: string[] = [];
  const outShape = shapeOf(graph.nodes[cluster.nodes[0]].outputs[0]);
  const inCluster = new Set(cluster.nodes);
  const nameOf = (v: number): string => {
    const known = names.get(v);
    if (known) return known;
    const val = graph.values[v];
    if (inCluster.has(val.node)) throw new Error(`internal: %${v} used before defined`);
    const name = `${prefix}${v}`;
    const scalar = graph.constants.get(v);
    // Scalar constants become literals: no binding, and LLVM can fold them.
    const load = scalar && scalar.length === 1
      ? literal(scalar[0], val.dtype)
      : leaf(v, broadcastIndex(outShape, shapeOf(v), idx));
    lines.push(`  let ${name} = ${load};`);
    names.set(v, name);
    return name;
  };
  for (const n of cluster.nodes) {
    const node = graph.nodes[n];
    const def = opDef(node.op);
    if (def.lower.kind === "view") {
      // The input comes from memory (the fuser guarantees it), read at the remapped index.
      const src = node.inputs[0];
      const out = graph.values[node.outputs[0]];
      const at = def.lower.index(idx, shapeOf(src), shapeOf(out.id), node.attrs);
      const given = names.get(src);
      if (given) throw new Error(`internal: view of an in-register value %${src}`);
      const inner = cluster.nested?.get(n);
      let load: string;
      if (inner) {
        // The view's input is computed here, at the remapped index.
        const sub = emitCluster(
          graph,
          inner,
          shapeOf,
          `(${at})`,
          leaf,
          new Map(),
          `${prefix}n${n}_`,
        );
        lines.push(...sub.lines);
        load = sub.names.get(src)!;
      } else {
        const scalar = graph.constants.get(src);
        load = scalar && scalar.length === 1 ? literal(scalar[0], out.dtype) : leaf(src, at);
      }
      const name = `${prefix}${out.id}`;
      lines.push(`  let ${name}: ${out.dtype} = ${load};`);
      names.set(out.id, name);
      continue;
    }
    if (def.lower.kind !== "elementwise") {
      throw new Error(`internal: ${node.op} is not elementwise`);
    }
    const args = node.inputs.map(nameOf);
    const out = graph.values[node.outputs[0]];
    const expr = def.lower.expr(
      args,
      node.inputs.map((v) => graph.values[v].dtype),
      out.dtype,
      node.attrs,
    );
    const name = `${prefix}${out.id}`;
    lines.push(`  let ${name}: ${out.dtype} = ${expr};`);
    names.set(out.id, name);
  }
  return { lines, names };
}

/** Bytes of `count` elements of `dtype`, rounded up to 4. */
export function paddedBytes(count: number, dtype: DType): number {
  return Math.max(4, Math.ceil((count * byteSize(dtype)) / 4) * 4);
}
