/**
 * Float64 complex arithmetic on `[re, im]` pairs for the S4 gradient references.
 *
 * @module
 */

/**
 * A complex number as `[re, im]`.
 *
 * @example
 * ```ts ignore
 * const i: Complex = [0, 1];
 * ```
 */
export type Complex = [number, number];

/**
 * a·b.
 *
 * @example
 * ```ts ignore
 * cmul([0, 1], [0, 1]); // [-1, 0]
 * ```
 */
export function cmul(a: Complex, b: Complex): Complex {
  return [a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0]];
}

/**
 * a / b.
 *
 * @example
 * ```ts ignore
 * cdiv([1, 0], [0, 1]); // [0, -1]
 * ```
 */
export function cdiv(a: Complex, b: Complex): Complex {
  const d = b[0] * b[0] + b[1] * b[1];
  return [(a[0] * b[0] + a[1] * b[1]) / d, (a[1] * b[0] - a[0] * b[1]) / d];
}

/**
 * The conjugate of a.
 *
 * @example
 * ```ts ignore
 * cconj([1, 2]); // [1, -2]
 * ```
 */
export function cconj(a: Complex): Complex {
  return [a[0], -a[1]];
}

/**
 * s·a for real s.
 *
 * @example
 * ```ts ignore
 * cscale(2, [1, 2]); // [2, 4]
 * ```
 */
export function cscale(s: number, a: Complex): Complex {
  return [s * a[0], s * a[1]];
}

/**
 * a + b.
 *
 * @example
 * ```ts ignore
 * cadd([1, 2], [3, 4]); // [4, 6]
 * ```
 */
export function cadd(a: Complex, b: Complex): Complex {
  return [a[0] + b[0], a[1] + b[1]];
}
