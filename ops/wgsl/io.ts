/**
 * The names a kernel template uses to reach its operands, handed out by a
 * {@linkcode KernelIo} that records each use. The compiler declares exactly the
 * bindings and accessor functions recorded here: nothing is found by scanning
 * the generated text.
 *
 * Vocabulary (j is the operand's position):
 * - `in{j}` / `out{j}`: the raw storage array (only when the operand is `direct`);
 * - `in{j}_load(i)`: element i of input j, through a fused prologue or a split
 *   binding when there is one;
 * - `in{j}_vget(i)`: vec4 i of a segmented input bound with a vec4 array type;
 * - `in{j}_s{s}`: the raw array of segment s of a segmented input (see
 *   {@linkcode segmentElems}), for kernels that pick segments themselves;
 * - `out{j}_store(i, v)`: writes element i, through a fused epilogue if any;
 * - `scratch{j}`: the op's j-th scratch buffer;
 * - `table_{name}`: a constant table of `core/kernel_tables.ts` as `array<vec4<u32>, n>`
 *   (word `i` is `table_{name}[i >> 2u][i & 3u]`), bound read-only.
 *
 * @module
 */

import type { KernelTableName } from "../../core/kernel_tables.ts";

/**
 * One name a kernel uses: a raw array, an accessor function or a scratch buffer.
 *
 * @example
 * ```ts
 * import type { KernelSymbol } from "./io.ts";
 * const s: KernelSymbol = "in0_load";
 * ```
 */
export type KernelSymbol =
  | `in${number}`
  | `in${number}_load`
  | `in${number}_vget`
  | `in${number}_s${number}`
  | `out${number}`
  | `out${number}_store`
  | `scratch${number}`
  | `table_${string}`;

/**
 * Elements per segment when an operand of `elemBytes`-byte elements is larger
 * than one binding: the compiler binds segment s as elements
 * `[s · n, (s + 1) · n)` (the last one shorter), each at most `maxBinding` bytes
 * and starting on an `align`-byte offset.
 *
 * @example
 * ```ts
 * import { segmentElems } from "./io.ts";
 * segmentElems(134217728, 256, 2); // 67108864
 * ```
 */
export function segmentElems(maxBinding: number, align: number, elemBytes: number): number {
  return Math.floor(Math.floor(maxBinding / align) * align / elemBytes);
}

/**
 * Hands out operand names to a kernel template and records which it used.
 *
 * @example
 * ```ts
 * import { KernelIo } from "./io.ts";
 * const io = new KernelIo();
 * const body = `${io.store(0, "i", `${io.load(0, "i")} * 2.0`)};`;
 * io.uses; // ["out0_store", "in0_load"]
 * ```
 */
export class KernelIo {
  readonly #used: KernelSymbol[] = [];

  #use<S extends KernelSymbol>(s: S): S {
    if (!this.#used.includes(s)) this.#used.push(s);
    return s;
  }

  /** Raw storage array of input `j` (`in{j}`); valid when that operand is `direct`. */
  in(j: number): string {
    return this.#use(`in${j}`);
  }

  /** `in{j}_load(i)`: element `i` of input `j`. */
  load(j: number, i: string): string {
    return `${this.#use(`in${j}_load`)}(${i})`;
  }

  /** `in{j}_vget(i)`: vec4 `i` of segmented input `j` (bound with a vec4 array type). */
  vget(j: number, i: string): string {
    return `${this.#use(`in${j}_vget`)}(${i})`;
  }

  /** Raw array of segment `s` of segmented input `j` (`in{j}_s{s}`). */
  segment(j: number, s: number): string {
    return this.#use(`in${j}_s${s}`);
  }

  /** Raw storage array of output `j` (`out{j}`); valid when that operand is `direct`. */
  out(j: number): string {
    return this.#use(`out${j}`);
  }

  /** `out{j}_store(i, v)` (a call, without the semicolon). */
  store(j: number, i: string, v: string): string {
    return `${this.#use(`out${j}_store`)}(${i}, ${v})`;
  }

  /** The op's scratch buffer `j` (`scratch{j}`). */
  scratch(j: number): string {
    return this.#use(`scratch${j}`);
  }

  /**
   * The constant table `name` of `core/kernel_tables.ts` (`table_{name}`), an array of
   * `vec4<u32>`: the compiler binds one buffer per plan that every kernel naming
   * the table shares.
   */
  table(name: KernelTableName): string {
    return this.#use(`table_${name}`);
  }

  /** Marks a name as used that the template spells out itself. */
  use(symbol: KernelSymbol): string {
    return this.#use(symbol);
  }

  /** Every name used so far, in first-use order. */
  get uses(): readonly KernelSymbol[] {
    return [...this.#used];
  }
}
