/**
 * The usage texts list what the commands accept: every block format
 * `generate --quantize` / `inspect --quantize` take and every `quantize --type`
 * (the lists grew with the formats once, and the help text did not).
 */

import assert from "node:assert/strict";
import { QUANTIZE_CHOICES } from "../core/quant/formats.ts";
import { QUANTIZE_TYPES } from "../app/cli/quantize.ts";
import { GENERATE_USAGE, INSPECT_USAGE, QUANTIZE_USAGE } from "../app/cli/usage.ts";

/** The words of a usage text, punctuation aside. */
const words = (text: string) => new Set(text.split(/[^a-z0-9_.-]+/i));

Deno.test("usage: generate and inspect name every --quantize format, quantize every --type", () => {
  for (
    const [name, text, wanted] of [
      ["generate", GENERATE_USAGE, QUANTIZE_CHOICES],
      ["quantize", QUANTIZE_USAGE, QUANTIZE_TYPES],
    ] as const
  ) {
    const have = words(text);
    const missing = wanted.filter((f) => !have.has(f));
    assert.deepEqual(missing, [], `${name}'s usage lacks ${missing.join(", ")}`);
  }
  assert.match(INSPECT_USAGE, /--quantize FORMAT/);
  assert.match(INSPECT_USAGE, /FILE\.gguf/);
});
