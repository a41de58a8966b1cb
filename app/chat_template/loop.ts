/**
 * Jinja's `loop` variable inside a `for` body.
 *
 * @module
 */

import { pyEq, PyFunction, Undefined } from "./values.ts";

/**
 * `loop` for one loop over `items`: `index`, `index0`, `revindex`,
 * `revindex0`, `first`, `last`, `length`, `previtem`, `nextitem`, `cycle(…)`,
 * `depth`; `index0` advances as the loop runs.
 *
 * @example
 * ```ts
 * import { LoopContext } from "./loop.ts";
 * const loop = new LoopContext(["a", "b"]);
 * loop.index0 = 1;
 * loop.get("last"); // true
 * ```
 */
export class LoopContext {
  /** The items looped over. */
  readonly items: readonly unknown[];
  /** How many. */
  readonly length: number;
  /** The current position. */
  index0 = 0;
  /** Nesting of a recursive loop: 0 at the top. */
  readonly depth0: number;
  /** A recursive loop's `loop(items)`: the body rendered over `items` one level down. */
  readonly recurse?: (items: unknown) => string;
  #changed: unknown[] | undefined;
  /** A loop over `items` (`depth0` deep in a recursive loop that `recurse` continues). */
  constructor(items: readonly unknown[], depth0 = 0, recurse?: (items: unknown) => string) {
    this.items = items;
    this.length = items.length;
    this.depth0 = depth0;
    this.recurse = recurse;
  }
  /** Attribute `name` of `loop`. */
  get(name: string): unknown {
    const i = this.index0, n = this.length;
    switch (name) {
      case "index":
        return i + 1;
      case "index0":
        return i;
      case "revindex":
        return n - i;
      case "revindex0":
        return n - i - 1;
      case "first":
        return i === 0;
      case "last":
        return i === n - 1;
      case "length":
        return n;
      case "depth":
        return this.depth0 + 1;
      case "depth0":
        return this.depth0;
      case "changed":
        return new PyFunction("changed", (args) => {
          if (this.#changed !== undefined && pyEq(this.#changed, args)) return false;
          this.#changed = args;
          return true;
        });
      case "previtem":
        return i > 0 ? this.items[i - 1] : new Undefined("there is no previous item");
      case "nextitem":
        return i < n - 1 ? this.items[i + 1] : new Undefined("there is no next item");
      case "cycle":
        return new PyFunction("cycle", (args) => {
          if (args.length === 0) throw new TypeError("no items for cycling given");
          return args[i % args.length];
        });
    }
    return new Undefined(`'LoopContext object' has no attribute '${name}'`);
  }
}
