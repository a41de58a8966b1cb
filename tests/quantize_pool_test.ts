/**
 * The quantizing worker pool: the bytes of `quantize` on one thread for every
 * format Kiln writes, at sizes that split unevenly over the workers; errors
 * naming the element's index in the whole tensor; a worker that cannot start
 * leaving the work to the calling thread (same bytes, the reason kept); and
 * `kiln quantize --threads` writing the same file, and quantize-on-load giving
 * the same logits, for any count.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { quantize } from "../core/quant/codecs.ts";
import { quantizeWithImportance } from "../core/quant/importance.ts";
import { GGML_TYPES, QUANT_FORMATS, type QuantFormat } from "../core/quant/formats.ts";
import { mulberry32 } from "../core/random.ts";
import { QuantPool } from "../app/quantize_pool.ts";
import { writeRandomCheckpoint } from "../app/random_weights.ts";
import { kiln } from "./cli_util.ts";
import { writeTinyMixtral } from "./fixtures/tiny_checkpoints.ts";
import { assertBitsEqual, MOE_PROMPT, openTiny } from "./_util.ts";

const WRITTEN = QUANT_FORMATS.filter((f) => {
  try {
    quantize(f, new Float32Array(GGML_TYPES[f].blockElems));
    return true;
  } catch {
    return false;
  }
});

/** `blocks` blocks of `format` of random values with a few outliers and a zero run. */
function tensor(format: QuantFormat, blocks: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const x = new Float32Array(blocks * GGML_TYPES[format].blockElems).map(() =>
    (r() + r() + r() - 1.5) * (r() < 0.01 ? 40 : 1)
  );
  x.fill(0, 100, 400);
  return x;
}

Deno.test("QuantPool: every format Kiln writes, the same bytes as quantize on one thread", async () => {
  assert.ok(WRITTEN.length >= 20, `formats written: ${WRITTEN.join(", ")}`);
  using pool = new QuantPool({ threads: 3 });
  for (const [i, f] of WRITTEN.entries()) {
    // Over 3 parts of ≥ 32K elements, and a block count that 3 does not divide.
    const blocks = Math.ceil(100_000 / GGML_TYPES[f].blockElems) | 1;
    const x = tensor(f, blocks + (blocks % 3 === 0 ? 1 : 0), 11 + i);
    const copy = x.slice();
    const got = await pool.quantize(f, x);
    assert.deepEqual(got, quantize(f, x), f);
    assert.deepEqual(x, copy, `${f}: the caller's tensor is left as it was`);
  }
  assert.equal(pool.fallback, undefined);
  // Calls in flight together: each has its own shared copy, the parts interleave in the queue.
  const xs = (["q4_k", "q8_0", "iq4_xs"] as const).map((f, i) =>
    [f, tensor(f, 700, 40 + i)] as const
  );
  const together = await Promise.all(xs.map(([f, x]) => pool.quantize(f, x)));
  xs.forEach(([f, x], i) => assert.deepEqual(together[i], quantize(f, x), `${f}, concurrent`));
});

Deno.test("QuantPool: with an importance vector, rows split over workers, the one-thread bytes", async () => {
  using pool = new QuantPool({ threads: 3 });
  const r = mulberry32(5);
  for (const f of ["q4_k", "q5_0", "iq4_xs", "q8_0"] as const) {
    // 67 rows of 1536: parts of whole rows (the 32-element formats weigh by the row).
    const x = tensor(f, (67 * 1536) / GGML_TYPES[f].blockElems, 70);
    const imp = { rowLength: 1536, values: Float32Array.from({ length: 1536 }, () => r() * 4) };
    const got = await pool.quantize(f, x, imp);
    assert.deepEqual(got, quantizeWithImportance(f, x, 1536, imp.values), f);
  }
  assert.equal(pool.fallback, undefined);
  await assert.rejects(
    pool.quantize("q4_k", new Float32Array(1536 * 30), {
      rowLength: 1536,
      values: new Float32Array(8),
    }),
    RangeError,
    "q4_k: the importance vector has 8 values for rows of 1536",
  );
});

