/**
 * The `kiln` CLI on bad input and under least privilege, run as a user runs it
 * (a subprocess): every mistake is one `kiln:` line on stderr with exit status
 * 1 and no stack trace, checked before any long work; `--help` of each command;
 * a run that ends at the context limit says so; `generate` works under
 * `deno run --allow-read=<model folder>` alone, and a missing permission is
 * reported as one, naming the flag.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertUserError as assertCliError,
  CLI,
  type CliResult,
  kiln,
  kilnWith,
} from "./fixtures/kiln_cli.ts";

import { TINY_MIXTRAL_CONFIG, writeTinyMixtral } from "./fixtures/tiny_checkpoints.ts";
import { UsageError } from "../app/cli/errors.ts";
import { checkContextFits } from "../app/cli/limits.ts";
import { exportsBuild } from "../app/cli/paths.ts";
import { parseConfig } from "../models/architectures/mod.ts";
import type { DeviceCaps } from "../core/types.ts";
import { createStepProgress } from "../app/cli/step_progress.ts";

const assertUserError = (r: CliResult, pattern: RegExp) => assertCliError(r, pattern, true);

/** Runs `cases` together (each fails before touching the adapter) and checks each. */
async function assertUserErrors(cases: [string[], RegExp][]): Promise<void> {
  const results = await Promise.all(cases.map(([args]) => kiln(...args)));
  results.forEach((r, i) => assertUserError(r, cases[i][1]));
}

