/**
 * The contract every op fulfils: a shape/dtype rule, a CPU reference and a WGSL
 * lowering, declared together in one place.
 *
 * @module
 */

import type { DType, HostArray } from "../core/dtype.ts";
import type { AttrValue, TensorType } from "../core/graph.ts";
import type { ConcreteType, DeviceCaps, HostTensor } from "../core/types.ts";
import type { KernelSymbol } from "./wgsl/io.ts";

export type { ConcreteType, DeviceCaps, HostTensor, KernelSymbol };

/** One operand of a kernel as a lowering sees it. */
export interface KernelOperand extends ConcreteType {
  /**
   * True when the raw storage array (`in{j}` / `out{j}`) may be indexed directly;
   * false when a fused prologue/epilogue or a split binding requires the
   * `in{j}_load(i)` / `out{j}_store(i, v)` functions.
   */
  readonly direct: boolean;
  /**
   * True when the operand has no prologue but exceeds one binding: it is bound in
   * segments, read through `in{j}_load(i)` — or, when the kernel asks for a vec4
   * `arrayTypes` entry, through `in{j}_vget(i)` returning whole vectors.
   */
  readonly segmented?: boolean;
  /**
   * False when nothing reads this output (not a graph output, no consumer): a
   * lowering may skip the work that only produces it. Undefined means used.
   */
  readonly used?: boolean;
}

/** Everything a kernel lowering gets: concrete operands, attributes, device caps. */
export interface KernelContext<A> {
  /** Attributes of the node. */
  readonly attrs: A;
  /** Inputs, in the node's order. */
  readonly inputs: readonly KernelOperand[];
  /** Outputs, in the node's order. */
  readonly outputs: readonly KernelOperand[];
  /** Device limits and features. */
  readonly caps: DeviceCaps;
}

/**
 * Why a lowering picked one of several algorithms for a kernel (the selective
 * scan's one pass or chunks, say): structured, so tools read it without parsing
 * labels.
 *
 * @example
 * ```ts
 * import type { KernelChoice } from "@kiln/kiln";
 * const c: KernelChoice = { algorithm: "chunked", reason: "a GPU: chunks fill the machine" };
 * ```
 */
export interface KernelChoice {
  /** The algorithm taken. */
  readonly algorithm: string;
  /** Why, in a phrase a user can read. */
  readonly reason: string;
}

/**
 * One WGSL kernel. `code` holds helper functions and a single
 * `@compute ... fn main(...)` entry point but no binding declarations: it refers to
 * its operands through the names a {@linkcode KernelIo} handed out (`in{j}`,
 * `in{j}_load(i)`, `out{j}`, `out{j}_store(i, v)`, `scratch{j}`), and the compiler
 * declares exactly the names `uses` records.
 */
export interface KernelSource {
  /** Short name for plans and profiles. */
  readonly label: string;
  /** WGSL source without bindings. */
  readonly code: string;
  /** Dispatch size. */
  readonly workgroups: readonly [number, number, number];
  /**
   * Element types for raw arrays that differ from the operand dtype, e.g.
   * `{ in2: "vec4<f32>" }` to read a weight four floats at a time. Only valid for
   * operands that are `direct`; the byte size stays that of the operand.
   */
  readonly arrayTypes?: Readonly<Record<string, string>>;
  /**
   * The operand names the code uses, as recorded by a {@linkcode KernelIo}: the
   * compiler binds exactly these.
   */
  readonly uses: readonly KernelSymbol[];
  /** Which step of the op this kernel is (e.g. MoE's `"router"`), for tools and schedulers. */
  readonly role?: string;
  /** The algorithm chosen and why, where the lowering chose between several. */
  readonly choice?: KernelChoice;
  /** The code computes in f16 although no operand is f16 (`enable f16;` is then declared). */
  readonly f16?: boolean;
}

/** A scratch buffer a multi-kernel lowering needs while it runs. */
export interface ScratchSpec {
  /** Size in elements. */
  readonly length: number;
  /** WGSL element type (`atomic<u32>` for counters). */
  readonly type: "f32" | "f16" | "u32" | "i32" | "atomic<u32>" | "atomic<i32>";
  /** Zero-filled before the op's first kernel runs. */
  readonly zero?: boolean;
}

