/**
 * The house rules `deno task check` enforces on the library's source:
 *
 * 1. Floors import only downward: core → ops → compiler → runtime → models →
 *    app, with `mod.ts` and `cli.ts` on top. An import that runs up a floor is
 *    an error naming the file, the line and both floors.
 * 2. Below the app floor the code is portable: no Deno-only API (`Deno.*`), so
 *    the compiler and runtime can run wherever WebGPU does.
 * 3. A line budget: no source file over 600 lines (tests, fixtures, benches and
 *    examples are not library source).
 *
 * Usage: `deno run --allow-read tools/check_house.ts` (exit status 1 on any
 * violation, each printed on its own line).
 *
 * @module
 */

const FLOORS = ["core", "ops", "compiler", "runtime", "models", "app"] as const;
const TOP = FLOORS.length; // mod.ts, cli.ts
const MAX_LINES = 600;

const root = new URL("../", import.meta.url);

function floorOf(path: string): number | undefined {
  if (path === "mod.ts" || path === "cli.ts") return TOP;
  const i = FLOORS.indexOf(path.split("/")[0] as typeof FLOORS[number]);
  return i < 0 ? undefined : i;
}

function floorName(i: number): string {
  return i === TOP ? "the entry points" : FLOORS[i];
}

async function* sources(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(new URL(dir, root))) {
    const path = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory) yield* sources(path);
    else if (e.name.endsWith(".ts")) yield path;
  }
}

/** The code with comments blanked out (line numbers kept), so JSDoc examples do not count. */
function code(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, " "))
    .replace(/(^|[^:"'`\\])\/\/[^\n]*/g, "$1");
}

function resolve(from: string, spec: string): string {
  const parts = from.split("/").slice(0, -1);
  for (const p of spec.split("/")) {
    if (p === "..") parts.pop();
    else if (p !== ".") parts.push(p);
  }
  return parts.join("/");
}

const problems: string[] = [];
const files = ["mod.ts", "cli.ts"];
for (const f of FLOORS) for await (const p of sources(f)) files.push(p);

for (const file of files.sort()) {
  const text = await Deno.readTextFile(new URL(file, root));
  const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
  if (lines > MAX_LINES) {
    problems.push(`${file}: ${lines} lines, over the budget of ${MAX_LINES}`);
  }
  const floor = floorOf(file)!;
  const body = code(text);
  const importRe = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["'](\.{1,2}\/[^"']+)["']/g;
  for (const m of body.matchAll(importRe)) {
    const target = resolve(file, m[1]);
    const to = floorOf(target);
    if (to === undefined || to <= floor) continue;
    const line = body.slice(0, m.index).split("\n").length;
    problems.push(
      `${file}:${line}: imports ${target}, which is on a higher floor (${floorName(floor)} → ${
        floorName(to)
      })`,
    );
  }
  if (floor < FLOORS.indexOf("app")) {
    for (const m of body.matchAll(/\bDeno\.\w+/g)) {
      const line = body.slice(0, m.index).split("\n").length;
      problems.push(
        `${file}:${line}: ${m[0]} below the app floor (keep ${floorName(floor)} portable)`,
      );
    }
  }
}

if (problems.length > 0) {
  for (const p of problems) console.error(p);
  console.error(`check_house: ${problems.length} problem(s)`);
  Deno.exit(1);
}
console.log(
  `check_house: ${files.length} files, floors downward, portable below app, ≤ ${MAX_LINES} lines`,
);
