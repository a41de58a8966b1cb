/** `heatmapSvg` (app/plot/svg.ts): cells, colour scale, labels and bad input. */

import assert from "node:assert/strict";
import { heatmapSvg } from "../app/plot/svg.ts";

/** The cells' fills and positions, in drawing order (row by row). */
function cells(svg: string): { x: number; y: number; fill: string; tip: string }[] {
  return [
    ...svg.matchAll(
      /<rect x="([\d.]+)" y="([\d.]+)" width="\d+" height="\d+" fill="([^"]+)"><title>([^<]*)<\/title>/g,
    ),
  ]
    .map((m) => ({ x: Number(m[1]), y: Number(m[2]), fill: m[3], tip: m[4] }));
}

/** Brightness of an `rgb(r,g,b)` fill (0 black … 765 white). */
function brightness(fill: string): number {
  const m = fill.match(/^rgb\((\d+),(\d+),(\d+)\)$/);
  assert.ok(m, fill);
  return Number(m[1]) + Number(m[2]) + Number(m[3]);
}

Deno.test("heatmapSvg: one cell per value, row-major, darker for larger values", () => {
  const svg = heatmapSvg({
    title: "load <a & b>",
    rowLabels: ["layer 0", "layer 1"],
    colLabels: ["e0", "e1", "e2"],
    values: [[0, 0.5, 1], [0.25, NaN, 0.75]],
    xLabel: "expert",
  });
  assert.ok(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"));
  assert.ok(svg.includes("load &lt;a &amp; b&gt;"), "title escaped");
  const c = cells(svg);
  assert.equal(c.length, 6);
  // Columns step right, rows step down.
  assert.ok(c[0].x < c[1].x && c[1].x < c[2].x && c[0].y === c[2].y);
  assert.ok(c[3].y > c[0].y && c[3].x === c[0].x);
  assert.equal(c[4].fill, "#bbb", "NaN is grey");
  assert.ok(c[4].tip.includes("layer 1, e1"));
  // The data's min is white, its max the darkest; brightness falls with the value.
  assert.equal(c[0].fill, "rgb(255,255,255)");
  const order = [0, 3, 1, 5, 2].map((i) => brightness(c[i].fill));
  for (let i = 1; i < order.length; i++) assert.ok(order[i] < order[i - 1], `${order}`);
  // Default cell text: the value to 3 significant digits; labels drawn.
  for (const t of [">0.25<", ">0.75<", ">layer 1<", ">e2<", ">expert<"]) {
    assert.ok(svg.includes(t), t);
  }
});

Deno.test("heatmapSvg: a fixed scale clamps, format sets or removes the cell text", () => {
  const svg = heatmapSvg({
    title: "t",
    rowLabels: ["r"],
    colLabels: ["a", "b"],
    values: [[0.5, 2]],
    min: 0,
    max: 1,
    format: (v) => `${(100 * v).toFixed(0)}%`,
  });
  const c = cells(svg);
  // 0.5 sits mid-scale; 2 is past the max and drawn as the max.
  assert.ok(brightness(c[0].fill) < 765 && brightness(c[0].fill) > brightness(c[1].fill));
  assert.ok(svg.includes(">50%<") && svg.includes(">200%<"));
  const bare = heatmapSvg({
    title: "t",
    rowLabels: ["r"],
    colLabels: ["a"],
    values: [[3]],
    format: null,
  });
  assert.ok(!/fill="(white|#222)">/.test(bare), "no cell text");
  assert.ok(/fill="(white|#222)">50%</.test(svg), "the cell text is drawn in the cell");
});

Deno.test("heatmapSvg: values of the wrong shape are a RangeError naming the chart", () => {
  assert.throws(
    () => heatmapSvg({ title: "mine", rowLabels: ["a", "b"], colLabels: ["x"], values: [[1]] }),
    (e: unknown) => e instanceof RangeError && /"mine".*2 rows of 1/.test(e.message),
  );
  assert.throws(
    () => heatmapSvg({ title: "mine", rowLabels: ["a"], colLabels: ["x", "y"], values: [[1]] }),
    RangeError,
  );
  assert.throws(
    () => heatmapSvg({ title: "none", rowLabels: [], colLabels: [], values: [] }),
    RangeError,
  );
});
