/**
 * The core is portable: every module below the application floor (core, ops,
 * compiler, runtime, models) type-checks as a browser would see it — the DOM
 * library and `@webgpu/types`, with no Deno namespace — so the compiler and the
 * runtime can run wherever WebGPU does.
 */

import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);
const FLOORS = ["core", "ops", "compiler", "runtime", "models"];

async function* modules(dir: URL): AsyncGenerator<URL> {
  for await (const e of Deno.readDir(dir)) {
    const url = new URL(e.isDirectory ? `${e.name}/` : e.name, dir);
    if (e.isDirectory) yield* modules(url);
    else if (e.name.endsWith(".ts")) yield url;
  }
}

Deno.test("core, ops, compiler, runtime and models type-check with DOM + @webgpu/types and no Deno lib", async () => {
  const files: string[] = [];
  for (const f of FLOORS) for await (const u of modules(new URL(`${f}/`, root))) files.push(u.href);
  assert.ok(files.length > 40, `found only ${files.length} modules`);
  const dir = await Deno.makeTempDir({ prefix: "kiln_portable_" });
  try {
    const entry = `${dir}/entry.ts`;
    await Deno.writeTextFile(entry, files.sort().map((f) => `import "${f}";`).join("\n") + "\n");
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["check", "--config", new URL("tools/portable/deno.json", root).pathname, entry],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, `portable type check failed:\n${text}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
