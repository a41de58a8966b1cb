/**
 * Line charts as standalone SVG text (no dependencies, opens in any browser):
 * loss curves of training runs and the lecture's experiment plots.
 *
 * @module
 */

/**
 * One line of a chart.
 *
 * @example
 * ```ts
 * import type { Series } from "@kiln/kiln";
 * const s: Series = { label: "train", points: [[0, 5.5], [100, 3.2]] };
 * ```
 */
export interface Series {
  /** Legend text. */
  readonly label: string;
  /** `[x, y]` points, in x order; non-finite values are skipped. */
  readonly points: readonly (readonly [number, number])[];
  /** CSS colour (default: a palette colour by position). */
  readonly color?: string;
  /** Draw markers at the points instead of only a line. */
  readonly markers?: boolean;
}

/**
 * Options of {@linkcode lineChartSvg}.
 *
 * @example
 * ```ts
 * import type { LineChartOptions } from "@kiln/kiln";
 * const o: LineChartOptions = { title: "loss", xLabel: "step", yLabel: "nats", series: [] };
 * ```
 */
export interface LineChartOptions {
  /** Chart title. */
  readonly title: string;
  /** X axis label. */
  readonly xLabel: string;
  /** Y axis label. */
  readonly yLabel: string;
  /** Lines drawn. */
  readonly series: readonly Series[];
  /** Logarithmic x or y axis (positive values only; others are skipped). */
  readonly logX?: boolean;
  /** Logarithmic y axis. */
  readonly logY?: boolean;
  /** Width and height in pixels (default 720 × 420). */
  readonly width?: number;
  /** Height in pixels. */
  readonly height?: number;
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"];

/**
 * Escapes text for an XML attribute or element.
 *
 * @example
 * ```ts
 * import { escapeXml } from "./svg.ts";
 * escapeXml("a < b"); // "a &lt; b"
 * ```
 */
export function escapeXml(s: string): string {
  return s.replace(
    /[<>&"]/g,
    (ch) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[ch]!,
  );
}

/** About five round tick values covering [lo, hi]. */
function ticks(lo: number, hi: number): number[] {
  if (hi <= lo) return [lo];
  const raw = (hi - lo) / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

function label(v: number): string {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(0);
  return Number(v.toPrecision(4)).toString();
}

/**
 * A line chart as SVG text: axes with round ticks, one polyline per series,
 * a legend. Throws a RangeError when no series has a plottable point.
 *
 * @example
 * ```ts
 * import { lineChartSvg } from "@kiln/kiln";
 * const svg = lineChartSvg({
 *   title: "training loss", xLabel: "step", yLabel: "nats",
 *   series: [{ label: "train", points: [[0, 5.5], [50, 3.1], [100, 2.4]] }],
 * });
 * svg.startsWith("<svg"); // true
 * ```
 */
export function lineChartSvg(options: LineChartOptions): string {
  const W = options.width ?? 720, H = options.height ?? 420;
  const [L, R, T, B] = [70, 20, 40, 50];
  const fx = options.logX ? Math.log10 : (v: number) => v;
  const fy = options.logY ? Math.log10 : (v: number) => v;
  const ok = (x: number, y: number) =>
    Number.isFinite(x) && Number.isFinite(y) && (!options.logX || x > 0) &&
    (!options.logY || y > 0);
  const pts = options.series.map((s) => s.points.filter(([x, y]) => ok(x, y)));
  const all = pts.flat();
  if (all.length === 0) {
    throw new RangeError(`lineChartSvg: "${options.title}" has no finite point to plot`);
  }
  let [x0, x1] = [Math.min(...all.map((p) => fx(p[0]))), Math.max(...all.map((p) => fx(p[0])))];
  let [y0, y1] = [Math.min(...all.map((p) => fy(p[1]))), Math.max(...all.map((p) => fy(p[1])))];
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (y1 === y0) [y0, y1] = [y0 - 1, y1 + 1];
  const pad = (y1 - y0) * 0.05;
  [y0, y1] = [y0 - pad, y1 + pad];
  const sx = (v: number) => L + (fx(v) - x0) / (x1 - x0) * (W - L - R);
  const sy = (v: number) => H - B - (fy(v) - y0) / (y1 - y0) * (H - T - B);
  const out = svgOpen(W, H, options.title, 12);
  const axisTicks = (lo: number, hi: number, log?: boolean) =>
    log
      ? ticks(Math.floor(lo), Math.ceil(hi)).filter((e) =>
        Number.isInteger(e) && e >= lo && e <= hi
      )
        .map((e) => 10 ** e)
      : ticks(lo, hi);
  for (const v of axisTicks(x0, x1, options.logX)) {
    const x = sx(v).toFixed(1);
    out.push(
      `<line x1="${x}" y1="${T}" x2="${x}" y2="${H - B}" stroke="#eee"/>`,
      `<text x="${x}" y="${H - B + 16}" text-anchor="middle">${label(v)}</text>`,
    );
  }
  for (const v of axisTicks(y0, y1, options.logY)) {
    const y = sy(v).toFixed(1);
    out.push(
      `<line x1="${L}" y1="${y}" x2="${W - R}" y2="${y}" stroke="#eee"/>`,
      `<text x="${L - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${label(v)}</text>`,
    );
  }
  out.push(
    `<rect x="${L}" y="${T}" width="${W - L - R}" height="${
      H - T - B
    }" fill="none" stroke="#333"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">${
      escapeXml(options.xLabel)
    }</text>`,
    `<text transform="translate(16 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle">${
      escapeXml(options.yLabel)
    }</text>`,
  );
  options.series.forEach((s, i) => {
    const color = escapeXml(s.color ?? PALETTE[i % PALETTE.length]);
    const path = pts[i].map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
    if (path.length > 1) {
      out.push(
        `<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${path.join(" ")}"/>`,
      );
    }
    if (s.markers || path.length === 1) {
      for (const p of path) {
        const [x, y] = p.split(",");
        out.push(`<circle cx="${x}" cy="${y}" r="3" fill="${color}"/>`);
      }
    }
    const ly = T + 14 + i * 16;
    out.push(
      `<line x1="${W - R - 150}" y1="${ly}" x2="${
        W - R - 130
      }" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
      `<text x="${W - R - 124}" y="${ly}" dominant-baseline="middle">${escapeXml(s.label)}</text>`,
    );
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/**
 * Options of {@linkcode heatmapSvg}.
 *
 * @example
 * ```ts
 * import type { HeatmapOptions } from "./svg.ts";
 * const o: HeatmapOptions = {
 *   title: "expert load", rowLabels: ["layer 0"], colLabels: ["0", "1"], values: [[0.7, 0.3]],
 * };
 * ```
 */
export interface HeatmapOptions {
  /** Chart title. */
  readonly title: string;
  /** One label per row (drawn left of the row). */
  readonly rowLabels: readonly string[];
  /** One label per column (drawn under the column). */
  readonly colLabels: readonly string[];
  /** The cells, `values[row][col]`; a non-finite value is drawn grey. */
  readonly values: readonly (readonly number[])[];
  /** Text under the column labels. */
  readonly xLabel?: string;
  /** Lower end of the colour scale (default: the smallest finite value). */
  readonly min?: number;
  /** Upper end of the colour scale (default: the largest finite value). */
  readonly max?: number;
  /** Each cell's printed text (default: 3 significant digits); `null` prints none. */
  readonly format?: ((v: number) => string) | null;
  /** Cell size in pixels (default 40). */
  readonly cell?: number;
}

/**
 * A heatmap as SVG text: one square per cell, white (the scale's min) to dark
 * blue (its max), the value printed in the cell and in its tooltip, row and
 * column labels, a colour bar with the scale's ends. Throws a RangeError when
 * the values are not `rowLabels.length × colLabels.length`.
 *
 * @example
 * ```ts
 * import { heatmapSvg } from "./svg.ts";
 * const svg = heatmapSvg({
 *   title: "share of routed tokens", rowLabels: ["layer 0", "layer 1"],
 *   colLabels: ["e0", "e1", "e2"], values: [[0.5, 0.25, 0.25], [0.9, 0.1, 0]],
 *   min: 0, format: (v) => `${(100 * v).toFixed(0)}%`,
 * });
 * svg.startsWith("<svg"); // true
 * ```
 */
export function heatmapSvg(options: HeatmapOptions): string {
  const { rowLabels, colLabels, values } = options;
  const R = rowLabels.length, C = colLabels.length;
  if (R === 0 || C === 0) {
    throw new RangeError(`heatmapSvg: "${options.title}" needs at least one row and one column`);
  }
  if (values.length !== R || values.some((row) => row.length !== C)) {
    throw new RangeError(
      `heatmapSvg: "${options.title}" values must be ${R} rows of ${C}, got ${
        values.map((r) => r.length).join(", ")
      }`,
    );
  }
  const finite = values.flat().filter(Number.isFinite);
  const lo = options.min ?? (finite.length ? Math.min(...finite) : 0);
  const hi = options.max ?? (finite.length ? Math.max(...finite) : 1);
  const span = hi > lo ? hi - lo : 1;
  const fmt = options.format === undefined
    ? (v: number) => Number(v.toPrecision(3)).toString()
    : options.format;
  const c = options.cell ?? 40;
  const chars = Math.max(...rowLabels.map((l) => l.length));
  const L = Math.max(50, 10 + chars * 7), T = 40, barH = 12;
  // Wide enough for the title, and for the x label centred under the grid.
  const W = Math.max(
    L + C * c + 20,
    7 * options.title.length + 20,
    L + C * c / 2 + 3.4 * (options.xLabel?.length ?? 0) + 10,
  );
  const gridB = T + R * c;
  const H = gridB + 22 + (options.xLabel ? 18 : 0) + barH + 30;
  // White → blue, and dark text on light cells, light text on dark ones.
  const shade = (a: number) =>
    `rgb(${Math.round(255 - 225 * a)},${Math.round(255 - 165 * a)},${Math.round(255 - 75 * a)})`;
  const level = (v: number) => Math.min(1, Math.max(0, (v - lo) / span));
  const out = svgOpen(W, H, options.title, 11);
  values.forEach((row, r) => {
    const y = T + r * c;
    out.push(
      `<text x="${L - 6}" y="${y + c / 2}" text-anchor="end" dominant-baseline="middle">${
        escapeXml(rowLabels[r])
      }</text>`,
    );
    row.forEach((v, col) => {
      const x = L + col * c, ok = Number.isFinite(v), a = ok ? level(v) : 0;
      const tip = `${rowLabels[r]}, ${colLabels[col]}: ${v}`;
      out.push(
        `<rect x="${x}" y="${y}" width="${c - 1}" height="${c - 1}" fill="${
          ok ? shade(a) : "#bbb"
        }"><title>${escapeXml(tip)}</title></rect>`,
      );
      if (fmt && ok) {
        out.push(
          `<text x="${x + c / 2}" y="${
            y + c / 2
          }" text-anchor="middle" dominant-baseline="middle" font-size="${
            Math.min(11, c / 3.2).toFixed(1)
          }" fill="${a > 0.55 ? "white" : "#222"}">${escapeXml(fmt(v))}</text>`,
        );
      }
    });
  });
  colLabels.forEach((l, col) =>
    out.push(
      `<text x="${L + col * c + c / 2}" y="${gridB + 14}" text-anchor="middle">${
        escapeXml(l)
      }</text>`,
    )
  );
  let y = gridB + 22;
  if (options.xLabel) {
    out.push(
      `<text x="${L + C * c / 2}" y="${y + 8}" text-anchor="middle">${
        escapeXml(options.xLabel)
      }</text>`,
    );
    y += 18;
  }
  // The colour bar: ten steps from the scale's min to its max.
  const bw = Math.min(200, C * c) / 10;
  for (let i = 0; i < 10; i++) {
    out.push(
      `<rect x="${L + i * bw}" y="${y}" width="${bw}" height="${barH}" fill="${
        shade((i + 0.5) / 10)
      }"/>`,
    );
  }
  out.push(
    `<text x="${L}" y="${y + barH + 12}" text-anchor="start">${label(lo)}</text>`,
    `<text x="${L + 10 * bw}" y="${y + barH + 12}" text-anchor="end">${label(hi)}</text>`,
    "</svg>",
  );
  return out.join("\n") + "\n";
}

