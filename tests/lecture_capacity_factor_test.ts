/**
 * Smoke run of lecture experiment 5 (`examples/lecture/capacity_factor.ts
 * --quick`): the capacities are Switch's ⌊cf·N/E⌋, a factor below 1 drops at
 * least 1 − cf of the tokens (the slots cannot hold more), the dropless run
 * drops none and more capacity drops fewer.
 */

import assert from "node:assert/strict";
import { runQuick } from "./lecture_helpers.ts";

Deno.test("lecture: capacity factor — Switch capacities, forced drops below 1, none dropless (quick run)", async () => {
  const md = await runQuick("capacity_factor");
  const N = Number(md.match(/capacity \(tokens per expert, of (\d+)\)/)?.[1]);
  assert.ok(N > 0, md);
  const E = 8;
  const rows = [
    ...md.matchAll(
      /^\| ([\d.]+|dropless) \| (\d+|—) \| ([\d.]+)% \| [^|]+ \| ([\d.]+) \| ([\d.]+) \|/gm,
    ),
  ].map(([, cf, cap, dropped, , loss]) => ({
    cf: cf === "dropless" ? undefined : Number(cf),
    cap: cap === "—" ? undefined : Number(cap),
    dropped: Number(dropped) / 100,
    loss: Number(loss),
  }));
  assert.deepEqual(rows.map((r) => r.cf), [0.5, 0.75, 1, 1.25, 1.5, 2, undefined], md);
  for (const r of rows) {
    assert.ok(Number.isFinite(r.loss) && r.loss > 0, `cf ${r.cf}: loss ${r.loss}`);
    if (r.cf === undefined) {
      assert.equal(r.cap, undefined);
      assert.equal(r.dropped, 0, "dropless drops nothing");
      continue;
    }
    assert.equal(r.cap, Math.min(N, Math.floor(r.cf * N / E)), `capacity at cf ${r.cf}`);
    // E experts × capacity slots hold at most cf·N of the N tokens.
    if (r.cf < 1) {
      assert.ok(r.dropped >= 1 - r.cf - 1e-3, `cf ${r.cf}: only ${r.dropped} dropped`);
    }
  }
  assert.ok(
    rows[5].dropped < rows[0].dropped,
    `cf 2 drops ${rows[5].dropped}, cf 0.5 ${rows[0].dropped}`,
  );
});
