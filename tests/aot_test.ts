/**
 * Ahead-of-time modules (`kiln build`): an emitted module gives the same
 * outputs as `compile` at every prebuilt binding of its dims, with a graph's
 * states too; its source passes `deno check`; at run time it imports no
 * compiler code; a corrupted or truncated weight bundle is an error naming the
 * bundle and what failed; the CLI refuses bad arguments in one line.
 */

import { runtimeImports } from "./fixtures/import_graph.ts";
import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { GraphBuilder } from "../compiler/builder.ts";
import { compile } from "../runtime/executable.ts";
import { readBundle } from "../runtime/bundle.ts";
import { buildModule, bundleParams, runtimeSpecifier, writeModule } from "../app/build/build.ts";
import { parseDimSets } from "../app/cli/build.ts";
import { assertUserError, kiln } from "./fixtures/kiln_cli.ts";
import { assertClose, gpu, randomData, rng } from "./_util.ts";
import { PrebuiltExecutable } from "../runtime/prebuilt.ts";
import { quantWords } from "../ops/quant/mod.ts";
import { testBlocks } from "./fixtures/quant_blocks.ts";

/** A graph with a symbolic dim, a constant table, params and two outputs. */
function mlp(): GraphBuilder {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", 8]);
  const w = g.param("w", [16, 8]);
  const b = g.param("b", [16]);
  const scale = g.constant(Array.from({ length: 16 }, (_, i) => 1 + i / 16), [16]);
  const h = x.matmul(w, { transB: true }).add(b).silu().mul(scale);
  g.output("y", h);
  g.output("s", h.sum(-1));
  return g;
}

const PARAMS = { w: randomData(128, "f32", 1), b: randomData(16, "f32", 2) };

