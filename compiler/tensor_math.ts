/**
 * The elementwise and reduction half of the DSL's tensor handle: unary and
 * binary math, comparisons, `where`, and reductions. {@linkcode Tensor} extends it
 * with the structural ops (matmul, norms, layout, attention helpers).
 *
 * @module
 */

import type { DType } from "../core/dtype.ts";
import { formatShape, type Shape } from "../core/shape.ts";
import { atSite, callSite } from "../core/errors.ts";
import type { OpName } from "../ops/registry.ts";
import type { GraphBuilder } from "./builder.ts";
import type { Tensor, TensorLike } from "./tensor.ts";

/**
 * A value in a graph being built, with its elementwise and reduction methods
 * (the base of {@linkcode Tensor}, which is what every method returns).
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const y = g.input("x", ["T", 8]).mul(2).add(1).silu().sum(-1);
 * ```
 */
export class TensorMath {
  /** The builder that owns this value. */
  readonly builder: GraphBuilder;
  /** Value id in the graph. */
  readonly id: number;
  /** Shape (symbolic dims are strings). */
  readonly shape: Shape;
  /** Element type. */
  readonly dtype: DType;

  /** Internal: made by {@linkcode GraphBuilder}. */
  constructor(builder: GraphBuilder, id: number, shape: Shape, dtype: DType) {
    this.builder = builder;
    this.id = id;
    this.shape = shape;
    this.dtype = dtype;
  }

  /**
   * Rank (number of dimensions).
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.input("x", ["T", 8]).rank; // 2
   * ```
   */
  get rank(): number {
    return this.shape.length;
  }

