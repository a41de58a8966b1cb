/**
 * ggml's `make_qp_quants`: a weighted least-squares fit of non-negative codes
 * to non-negative values, shared by the K-quants' importance-weighted scale
 * fits (`./importance.ts`) and the IQ2 encoders' first guess (`./iq2_encode.ts`).
 *
 * @module
 */

import { GROUP_MAX_EPS, nearestInt } from "./scalar.ts";

const f = Math.fround;
const TENTH = f(0.1);

/**
 * `make_qp_quants` (ggml since 2025, which treats a largest value below 1e-15
 * as zero and an empty fit as scale 0): non-negative codes `0..nmax` of the `n`
 * values `x` (sub-block scales or mins) into `Lo`, weighted by `qw`; returns
 * the scale. `Lo` is a uint8 array as in C: a negative first guess wraps.
 *
 * @example
 * ```ts
 * import { makeQpQuants } from "./qp_fit.ts";
 * const codes = new Uint8Array(4);
 * makeQpQuants(4, 15, new Float32Array([1, 2, 3, 4]), codes, new Float32Array(4).fill(1));
 * codes[3]; // 15
 * ```
 */
export function makeQpQuants(
  n: number,
  nmax: number,
  x: Float32Array,
  Lo: Uint8Array,
  qw: Float32Array,
) {
  let max = 0;
  for (let i = 0; i < n; i++) max = x[i] > max ? x[i] : max;
  if (max < GROUP_MAX_EPS) {
    Lo.fill(0, 0, n);
    return 0;
  }
  let iscale = f(nmax / max);
  for (let i = 0; i < n; i++) Lo[i] = nearestInt(f(iscale * x[i]));
  const scale = f(1 / iscale);
  let bestMse = 0;
  for (let i = 0; i < n; i++) {
    const diff = f(x[i] - f(scale * Lo[i]));
    bestMse = f(bestMse + f(f(qw[i] * diff) * diff));
  }
  for (let is = -4; is <= 4; is++) {
    if (is === 0) continue;
    const iscaleIs = f(f(f(TENTH * is) + nmax) / max);
    const scaleIs = f(1 / iscaleIs);
    let mse = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.min(nmax, nearestInt(f(iscaleIs * x[i])));
      const diff = f(x[i] - f(scaleIs * l));
      mse = f(mse + f(f(qw[i] * diff) * diff));
    }
    if (mse < bestMse) {
      bestMse = mse;
      iscale = iscaleIs;
    }
  }
  let sumlx = 0, suml2 = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.min(nmax, nearestInt(f(iscale * x[i])));
    Lo[i] = l;
    sumlx = f(sumlx + f(f(qw[i] * x[i]) * l));
    suml2 = f(suml2 + f(f(qw[i] * l) * l));
  }
  for (let itry = 0; itry < 5; itry++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const w = qw[i], li = Lo[i];
      let slx = f(sumlx - f(f(w * x[i]) * li));
      let sl2 = f(suml2 - f(f(w * li) * li));
      if (slx > 0 && sl2 > 0) {
        const nl = Math.min(nmax, nearestInt(f(f(x[i] * sl2) / slx)));
        if (nl !== li) {
          slx = f(slx + f(f(w * x[i]) * nl));
          sl2 = f(sl2 + f(f(w * nl) * nl));
          if (f(f(slx * slx) * suml2) > f(f(sumlx * sumlx) * sl2)) {
            Lo[i] = nl;
            sumlx = slx;
            suml2 = sl2;
            changed++;
          }
        }
      }
    }
    if (!changed) break;
  }
  return suml2 > 0 ? f(sumlx / suml2) : 0;
}
