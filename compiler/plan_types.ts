/**
 * What a plan is made of: buffer slots, bindings, buffer operations and planned
 * kernels, plus the work items emission hands to memory planning.
 *
 * @module
 */

import type { DType } from "../core/dtype.ts";
import type { DimBindings } from "../core/shape.ts";
import type { Target } from "../ops/targets.ts";
import type { KernelChoice, ScratchSpec } from "../ops/types.ts";
import type { KernelTableName } from "../core/kernel_tables.ts";
import type { BindingAccess, BufferRef } from "./codegen.ts";

export type { BindingAccess } from "./codegen.ts";
export type { KernelTableName } from "../core/kernel_tables.ts";

/**
 * What a buffer slot holds.
 *
 * @example
 * ```ts
 * import type { SlotKind } from "@kiln/kiln";
 * const kind: SlotKind = "temp"; // only temp slots are shared between values
 * ```
 */
export type SlotKind = "input" | "output" | "param" | "const" | "state" | "temp";

/**
 * One device buffer of the plan.
 *
 * @example
 * ```ts ignore
 * import { compile, type Slot, GraphBuilder, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 512]);
 * g.output("y", x.matmul(g.param("w", [1024, 512]), { transB: true }).silu());
 * const plan = compile(g.build(), await requestDevice()).plan({ T: 128 });
 * const temps: Slot[] = plan.slots.filter((s) => s.kind === "temp");
 * ```
 */
export interface Slot {
  /** Size in bytes (multiple of 4). */
  bytes: number;
  /** Role; only `temp` slots are shared between values. */
  readonly kind: SlotKind;
  /** Input/output/param name, where it has one. */
  readonly name?: string;
  /** For `const` slots: the value id whose data fills it. */
  readonly value?: number;
  /** For `const` slots of a kernel's constant table: its name (`core/kernel_tables.ts`). */
  readonly table?: KernelTableName;
}

/**
 * A resolved binding: a range of a slot.
 *
 * @example
 * ```ts ignore
 * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 512]);
 * g.output("y", x.matmul(g.param("w", [1024, 512]), { transB: true }).silu());
 * const plan = compile(g.build(), await requestDevice()).plan({ T: 128 });
 * for (const b of plan.kernels[0].bindings) console.log(b.slot, b.offset, b.size, b.access);
 * ```
 */
export interface SlotBinding {
  /** Slot index. */
  readonly slot: number;
  /** Byte offset. */
  readonly offset: number;
  /** Byte size. */
  readonly size: number;
  /** Access mode: storage read-only or read-write, or uniform (a constant table). */
  readonly access: BindingAccess;
}

/**
 * A buffer operation recorded between dispatches.
 *
 * @example
 * ```ts
 * import type { BufferOp } from "@kiln/kiln";
 * const ops: BufferOp[] = [
 *   { kind: "zero", slot: 3, offset: 0, size: 256 },
 *   { kind: "copy", from: 1, fromOffset: 0, to: 2, toOffset: 0, size: 1024 },
 * ];
 * ```
 */
export type BufferOp =
  | { readonly kind: "zero"; readonly slot: number; readonly offset: number; readonly size: number }
  | {
    readonly kind: "copy";
    readonly from: number;
    readonly fromOffset: number;
    readonly to: number;
    readonly toOffset: number;
    readonly size: number;
  };

/**
 * One dispatch of the plan.
 *
 * @example
 * ```ts ignore
 * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 512]);
 * g.output("y", x.matmul(g.param("w", [1024, 512]), { transB: true }).silu());
 * const plan = compile(g.build(), await requestDevice()).plan({ T: 128 });
 * const k = plan.kernels[0];
 * console.log(k.label, k.workgroups, k.ops); // "matmul+silu" …
 * console.log(k.code); // the WGSL
 * ```
 */
