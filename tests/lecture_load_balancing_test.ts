/**
 * Lecture experiment 4 (load balancing), quick run: the runs start from the
 * same weights, the load statistics agree with the counts they come from,
 * and the counts obey top-k routing's limits.
 */

import assert from "node:assert/strict";
import { runQuick } from "./lecture_helpers.ts";
import { loadStats } from "../examples/lecture/routing.ts";

/** The rows of the markdown table under `heading`, split into cells. */
function table(md: string, heading: string): string[][] {
  const at = md.indexOf(heading);
  assert.ok(at >= 0, `no "${heading}" in\n${md}`);
  const lines = md.slice(at).split("\n").slice(1);
  const start = lines.findIndex((l) => l.startsWith("|"));
  const rows: string[][] = [];
  for (const l of lines.slice(start + 2)) {
    if (!l.startsWith("|")) break;
    rows.push(l.slice(1, -1).split("|").map((c) => c.trim()));
  }
  return rows;
}

Deno.test("lecture: load balancing (quick run) — runs, load statistics and counts hold together", async () => {
  const md = await runQuick("load_balancing");
  const E = 8, K = 2, pairs = 8 * 64 * K;
  const summary = table(md, "## Summary");
  assert.deepEqual(summary.map((r) => r.slice(0, 3)), [
    ["no router loss", "0", "0"],
    ["aux 0.01", "0.01", "0"],
    ["aux 0.01 + z 1e-3", "0.01", "0.001"],
  ]);
  const counts = table(md, "## Final routed pairs per expert");
  assert.equal(counts.length, 3 * 2, "one row per run and layer");
  for (const [i, row] of counts.entries()) {
    const c = row.slice(2).map(Number);
    assert.equal(c.length, E);
    // Every token sends k pairs to k different experts: an expert takes each token at most once.
    assert.equal(c.reduce((a, b) => a + b), pairs, row.join(" "));
    assert.ok(c.every((v) => Number.isInteger(v) && v >= 0 && v <= pairs / K), row.join(" "));
    // The summary's final CV and max/mean are these counts' (layer l: columns 5 + 3l, 6 + 3l).
    const s = loadStats(c), run = summary[Math.floor(i / 2)], l = Number(row[1]);
    assert.equal(run[5 + 3 * l], s.cv.toFixed(2), `${row[0]} layer ${l} CV`);
    assert.equal(run[6 + 3 * l], s.maxOverMean.toFixed(2), `${row[0]} layer ${l} max/mean`);
    assert.ok(s.cv <= Math.sqrt(E / K - 1) + 1e-9 && s.maxOverMean <= E / K + 1e-9);
  }
  for (const run of summary) {
    const loss = Number(run[3]);
    assert.ok(loss > 0 && loss < 8, `${run[0]}: held-out loss ${run[3]}`);
  }
  // Same seed: before the first update every run routes the fixed batch identically.
  const overTime = table(md, "## CV of the expert load over training");
  assert.equal(overTime[0][0], "0");
  const first = overTime[0].slice(1);
  assert.equal(first.length, 3);
  assert.match(first[0], /^[\d.]+ \/ [\d.]+ \/ [\d.]+$/, "layer 0 CV / layer 1 CV / loss");
  for (const cell of first) assert.equal(cell, first[0], "update 0 is the same model in every run");
});
