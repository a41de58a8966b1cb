import assert from "node:assert/strict";
import { lineChartSvg, panelsSvg } from "../app/plot/svg.ts";

function polylines(svg: string): number[][][] {
  return [...svg.matchAll(/<polyline[^>]* points="([^"]+)"/g)].map((m) =>
    m[1].split(" ").map((p) => p.split(",").map(Number))
  );
}

Deno.test("lineChartSvg: points land on the plot area in order, both series share the axes", () => {
  const svg = lineChartSvg({
    title: "loss <train & eval>",
    xLabel: "step",
    yLabel: "nats",
    series: [
      { label: "train", points: [[0, 4], [10, 2], [20, 1]] },
      { label: "eval", points: [[0, 4.5], [20, NaN], [20, 1.5]] },
    ],
  });
  assert.ok(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"));
  assert.ok(svg.includes("loss &lt;train &amp; eval&gt;"), "title escaped");
  const [train, evalLine] = polylines(svg);
  assert.equal(train.length, 3);
  assert.equal(evalLine.length, 2, "the NaN point is skipped");
  // x spans the plot's left to right edge; higher loss is drawn higher (smaller y).
  assert.equal(train[0][0], 70);
  assert.equal(train[2][0], 700);
  assert.ok(train[0][1] < train[1][1] && train[1][1] < train[2][1]);
  // Equal x steps are equal pixel steps.
  assert.ok(Math.abs((train[1][0] - train[0][0]) - (train[2][0] - train[1][0])) < 0.2);
  // eval's 4.5 is above train's 4 on the shared y axis.
  assert.ok(evalLine[0][1] < train[0][1]);
});

Deno.test("lineChartSvg: log axes place decades evenly and drop non-positive values", () => {
  const svg = lineChartSvg({
    title: "t",
    xLabel: "x",
    yLabel: "y",
    logX: true,
    logY: true,
    series: [{ label: "s", points: [[1, 1], [10, 10], [100, 100], [0, 5], [1000, -1]] }],
  });
  const [line] = polylines(svg);
  assert.equal(line.length, 3);
  assert.ok(Math.abs((line[1][0] - line[0][0]) - (line[2][0] - line[1][0])) < 0.2);
  assert.ok(Math.abs((line[0][1] - line[1][1]) - (line[1][1] - line[2][1])) < 0.2);
});

Deno.test("lineChartSvg: nothing to plot is a RangeError naming the chart", () => {
  assert.throws(
    () =>
      lineChartSvg({
        title: "empty",
        xLabel: "x",
        yLabel: "y",
        series: [{ label: "a", points: [] }],
      }),
    /"empty" has no finite point/,
  );
});

Deno.test("panelsSvg: plots on a grid of the largest cell, each nested at its cell; a non-SVG is a TypeError", () => {
  const box = (w: number, h: number) =>
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}"><rect/></svg>`;
  const one = panelsSvg([box(100, 50), box(80, 70), box(90, 40)], 2);
  assert.match(one, /^<svg [^>]*width="200" height="140"/);
  const nested = [...one.matchAll(/<svg x="(\d+)" y="(\d+)"/g)].map((m) => [+m[1], +m[2]]);
  assert.deepEqual(nested, [[0, 0], [100, 0], [0, 70]]);
  assert.throws(() => panelsSvg(["<div/>"]), TypeError);
});
