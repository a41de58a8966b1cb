/**
 * A graph builder whose parameters are device states: a training step reads
 * each weight, computes its new value and assigns it back, so weights (and the
 * optimizer's moments, also states) stay on the device between steps and one
 * step needs no readback. Model code keeps calling `g.param(...)`: the same
 * layer builders make the inference and the training graphs.
 *
 * @module
 */

import { atSite, callSite } from "../../core/errors.ts";
import type { DType } from "../../core/dtype.ts";
import { type Dim, formatShape } from "../../core/shape.ts";
import { GraphBuilder, type Tensor } from "../builder.ts";

/**
 * Records a graph in which every `param` is a persistent state of the same
 * name (zero until written with `Executable.writeState`), listed in
 * {@linkcode TrainableBuilder.trainables}. Declaring a parameter again with the
 * same shape and dtype returns the same tensor, so a layer builder can be
 * applied to each sequence of a batch with shared weights; a different shape
 * is a TypeError naming it.
 *
 * @example
 * ```ts
 * import { TrainableBuilder } from "@kiln/kiln";
 * const g = new TrainableBuilder();
 * const w = g.param("w", [4]);
 * const loss = g.input("x", [4]).mul(w).sum(0);
 * const [dw] = g.grad(loss, [w]);
 * g.assign(w, w.sub(dw.mul(0.1))); // one SGD step, on the device
 * [...g.trainables.keys()]; // ["w"]
 * ```
 */
export class TrainableBuilder extends GraphBuilder {
  readonly #trainables = new Map<string, Tensor>();

  /** The parameters declared so far, by name, in declaration order. */
  get trainables(): ReadonlyMap<string, Tensor> {
    return this.#trainables;
  }

  /**
   * Declares a parameter as a state named `name` (or returns the one already
   * declared with this shape and dtype).
   *
   * @example
   * ```ts
   * import { TrainableBuilder } from "@kiln/kiln";
   * const g = new TrainableBuilder();
   * const a = g.param("w", [2, 3]);
   * g.param("w", [2, 3]) === a; // true: shared
   * ```
   */
  override param(name: string, shape: readonly Dim[], dtype: DType = "f32"): Tensor {
    const old = this.#trainables.get(name);
    if (old !== undefined) {
      if (formatShape(old.shape) !== formatShape(shape) || old.dtype !== dtype) {
        throw atSite(
          new TypeError(
            `Param "${name}" is declared as ${old.dtype}${
              formatShape(old.shape)
            } and again as ${dtype}${formatShape(shape)}`,
          ),
          callSite(),
        );
      }
      return old;
    }
    if (shape.some((d) => typeof d === "string")) {
      throw atSite(
        new TypeError(`Param "${name}" must have a concrete shape, got ${formatShape(shape)}`),
        callSite(),
      );
    }
    const t = this.state(name, shape, dtype);
    this.#trainables.set(name, t);
    return t;
  }
}