/** The opening lines of a plot: the root element, a white background, a centred title. */
function svgOpen(W: number, H: number, title: string, fontSize: number): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="${fontSize}">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="${fontSize + 3}">${
      escapeXml(title)
    }</text>`,
  ];
}

/**
 * Standalone plots side by side (`columns` per row) as one SVG: each keeps its
 * own size and coordinates, nested at its grid cell.
 *
 * @example
 * ```ts
 * import { lineChartSvg, panelsSvg } from "./svg.ts";
 * const chart = (title: string) =>
 *   lineChartSvg({ title, xLabel: "step", yLabel: "loss", series: [{ label: "a", points: [[0, 1], [1, 0.5]] }] });
 * const svg = panelsSvg([chart("left"), chart("right")]); // two charts in one row
 * ```
 */
export function panelsSvg(svgs: readonly string[], columns = svgs.length): string {
  const size = (s: string) => {
    const m = s.match(/^<svg[^>]* width="([\d.]+)" height="([\d.]+)"/);
    if (!m) throw new TypeError("panelsSvg: a panel is not an <svg> with width and height");
    return [Number(m[1]), Number(m[2])];
  };
  const sizes = svgs.map(size);
  const colW = Math.max(...sizes.map((s) => s[0])), rowH = Math.max(...sizes.map((s) => s[1]));
  const rows = Math.ceil(svgs.length / columns);
  const W = colW * Math.min(columns, svgs.length), H = rowH * rows;
  const inner = svgs.map((s, i) =>
    s.trim().replace(
      /^<svg /,
      `<svg x="${(i % columns) * colW}" y="${Math.floor(i / columns) * rowH}" `,
    )
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    ...inner,
    "</svg>",
  ].join("\n") + "\n";
}