  /** This value as the full handle every method returns (it is always a Tensor). */
  get #self(): Tensor {
    return this as unknown as Tensor;
  }

  #un(op: OpName): Tensor {
    return this.builder.apply(op, [this.#self], {} as never)[0];
  }
  #bin(op: OpName, other: TensorLike): Tensor {
    return this.builder.apply(
      op,
      [this.#self, this.builder.lift(other, this.dtype)],
      {} as never,
    )[0];
  }

  /**
   * −x.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).neg());
   * ```
   */
  neg(): Tensor {
    return this.#un("neg");
  }
  /**
   * |x|.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).abs());
   * ```
   */
  abs(): Tensor {
    return this.#un("abs");
  }
  /**
   * eˣ.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).exp());
   * ```
   */
  exp(): Tensor {
    return this.#un("exp");
  }
  /**
   * ln x.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).log());
   * ```
   */
  log(): Tensor {
    return this.#un("log");
  }
  /**
   * √x.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).sqrt());
   * ```
   */
  sqrt(): Tensor {
    return this.#un("sqrt");
  }
  /**
   * 1/√x.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).rsqrt());
   * ```
   */
  rsqrt(): Tensor {
    return this.#un("rsqrt");
  }
  /**
   * tanh x.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).tanh());
   * ```
   */
  tanh(): Tensor {
    return this.#un("tanh");
  }
  /**
   * Logistic sigmoid.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).sigmoid());
   * ```
   */
  sigmoid(): Tensor {
    return this.#un("sigmoid");
  }
  /**
   * x·sigmoid(x).
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).silu());
   * ```
   */
  silu(): Tensor {
    return this.#un("silu");
  }
  /**
   * GELU; `approximate: "tanh"` (default) or `"none"` for the erf form.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const x = g.input("x", [4]);
   * g.output("y", x.gelu()); // tanh approximation
   * g.output("y_erf", x.gelu({ approximate: "none" }));
   * ```
   */
  gelu(options: { approximate?: "tanh" | "none" } = {}): Tensor {
    const a = options.approximate ?? "tanh";
    if (a !== "tanh" && a !== "none") {
      throw atSite(
        new TypeError(`gelu: approximate must be "tanh" or "none", got ${JSON.stringify(a)}`),
        callSite(),
      );
    }
    return this.#un(a === "tanh" ? "gelu" : "gelu_erf");
  }
  /**
   * log(1 + eˣ).
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).softplus());
   * ```
   */
  softplus(): Tensor {
    return this.#un("softplus");
  }
  /**
   * max(x, 0).
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).relu());
   * ```
   */
  relu(): Tensor {
    return this.#un("relu");
  }
  /**
   * Converts to `dtype`.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("ids", [4], "u32").cast("f32"));
   * ```
   */
  cast(dtype: DType): Tensor {
    return this.builder.apply("cast", [this.#self], { to: dtype })[0];
  }
  /**
   * x + y (broadcasting).
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).add(g.param("b", [4])));
   * ```
   */
  add(y: TensorLike): Tensor {
    return this.#bin("add", y);
  }
  /**
   * x − y.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).sub(1));
   * ```
   */
  sub(y: TensorLike): Tensor {
    return this.#bin("sub", y);
  }
  /**
   * x · y.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).mul(2));
   * ```
   */
  mul(y: TensorLike): Tensor {
    return this.#bin("mul", y);
  }
  /**
   * x / y.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).div(g.input("d", [4])));
   * ```
   */
  div(y: TensorLike): Tensor {
    return this.#bin("div", y);
  }
  /**
   * xʸ.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).pow(2));
   * ```
   */
  pow(y: TensorLike): Tensor {
    return this.#bin("pow", y);
  }
  /**
   * Elementwise max.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).maximum(0));
   * ```
   */
  maximum(y: TensorLike): Tensor {
    return this.#bin("maximum", y);
  }
  /**
   * Elementwise min.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).minimum(6));
   * ```
   */
  minimum(y: TensorLike): Tensor {
    return this.#bin("minimum", y);
  }
  /**
   * x == y as u32 0/1.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("mask", g.input("x", [4]).equal(0)); // u32 0/1
   * ```
   */
  equal(y: TensorLike): Tensor {
    return this.#bin("equal", y);
  }
  /**
   * x != y as u32 0/1.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("mask", g.input("x", [4]).notEqual(0)); // u32 0/1
   * ```
   */
  notEqual(y: TensorLike): Tensor {
    return this.#bin("not_equal", y);
  }
  /**
   * x < y as u32 0/1.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("mask", g.input("x", [4]).less(0)); // u32 0/1
   * ```
   */
  less(y: TensorLike): Tensor {
    return this.#bin("less", y);
  }
  /**
   * x <= y as u32 0/1.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("mask", g.input("x", [4]).lessEqual(0)); // u32 0/1
   * ```
   */
  lessEqual(y: TensorLike): Tensor {
    return this.#bin("less_equal", y);
  }
  /**
   * x > y as u32 0/1.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("mask", g.input("x", [4]).greater(0)); // u32 0/1
   * ```
   */
  greater(y: TensorLike): Tensor {
    return this.#bin("greater", y);
  }
  /**
   * x >= y as u32 0/1.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("mask", g.input("x", [4]).greaterEqual(0)); // u32 0/1
   * ```
   */
  greaterEqual(y: TensorLike): Tensor {
    return this.#bin("greater_equal", y);
  }
  /**
   * `this` where `cond` is non-zero, else `other`.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const x = g.input("x", [4]);
   * g.output("y", x.where(x.greater(0), 0)); // relu
   * ```
   */
  where(cond: Tensor, other: TensorLike): Tensor {
    return this.builder.apply(
      "where",
      [cond, this.#self, this.builder.lift(other, this.dtype)],
      {},
    )[0];
  }
  #reduce(
    op: "sum" | "mean" | "max" | "min" | "argmax" | "logsumexp",
    axis: number,
    keepdims: boolean,
  ) {
    return this.builder.apply(op, [this.#self], { axis, keepdims })[0];
  }
  /**
   * Σ along `axis` (default last).
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", ["T", 16]).sum(-1)); // f32[T]
   * ```
   */
  sum(axis = -1, keepdims = false): Tensor {
    return this.#reduce("sum", axis, keepdims);
  }
  /**
   * Mean along `axis`.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", ["T", 16]).mean(-1)); // f32[T]
   * ```
   */
  mean(axis = -1, keepdims = false): Tensor {
    return this.#reduce("mean", axis, keepdims);
  }
  /**
   * Max along `axis`.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", ["T", 16]).max(-1)); // f32[T]
   * ```
   */
  max(axis = -1, keepdims = false): Tensor {
    return this.#reduce("max", axis, keepdims);
  }
  /**
   * Min along `axis`.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", ["T", 16]).min(-1)); // f32[T]
   * ```
   */
  min(axis = -1, keepdims = false): Tensor {
    return this.#reduce("min", axis, keepdims);
  }
  /**
   * Index of the max along `axis` (u32, first on ties).
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", ["T", 16]).argmax(-1)); // u32[T]
   * ```
   */
  argmax(axis = -1, keepdims = false): Tensor {
    return this.#reduce("argmax", axis, keepdims);
  }
  /**
   * log Σ exp along `axis`.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", ["T", 16]).logsumexp(-1)); // f32[T]
   * ```
   */
  logsumexp(axis = -1, keepdims = false): Tensor {
    return this.#reduce("logsumexp", axis, keepdims);
  }
  /**
   * Text form for debugging: `f32[T, 8] %3`.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * String(g.input("x", ["T", 8])); // "f32[T, 8] %0"
   * ```
   */
  toString(): string {
    return `${this.dtype}${formatShape(this.shape)} %${this.id}`;
  }
}
