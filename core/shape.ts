/**
 * Shapes with symbolic dimensions: a dimension is a number or a name such as `"T"`
 * that is bound to a number at run time.
 *
 * @module
 */

/**
 * One dimension: a size, or a symbol bound at run time.
 *
 * @example
 * ```ts
 * import { type Dim, formatShape } from "@kiln/kiln";
 * const dims: Dim[] = ["T", 512];
 * formatShape(dims); // "[T, 512]"
 * ```
 */
export type Dim = number | string;

/**
 * A tensor shape.
 *
 * @example
 * ```ts
 * import { GraphBuilder, type Shape } from "@kiln/kiln";
 * const shape: Shape = ["B", "T", 64];
 * new GraphBuilder().input("x", shape);
 * ```
 */
export type Shape = readonly Dim[];

/**
 * Values for symbolic dimensions, e.g. `{ T: 128 }`.
 *
 * @example
 * ```ts
 * import { compile, cpuDevice, type DimBindings, GraphBuilder } from "@kiln/kiln";
 * const g = new GraphBuilder();
 * g.output("y", g.input("x", ["T", 4]).exp());
 * const dims: DimBindings = { T: 2 };
 * await compile(g.build(), cpuDevice()).run({ x: new Float32Array(8) }, { dims });
 * ```
 */
export type DimBindings = Readonly<Record<string, number>>;

/**
 * Renders a shape the way error messages and dumps show it: `[T, 512]`.
 *
 * @example
 * ```ts
 * import { formatShape } from "@kiln/kiln";
 * formatShape(["T", 4]); // "[T, 4]"
 * ```
 */
export function formatShape(shape: Shape): string {
  return `[${shape.join(", ")}]`;
}

/** Validates a user-supplied shape, throwing a TypeError/RangeError naming `what`. */
export function checkShape(shape: unknown, what: string): Dim[] {
  if (!Array.isArray(shape)) {
    throw new TypeError(`Shape of ${what} must be an array, got ${JSON.stringify(shape)}`);
  }
  for (const d of shape) {
    if (typeof d === "number") {
      if (!Number.isInteger(d) || d < 0) {
        throw new RangeError(
          `Shape of ${what} has invalid dimension ${d}: dimensions are integers >= 0`,
        );
      }
    } else if (typeof d !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(d)) {
      throw new TypeError(
        `Shape of ${what} has invalid dimension ${
          JSON.stringify(d)
        }: use a number or an identifier such as "T"`,
      );
    }
  }
  return shape as Dim[];
}

/** True when every dimension is a number. */
export function isConcrete(shape: Shape): shape is readonly number[] {
  return shape.every((d) => typeof d === "number");
}

/** Element count of a concrete shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides of a concrete shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/**
 * Numpy broadcasting of two shapes; symbolic dims broadcast against 1 and against
 * themselves. Returns `undefined` when the shapes are incompatible.
 */
export function broadcastShapes(a: Shape, b: Shape): Dim[] | undefined {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const da = i < n - a.length ? 1 : a[i - (n - a.length)];
    const db = i < n - b.length ? 1 : b[i - (n - b.length)];
    if (da === db) out[i] = da;
    else if (da === 1) out[i] = db;
    else if (db === 1) out[i] = da;
    else return undefined;
  }
  return out;
}

/** True when two shapes are the same dimension for dimension. */
export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Replaces symbols by their bound sizes; throws a RangeError naming the first
 * unbound symbol and `what` uses it.
 */
export function bindShape(shape: Shape, dims: DimBindings, what: string): number[] {
  return shape.map((d) => {
    if (typeof d === "number") return d;
    const v = dims[d];
    if (v === undefined) {
      throw new RangeError(
        `Symbolic dimension "${d}" of ${what} ${formatShape(shape)} is not bound: pass it in dims`,
      );
    }
    return v;
  });
}

/** Product of dims as a symbolic-aware key: numbers multiply, symbols are kept sorted. */
export function symbolicSize(shape: Shape): string {
  let n = 1;
  const syms: string[] = [];
  for (const d of shape) typeof d === "number" ? (n *= d) : syms.push(d);
  return [String(n), ...syms.sort()].join("*");
}

/** Normalises a possibly negative axis against `rank`, or throws a RangeError naming `what`. */
export function normAxis(axis: number, rank: number, what: string): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    throw new RangeError(`Axis ${axis} is out of range for ${what} of rank ${rank}`);
  }
  return axis < 0 ? axis + rank : axis;
}
