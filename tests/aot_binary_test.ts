/**
 * Standalone binaries of model modules (`kiln build DIR --binary OUT`): without
 * a way to get deno compile's base runtime (no network, no DENORT_BIN) the
 * error is one `kiln:` line saying so and how to provide it, and the main it
 * wrote runs the module with `deno run`, giving `loadModel`'s greedy ids. With
 * DENORT_BIN set, the binary is built and run; otherwise that test is ignored
 * with the reason in its name (deno compile cannot download denort here).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { BINARY_PERMISSIONS } from "../app/build/binary.ts";
import { writeTinyMamba } from "./fixtures/tiny_checkpoints.ts";
import { assertUserError, CLI, kiln } from "./fixtures/kiln_cli.ts";
import { MOE_PROMPT, openTiny } from "./_util.ts";

const denort = (() => {
  try {
    return Deno.env.get("DENORT_BIN");
  } catch {
    return undefined;
  }
})();

/** The environment minus DENORT_BIN, with every proxy pointing at a closed port: no network. */
function offlineEnv(): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.DENORT_BIN;
  const dead = "http://127.0.0.1:9";
  for (const k of ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy"]) {
    env[k] = dead;
  }
  delete env.NO_PROXY;
  delete env.no_proxy;
  return { ...env, NO_COLOR: "1" };
}

async function run(cmd: string, args: string[], env?: Record<string, string>) {
  const out = await new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...(env ? { env, clearEnv: true } : { env: { NO_COLOR: "1" } }),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function expectedIds(ckpt: string, n: number): Promise<string> {
  const model = await openTiny(ckpt);
  try {
    const ids: number[] = [];
    for await (const id of model.generateIds(MOE_PROMPT, { maxTokens: n })) ids.push(id);
    return ids.join(",");
  } finally {
    model.dispose();
  }
}

Deno.test("kiln build --binary without denort: one clear line, and its main runs the module", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_aot_bin_" });
  try {
    const ckpt = join(dir, "ckpt");
    await Deno.mkdir(ckpt);
    await writeTinyMamba(ckpt, { seed: 4 });
    const out = join(dir, "mamba.aot.ts");
    const r = await run(Deno.execPath(), [
      "run",
      "-A",
      CLI,
      "build",
      ckpt,
      "-o",
      out,
      "--max-seq",
      "64",
      "--no-check",
      "--binary",
      join(dir, "mamba"),
    ], offlineEnv());
    assertUserError(
      r,
      /--binary: deno compile cannot get its base runtime: it downloads denort from https:\/\/dl\.deno\.land\/\S+\.zip, which cannot be reached from here, and DENORT_BIN is not set; .*DENORT_BIN=\/path\/to\/denort/,
    );
    assert.match(
      r.stdout,
      /^built .*mamba\.aot\.ts: MambaForCausalLM, prefill chunks 1, 4, 16, 64/,
    );
    const main = join(dir, "mamba.aot.main.ts");
    const ran = await run(Deno.execPath(), [
      "run",
      ...BINARY_PERMISSIONS,
      main,
      "--prompt-ids",
      MOE_PROMPT.join(","),
      "--max-tokens",
      "6",
    ]);
    assert.equal(ran.code, 0, ran.stderr);
    assert.equal(ran.stdout.trim(), await expectedIds(ckpt, 6));
    const bad = await run(Deno.execPath(), [
      "run",
      ...BINARY_PERMISSIONS,
      main,
      "--prompt-ids",
      "1,x",
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--prompt-ids must be a number, got "x"; usage: --prompt-ids/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: `kiln build --binary makes a standalone executable that generates ids${
    denort ? "" : " (ignored: DENORT_BIN is not set, and deno compile cannot download denort here)"
  }`,
  ignore: !denort,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "kiln_aot_bin_" });
    try {
      const ckpt = join(dir, "ckpt");
      await Deno.mkdir(ckpt);
      await writeTinyMamba(ckpt, { seed: 4 });
      const bin = join(dir, "mamba");
      const r = await run(Deno.execPath(), [
        "run",
        "-A",
        CLI,
        "build",
        ckpt,
        "-o",
        join(dir, "mamba.aot.ts"),
        "--max-seq",
        "64",
        "--binary",
        bin,
      ]);
      assert.equal(r.code, 0, r.stderr);
      // Run from elsewhere, the module and bundle moved away: the bundle is embedded.
      await Deno.remove(join(dir, "mamba.kwb"));
      const ran = await run(bin, ["--prompt-ids", MOE_PROMPT.join(","), "--max-tokens", "6"]);
      assert.equal(ran.code, 0, ran.stderr);
      assert.equal(ran.stdout.trim(), await expectedIds(ckpt, 6));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("kiln build of a model folder: bad options in one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_aot_args_" });
  try {
    const graph = new URL("../examples/fused_mlp.ts", import.meta.url).pathname;
    const out = join(dir, "m.ts");
    const cases: [string[], RegExp][] = [
      [[dir, "-o", out, "--max-seq", "0"], /--max-seq must be a positive integer, got "0"/],
      [[dir, "-o", out, "--dtype", "f8"], /--dtype must be f32 or f16, got "f8"/],
      [[dir, "-o", out, "--sampling", "temperature=0"], /--sampling must be temperature=T/],
      [[dir, "-o", out, "--dims", "T=1"], /--dims is for graph modules/],
      [[dir, "-o", out, "--binary", "x.ts"], /--binary x\.ts: give the executable's path/],
      [[graph, "-o", out, "--max-seq", "8"], /--max-seq is for model folders/],
    ];
    const results = await Promise.all(cases.map(([args]) => kiln("build", ...args)));
    results.forEach((r, i) => assertUserError(r, cases[i][1], true));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