Deno.test("kiln CLI: bad input and least privilege", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "kiln_cli_errors_" });
  const tiny = join(root, "tiny");
  // max_position_embeddings 16: the model's context limit within a few tokens.
  const short = join(root, "short");
  const other = join(root, "other");
  try {
    await writeTinyMixtral(tiny);
    await writeTinyMixtral(short, { config: { max_position_embeddings: 16 } });
    await Deno.mkdir(other);
    const gen = (...extra: string[]) => ["generate", "--model", tiny, "--prompt", "hi", ...extra];

    await t.step(
      "every option value is checked first, and a negative number is a value",
      () =>
        assertUserErrors([
          [gen("--max-tokens", "-5"), /^kiln: --max-tokens must be a positive integer, got -5$/],
          [gen("--temperature", "-1"), /^kiln: --temperature must be a number >= 0, got -1$/],
          [gen("--top-k", "-3"), /^kiln: --top-k must be an integer >= 0, got -3$/],
          [gen("--seed", "-1"), /^kiln: --seed must be an integer in \[0, 4294967295\], got -1$/],
          [gen("--gpu-memory", "-5GiB"), /^kiln: --gpu-memory must be a byte size .*got "-5GiB"$/],
          [["bench", tiny, "--tokens", "-1"], /^kiln: --tokens must be an integer >= 2, got -1$/],
          [gen("--top-p", "2"), /^kiln: --top-p must be in \(0, 1\], got 2$/],
          [gen("--top-p", "0"), /^kiln: --top-p must be in \(0, 1\], got 0$/],
          [gen("--dtype", "f64"), /^kiln: generate: --dtype must be f32 or f16, got "f64"$/],
          [gen("--threads", "0"), /^kiln: --threads must be an integer in \[1, 1024\], got 0$/],
          // Without --gpu-memory no expert cache runs: nothing would be written, silently.
          [
            gen("--heatmap", join(root, "usage.svg")),
            /^kiln: generate: --heatmap records the expert cache, which needs --gpu-memory$/,
          ],
        ]),
    );

    await t.step("COMMAND --help prints that command's usage and exits 0", async () => {
      const cases: [string[], string][] = [
        [["generate", "--help"], "generate"],
        [["generate", "--model", tiny, "--colour", "-h"], "generate"],
        [["inspect", "--help"], "inspect"],
        [["bench", "--help"], "bench"],
        [["help", "bench"], "bench"],
      ];
      const results = await Promise.all(cases.map(([args]) => kiln(...args)));
      results.forEach((r, i) => {
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stderr, "");
        assert.ok(r.stdout.startsWith(`usage: kiln ${cases[i][1]} `), r.stdout);
      });
      assert.match(results[0].stdout, /--max-tokens N/);
      assert.doesNotMatch(results[0].stdout, /prompt-tokens/, "only generate's options");
    });

    await t.step("--max-seq past the model's limit or the device's, named up front", async () => {
      await assertUserErrors([
        [
          gen("--max-seq", "1e9"),
          /^kiln: --max-seq 1000000000 is beyond the model's max_position_embeddings \(4096\); .*--allow-long/,
        ],
        // Past the model's limit on purpose: the KV cache of 1e9 tokens, 59.6 GiB per layer
        // (4 B × 2 kv heads × head dim 8 per token), fits no device buffer.
        [
          gen("--max-seq", "1e9", "--allow-long"),
          /^kiln: --max-seq 1000000000: the KV cache takes 59\.60 GiB per attention layer for K and as much for V \(238\.42 GiB in all\), more than (this device's largest buffer|one kernel can bind)/,
        ],
      ]);
    });

    await t.step("a run that stops at the context limit says so; other stops do not", async () => {
      // The default --max-seq is the model's 16 positions; greedy decoding of this
      // checkpoint emits no end-of-sequence token before it.
      const full = await kiln("generate", "--model", short, "--prompt", "hi", "--max-tokens", "64");
      assert.equal(full.code, 0, full.stderr);
      assert.ok(full.stdout.trim().length > 0);
      assert.match(
        full.stderr,
        /^kiln: stopped at the context limit \(--max-seq 16, the model's max_position_embeddings: \d+ prompt \+ \d+ generated tokens\); raise --max-seq \(with --allow-long/m,
      );
      const explicit = await kiln(...gen("--max-seq", "8", "--max-tokens", "64"));
      assert.equal(explicit.code, 0, explicit.stderr);
      assert.match(
        explicit.stderr,
        /stopped at the context limit \(--max-seq 8: .*raise --max-seq to/,
      );
      const enough = await kiln(...gen("--max-seq", "64", "--max-tokens", "3", "--progress"));
      assert.equal(enough.code, 0, enough.stderr);
      assert.doesNotMatch(enough.stderr, /context limit/);
      // --progress without a terminal: the prefill's and the decode's last lines.
      assert.match(enough.stderr, /^\[kiln\] prefill: \d+ tokens in \d+:\d\d$/m);
      assert.match(enough.stderr, /^\[kiln\] decode: 3\/3 tokens in \d+:\d\d/m);
    });

    await t.step(
      "bench past max_position_embeddings: refused, or announced with --allow-long",
      async () => {
        const args = ["bench", short, "--prompt-tokens", "16", "--tokens", "4", "--quiet"];
        assertUserError(
          await kiln(...args),
          /--prompt-tokens 16 \+ --tokens 4 \(20 positions\) is beyond the model's max_position_embeddings \(16\).*--allow-long/,
        );
        const r = await kiln(...args, "--allow-long", "--progress");
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /prefill: 16 tokens/);
        const err = r.stderr.trimEnd().split("\n");
        assert.match(
          err[0],
          /^kiln: --allow-long: .*\(20 positions\) runs past the model's max_position_embeddings \(16\)/,
        );
        // --progress without a terminal: each phase's first and last line.
        assert.ok(err.includes("[kiln] prefill: 16 tokens, 0:00"), r.stderr);
        assert.ok(err.some((l) => /^\[kiln\] prefill: 16 tokens in \d+:\d\d$/.test(l)), r.stderr);
        assert.ok(err.some((l) => /^\[kiln\] decode: 4\/4 tokens in \d+:\d\d/.test(l)), r.stderr);
      },
    );

    await t.step(
      "a config without architectures: one line with model_type's suggestion",
      async () => {
        const dir = join(root, "noarch");
        await Deno.mkdir(dir);
        const config = JSON.parse(await Deno.readTextFile(join(tiny, "config.json")));
        delete config.architectures;
        await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config));
        const want =
          /no "architectures" field.*model_type "mixtral" suggests "architectures": \["MixtralForCausalLM"\]/;
        await assertUserErrors([
          [["generate", "--model", dir, "--prompt", "hi"], want],
          [["inspect", dir], want],
        ]);
      },
    );

    await t.step("inspect: a missing path, and a module without build() is never run", async () => {
      const marker = join(root, "ran");
      const demo = join(root, "demo.ts");
      // Like examples/demo.ts: top-level work, no build() export.
      await Deno.writeTextFile(
        demo,
        `await Deno.writeTextFile(${JSON.stringify(marker)}, "ran");\n`,
      );
      await assertUserErrors([
        [
          ["inspect", join(root, "nonexistent")],
          /: not found \(expected a model folder with config\.json, or a \.ts module exporting build\(\)\)$/,
        ],
        [["inspect", demo], /demo\.ts exports no build\(\) function/],
      ]);
      await assert.rejects(Deno.stat(marker), Deno.errors.NotFound, "the module was not run");
    });

    await t.step(
      "least privilege: generate runs under --allow-read=<model folder> alone",
      async () => {
        const r = await kilnWith(
          [`--allow-read=${tiny}`],
          ...gen("--max-tokens", "3", "--quiet"),
        );
        assert.equal(r.code, 0, r.stderr);
        assert.ok(r.stdout.trim().length > 0, "some text");
        assert.doesNotMatch(r.stderr, /kiln:|Requires|permission/i);
      },
    );

    await t.step(
      "a missing permission is one line naming the flag, never 'does not exist'",
      async () => {
        const cases: [string[], string[], RegExp][] = [
          [
            [`--allow-read=${other}`],
            gen("--max-tokens", "3"),
            new RegExp(
              `^kiln: ${tiny}: no permission to read the model folder; run with --allow-read=${tiny}$`,
            ),
          ],
          [
            [`--allow-read=${other}`],
            ["bench", tiny],
            new RegExp(`no permission to read the model folder; run with --allow-read=${tiny}$`),
          ],
          [
            [`--allow-read=${other}`],
            ["inspect", tiny],
            new RegExp(
              `no permission to read a model folder or a graph module; run with --allow-read=${tiny}$`,
            ),
          ],
          [
            [`--allow-read=${tiny}`, `--deny-read=${join(tiny, "config.json")}`],
            ["inspect", tiny],
            new RegExp(
              `config\\.json: no permission to read the model's config\\.json; run with --allow-read=${tiny}`,
            ),
          ],
          [
            [`--allow-read=${tiny}`],
            gen("--gpu-memory", "64GiB", "--heatmap", join(other, "usage.svg")),
            new RegExp(
              `--heatmap .*usage\\.svg: no permission to write it; run with --allow-write=.*usage\\.svg$`,
            ),
          ],
        ];
        const results = await Promise.all(cases.map(([flags, args]) => kilnWith(flags, ...args)));
        results.forEach((r, i) => {
          assertUserError(r, cases[i][2]);
          assert.doesNotMatch(r.stderr, /does not exist|not found/);
        });
      },
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a terminal run without --allow-env is not stopped at a permission prompt", {
  // `script` gives the CLI a terminal, where Deno would prompt; without it, no test.
  ignore: !(await new Deno.Command("sh", { args: ["-c", "command -v script"], stdout: "null" })
    .output().then((o) => o.success, () => false)),
}, async () => {
  const root = await Deno.makeTempDir({ prefix: "kiln_cli_tty_" });
  try {
    const tiny = join(root, "tiny");
    await writeTinyMixtral(tiny);
    const cmd =
      `'${Deno.execPath()}' run --allow-read=${tiny} '${CLI}' generate --model ${tiny} --prompt hi --max-tokens 2 --quiet`;
    const out = await new Deno.Command("script", {
      args: ["-qec", cmd, "/dev/null"],
      stdin: "null",
      // A prompt waits for an answer that never comes: end it (a guard, not a timing check).
      signal: AbortSignal.timeout(60_000),
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.doesNotMatch(text, /Deno requests|Allow\?/, "no permission prompt");
    assert.equal(out.code, 0, text);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("envFlag reads a variable only where env access is granted, else is off", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_env_flag_" });
  try {
    const script = join(dir, "flag.ts");
    const module = new URL("../app/env_flag.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { envFlag } from ${JSON.stringify(module)};\nconsole.log(envFlag("KILN_DEBUG"));\n`,
    );
    const run = async (...flags: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--no-prompt", ...flags, script],
        env: { KILN_DEBUG: "1", NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const err = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, err);
      return new TextDecoder().decode(out.stdout).trim();
    };
    assert.equal(await run(), "false");
    assert.equal(await run("--allow-env=KILN_DEBUG"), "true");
    assert.equal(await run("--allow-env=HOME"), "false");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("exportsBuild: what a graph module's source must contain", () => {
  const yes = [
    "export function build() {}",
    "export async function build() {}",
    "export const build = () => g;",
    "function make() {}\nexport { make as build };",
    "export { build } from './block.ts';",
    "export default function () {}",
    "export * from './block.ts';",
  ];
  const no = [
    "await main();",
    "// export function build() {}\nawait main();",
    "/* export const build = 1 */ console.log(1);",
    "export function builder() {}",
    "export const dims = { T: 64 };",
  ];
  for (const s of yes) assert.equal(exportsBuild(s), true, s);
  for (const s of no) assert.equal(exportsBuild(s), false, s);
});

Deno.test("step progress in plain lines: each phase's start, counts, rate and end", () => {
  const out: string[] = [];
  let ms = 0;
  const p = createStepProgress({ mode: "lines", write: (t) => out.push(t), now: () => ms });
  p.start("prefill", 128, false);
  ms = 2000;
  p.start("decode", 10, true, 1); // ends the prefill
  ms = 7000;
  p.update(6); // 5 s since the last line: one more
  ms = 7500;
  p.update(7); // too soon after it: none
  ms = 12000;
  p.update(10);
  p.end();
  p.end(); // once
  assert.deepEqual(out, [
    "[kiln] prefill: 128 tokens, 0:00\n",
    "[kiln] prefill: 128 tokens in 0:02\n",
    "[kiln] decode: 1/10 tokens\n",
    "[kiln] decode: 6/10 tokens, 1.0 tokens/s, ETA 0:04\n",
    "[kiln] decode: 10/10 tokens, 0.9 tokens/s, ETA 0:00\n",
    "[kiln] decode: 10/10 tokens in 0:10, 0.9 tokens/s\n",
  ]);
});

Deno.test("checkContextFits: the KV cache against one buffer and against one kernel's bindings", () => {
  // 2 kv heads × head dim 8 × 4 B = 64 B per position per cache, 2 attention layers.
  const cfg = parseConfig({ ...TINY_MIXTRAL_CONFIG, vocab_size: 310 }, "config.json");
  const caps: DeviceCaps = {
    maxStorageBuffers: 10,
    maxBindingSize: 64 * 1024,
    maxInvocations: 256,
    maxWorkgroupStorage: 16384,
    maxWorkgroupsPerDim: 65535,
    offsetAlignment: 256,
    f16: false,
    subgroups: false,
    cpuCores: 0,
  };
  const fits = (n: number) => checkContextFits(cfg, n, "--max-seq", caps, 2 ** 20);
  fits(1000); // 62.5 KiB: one binding, nothing to plan
  fits(3000); // 187.5 KiB: three bindings per cache, which the kernels can take
  assert.throws(
    () => fits(4096),
    (e: Error) =>
      e instanceof UsageError &&
      /^--max-seq 4096: the KV cache takes 256\.00 KiB per attention layer for K and as much for V \(1\.00 MiB in all\), more than one kernel can bind on this device \(10 storage buffers of at most 64\.00 KiB\); lower --max-seq$/
        .test(e.message),
  );
  assert.throws(
    () => fits(20000),
    (e: Error) =>
      e instanceof UsageError &&
      /^--max-seq 20000: the KV cache takes 1\.22 MiB .*more than this device's largest buffer \(1\.00 MiB, 16384 positions\); lower --max-seq$/
        .test(e.message),
  );
});
