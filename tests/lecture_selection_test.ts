/**
 * Smoke run of lecture experiment 1 (`examples/lecture/selection.ts --quick`):
 * every (task, model) pair is trained and scored, and training lowers the
 * selective model's loss. The full claim (Mamba > 95%, S4D not) needs the
 * full-size run; `docs/lecture/selection.md` holds its result.
 */

import assert from "node:assert/strict";
import { runQuick } from "./lecture_helpers.ts";

Deno.test("lecture: selection — quick run trains Mamba, S4D and attention on both tasks", async () => {
  const md = await runQuick("selection");
  const rows = [
    ...md.matchAll(
      /^\| (copying|recall) \| (mamba|s4d|attention) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|/gm,
    ),
  ];
  assert.equal(rows.length, 6, md);
  const pairs = new Set(rows.map((r) => `${r[1]} ${r[2]}`));
  assert.equal(pairs.size, 6, `one row per (task, model): ${[...pairs]}`);
  const counts = new Map<string, number[]>();
  for (const [, task, model, params, , acc, best, first, last] of rows) {
    for (const a of [acc, best]) {
      const x = Number(a);
      assert.ok(x >= 0 && x <= 1, `${task} ${model}: accuracy ${a} outside [0, 1]`);
    }
    assert.ok(Number(best) >= Number(acc), `${task} ${model}: best ${best} < final ${acc}`);
    assert.ok(Number(first) > 0 && Number(last) > 0, `${task} ${model}: losses ${first}, ${last}`);
    if (model === "mamba") {
      assert.ok(
        Number(last) < Number(first),
        `${task} mamba: loss ${first} → ${last} did not fall`,
      );
    }
    counts.set(task, [...counts.get(task) ?? [], Number(params)]);
  }
  // "Models of the same size": parameter counts within 15% of each other per task.
  for (const [task, c] of counts) {
    assert.ok(Math.max(...c) / Math.min(...c) < 1.15, `${task}: parameter counts ${c}`);
  }
});
