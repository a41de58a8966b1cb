/**
 * An SVG picture of which experts a run routed to, for `kiln run --heatmap`.
 *
 * @module
 */

import { escapeXml } from "../plot/svg.ts";

/**
 * An SVG heatmap of expert usage (layers × experts), darker = more routed pairs.
 *
 * @example
 * ```ts
 * import { usageHeatmapSvg } from "./heatmap.ts";
 * const svg = usageHeatmapSvg([[5, 0, 1, 2], [0, 3, 3, 2]]);
 * svg.startsWith("<svg"); // true
 * ```
 */
export function usageHeatmapSvg(
  usage: readonly (readonly number[])[],
  title = "expert usage",
): string {
  const L = usage.length, E = usage[0]?.length ?? 0;
  const c = 28, left = 70, top = 40;
  const w = left + E * c + 20, h = top + L * c + 30;
  const max = Math.max(1, ...usage.flat());
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="11">`,
    `<text x="${left}" y="20" font-size="14">${escapeXml(title)}</text>`,
  ];
  usage.forEach((row, l) => {
    out.push(
      `<text x="${left - 6}" y="${top + l * c + c / 2 + 4}" text-anchor="end">layer ${l}</text>`,
    );
    row.forEach((v, e) => {
      const a = v / max;
      const shade = Math.round(255 * (1 - a));
      out.push(
        `<rect x="${left + e * c}" y="${top + l * c}" width="${c - 1}" height="${c - 1}" ` +
          `fill="rgb(${shade},${shade},255)"><title>layer ${l} expert ${e}: ${v}</title></rect>`,
      );
    });
  });
  for (let e = 0; e < E; e++) {
    out.push(
      `<text x="${left + e * c + c / 2}" y="${top + L * c + 14}" text-anchor="middle">${e}</text>`,
    );
  }
  out.push("</svg>");
  return out.join("\n") + "\n";
}