Deno.test("an AOT module of a graph with symbolic dims runs like compile", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_aot_" });
  const dev = await gpu();
  const out = join(dir, "mlp.ts");
  const built = buildModule(mlp(), {
    name: "mlp",
    caps: dev.caps,
    dims: [{ T: 1 }, { T: 3 }, { T: 8 }, { T: 3 }],
    runtime: runtimeSpecifier(out),
    bundle: "mlp.kwb",
  });
  assert.equal(built.data.plans.length, 3, "a repeated binding is planned once");
  // Formatted and type-checked after emission: writeModule throws when deno check fails.
  await writeModule(out, built, { params: PARAMS });
  const source = await Deno.readTextFile(out);
  assert.match(source, /readonly x: Float32Array \| readonly number\[\];/);
  assert.match(source, /f32 \[T, 8\]; T ∈ \{1, 3, 8\}/);
  assert.match(source, /export type Dims = \{ readonly T: 1 \} \| \{ readonly T: 3 \}/);

  const mod = await import(pathToFileURL(out).href);
  const runner = await mod.load({ device: dev });
  const exe = compile(mlp().build(), dev, { params: PARAMS });
  try {
    await t.step("same outputs as compile at every prebuilt T", async () => {
      for (const T of [3, 1, 8]) {
        const x = randomData(T * 8, "f32", 10 + T);
        const [a, b] = [await exe.run({ x }), await runner.run({ x })];
        assert.deepEqual(b.y.shape, [T, 16]);
        assertClose(b.y.data, a.y.data, 0, 0, `y at T=${T}`);
        assertClose(b.s.data, a.s.data, 0, 0, `s at T=${T}`);
      }
    });
    await t.step("inputs are checked as compile checks them", async () => {
      await assert.rejects(
        runner.run({ x: new Float32Array(5 * 8) }),
        (e: Error) =>
          e instanceof RangeError &&
          /No prebuilt plan for dims \{T=5\}: prebuilt for \{T=1\}, \{T=3\}, \{T=8\}/.test(
            e.message,
          ),
      );
      await assert.rejects(runner.run({}), /Missing input "x" of shape \[T, 8\]/);
      await assert.rejects(runner.run({ x: new Float32Array(7) }), /expects a multiple of 8/);
      await assert.rejects(runner.run({ x: [1], z: [1] }), /Unknown input "z"/);
      assert.throws(() => runner.setParams({ w: [1, 2] }), /Param "w" expects 128 values/);
    });
    await t.step("at run time it imports the runtime alone, no compiler code", async () => {
      const files = await runtimeImports(out);
      assert.ok(files.some((f) => f.endsWith("/runtime/prebuilt.ts")), files.join("\n"));
      const compiler = files.filter((f) => /\/compiler\/|\/ops\/|builder\.ts$/.test(f));
      assert.deepEqual(compiler, [], "compiler modules reached at run time");
      assert.ok(!/from "[^"]*compiler/.test(source), "no import of the compiler in the source");
    });
    await t.step("a corrupted or truncated bundle names the bundle and what failed", async () => {
      const bytes = bundleParams(built, PARAMS);
      const read = (b: Uint8Array, size?: number) =>
        readBundle(b, { name: "mlp.kwb", size, onTensor: () => {} });
      await read(bytes); // intact
      const headerLength = new DataView(bytes.buffer).getUint32(8, true);
      const payload = 16 + headerLength;
      const cases: [Uint8Array, RegExp, number?][] = [
        [bytes.slice(0, bytes.length - 7), /mlp\.kwb: truncated: \d+ bytes, its header says/],
        [
          bytes.slice(0, bytes.length - 7),
          /mlp\.kwb: truncated: \d+ bytes, its header says/,
          bytes.length - 7,
        ],
        [bytes.slice(0, 20), /mlp\.kwb: truncated: the header needs/],
        [
          flip(bytes, payload + 3),
          /mlp\.kwb: (payload is corrupted|tensor "\w" checksum mismatch)/,
        ],
        [flip(bytes, 20), /mlp\.kwb: header checksum mismatch/],
        [flip(bytes, 1), /mlp\.kwb: not a Kiln weight bundle/],
        [concat(bytes, new Uint8Array(3)), /mlp\.kwb: too long/],
      ];
      for (const [b, pattern, size] of cases) await assert.rejects(read(b, size), pattern);
      // Through the module's load(), from a file: the error names the file.
      const bad = join(dir, "bad.kwb");
      await Deno.writeFile(bad, bytes.slice(0, bytes.length - 7));
      await assert.rejects(
        mod.load({ device: dev, bundle: bad, compile: false }),
        (e: Error) => e.message.includes(`Weight bundle ${bad}: truncated`),
      );
      await assert.rejects(
        mod.load({ device: dev, bundle: join(dir, "none.kwb") }),
        /none\.kwb: cannot be read/,
      );
    });
  } finally {
    runner.dispose();
    exe.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

function flip(bytes: Uint8Array, at: number): Uint8Array {
  const b = bytes.slice();
  b[at] ^= 0x5a;
  return b;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

Deno.test("an AOT module of a stateful graph keeps its states like compile", async () => {
  const g = new GraphBuilder();
  const x = g.input("x", ["T", 4]);
  const acc = g.state("acc", [4]);
  const steps = g.state("steps", [1], "u32");
  const next = acc.mul(0.5).add(x.sum(0));
  g.assign(acc, next);
  g.assign(steps, steps.add(1));
  g.output("y", x.mul(next).exp());
  const dir = await Deno.makeTempDir({ prefix: "kiln_aot_state_" });
  const dev = await gpu();
  const out = join(dir, "acc.ts");
  const built = buildModule(g, {
    name: "acc",
    caps: dev.caps,
    dims: parseDimSets("T=2,5"),
    runtime: runtimeSpecifier(out),
  });
  await writeModule(out, built);
  const mod = await import(pathToFileURL(out).href);
  const runner = await mod.load({ device: dev });
  const exe = compile(g.build(), dev);
  try {
    for (const [i, T] of [2, 5, 2, 2, 5].entries()) {
      const input = randomData(T * 4, "f32", 30 + i);
      const [a, b] = [await exe.run({ x: input }), await runner.run({ x: input })];
      assertClose(b.y.data, a.y.data, 0, 0, `step ${i} (T=${T})`);
    }
    const [a, b] = [
      await exe.readStates(["acc", "steps"]),
      await runner.readStates(["acc", "steps"]),
    ];
    assertClose(b.acc.data, a.acc.data, 0, 0, "acc");
    assert.deepEqual([...b.steps.data], [5]);
    runner.writeState("steps", [41]);
    await runner.submit({ x: new Float32Array(8) });
    assert.deepEqual([...(await runner.readState("steps")).data], [42]);
    assert.throws(() => runner.writeState("acc", [1]), /State "acc" \[4\] expects 4 values/);
    runner.resetStates();
    assert.deepEqual([...(await runner.readState("acc")).data], [0, 0, 0, 0]);
    runner.dispose();
    assert.throws(() => runner.resetStates(), /disposed/);
  } finally {
    runner.dispose();
    exe.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an AOT module of a lattice-quantized weight carries its codebook table by name", async () => {
  const N = 6, K = 256;
  const g = new GraphBuilder();
  const x = g.input("x", ["T", K]);
  const w = g.param("w", [quantWords("iq2_xs", N, K)], "u32");
  g.output("y", g.apply("qmatmul", [x, w], { format: "iq2_xs", rows: N, cols: K })[0]);
  const r = rng(7);
  const bytes = testBlocks("iq2_xs", Float32Array.from({ length: N * K }, () => r() - 0.5), r);
  const words = new Uint32Array(quantWords("iq2_xs", N, K));
  new Uint8Array(words.buffer).set(bytes);
  const dev = await gpu();
  const built = buildModule(g, {
    name: "iq",
    caps: dev.caps,
    dims: parseDimSets("T=1,3"),
    runtime: "../runtime/mod.ts",
  });
  for (const p of built.data.plans) {
    assert.deepEqual(p.slots.filter((s) => s.table).map((s) => s.table), ["iq2xs"]);
  }
  const runner = new PrebuiltExecutable(built.data, dev, { params: { w: words } });
  const exe = compile(g.build(), dev, { params: { w: words } });
  try {
    for (const T of [1, 3]) {
      const input = randomData(T * K, "f32", 40 + T);
      const [a, b] = [await exe.run({ x: input }), await runner.run({ x: input })];
      assertClose(b.y.data, a.y.data, 0, 0, `y at T=${T}`);
    }
  } finally {
    runner.dispose();
    exe.dispose();
  }
  // A module naming a table this version lacks is refused before anything runs.
  const data = structuredClone(built.data);
  const slots = data.plans[0].slots as unknown as { table?: string }[];
  slots.find((s) => s.table)!.table = "iq9";
  assert.throws(
    () => new PrebuiltExecutable(data, dev),
    (e: Error) =>
      e instanceof RangeError &&
      /Prebuilt module "iq" does not fit .*: it names kernel table "iq9", which this version of Kiln lacks/
        .test(e.message),
  );
});

Deno.test("kiln build: a graph module with params, and bad arguments in one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_aot_cli_" });
  const graphFile = join(dir, "graph.ts");
  await Deno.writeTextFile(
    graphFile,
    `import { GraphBuilder } from "${new URL("../compiler/builder.ts", import.meta.url).href}";
export function build() {
  const g = new GraphBuilder();
  g.output("y", g.input("x", ["T", 4]).mul(g.param("w", [4])).silu());
  return g;
}
export const dims = { T: 2 };
export const params = { w: [1, -2, 3, -4] };
`,
  );
  await Deno.writeTextFile(join(dir, "nobuild.ts"), "export const x = 1;\n");
  try {
    const out = join(dir, "graph.aot.ts");
    const [ok, ...bad] = await Promise.all([
      kiln("build", graphFile, "-o", out, "--dims", "T=1,3", "--no-check"),
      kiln("build"),
      kiln("build", graphFile),
      kiln("build", graphFile, "-o", join(dir, "x.js")),
      kiln("build", graphFile, "-o", out, "--dims", "T=x"),
      kiln("build", join(dir, "missing.ts"), "-o", out),
      kiln("build", join(dir, "nobuild.ts"), "-o", out),
      kiln("build", dir, "-o", out),
      kiln("build", graphFile, "-o", out, "--dims", "S=4"),
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /2 plan\(s\) \(T=1; T=3\).*weights in .*graph\.kwb/);
    const patterns = [
      /build: give a graph module/,
      /build: give the output module with -o OUT\.ts/,
      /build: -o .*x\.js: the output must be a \.ts file/,
      /build: --dims must be NAME=INT/,
      /missing\.ts: not found/,
      /nobuild\.ts exports no build\(\) function/,
      // A folder is a model folder now: one without config.json says so.
      /config\.json: not found \(is .* a model folder\?\)/,
      /dims \{"S":4\} leave T unbound/,
    ];
    bad.forEach((r, i) => assertUserError(r, patterns[i], true));
    const help = await kiln("build", "--help");
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^usage: kiln build FILE -o OUT\.ts/);
    const mod = await import(pathToFileURL(out).href);
    const runner = await mod.load({ device: await gpu() });
    const { y } = await runner.run({ x: [1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2] });
    const silu = (v: number) => v / (1 + Math.exp(-v));
    const expect = [1, -2, 3, -4, 0, 0, 0, 0, 2, -4, 6, -8].map(silu);
    assertClose(y.data, expect, 1e-5, 1e-5, "y");
    runner.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