Deno.test("QuantPool: bad input is quantize's RangeError, indexed in the whole tensor", async () => {
  using pool = new QuantPool({ threads: 2 });
  const x = tensor("q4_k", 400, 3);
  x[70_001] = NaN;
  await assert.rejects(
    () => pool.quantize("q4_k", x),
    { name: "RangeError", message: "q4_k: element 70001 is NaN; only finite values quantize" },
  );
  await assert.rejects(
    () => pool.quantize("q4_k", new Float32Array(100_000)),
    { name: "RangeError", message: /100000 elements is not a whole number of 256-element blocks/ },
  );
  await assert.rejects(
    () => pool.quantize("iq2_xs", new Float32Array(256 * 400)),
    {
      name: "RangeError",
      message: /iq2_xs: Kiln writes this format only with an importance matrix/,
    },
  );
  assert.throws(() => new QuantPool({ threads: 0 }), {
    name: "RangeError",
    message: "QuantPool: threads must be a positive integer, got 0",
  });
  pool.close();
  await assert.rejects(() => pool.quantize("q8_0", new Float32Array(32)), /after close/);
});

Deno.test("QuantPool: a worker that cannot start leaves the work to this thread, same bytes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_pool_" });
  try {
    // A worker module that fails as it loads.
    const bad = join(dir, "bad_worker.ts");
    await Deno.writeTextFile(bad, 'throw new Error("this worker does not start");\n');
    using pool = new QuantPool({ threads: 2, workerUrl: `file://${bad}` });
    const x = tensor("q5_k", 300, 5);
    assert.deepEqual(await pool.quantize("q5_k", x), quantize("q5_k", x));
    assert.match(pool.fallback ?? "", /a worker failed: .*this worker does not start/);
    // Later work runs here from the start.
    const y = tensor("q8_0", 4000, 6);
    assert.deepEqual(await pool.quantize("q8_0", y), quantize("q8_0", y));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kiln quantize --threads: the same file for 1 and 3 threads; a bad count is one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_pool_cli_" });
  try {
    const model = join(dir, "mamba");
    // in_proj [512, 128] and x_proj hold over 64K elements: split across workers.
    await writeRandomCheckpoint(model, {
      architectures: ["MambaForCausalLM"],
      model_type: "mamba",
      vocab_size: 256,
      hidden_size: 128,
      state_size: 16,
      num_hidden_layers: 2,
      intermediate_size: 256,
      conv_kernel: 4,
      time_step_rank: 8,
      use_bias: false,
      use_conv_bias: true,
    }, { seed: 9 });
    const bytes: Uint8Array[] = [];
    for (const threads of ["1", "3"]) {
      const out = join(dir, `m${threads}.gguf`);
      const r = await kiln("quantize", model, "--type", "q4_k", "--threads", threads, "-o", out);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, "");
      bytes.push(await Deno.readFile(out));
    }
    assert.deepEqual(bytes[1], bytes[0]);
    const r = await kiln("quantize", model, "--type", "q4_k", "--threads", "0", "-o", "x.gguf");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^kiln: --threads must be an integer in \[1, 1024\], got 0\n/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadModel quantize-on-load: the same logits encoded on 1 thread and on 3", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_pool_load_" });
  try {
    // Experts of 1024×64 = 65,536 values: over the size the pool splits.
    await writeTinyMixtral(dir, { config: { hidden_size: 64, intermediate_size: 1024 }, seed: 8 });
    const logits: Float32Array[] = [];
    for (const threads of [1, 3]) {
      const m = await openTiny(dir, { quantize: "q8_0", threads });
      try {
        logits.push((await m.forward(MOE_PROMPT)).slice());
      } finally {
        m.dispose();
      }
    }
    assertBitsEqual(logits[1], logits[0], "logits");
    await assert.rejects(() => openTiny(dir, { quantize: "q8_0", threads: 0 }), {
      name: "RangeError",
      message: "loadModel: threads must be a positive integer, got 0",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
