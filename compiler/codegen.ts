/**
 * WGSL emission: turns a scheduled group with concrete shapes into kernel source,
 * declaring exactly the bindings the code uses. Every binding and helper
 * function is registered with what it depends on, and a kernel keeps what its
 * recorded uses reach: nothing is found by scanning text. Elementwise clusters
 * are inlined as straight-line `let`s; broadcasting becomes index arithmetic on
 * constants.
 *
 * @module
 */

import { byteSize, type DType, padBytes } from "../core/dtype.ts";
import type { Graph } from "../core/graph.ts";
import { numel, stridesOf } from "../core/shape.ts";
import { opDef } from "../ops/registry.ts";
import { WGSL_MATH_PRELUDE } from "../ops/unary.ts";
import { segmentElems } from "../ops/wgsl/io.ts";
import { lit } from "../ops/wgsl/literal.ts";
import type { Cluster } from "./passes/fuse.ts";
import type { KernelTableName } from "../core/kernel_tables.ts";

/**
 * What a binding refers to before memory is planned: a value, a scratch buffer
 * of the group, or a constant table (`core/kernel_tables.ts`) by name.
 */
export type BufferRef =
  | { readonly value: number }
  | { readonly scratch: number }
  | { readonly table: KernelTableName };

/** How a kernel binds one range of a value or scratch buffer. */
export interface KernelBinding {
  /** The value or scratch buffer. */
  readonly ref: BufferRef;
  /** Byte offset within it. */
  readonly offset: number;
  /** Byte size (multiple of 4). */
  readonly size: number;
  /** Read-only or read-write storage, or a uniform buffer (constant tables on CPU adapters). */
  readonly access: BindingAccess;
}

/**
 * How a kernel binds a buffer: read-only or read-write storage, or uniform.
 *
 * @example
 * ```ts
 * import type { BindingAccess } from "./codegen.ts";
 * const a: BindingAccess = "uniform";
 * ```
 */
export type BindingAccess = "read" | "read_write" | "uniform";

