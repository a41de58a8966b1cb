/**
 * The DSL's tensor handle: {@linkcode TensorMath}'s elementwise math plus the
 * structural ops — matmul, softmax and norms, layout, gather, scans, RoPE,
 * sampling and top-k.
 *
 * @module
 */

import type { Dim } from "../core/shape.ts";
import type { OpAttrMap } from "../ops/registry.ts";
import { TensorMath } from "./tensor_math.ts";

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
export class Tensor extends TensorMath {
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
   * The same values, through which `grad` sends no gradient (PyTorch's `detach`).
   *
   * @example
   * ```ts
   * import { GraphBuilder } from "@kiln/kiln";
   * const g = new GraphBuilder();
   * const x = g.input("x", [4]);
   * g.output("y", x.mul(x.stopGradient())); // dy/dx = x, not 2x
   * ```
   */
  stopGradient(): Tensor {
    return this.builder.apply("stop_gradient", [this], {})[0];
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
   * `ropeFrequencies`) instead of θ's; `rotaryDim` rotates only each head's
   * first values (a partial RoPE: the frequencies are over `rotaryDim`).
   */
  rope(
    pos: Tensor,
    theta = 10000,
    scaling?: { invFreq: ArrayLike<number>; scale?: number },
    rotaryDim?: number,
  ): Tensor {
    const attrs: OpAttrMap["rope"] = !scaling ? { theta } : {
      theta,
      invFreq: Array.from(scaling.invFreq),
      ...(scaling.scale !== undefined && scaling.scale !== 1 ? { scale: scaling.scale } : {}),
    };
    const d = this.shape[this.shape.length - 1];
    const partial = rotaryDim !== undefined && rotaryDim !== d ? { rotaryDim } : {};
    return this.builder.apply("rope", [this, pos], { ...attrs, ...partial })[0];
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
}
