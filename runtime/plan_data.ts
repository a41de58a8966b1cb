/**
 * Plans as plain data: what an ahead-of-time module embeds, so it can run
 * without the planner. Maps become entry lists and each distinct WGSL text is
 * stored once (plans for several dims share most of their kernels).
 *
 * @module
 */

import type { DType } from "../core/dtype.ts";
import type { DeviceCaps } from "../core/types.ts";
import type { BufferOp, Plan, PlannedKernel, PlannedTensor, Slot } from "../compiler/plan_types.ts";
import type { GraphInterface } from "./bind.ts";

/**
 * A kernel of a {@linkcode PlanData}: a planned kernel whose WGSL is an index
 * into {@linkcode PrebuiltData.shaders}.
 *
 * @example
 * ```ts
 * import type { KernelData } from "@kiln/kiln/runtime";
 * const k: Pick<KernelData, "shader" | "workgroups"> = { shader: 0, workgroups: [4, 1, 1] };
 * ```
 */
export interface KernelData extends Omit<PlannedKernel, "code"> {
  /** Index of its WGSL text in the module's shader table. */
  readonly shader: number;
}

/**
 * One plan as JSON-safe data.
 *
 * @example
 * ```ts
 * import type { PlanData } from "@kiln/kiln/runtime";
 * const dimsOf = (p: PlanData) => p.dims; // e.g. { T: 64 }
 * ```
 */
export interface PlanData {
  /** Symbol values the plan was built for. */
  readonly dims: Readonly<Record<string, number>>;
  /** Dispatches in order. */
  readonly kernels: readonly KernelData[];
  /** Buffers. */
  readonly slots: readonly Slot[];
  /** Named inputs. */
  readonly inputs: readonly (readonly [string, PlannedTensor])[];
  /** Named outputs. */
  readonly outputs: readonly (readonly [string, PlannedTensor])[];
  /** Named params. */
  readonly params: readonly (readonly [string, PlannedTensor])[];
  /** Named states. */
  readonly states: readonly (readonly [string, PlannedTensor])[];
  /** Copies after the last kernel. */
  readonly after: readonly BufferOp[];
  /** Bytes of all non-param buffers. */
  readonly peakBytes: number;
  /** Bytes of intermediates if nothing were reused. */
  readonly unplannedBytes: number;
  /** Activations kept in f16 buffers, when there are any. */
  readonly halfActivations?: { readonly values: number; readonly bytes: number };
}

/**
 * The data of one constant a plan's `const` slot is filled from.
 *
 * @example
 * ```ts
 * import type { ConstantData } from "@kiln/kiln/runtime";
 * const c: ConstantData = { value: 3, dtype: "f32", data: [0.5, 0.25] };
 * ```
 */
export interface ConstantData {
  /** Value id the plans' const slots name. */
  readonly value: number;
  /** Element type. */
  readonly dtype: DType;
  /** Elements. */
  readonly data: readonly number[];
}

/**
 * Everything a prebuilt module runs from: the graph's interface, one plan per
 * prebuilt binding of its symbolic dims, their WGSL and constants, and the
 * limits of the device they were planned for.
 *
 * @example
 * ```ts
 * import type { PrebuiltData } from "@kiln/kiln/runtime";
 * const prebuiltDims = (d: PrebuiltData) => d.plans.map((p) => p.dims);
 * ```
 */
export interface PrebuiltData {
  /** Format version (1). */
  readonly format: 1;
  /** The module's name. */
  readonly name: string;
  /** Inputs, outputs, params, states and symbols. */
  readonly interface: GraphInterface;
  /** Distinct WGSL texts. */
  readonly shaders: readonly string[];
  /** One plan per prebuilt binding of the symbols. */
  readonly plans: readonly PlanData[];
  /** Constants the plans' const slots are filled from. */
  readonly constants: readonly ConstantData[];
  /** Limits and features of the device the plans were made for. */
  readonly caps: DeviceCaps;
}

/**
 * Turns a plan into data, adding its WGSL texts to `shaders` (deduplicated).
 *
 * @example
 * ```ts ignore
 * import { planToData } from "@kiln/kiln/runtime";
 * const shaders: string[] = [];
 * const data = planToData(exe.plan({ T: 64 }), shaders);
 * ```
 */
export function planToData(plan: Plan, shaders: string[]): PlanData {
  const index = new Map(shaders.map((code, i) => [code, i]));
  const shaderOf = (code: string) => {
    let i = index.get(code);
    if (i === undefined) {
      i = shaders.push(code) - 1;
      index.set(code, i);
    }
    return i;
  };
  return {
    dims: { ...plan.dims },
    kernels: plan.kernels.map(({ code, ...k }) => ({ ...k, shader: shaderOf(code) })),
    slots: plan.slots.map((s) => ({ ...s })),
    inputs: [...plan.inputs],
    outputs: [...plan.outputs],
    params: [...plan.params],
    states: [...plan.states],
    after: plan.after,
    peakBytes: plan.peakBytes,
    unplannedBytes: plan.unplannedBytes,
    ...(plan.halfActivations ? { halfActivations: plan.halfActivations } : {}),
  };
}

/**
 * The plan that `data` describes, with its WGSL from `shaders`.
 *
 * @example
 * ```ts ignore
 * import { planFromData } from "@kiln/kiln/runtime";
 * const plan = planFromData(prebuilt.plans[0], prebuilt.shaders);
 * ```
 */
export function planFromData(data: PlanData, shaders: readonly string[]): Plan {
  return {
    dims: data.dims,
    kernels: data.kernels.map(({ shader, ...k }) => {
      const code = shaders[shader];
      if (code === undefined) {
        throw new RangeError(`Prebuilt kernel ${k.label} names shader ${shader}, which is missing`);
      }
      return { ...k, code };
    }),
    // Slots are copied: a plan's slot sizes are its own.
    slots: data.slots.map((s) => ({ ...s })),
    inputs: new Map(data.inputs),
    outputs: new Map(data.outputs),
    params: new Map(data.params),
    states: new Map(data.states),
    after: data.after,
    peakBytes: data.peakBytes,
    unplannedBytes: data.unplannedBytes,
    ...(data.halfActivations ? { halfActivations: data.halfActivations } : {}),
  };
}
