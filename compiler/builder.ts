/**
 * The DSL: a `GraphBuilder` records ops on `Tensor` handles, checking shapes and
 * dtypes at every call so mistakes surface at the line that made them.
 *
 * @module
 */

import { checkDType, type DType } from "../core/dtype.ts";
import { atSite, callSite } from "../core/errors.ts";
import type { Attrs, Graph, Node, Value } from "../core/graph.ts";
import { checkShape, type Dim, formatShape, type Shape } from "../core/shape.ts";
import { type OpAttrMap, type OpName, OPS } from "../ops/registry.ts";
import type { OpDef } from "../ops/types.ts";

/**
 * Options of {@linkcode GraphBuilder.attention}.
 *
 * @example
 * ```ts
 * import { type AttentionOptions, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const opts: AttentionOptions = { causal: true, window: 4096 };
 * const q = g.input("q", ["T", 8, 64]);
 * const kv = g.input("kv", ["T", 2, 64]);
 * g.output("o", g.attention(q, kv, kv, undefined, opts));
 * ```
 */
export interface AttentionOptions {
  /** Multiplier of q·k; default 1/√headDim. */
  scale?: number;
  /** Causal mask (default true). */
  causal?: boolean;
  /** Sliding window: query at position i sees keys j with i − j < window; 0/absent = none. */
  window?: number;
  /** Key-range splits (flash-decoding); 0/absent chooses from the shape. */
  splits?: number;
}

/**
 * A scalar or a tensor, where binary ops accept either.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type TensorLike } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", [4]);
 * const scale: TensorLike = 0.5; // or a Tensor
 * g.output("y", x.mul(scale));
 * ```
 */
export type TensorLike = Tensor | number;

/**
 * Options of `matmul`.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type MatmulOptions } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const linear: MatmulOptions = { transB: true }; // weight stored [out, in]
 * g.output("y", g.input("x", ["T", 16]).matmul(g.param("w", [32, 16]), linear));
 * ```
 */
export interface MatmulOptions {
  /** Use the left operand transposed. */
  transA?: boolean;
  /** Use the right operand transposed (`x.matmul(w, { transB: true })` for [out, in] weights). */
  transB?: boolean;
}

/**
 * A handle to a value in a graph being built. Methods add ops and return new handles.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 8]);
 * const y = x.mul(2).add(1).silu();
 * g.output("y", y);
 * ```
 */
export class Tensor {
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

