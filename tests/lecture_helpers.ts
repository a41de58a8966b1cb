/**
 * Runs a lecture experiment (`examples/lecture/<script>.ts`) in its `--quick`
 * mode into a temporary folder, checks it exits 0 and wrote `<script>.svg`,
 * and returns its markdown table.
 */

import assert from "node:assert/strict";

/** Runs `examples/lecture/<script>.ts --quick`; returns the `<script>.md` it wrote. */
export async function runQuick(script: string): Promise<string> {
  const out = await Deno.makeTempDir();
  try {
    const cmd = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `examples/lecture/${script}.ts`, "--quick", "--out", out],
      stdout: "piped",
      stderr: "piped",
    });
    const r = await cmd.output();
    const text = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, text);
    const md = await Deno.readTextFile(`${out}/${script}.md`);
    const svg = await Deno.readTextFile(`${out}/${script}.svg`);
    assert.ok(svg.startsWith("<svg"), `${script}.svg is an SVG`);
    return md;
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}
