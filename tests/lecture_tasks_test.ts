import assert from "node:assert/strict";
import {
  associativeRecallBatch,
  MARKER,
  NOISE,
  scoredAccuracy,
  selectiveCopyBatch,
} from "../examples/lecture/tasks.ts";

Deno.test("selective copying: the data, in order, is the target at the markers", () => {
  const task = { vocab: 10, span: 24, data: 5 };
  const b = selectiveCopyBatch(task, 6, 1);
  assert.equal(b.length, 29);
  const places = new Set<string>();
  for (let r = 0; r < b.batch; r++) {
    const ids: number[] = Array.from(b.ids.slice(r * b.length, (r + 1) * b.length));
    const tg: number[] = Array.from(b.targets.slice(r * b.length, (r + 1) * b.length));
    const data = ids.slice(0, task.span).filter((t) => t !== NOISE);
    assert.equal(data.length, task.data);
    assert.ok(data.every((t) => t >= 2 && t < task.vocab));
    assert.deepEqual(ids.slice(task.span), Array(task.data).fill(MARKER));
    assert.deepEqual(tg.slice(task.span), data);
    assert.ok(tg.slice(0, task.span).every((t) => t === -100));
    places.add(ids.slice(0, task.span).map((t) => (t === NOISE ? 0 : 1)).join(""));
  }
  assert.ok(places.size > 1, "the data moves between examples");
  assert.deepEqual(selectiveCopyBatch(task, 6, 1), b, "seeded");
  assert.throws(() => selectiveCopyBatch({ vocab: 10, span: 3, data: 5 }, 1, 1), RangeError);
});

Deno.test("associative recall: the query's target is the value that followed it", () => {
  const b = associativeRecallBatch({ vocab: 34, pairs: 6 }, 8, 2);
  assert.equal(b.length, 13);
  for (let r = 0; r < b.batch; r++) {
    const ids: number[] = Array.from(b.ids.slice(r * b.length, (r + 1) * b.length));
    const q = ids[12];
    const at = ids.findIndex((t, i) => i % 2 === 0 && i < 12 && t === q);
    assert.ok(at >= 0);
    assert.equal(b.targets[r * b.length + 12], ids[at + 1]);
    assert.equal(new Set(ids.filter((_, i) => i % 2 === 0 && i < 12)).size, 6, "distinct keys");
  }
  assert.equal(scoredAccuracy(b.targets, b.targets), 1);
  assert.throws(() => associativeRecallBatch({ vocab: 10, pairs: 9 }, 1, 1), /pairs/);
});
