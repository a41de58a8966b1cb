/**
 * Smoke run of lecture experiment 3 (`examples/lecture/moe_vs_dense.ts
 * --quick`): the three models have the parameter counts the comparison rests
 * on (the MoE's active parameters those of the same-active dense model, its
 * total those of the same-total one) and every model learns.
 */

import assert from "node:assert/strict";
import { runQuick } from "./lecture_helpers.ts";

Deno.test("lecture: MoE vs dense — equal active / equal total parameters, every model learns (quick run)", async () => {
  const md = await runQuick("moe_vs_dense");
  const rows = new Map(
    [...md.matchAll(/^\| ([^|]+?) \| ([\d,]+) \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \|/gm)].map((
      [, name, total, active, start, end],
    ) => [name, {
      total: Number(total.replaceAll(",", "")),
      active: Number(active.replaceAll(",", "")),
      start: Number(start),
      end: Number(end),
    }]),
  );
  assert.deepEqual(
    [...rows.keys()],
    ["MoE (E = 8, k = 2)", "dense, same active", "dense, same total"],
    md,
  );
  const moe = rows.get("MoE (E = 8, k = 2)")!;
  const active = rows.get("dense, same active")!, total = rows.get("dense, same total")!;
  // The MoE's router is the only difference: E·d against d weights per layer.
  assert.ok(
    Math.abs(moe.active / active.active - 1) < 0.01,
    `active ${moe.active} vs ${active.active}`,
  );
  assert.ok(Math.abs(moe.total / total.total - 1) < 0.01, `total ${moe.total} vs ${total.total}`);
  assert.ok(moe.active < 0.9 * moe.total, `MoE active ${moe.active} of ${moe.total}`);
  assert.equal(active.active, active.total);
  for (const [name, r] of rows) {
    assert.ok(r.end < r.start, `${name}: held-out loss ${r.start} → ${r.end}`);
    assert.ok(r.start < Math.log(2048) + 0.1, `${name} starts near uniform: ${r.start}`);
  }
});
