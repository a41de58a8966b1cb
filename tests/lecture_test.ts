/**
 * Smoke runs of the lecture experiments (`examples/lecture/`) in their
 * `--quick` mode: each finishes, and writes its table and plot.
 */

import assert from "node:assert/strict";

async function runQuick(script: string): Promise<string> {
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

Deno.test("lecture: three representations agree to f32 precision (quick run writes its table and plot)", async () => {
  const md = await runQuick("three_representations");
  const errors = [
    ...md.matchAll(/\| (zoh|bilinear) \| (recurrent|conv|direct) \| ([\d.e+-]+) \|/g),
  ];
  assert.equal(errors.length, 6, md);
  for (const [, disc, mode, err] of errors) {
    assert.ok(Number(err) < 1e-4, `${disc} ${mode}: ${err} of the output's magnitude`);
  }
});