export interface PlannedKernel {
  /** Short name, e.g. `matmul+add+silu`. */
  readonly label: string;
  /** The op whose lowering emitted it, or `"fused"` for a fused elementwise cluster. */
  readonly op: string;
  /** Graph node of that op (of the cluster's first node when fused). */
  readonly node: number;
  /** The node's `name` attribute, where the op carries one (e.g. a MoE layer's prefix). */
  readonly name?: string;
  /** The model part the node was built in (`GraphBuilder.scope`), where it was. */
  readonly scope?: string;
  /** Which step of the op this kernel is (e.g. MoE's `"router"`), where the op says. */
  readonly role?: string;
  /** The algorithm the lowering chose and why, where it chose. */
  readonly choice?: KernelChoice;
  /** The device class its kernel shapes were chosen for. */
  readonly target: Target;
  /** Ops fused into it with their node ids and call sites. */
  readonly ops: readonly string[];
  /** Full WGSL source. */
  readonly code: string;
  /** Workgroups dispatched. */
  readonly workgroups: readonly [number, number, number];
  /** Buffers bound, in binding order. */
  readonly bindings: readonly SlotBinding[];
  /** Buffer operations before this kernel: zeroing scratch, copies for in-place ops. */
  readonly before: readonly BufferOp[];
}

/**
 * Where a named input or output lives and what it looks like.
 *
 * @example
 * ```ts ignore
 * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 512]);
 * g.output("y", x.matmul(g.param("w", [1024, 512]), { transB: true }).silu());
 * const plan = compile(g.build(), await requestDevice()).plan({ T: 128 });
 * const y = plan.outputs.get("y")!;
 * [y.shape, y.dtype]; // [[128, 1024], "f32"]
 * ```
 */
export interface PlannedTensor {
  /** Value id. */
  readonly value: number;
  /** Slot index. */
  readonly slot: number;
  /** Byte offset in the slot. */
  readonly offset: number;
  /** Concrete shape. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
}

/**
 * A compiled, device-specific execution plan for one binding of the symbolic dims.
 *
 * @example
 * ```ts ignore
 * import { compile, GraphBuilder, requestDevice } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 512]);
 * g.output("y", x.matmul(g.param("w", [1024, 512]), { transB: true }).silu());
 * const plan = compile(g.build(), await requestDevice()).plan({ T: 128 });
 * console.log(plan.kernels.length, plan.peakBytes);
 * ```
 */
export interface Plan {
  /** Symbol values this plan was built for. */
  readonly dims: DimBindings;
  /** Dispatches in order. */
  readonly kernels: readonly PlannedKernel[];
  /** Buffers. */
  readonly slots: readonly Slot[];
  /** Named inputs. */
  readonly inputs: ReadonlyMap<string, PlannedTensor>;
  /** Named outputs. */
  readonly outputs: ReadonlyMap<string, PlannedTensor>;
  /** Named params. */
  readonly params: ReadonlyMap<string, PlannedTensor>;
  /** Named persistent states. */
  readonly states: ReadonlyMap<string, PlannedTensor>;
  /** Copies after the last kernel: new state values into their state buffers. */
  readonly after: readonly BufferOp[];
  /** Bytes of all non-param buffers (inputs, outputs, intermediates, constants). */
  readonly peakBytes: number;
  /** Bytes of intermediates if nothing were reused, for comparison. */
  readonly unplannedBytes: number;
  /**
   * Activations kept in f16 buffers (`CompileOptions.activationDtype`): how
   * many values, and their bytes; absent when there are none.
   */
  readonly halfActivations?: { readonly values: number; readonly bytes: number };
}

/** A kernel as emission produced it, before memory planning resolves its bindings. */
export interface Emitted {
  readonly label: string;
  readonly op: string;
  readonly node: number;
  readonly name?: string;
  readonly scope?: string;
  readonly role?: string;
  readonly choice?: KernelChoice;
  readonly target: Target;
  readonly ops: string[];
  readonly code: string;
  readonly workgroups: readonly [number, number, number];
  readonly bindings: readonly {
    ref: BufferRef;
    offset: number;
    size: number;
    access: BindingAccess;
  }[];
}

/** One item of emitted work: kernels, scratch, and what they write. */
export interface Work {
  readonly kernels: Emitted[];
  readonly scratch: readonly ScratchSpec[];
  /** Values written (materialised) by this work item. */
  readonly writes: readonly number[];
  /** For alias items: [output, input]. */
  readonly alias?: readonly [number, number];
  /** In-place pairs [output value, input value] of a kernel op. */
  readonly inplace?: readonly (readonly [number, number])[];
}