/** WGSL index expression for reading `from` broadcast to `to` at flat index `i`. */
export function broadcastIndex(to: readonly number[], from: readonly number[], i: string): string {
  const n = numel(from);
  if (n === numel(to) && from.length <= to.length) {
    const pad = [...new Array(to.length - from.length).fill(1), ...from];
    if (pad.every((d, k) => d === to[k])) return i;
  }
  // A single element, or an empty shape (a run-time dim of 0): no `/ 0u` to emit.
  if (n === 1 || n === 0 || numel(to) === 0) return "0u";
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

/** How to read and write one bound operand, and the names the expressions depend on. */
export interface Accessor {
  /** A single binding covers it (raw indexing allowed). */
  readonly direct: boolean;
  /** Expression reading element `i`. */
  load(i: string): string;
  /** Statement writing `v` to element `i`. */
  store(i: string, v: string): string;
  /** Name `load` depends on (the binding, or the segment getter). */
  readonly loadSym: string;
  /** Name `store` depends on. */
  readonly storeSym: string;
}

interface Decl {
  /** WGSL text: a binding declaration (numbered at the end) or a function. */
  readonly text: string;
  /** The binding, for declarations. */
  readonly binding?: KernelBinding;
  /** Names this one refers to. */
  readonly deps: readonly string[];
}

/** Collects bindings and helper functions, each with its dependencies, for one kernel. */
export class KernelBuilder {
  readonly #decls = new Map<string, Decl>();
  readonly #maxBinding: number;
  readonly #align: number;
  #f16 = false;

  constructor(maxBindingSize: number, offsetAlignment: number) {
    this.#maxBinding = maxBindingSize;
    this.#align = offsetAlignment;
  }

  /** The kernel computes in f16 (a value or operand is f16): declare `enable f16`. */
  useF16(on = true): void {
    this.#f16 ||= on;
  }

  /** Registers a helper function `name` whose body refers to `deps`. */
  fn(name: string, text: string, deps: Iterable<string>): void {
    this.#decls.set(name, { text, deps: [...deps] });
  }

  /** Registers `in{j}_load(i)`: `body` (WGSL statements ending in a return) reads element `i`. */
  loadFn(j: number, dtype: DType, body: string, deps: Iterable<string>): void {
    this.fn(`in${j}_load`, `fn in${j}_load(i: u32) -> ${dtype} {\n${body}\n}`, deps);
  }

  /** Registers `out{j}_store(i, v)`: `body` (WGSL statements) writes `v` to element `i`. */
  storeFn(j: number, dtype: DType, body: string, deps: Iterable<string>): void {
    this.fn(`out${j}_store`, `fn out${j}_store(i: u32, v: ${dtype}) {\n${body}\n}`, deps);
  }

  /**
   * Binds constant table `name` (`table_{name}`, `words` u32s) as
   * `array<vec4<u32>, words / 4>`: a uniform buffer when `uniform` (on lavapipe
   * several times faster for run-time-indexed lookups), else read-only storage.
   */
  table(name: KernelTableName, words: number, uniform: boolean): void {
    const sym = `table_${name}`;
    if (this.#decls.has(sym)) return;
    const type = `array<vec4<u32>, ${words / 4}>`;
    this.#decls.set(sym, {
      text: uniform ? `var<uniform> ${sym}: ${type};` : `var<storage, read> ${sym}: ${type};`,
      binding: {
        ref: { table: name },
        offset: 0,
        size: words * 4,
        access: uniform ? "uniform" : "read",
      },
      deps: [],
    });
  }

  /** True when `name` is registered. */
  has(name: string): boolean {
    return this.#decls.has(name);
  }

  /**
   * Binds `count` elements of `dtype` of `ref` under `name`. Returns an accessor:
   * `direct` when a single binding covers it, else segment loads/stores via functions
   * named `${name}_get` / `${name}_set` (and `${name}_vget` for a vec4 `declType`).
   */
  bind(
    name: string,
    ref: BufferRef,
    count: number,
    dtype: DType | string,
    access: "read" | "read_write",
    declType?: string,
  ): Accessor {
    const type = dtype;
    const elem = byteSize(dtype === "f16" ? "f16" : "f32");
    const bytes = count * elem;
    if (bytes <= this.#maxBinding) {
      this.#declare(name, ref, 0, bytes, declType ?? type, access);
      return {
        direct: true,
        load: (i) => `${name}[${i}]`,
        store: (i, v) => `${name}[${i}] = ${v};`,
        loadSym: name,
        storeSym: name,
      };
    }
    // Split into segments that each fit a binding and start on an aligned offset.
    const segElems = segmentElems(this.#maxBinding, this.#align, elem);
    const segs = Math.ceil(count / segElems);
    const loads: string[] = [];
    const stores: string[] = [];
    const names: string[] = [];
    // A vector element type (vec4 reads of a weight) declares the segments as vector
    // arrays and adds `${name}_vget(i)` indexing whole vectors; segment starts are
    // aligned to 256 bytes, so no vector straddles two segments.
    const lanes = declType && /^vec4</.test(declType) && access === "read" ? 4 : 1;
    const vloads: string[] = [];
    for (let s = 0; s < segs; s++) {
      const start = s * segElems;
      const len = Math.min(segElems, count - start);
      const seg = `${name}_s${s}`;
      names.push(seg);
      const cond = s === segs - 1 ? "" : `if (i < ${start + len}u) `;
      if (lanes === 4) {
        this.#declare(seg, ref, start * elem, len * elem, declType!, access);
        loads.push(`  ${cond}{ let q = i - ${start}u; return ${seg}[q / 4u][q % 4u]; }`);
        const vcond = s === segs - 1 ? "" : `if (i < ${(start + len) / 4}u) `;
        vloads.push(`  ${vcond}{ return ${seg}[i - ${start / 4}u]; }`);
      } else {
        this.#declare(seg, ref, start * elem, len * elem, type, access);
        loads.push(`  ${cond}{ return ${seg}[i - ${start}u]; }`);
      }
      stores.push(`  ${cond}{ ${seg}[i - ${start}u] = v; return; }`);
    }
    this.fn(`${name}_get`, `fn ${name}_get(i: u32) -> ${type} {\n${loads.join("\n")}\n}`, names);
    if (lanes === 4) {
      this.fn(
        `${name}_vget`,
        `fn ${name}_vget(i: u32) -> ${declType} {\n${vloads.join("\n")}\n}`,
        names,
      );
    }
    if (access === "read_write") {
      this.fn(
        `${name}_set`,
        `fn ${name}_set(i: u32, v: ${type}) {\n${stores.join("\n")}\n}`,
        names,
      );
    }
    return {
      direct: false,
      load: (i) => `${name}_get(${i})`,
      store: (i, v) => `${name}_set(${i}, ${v});`,
      loadSym: `${name}_get`,
      storeSym: `${name}_set`,
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
    if (this.#decls.has(name)) return;
    if (/\bf16\b/.test(type)) this.#f16 = true;
    const size = padBytes(bytes);
    this.#decls.set(name, {
      text: `var<storage, ${access}> ${name}: array<${type}>;`,
      binding: { ref, offset, size, access },
      deps: [],
    });
  }

  /**
   * Final WGSL: the bindings and helper functions `roots` reach (in registration
   * order), the math prelude, then `body`. Only what the entry point reaches is
   * bound, which keeps kernels under `maxStorageBuffersPerShaderStage`.
   */
  finish(body: string, roots: Iterable<string>): { code: string; bindings: KernelBinding[] } {
    const reached = new Set<string>();
    const visit = (name: string) => {
      if (reached.has(name)) return;
      const d = this.#decls.get(name);
      if (!d) throw new Error(`internal: kernel uses "${name}", which was never bound`);
      reached.add(name);
      d.deps.forEach(visit);
    };
    for (const r of roots) visit(r);
    const bindings: KernelBinding[] = [];
    const decls: string[] = [];
    const fns: string[] = [];
    for (const [name, d] of this.#decls) {
      if (!reached.has(name)) continue;
      if (d.binding) {
        decls.push(`@group(0) @binding(${bindings.length}) ${d.text}`);
        bindings.push(d.binding);
      } else fns.push(d.text);
    }
    const header = this.#f16 ? "enable f16;\n" : "";
    const code = header + [...decls, WGSL_MATH_PRELUDE, ...fns, body].join("\n");
    return { code: canonicalNames(code), bindings };
  }
}

/**
 * Renumbers the names codegen derives from graph value ids (`v41`, `x5`, `y12`,
 * `e7`, `p3_32`, a view's nested `vn43_11`) in order of first appearance, so the same kernel in two layers
 * is the same text and the device compiles one pipeline for both. Every name of
 * these forms is renamed, one to one within its prefix, so no two names merge
 * and no other identifier can be hit (`1e5` has no word boundary before `e`).
 *
 * @example
 * ```ts ignore
 * canonicalNames("let v41 = x5[i]; y12[i] = v41;"); // "let v0 = x0[i]; y0[i] = v0;"
 * ```
 */
export function canonicalNames(code: string): string {
  const names = new Map<string, string>();
  const next = new Map<string, number>();
  // A view's nested cluster names its values `vn<node>_<value>` (nested again:
  // `vn<node>_n<node>_<value>`): both ids vary by layer, so each whole name maps
  // to `vw<k>`, a prefix nothing else uses.
  return code.replace(/\b(v|x|y|e|p\d+_|vn(?:\d+_n)*\d+_)(\d+)\b/g, (name, prefix: string) => {
    let to = names.get(name);
    if (to === undefined) {
      const cls = prefix.startsWith("vn") ? "vw" : prefix;
      const k = next.get(cls) ?? 0;
      next.set(cls, k + 1);
      to = `${cls}${k}`;
      names.set(name, to);
    }
    return to;
  });
}

/** Concrete shape of each value, looked up by id. */
export type ShapeOf = (value: number) => readonly number[];

/**
 * Emits the straight-line body of a cluster evaluated at flat index `idx`.
 * `leaf(v)` returns an expression loading materialised value `v` at a given index;
 * `given` pre-names values (an epilogue's incoming `v`). Returns the lines, the
 * WGSL name of each value computed, and whether any value is f16.
 */
export function emitCluster(
  graph: Graph,
  cluster: Cluster,
  shapeOf: ShapeOf,
  idx: string,
  leaf: (value: number, index: string) => string,
  given: ReadonlyMap<number, string> = new Map(),
  prefix = "v",
): { lines: string[]; names: Map<number, string>; f16: boolean } {
  const names = new Map<number, string>(given);
  const lines: string[] = [];
  let f16 = false;
  const outShape = shapeOf(graph.nodes[cluster.nodes[0]].outputs[0]);
  const inCluster = new Set(cluster.nodes);
  const nameOf = (v: number): string => {
    const known = names.get(v);
    if (known) return known;
    const val = graph.values[v];
    if (inCluster.has(val.node)) throw new Error(`internal: %${v} used before defined`);
    const name = `${prefix}${v}`;
    const scalar = graph.constants.get(v);
    f16 ||= val.dtype === "f16";
    // Scalar constants become literals: no binding, and LLVM can fold them.
    const load = scalar && scalar.length === 1
      ? lit(scalar[0], val.dtype)
      : leaf(v, broadcastIndex(outShape, shapeOf(v), idx));
    lines.push(`  let ${name} = ${load};`);
    names.set(v, name);
    return name;
  };
  for (const n of cluster.nodes) {
    const node = graph.nodes[n];
    const def = opDef(node.op);
    const out = graph.values[node.outputs[0]];
    f16 ||= out.dtype === "f16";
    if (def.lower.kind === "view") {
      // The input comes from memory (the fuser guarantees it), read at the remapped index.
      const src = node.inputs[0];
      const at = def.lower.index(idx, shapeOf(src), shapeOf(out.id), node.attrs);
      // A value computed here (or handed in) exists only at this index; an input
      // another op already loaded is still read from memory at the view's index.
      if (inCluster.has(graph.values[src].node) || given.has(src)) {
        throw new Error(`internal: view of an in-register value %${src}`);
      }
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
        f16 ||= sub.f16;
        load = sub.names.get(src)!;
      } else {
        const scalar = graph.constants.get(src);
        load = scalar && scalar.length === 1 ? lit(scalar[0], out.dtype) : leaf(src, at);
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
  return { lines, names, f16 };
}