/** What a kernel lowering emits. */
export interface KernelEmission {
  /** Kernels to run in order. */
  readonly kernels: readonly KernelSource[];
  /** Scratch buffers, named `scratch{j}` in kernel code. */
  readonly scratch?: readonly ScratchSpec[];
}

/** Lowering of an elementwise op: a WGSL expression the fuser inlines. */
export interface ElementwiseLowering<A> {
  /** Discriminant. */
  readonly kind: "elementwise";
  /**
   * WGSL expression of the result. `args` are expressions already of the input
   * dtypes (after broadcasting); the result must have dtype `out`.
   */
  expr(args: readonly string[], inputs: readonly DType[], out: DType, attrs: A): string;
}

/** Lowering of an op to one or more hand-written kernel templates. */
export interface KernelLowering<A> {
  /** Discriminant. */
  readonly kind: "kernel";
  /** Inputs that may take a fused elementwise prologue (by index), or all/none. */
  readonly prologue: boolean | readonly number[];
  /** Whether elementwise consumers of output 0 may be fused as its epilogue. */
  readonly epilogue: boolean;
  /**
   * In-place pairs `[output, input]`: the output starts as a copy of the input and
   * the kernels read and write it through `out{o}` only (never binding `in{i}`).
   * The planner lets the output take over the input's buffer when nothing reads the
   * input afterwards (a KV-cache append then writes only the new rows), and copies
   * the input first otherwise.
   */
  readonly inplace?: readonly (readonly [number, number])[];
  /**
   * Emits the kernels for concrete operands: the portable kernels (shaped for
   * CPU rasterisers, correct everywhere). Device classes with kernels of their
   * own override this per target (`ops/targets.ts`).
   */
  emit: KernelEmitter<A>;
}

/**
 * Emits the kernels of one op for concrete operands.
 *
 * @example
 * ```ts ignore
 * const emit: KernelEmitter<NoAttrs> = (ctx) => ({ kernels: [] });
 * ```
 */
export type KernelEmitter<A> = (ctx: KernelContext<A>) => KernelEmission;

/**
 * Lowering of an index-remapping op (slice, transpose): no kernel of its own. The
 * fuser places it in an elementwise cluster, which then reads the op's input at the
 * remapped index — so a slice feeding a matmul or a norm costs nothing but index
 * arithmetic in that kernel's loads.
 */
export interface ViewLowering<A> {
  /** Discriminant. */
  readonly kind: "view";
  /** WGSL expression of the input's flat index for the output's flat index `i`. */
  index(i: string, input: readonly number[], output: readonly number[], attrs: A): string;
}

/** Lowering of a view op whose output shares its input's buffer (reshape). */
export interface AliasLowering {
  /** Discriminant. */
  readonly kind: "alias";
}

/** Any lowering. */
export type Lowering<A> =
  | ElementwiseLowering<A>
  | KernelLowering<A>
  | AliasLowering
  | ViewLowering<A>;

/** The full declaration of an op. All three parts are required by the type. */
export interface OpDef<A> {
  /** Number of inputs, or `[min, max]`. */
  readonly arity: number | readonly [number, number];
  /** Attribute names the op accepts (unknown ones are rejected at build time). */
  readonly attrNames: readonly string[];
  /**
   * Checks attributes and input types, returns output types. Throws a TypeError or
   * RangeError whose message names the offending operand or attribute.
   */
  infer(inputs: readonly TensorType[], attrs: A): TensorType[];
  /** CPU reference on concrete host tensors; the oracle for every GPU test. */
  reference(inputs: readonly HostTensor[], attrs: A, outputs: readonly ConcreteType[]): HostArray[];
  /** WGSL lowering. */
  readonly lower: Lowering<A>;
  /** Constant folding allowed (false for ops whose output must not be precomputed). */
  readonly foldable?: boolean;
  /**
   * Fraction of input `inputIndex`'s elements one token touches, for parameter
   * accounting (`countParams`): a routed MoE reads only `k / E` of its stacked
   * expert weights per token. Absent means 1 (every element is used).
   */
  activeFraction?(attrs: A, inputIndex: number): number;
}

/** Attribute record type used by ops. */
export type OpAttrs = Readonly<Record<string, AttrValue>>;
