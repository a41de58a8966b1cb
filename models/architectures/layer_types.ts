/**
 * Per-layer lists of transformers 5's configs that more than one family reads.
 *
 * @module
 */

import { type ConfigReader, show } from "./reader.ts";

/**
 * Which layers have experts by transformers 5's `mlp_layer_types` (`"dense"` /
 * `"sparse"`, one per layer), else by `fallback(i)`, the config class's
 * derivation.
 *
 * @example
 * ```ts
 * import { ConfigReader } from "./reader.ts";
 * import { sparseLayerList } from "./layer_types.ts";
 * const c = new ConfigReader({ mlp_layer_types: ["dense", "sparse"] }, "config.json", "x");
 * sparseLayerList(c, 2, (i) => i > 0); // [false, true]
 * ```
 */
export function sparseLayerList(
  c: ConfigReader,
  layers: number,
  fallback: (i: number) => boolean,
): boolean[] {
  const types = c.strList("mlp_layer_types");
  if (!types) return Array.from({ length: layers }, (_, i) => fallback(i));
  if (types.length !== layers) {
    throw new RangeError(
      `${c.file}: mlp_layer_types has ${types.length} entries, num_hidden_layers is ${layers}`,
    );
  }
  return types.map((t, i) => {
    if (t !== "dense" && t !== "sparse") {
      throw new TypeError(`${c.file}: mlp_layer_types[${i}] ${show(t)} is not "dense" or "sparse"`);
    }
    return t === "sparse";
  });
}
