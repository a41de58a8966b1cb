/**
 * Smoke runs of the lecture experiments (`examples/lecture/`) in their
 * `--quick` mode: each finishes, and writes its table and plot.
 */

import assert from "node:assert/strict";
import { runQuick } from "./lecture_helpers.ts";

Deno.test("lecture: three representations agree to f32 precision (quick run writes its table and plot)", async () => {
  const md = await runQuick("three_representations");
  const errors = [
    ...md.matchAll(/\| (zoh|bilinear) \| (recurrent|conv|direct) \| ([\d.e+-]+) \|/g),
  ];
  assert.equal(errors.length, 6, md);
  for (const [, disc, mode, err] of errors) {
    assert.ok(Number(err) < 1e-4, `${disc} ${mode}: ${err} of the output's magnitude`);
  }
});