  #un(op: OpName): Tensor {
    return this.builder.apply(op, [this], {} as never)[0];
  }
  #bin(op: OpName, other: TensorLike): Tensor {
    return this.builder.apply(op, [this, this.builder.lift(other, this.dtype)], {} as never)[0];
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
    return this.builder.apply("cast", [this], { to: dtype })[0];
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
    return this.builder.apply("where", [cond, this, this.builder.lift(other, this.dtype)], {})[0];
  }
  #reduce(
    op: "sum" | "mean" | "max" | "min" | "argmax" | "logsumexp",
    axis: number,
    keepdims: boolean,
  ) {
    return this.builder.apply(op, [this], { axis, keepdims })[0];
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
   * Matrix product `this @ y` over the last two axes, batch axes broadcast.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const x = g.input("x", ["T", 16]);
   * g.output("y", x.matmul(g.param("w", [32, 16]), { transB: true })); // f32[T, 32]
   * ```
   */
  matmul(y: Tensor, options: MatmulOptions = {}): Tensor {
    return this.builder.apply("matmul", [this, y], {
      transA: options.transA ?? false,
      transB: options.transB ?? false,
    })[0];
  }
  /**
   * Softmax along `axis`.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("p", g.input("logits", ["T", 100]).softmax(-1));
   * ```
   */
  softmax(axis = -1): Tensor {
    return this.builder.apply("softmax", [this], { axis })[0];
  }
  /**
   * RMSNorm over the last axis with weight [D].
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const x = g.input("x", ["T", 64]);
   * g.output("y", x.rmsnorm(g.param("norm.weight", [64]), 1e-5));
   * ```
   */
  rmsnorm(weight: Tensor, eps = 1e-6): Tensor {
    return this.builder.apply("rmsnorm", [this, weight], { eps })[0];
  }
  /**
   * LayerNorm over the last axis with weight and bias [D].
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const x = g.input("x", ["T", 64]);
   * g.output("y", x.layernorm(g.param("ln.weight", [64]), g.param("ln.bias", [64])));
   * ```
   */
  layernorm(weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
    return this.builder.apply("layernorm", [this, weight, bias], { eps })[0];
  }
  /**
   * Same elements, new shape; one dim may be -1.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const x = g.input("x", ["T", 512]);
   * g.output("heads", x.reshape(["T", 8, 64]));
   * ```
   */
  reshape(shape: readonly Dim[]): Tensor {
    return this.builder.apply("reshape", [this], { shape: [...shape] })[0];
  }
  /**
   * Permutes axes; default reverses them.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const x = g.input("x", ["T", 8, 64]);
   * g.output("y", x.transpose([1, 0, 2])); // f32[8, T, 64]
   * ```
   */
  transpose(perm?: readonly number[]): Tensor {
    const p = perm ?? this.shape.map((_, i) => this.shape.length - 1 - i);
    return this.builder.apply("transpose", [this], { perm: [...p] })[0];
  }
  /**
   * Keeps `[start, end)` along `axis`.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const x = g.input("x", ["T", 64]);
   * g.output("first_half", x.slice(1, 0, 32));
   * ```
   */
  slice(axis: number, start: number, end: number): Tensor {
    return this.builder.apply("slice", [this], { axis, start, end })[0];
  }
  /**
   * Rows of this table picked by integer `ids` (embedding lookup).
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const table = g.param("embed", [100, 16]);
   * g.output("h", table.gather(g.input("ids", ["T"], "u32"))); // f32[T, 16]
   * ```
   */
  gather(ids: Tensor): Tensor {
    return this.builder.apply("gather", [this, ids], {})[0];
  }
  /**
   * Prefix sum along `axis`.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", ["T"]).cumsum(-1, { exclusive: true }));
   * ```
   */
  cumsum(axis = -1, options: { exclusive?: boolean; reverse?: boolean } = {}): Tensor {
    return this.builder.apply("cumsum", [this], {
      axis,
      exclusive: options.exclusive ?? false,
      reverse: options.reverse ?? false,
    })[0];
  }
  /**
   * This tensor with rows `pos..pos+T−1` replaced by `src` (`pos` is a u32 [1] tensor); in place on states.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const cache = g.state("k_cache", [128, 64]);
   * const pos = g.input("pos", [1], "u32");
   * g.assign(cache, cache.writeRows(g.input("k", ["T", 64]), pos));
   * ```
   */
  writeRows(src: Tensor, pos: Tensor): Tensor {
    return this.builder.apply("write_rows", [this, src, pos], {})[0];
  }
  /**
   * Rotary position embedding, HF half-split convention, on `[T, heads, headDim]`:
   * row t sits at position `pos[0] + t` (`pos` is a u32 [1] tensor, so decode
   * advances it without re-planning).
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const q = g.input("q", ["T", 8, 64]);
   * const pos = g.input("pos", [1], "u32");
   * g.output("q_rot", q.rope(pos, 1e6));
   * ```
   *
   * `scaling` gives RoPE scaling's frequencies and factor on cos/sin (see
   * `ropeFrequencies`) instead of θ's.
   */
  rope(
    pos: Tensor,
    theta = 10000,
    scaling?: { invFreq: ArrayLike<number>; scale?: number },
  ): Tensor {
    const attrs: OpAttrMap["rope"] = !scaling ? { theta } : {
      theta,
      invFreq: Array.from(scaling.invFreq),
      ...(scaling.scale !== undefined && scaling.scale !== 1 ? { scale: scaling.scale } : {}),
    };
    return this.builder.apply("rope", [this, pos], attrs)[0];
  }
  /**
   * One token id per row of these logits [R, V], drawn on the device: greedy when
   * `temperature` is 0, else temperature / top-k / top-p sampling seeded by the u32 [1]
   * tensors `seed` and `step`.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const logits = g.input("logits", [1, 100]);
   * const seed = g.input("seed", [1], "u32");
   * const step = g.input("step", [1], "u32");
   * g.output("id", logits.sample(seed, step, { temperature: 0.8, topK: 40 }));
   * ```
   */
  sample(
    seed: Tensor,
    step: Tensor,
    options: { temperature?: number; topK?: number; topP?: number } = {},
  ): Tensor {
    return this.builder.apply("sample", [this, seed, step], {
      temperature: options.temperature ?? 0,
      topK: options.topK ?? 0,
      topP: options.topP ?? 1,
    })[0];
  }
  /**
   * The `k` largest along the last axis: `[values, indices]`, ties to the lower index.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const [vals, idx] = g.input("scores", ["T", 8]).topk(2);
   * g.output("vals", vals);
   * g.output("idx", idx);
   * ```
   */
  topk(k: number): [Tensor, Tensor] {
    const [v, i] = this.builder.apply("topk", [this], { k });
    return [v, i];
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

/**
 * Records a graph. Declare inputs and parameters, call ops on the tensors, name the
 * outputs, then `build()`.
 *
 * @example
 * ```ts
 * import { GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * const x = g.input("x", ["T", 16]);
 * const w = g.param("w", [32, 16]);
 * g.output("y", x.matmul(w, { transB: true }).silu());
 * const graph = g.build();
 * ```
 */
export class GraphBuilder {
  #nodes: Node[] = [];
  #values: Value[] = [];
  #inputs = new Map<string, number>();
  #params = new Map<string, number>();
  #outputs = new Map<string, number>();
  #states = new Map<string, number>();
  #assigns = new Map<string, number>();
  #constants = new Map<number, ArrayLike<number>>();

  #leaf(
    op: "input" | "param" | "const" | "state",
    shape: Dim[],
    dtype: DType,
    attrs: Attrs,
  ): Tensor {
    const id = this.#values.length;
    const node: Node = {
      id: this.#nodes.length,
      op,
      inputs: [],
      attrs,
      outputs: [id],
      site: callSite(),
    };
    this.#nodes.push(node);
    this.#values.push({ id, node: node.id, index: 0, shape, dtype });
    return new Tensor(this, id, shape, dtype);
  }

  #checkName(name: unknown, kind: string, map: Map<string, number>): string {
    if (typeof name !== "string" || name.length === 0) {
      throw atSite(
        new TypeError(`${kind} name must be a non-empty string, got ${JSON.stringify(name)}`),
        callSite(),
      );
    }
    if (map.has(name)) {
      throw atSite(new TypeError(`${kind} "${name}" is declared twice`), callSite());
    }
    return name;
  }

  /**
   * Declares a run-time input. Symbolic dims (strings) are bound when it runs.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const ids = g.input("ids", ["T"], "u32"); // length bound at run time
   * ```
   */
  input(name: string, shape: readonly Dim[], dtype: DType = "f32"): Tensor {
    this.#checkName(name, "Input", this.#inputs);
    const s = checkShape(shape, `input "${name}"`);
    const t = this.#leaf("input", [...s], checkDType(dtype, `input "${name}"`), { name });
    this.#inputs.set(name, t.id);
    return t;
  }

  /**
   * Declares a named parameter (weight), uploaded once and kept on the device.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const w = g.param("w", [32, 16]); // uploaded with compile(..., { params }) or setParams
   * ```
   */
  param(name: string, shape: readonly Dim[], dtype: DType = "f32"): Tensor {
    this.#checkName(name, "Param", this.#params);
    const s = checkShape(shape, `param "${name}"`);
    if (s.some((d) => typeof d === "string")) {
      throw atSite(
        new TypeError(`Param "${name}" must have a concrete shape, got ${formatShape(s)}`),
        callSite(),
      );
    }
    const t = this.#leaf("param", [...s], checkDType(dtype, `param "${name}"`), { name });
    this.#params.set(name, t.id);
    return t;
  }

  /**
   * Declares persistent device state (a KV cache, an SSM state): it keeps its value
   * between runs, starts at zero, and is updated with {@linkcode GraphBuilder.assign}.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const count = g.state("count", [1]);
   * g.assign(count, count.add(1)); // counts runs
   * g.output("n", count);
   * ```
   */
  state(name: string, shape: readonly Dim[], dtype: DType = "f32"): Tensor {
    this.#checkName(name, "State", this.#states);
    const s = checkShape(shape, `state "${name}"`);
    const t = this.#leaf("state", [...s], checkDType(dtype, `state "${name}"`), { name });
    this.#states.set(name, t.id);
    return t;
  }

  /**
   * At the end of each run, `state` takes `value` (same shape and dtype).
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const total = g.state("total", [4]);
   * const x = g.input("x", [4]);
   * g.assign(total, total.add(x)); // running sum across runs
   * g.output("total", total);
   * ```
   */
  assign(state: Tensor, value: Tensor): void {
    const site = callSite();
    const name = [...this.#states].find(([, id]) => id === state?.id && state.builder === this)
      ?.[0];
    if (name === undefined) {
      throw atSite(
        new TypeError("assign: first argument must be a state tensor of this graph"),
        site,
      );
    }
    if (!(value instanceof Tensor) || value.builder !== this) {
      throw atSite(
        new TypeError(`assign: value for state "${name}" is not a Tensor of this graph`),
        site,
      );
    }
    if (formatShape(value.shape) !== formatShape(state.shape) || value.dtype !== state.dtype) {
      throw atSite(
        new RangeError(
          `assign: state "${name}" is ${state.dtype}${
            formatShape(state.shape)
          } but the value is ${value.dtype}${formatShape(value.shape)}`,
        ),
        site,
      );
    }
    if (this.#assigns.has(name)) {
      throw atSite(new TypeError(`assign: state "${name}" is assigned twice`), site);
    }
    this.#assigns.set(name, value.id);
  }

  /**
   * A constant tensor; a single number makes a scalar of shape `[]`.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const table = g.constant([1, 2, 3, 4, 5, 6], [2, 3]);
   * const half = g.constant(0.5); // scalar, shape []
   * g.output("y", table.mul(half));
   * ```
   */
  constant(
    data: ArrayLike<number> | number,
    shape?: readonly number[],
    dtype: DType = "f32",
  ): Tensor {
    const values = typeof data === "number" ? [data] : Array.from(data);
    const s = checkShape(shape ?? (typeof data === "number" ? [] : [values.length]), "constant");
    const n = (s as number[]).reduce((a, b) => a * b, 1);
    if (n !== values.length) {
      throw atSite(
        new RangeError(
          `Constant has ${values.length} values but shape ${formatShape(s)} holds ${n}`,
        ),
        callSite(),
      );
    }
    const t = this.#leaf("const", [...s], checkDType(dtype, "constant"), {});
    this.#constants.set(t.id, values);
    return t;
  }

  /**
   * Lifts a number to a scalar constant of `dtype`; tensors pass through.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const one = g.lift(1, "f32"); // scalar constant
   * g.output("y", g.input("x", [4]).add(one));
   * ```
   */
  lift(x: TensorLike, dtype: DType): Tensor {
    if (x instanceof Tensor) {
      if (x.builder !== this) {
        throw atSite(new TypeError(`Tensor ${x} belongs to another graph`), callSite());
      }
      return x;
    }
    if (typeof x !== "number") {
      throw atSite(new TypeError(`Expected a Tensor or a number, got ${typeof x}`), callSite());
    }
    return this.constant(x, [], dtype);
  }

  /**
   * Joins tensors along `axis` (all other dims equal).
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const a = g.input("a", [2, 3]);
   * const b = g.input("b", [4, 3]);
   * g.output("ab", g.concat([a, b], 0)); // f32[6, 3]
   * ```
   */
  concat(xs: readonly Tensor[], axis = 0): Tensor {
    return this.apply("concat", [...xs], { axis })[0];
  }

  /**
   * Fused attention (online softmax, no score matrix in memory) of q `[T, Hq, D]`
   * over k, v `[S, Hkv, D]` with grouped-query heads. Query t sits at position
   * `pos[0] + t`, key j at j; keys at or past `pos[0] + T` are ignored (a KV cache of
   * capacity S). `pos` defaults to a constant 0.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const q = g.input("q", ["T", 8, 64]);
   * const k = g.input("k", ["T", 2, 64]);
   * const v = g.input("v", ["T", 2, 64]);
   * g.output("o", g.attention(q, k, v, undefined, { causal: true, window: 4096 }));
   * ```
   */
  attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pos?: Tensor,
    options: AttentionOptions = {},
  ): Tensor {
    const d = q?.shape?.[q.shape.length - 1];
    const p = pos ?? this.constant([0], [1], "u32");
    return this.apply("attention", [q, k, v, p], {
      scale: options.scale ?? (typeof d === "number" && d > 0 ? 1 / Math.sqrt(d) : 1),
      causal: options.causal ?? true,
      window: options.window ?? 0,
      splits: options.splits ?? 0,
    })[0];
  }

  /**
   * Names `t` as a graph output.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).relu());
   * ```
   */
  output(name: string, t: Tensor): void {
    this.#checkName(name, "Output", this.#outputs);
    if (!(t instanceof Tensor) || t.builder !== this) {
      throw atSite(new TypeError(`Output "${name}" must be a Tensor of this graph`), callSite());
    }
    this.#outputs.set(name, t.id);
  }

  /**
   * Applies a registered op: checks arity, attribute names and the shape/dtype rule,
   * and records the node. Errors name the op, operands and the caller's line.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const x = g.input("x", ["T", 16]);
   * const [y] = g.apply("softmax", [x], { axis: -1 }); // same as x.softmax(-1)
   * g.output("y", y);
   * ```
   */
  apply<K extends OpName>(op: K, inputs: readonly Tensor[], attrs: OpAttrMap[K]): Tensor[] {
    const site = callSite();
    const def = (OPS as unknown as Record<string, OpDef<OpAttrMap[K]>>)[op];
    const [lo, hi] = typeof def.arity === "number" ? [def.arity, def.arity] : def.arity;
    if (inputs.length < lo || inputs.length > hi) {
      throw atSite(
        new RangeError(
          `${op}: expects ${lo === hi ? lo : `${lo}..${hi}`} inputs, got ${inputs.length}`,
        ),
        site,
      );
    }
    for (const key of Object.keys(attrs)) {
      if (!def.attrNames.includes(key)) {
        throw atSite(
          new TypeError(
            `${op}: unknown attribute "${key}" (known: ${def.attrNames.join(", ") || "none"})`,
          ),
          site,
        );
      }
    }
    for (const [i, t] of inputs.entries()) {
      if (!(t instanceof Tensor) || t.builder !== this) {
        throw atSite(new TypeError(`${op}: operand ${i} is not a Tensor of this graph`), site);
      }
    }
    let outs;
    try {
      outs = def.infer(inputs.map((t) => this.#values[t.id]), attrs);
    } catch (e) {
      if (e instanceof Error) throw atSite(e, site);
      throw e;
    }
    const node: Node = {
      id: this.#nodes.length,
      op,
      inputs: inputs.map((t) => t.id),
      attrs: attrs as Attrs,
      outputs: outs.map((_, i) => this.#values.length + i),
      site,
    };
    this.#nodes.push(node);
    return outs.map((o, i) => {
      const id = node.outputs[i];
      this.#values.push({ id, node: node.id, index: i, shape: o.shape, dtype: o.dtype });
      return new Tensor(this, id, o.shape, o.dtype);
    });
  }

  /**
   * Freezes the recorded graph. Throws if no output was named.
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * g.output("y", g.input("x", [4]).exp());
   * const graph = g.build();
   * graph.outputs.has("y"); // true
   * ```
   */
  build(): Graph {
    if (this.#outputs.size === 0 && this.#assigns.size === 0) {
      throw atSite(
        new TypeError("Graph has no outputs: name at least one with output()"),
        callSite(),
      );
    }
    return {
      nodes: [...this.#nodes],
      values: [...this.#values],
      inputs: new Map(this.#inputs),
      params: new Map(this.#params),
      outputs: new Map(this.#outputs),
      states: new Map(this.#states),
      assigns: new Map(this.#assigns),
      constants: new Map(this.#constants),
    };
  }
}
