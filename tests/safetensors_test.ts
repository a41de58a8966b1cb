/**
 * The safetensors reader: round trips of every dtype and awkward shapes, sharded
 * checkpoints, every malformed-file case (error class and message), reads by
 * offset on a large sparse file, and the progress bar.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  bf16ToF32,
  Checkpoint,
  convertTensor,
  f32ToBf16,
  SafetensorsFile,
} from "../app/safetensors/mod.ts";
import { createProgress, formatBytes, formatDuration, type Progress } from "../app/progress.ts";
import {
  encodeSafetensors,
  type FixtureTensor,
  rawSafetensors,
  shardName,
  writeSafetensors,
  writeShardedSafetensors,
} from "./fixtures/write_safetensors.ts";
import { rejectsWith, rng, withTmp } from "./_util.ts";

const SHAPES: number[][] = [[], [0], [1], [3, 5, 7]];

function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function randomF32(n: number, seed: number): Float32Array {
  const r = rng(seed);
  // Spread over many binades, so f16/bf16 rounding and subnormals get exercised.
  return Float32Array.from({ length: n }, () => (r() - 0.5) * 2 ** Math.floor(r() * 40 - 20));
}

async function writeRaw(dir: string, name: string, bytes: Uint8Array): Promise<string> {
  const p = join(dir, name);
  await Deno.writeFile(p, bytes);
  return p;
}

// ---------------------------------------------------------------------------
// Round trips

Deno.test("float dtypes round trip through read, readAs f32 and f16 for awkward shapes", async () => {
  await withTmp(async (dir) => {
    const tensors: Record<string, FixtureTensor> = {};
    const expected = new Map<string, Float32Array>();
    let seed = 1;
    for (const dtype of ["F32", "F16", "BF16", "F64"] as const) {
      for (const shape of SHAPES) {
        const name = `t.${dtype}.[${shape.join("x")}]`;
        const values = randomF32(numel(shape), seed++);
        tensors[name] = { dtype, shape, data: values };
        // What the file holds, as f32 (the writer rounds F16/BF16 to nearest even).
        expected.set(
          name,
          dtype === "F16"
            ? new Float32Array(new Float16Array(values))
            : dtype === "BF16"
            ? bf16ToF32(f32ToBf16(values))
            : values,
        );
      }
    }
    const path = join(dir, "model.safetensors");
    await writeSafetensors(path, tensors, { format: "pt", note: "ü" });
    using f = await SafetensorsFile.open(path);
    assert.deepEqual(f.metadata, { format: "pt", note: "ü" });
    assert.deepEqual([...f.tensors.keys()], Object.keys(tensors));
    assert.equal(f.dataStart % 8, 0, "header is padded to 8 bytes like safetensors does");
    for (const [name, t] of Object.entries(tensors)) {
      const info = f.info(name);
      assert.equal(info.dtype, t.dtype);
      assert.deepEqual(info.shape, t.shape);
      const want = expected.get(name)!;
      const f32 = await f.readAs(name, "f32");
      assert.ok(f32 instanceof Float32Array);
      assert.deepEqual(f32, want, name);
      const f16 = await f.readAs(name, "f16");
      assert.ok(f16 instanceof Float16Array);
      assert.deepEqual(Array.from(f16), Array.from(want, (v) => Math.f16round(v)), name);
      assert.equal((await f.read(name)).byteLength, info.byteLength);
    }
  });
});

Deno.test("integer dtypes convert to float; BOOL refuses with a TypeError", async () => {
  await withTmp(async (dir) => {
    const path = join(dir, "ints.safetensors");
    await writeSafetensors(path, {
      i8: { dtype: "I8", shape: [3], data: new Int8Array([-128, 0, 127]) },
      u8: { dtype: "U8", shape: [2], data: new Uint8Array([0, 255]) },
      i16: { dtype: "I16", shape: [2], data: new Int16Array([-32768, 7]) },
      u16: { dtype: "U16", shape: [1], data: new Uint16Array([65535]) },
      i32: { dtype: "I32", shape: [2, 2], data: new Int32Array([-5, 1 << 20, 3, 0]) },
      u32: { dtype: "U32", shape: [1], data: new Uint32Array([4000000000]) },
      i64: { dtype: "I64", shape: [2], data: new BigInt64Array([-3n, 1n << 40n]) },
      u64: { dtype: "U64", shape: [1], data: new BigUint64Array([12345n]) },
      mask: { dtype: "BOOL", shape: [3], data: new Uint8Array([1, 0, 1]) },
    });
    using ckpt = await Checkpoint.open(path);
    assert.deepEqual(Array.from(await ckpt.readF32("i8")), [-128, 0, 127]);
    assert.deepEqual(Array.from(await ckpt.readF32("u8")), [0, 255]);
    assert.deepEqual(Array.from(await ckpt.readF32("i16")), [-32768, 7]);
    assert.deepEqual(Array.from(await ckpt.readF32("u16")), [65535]);
    assert.deepEqual(Array.from(await ckpt.readF32("i32")), [-5, 1 << 20, 3, 0]);
    assert.deepEqual(Array.from(await ckpt.readF32("u32")), [Math.fround(4000000000)]);
    assert.deepEqual(Array.from(await ckpt.readF32("i64")), [-3, 2 ** 40]);
    assert.deepEqual(Array.from(await ckpt.readAs("u64", "f16")), [Math.f16round(12345)]);
    assert.deepEqual(Array.from(await ckpt.readRaw("mask")), [1, 0, 1]);
    await rejectsWith(ckpt.readF32("mask"), TypeError, ["ints.safetensors", '"mask"', "BOOL"]);
  });
});

Deno.test("8-bit float formats decode exactly", () => {
  const e4m3 = convertTensor(
    new Uint8Array([0x00, 0x01, 0x38, 0x7e, 0x7f, 0xb8]),
    "F8_E4M3",
    "f32",
  );
  assert.deepEqual(Array.from(e4m3), [0, 2 ** -9, 1, 448, NaN, -1]);
  const e5m2 = convertTensor(
    new Uint8Array([0x01, 0x3c, 0x7b, 0x7c, 0xfc, 0x7d]),
    "F8_E5M2",
    "f32",
  );
  assert.deepEqual(Array.from(e5m2), [2 ** -16, 1, 57344, Infinity, -Infinity, NaN]);
  const e8m0 = convertTensor(new Uint8Array([127, 130, 0, 255]), "F8_E8M0", "f32");
  assert.deepEqual(Array.from(e8m0), [1, 8, 2 ** -127, NaN]);
});

Deno.test("bf16 helpers: exact widening, round-to-nearest-even narrowing, NaN kept", () => {
  const v = new Float32Array([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -0, Infinity, NaN, 3.14159]);
  const bits = f32ToBf16(v);
  const back = bf16ToF32(bits);
  // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even mantissa (1) wins; 1 + 3·2^-8 → 1 + 2^-6.
  assert.deepEqual(Array.from(back.subarray(0, 5)), [1, 1, 1 + 2 ** -6, -0, Infinity]);
  assert.ok(Number.isNaN(back[5]));
  assert.equal(back[6], 3.140625);
  // Widening is exact: every bf16 value survives bf16 → f32 → bf16.
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const wide = bf16ToF32(all);
  const again = f32ToBf16(wide);
  for (let i = 0; i < 65536; i++) {
    if (!Number.isNaN(wide[i])) assert.equal(again[i], i);
  }
});

Deno.test("concurrent reads of one file each get their own tensor", async () => {
  await withTmp(async (dir) => {
    const tensors: Record<string, FixtureTensor> = {};
    for (let i = 0; i < 16; i++) {
      tensors[`w${i}`] = { dtype: "F32", shape: [1000 + i], data: randomF32(1000 + i, 100 + i) };
    }
    const path = join(dir, "model.safetensors");
    await writeSafetensors(path, tensors);
    using f = await SafetensorsFile.open(path);
    const got = await Promise.all(Object.keys(tensors).map((n) => f.readAs(n, "f32")));
    Object.values(tensors).forEach((t, i) => assert.deepEqual(got[i], t.data));
  });
});

Deno.test("read into a caller's buffer; a too-small buffer and use after close are errors", async () => {
  await withTmp(async (dir) => {
    const path = join(dir, "model.safetensors");
    await writeSafetensors(path, {
      w: { dtype: "F32", shape: [4], data: new Float32Array([1, 2, 3, 4]) },
    });
    const f = await SafetensorsFile.open(path);
    const buf = new Uint8Array(64);
    const view = await f.read("w", buf);
    assert.equal(view.buffer, buf.buffer);
    assert.deepEqual(new Float32Array(buf.buffer, 0, 4), new Float32Array([1, 2, 3, 4]));
    await rejectsWith(f.read("w", new Uint8Array(15)), RangeError, ['"w"', "16 bytes", "holds 15"]);
    assert.throws(
      () => f.info("nope"),
      (e: unknown) => e instanceof RangeError && e.message.includes('"nope"'),
    );
    f.close();
    f.close(); // idempotent
    await rejectsWith(f.read("w"), TypeError, ["model.safetensors", "after close()"]);
  });
});

// ---------------------------------------------------------------------------
// Checkpoints

Deno.test("sharded checkpoint round trip in the Hugging Face layout, with progress", async () => {
  await withTmp(async (dir) => {
    const shards: Record<string, FixtureTensor>[] = [
      {
        "model.embed_tokens.weight": { dtype: "BF16", shape: [10, 8], data: randomF32(80, 1) },
        "model.layers.0.input_layernorm.weight": {
          dtype: "F32",
          shape: [8],
          data: randomF32(8, 2),
        },
      },
      {
        "model.layers.0.block_sparse_moe.experts.0.w1.weight": {
          dtype: "F16",
          shape: [16, 8],
          data: randomF32(128, 3),
        },
        "model.layers.0.block_sparse_moe.gate.weight": {
          dtype: "F32",
          shape: [4, 8],
          data: randomF32(32, 4),
        },
      },
      {
        "model.norm.weight": { dtype: "F32", shape: [8], data: randomF32(8, 5) },
        "lm_head.weight": { dtype: "BF16", shape: [10, 8], data: randomF32(80, 6) },
      },
    ];
    const names = await writeShardedSafetensors(dir, shards);
    assert.deepEqual(names, [
      "model-00001-of-00003.safetensors",
      "model-00002-of-00003.safetensors",
      "model-00003-of-00003.safetensors",
    ]);
    const index = JSON.parse(await Deno.readTextFile(join(dir, "model.safetensors.index.json")));
    assert.equal(index.weight_map["lm_head.weight"], "model-00003-of-00003.safetensors");
    assert.deepEqual(Object.keys(index.weight_map), Object.keys(index.weight_map).sort());

    let advanced = 0;
    let totalSeen = -1;
    let doneCalls = 0;
    const progress = (total: number): Progress => {
      totalSeen = total;
      return { advance: (b) => void (advanced += b), done: () => void doneCalls++ };
    };
    const ckpt = await Checkpoint.open(dir, { progress });
    try {
      assert.equal(ckpt.files.length, 3);
      assert.equal(ckpt.tensors.size, 6);
      assert.equal(ckpt.totalBytes, index.metadata.total_size);
      assert.equal(totalSeen, ckpt.totalBytes);
      assert.ok(ckpt.has("lm_head.weight") && !ckpt.has("nope"));
      assert.ok(ckpt.info("lm_head.weight").file.endsWith(names[2]));
      for (const shard of shards) {
        for (const [name, t] of Object.entries(shard)) {
          const want = t.dtype === "BF16"
            ? bf16ToF32(f32ToBf16(t.data as Float32Array))
            : t.dtype === "F16"
            ? new Float32Array(new Float16Array(t.data as Float32Array))
            : t.data;
          assert.deepEqual(await ckpt.readF32(name), want, name);
        }
      }
      assert.equal(advanced, ckpt.totalBytes);
      assert.throws(
        () => ckpt.info("nope"),
        (e: unknown) => e instanceof RangeError && e.message.includes('"nope"'),
      );
    } finally {
      ckpt.close();
    }
    assert.equal(doneCalls, 1);
  });
});

Deno.test("Checkpoint opens a folder with model.safetensors, a file path, or an index path", async () => {
  await withTmp(async (dir) => {
    const t = { w: { dtype: "F32" as const, shape: [2], data: new Float32Array([1, 2]) } };
    await writeSafetensors(join(dir, "model.safetensors"), t);
    for (const p of [dir, join(dir, "model.safetensors")]) {
      using c = await Checkpoint.open(p);
      assert.deepEqual(Array.from(await c.readF32("w")), [1, 2]);
    }
    const sharded = join(dir, "sharded");
    await writeShardedSafetensors(sharded, [t]);
    using c = await Checkpoint.open(join(sharded, "model.safetensors.index.json"));
    assert.deepEqual(Array.from(await c.readF32("w")), [1, 2]);
    const empty = join(dir, "empty");
    await Deno.mkdir(empty);
    await rejectsWith(Checkpoint.open(empty), Deno.errors.NotFound, [
      "empty",
      "model.safetensors.index.json",
    ]);
  });
});

Deno.test("index errors: missing shard, tensor absent from its shard, malformed JSON, escaping path", async () => {
  await withTmp(async (dir) => {
    const one = (v: number): Record<string, FixtureTensor> => ({
      [`w${v}`]: { dtype: "F32", shape: [1], data: new Float32Array([v]) },
    });
    await writeShardedSafetensors(dir, [one(0), one(1)]);
    const indexPath = join(dir, "model.safetensors.index.json");
    const index = JSON.parse(await Deno.readTextFile(indexPath));

    // A shard file that is not there.
    await Deno.rename(join(dir, shardName(1, 2)), join(dir, "moved"));
    await rejectsWith(Checkpoint.open(dir), Deno.errors.NotFound, [
      "model.safetensors.index.json",
      "model-00002-of-00002.safetensors",
      '"w1"',
    ]);
    await Deno.rename(join(dir, "moved"), join(dir, shardName(1, 2)));

    // The index maps a tensor to a shard that lacks it.
    index.weight_map["ghost"] = shardName(0, 2);
    await Deno.writeTextFile(indexPath, JSON.stringify(index));
    await rejectsWith(Checkpoint.open(dir), RangeError, [
      "model.safetensors.index.json",
      '"ghost"',
      "model-00001-of-00002.safetensors",
    ]);

    // A path out of the folder.
    delete index.weight_map["ghost"];
    index.weight_map["w0"] = "../elsewhere.safetensors";
    await Deno.writeTextFile(indexPath, JSON.stringify(index));
    await rejectsWith(Checkpoint.open(dir), RangeError, ['"w0"', "../elsewhere.safetensors"]);

    // Not JSON at all; JSON of the wrong shape.
    await Deno.writeTextFile(indexPath, '{"weight_map": {"w0": ');
    await rejectsWith(Checkpoint.open(dir), SyntaxError, [
      "model.safetensors.index.json",
      "not valid",
    ]);
    await Deno.writeTextFile(indexPath, '{"metadata": {}}');
    await rejectsWith(Checkpoint.open(dir), SyntaxError, [
      "model.safetensors.index.json",
      "weight_map",
    ]);
    await Deno.writeTextFile(indexPath, '{"weight_map": {"w0": 3}}');
    await rejectsWith(Checkpoint.open(dir), TypeError, [
      "model.safetensors.index.json",
      'weight_map["w0"]',
    ]);
  });
});

// ---------------------------------------------------------------------------
// Malformed files

Deno.test("malformed files fail at open with the right class, naming file, tensor and bytes", async () => {
  await withTmp(async (dir) => {
    const ok = (name: string) => ({ [name]: { dtype: "F32", shape: [2], data_offsets: [0, 8] } });
    const cases: [string, Uint8Array, new (...args: never[]) => Error, string[]][] = [
      ["zero.safetensors", new Uint8Array(0), RangeError, ["0 bytes", "too short", "bytes 0..8"]],
      ["five.safetensors", new Uint8Array(5), RangeError, ["5 bytes", "too short"]],
      [
        "huge.safetensors",
        (() => {
          const b = new Uint8Array(16);
          new DataView(b.buffer).setBigUint64(0, 1n << 63n, true);
          return b;
        })(),
        RangeError,
        ["header length 9223372036854775808", "bytes 0..8", "limit"],
      ],
      [
        "pasteof.safetensors",
        (() => {
          const b = new Uint8Array(40);
          new DataView(b.buffer).setBigUint64(0, 1000n, true);
          return b;
        })(),
        RangeError,
        ["header length 1000", "past the end of the file", "40 bytes"],
      ],
      ["notjson.safetensors", rawSafetensors('{"a": [1, 2'), SyntaxError, [
        "not valid JSON",
        "bytes 8..19",
      ]],
      [
        "notutf8.safetensors",
        (() => {
          const b = rawSafetensors('{"x":"..."}');
          b[14] = 0xff;
          return b;
        })(),
        SyntaxError,
        ["not valid UTF-8", "bytes 8..19"],
      ],
      ["empty_header.safetensors", rawSafetensors(""), SyntaxError, [
        "not valid JSON",
        "bytes 8..8",
      ]],
      ["array.safetensors", rawSafetensors([1, 2]), SyntaxError, [
        "must be a JSON object",
        "array",
      ]],
      [
        "dtype.safetensors",
        rawSafetensors(
          { "model.norm.weight": { dtype: "F7", shape: [2], data_offsets: [0, 8] } },
          new Uint8Array(8),
        ),
        TypeError,
        ['"model.norm.weight"', 'unknown dtype "F7"'],
      ],
      [
        "nodtype.safetensors",
        rawSafetensors({ w: { shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)),
        TypeError,
        ['"w"', "unknown dtype (missing)"],
      ],
      [
        "negshape.safetensors",
        rawSafetensors(
          { w: { dtype: "F32", shape: [2, -1], data_offsets: [0, 8] } },
          new Uint8Array(8),
        ),
        RangeError,
        ['"w"', "shape[1] is -1"],
      ],
      [
        "fracshape.safetensors",
        rawSafetensors(
          { w: { dtype: "F32", shape: [1.5], data_offsets: [0, 8] } },
          new Uint8Array(8),
        ),
        RangeError,
        ['"w"', "shape[0] is 1.5"],
      ],
      [
        "strshape.safetensors",
        rawSafetensors(
          { w: { dtype: "F32", shape: ["2"], data_offsets: [0, 8] } },
          new Uint8Array(8),
        ),
        TypeError,
        ['"w"', "shape[0] must be a number"],
      ],
      [
        "offsets.safetensors",
        rawSafetensors({ w: { dtype: "F32", shape: [2], data_offsets: [0] } }, new Uint8Array(8)),
        TypeError,
        ['"w"', "data_offsets must be [begin, end]"],
      ],
      [
        "backwards.safetensors",
        rawSafetensors(
          { w: { dtype: "F32", shape: [0], data_offsets: [8, 0] } },
          new Uint8Array(8),
        ),
        RangeError,
        ['"w"', "[8, 0]", "begin > end"],
      ],
      [
        "wrongspan.safetensors",
        rawSafetensors(
          { w: { dtype: "F32", shape: [3, 5], data_offsets: [0, 56] } },
          new Uint8Array(60),
        ),
        RangeError,
        ['"w"', "F32 [3, 5] needs 60 bytes", "[0, 56) span 56"],
      ],
      [
        "truncated.safetensors",
        (() => {
          const full = rawSafetensors({
            "model.norm.weight": { dtype: "F32", shape: [4], data_offsets: [0, 16] },
          });
          return rawSafetensors(new TextDecoder().decode(full.subarray(8)), new Uint8Array(10));
        })(),
        RangeError,
        ['"model.norm.weight"', "[0, 16) ends past the end of the data (10 bytes"],
      ],
      [
        "overlap.safetensors",
        rawSafetensors({
          a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
          b: { dtype: "F32", shape: [4], data_offsets: [8, 24] },
        }, new Uint8Array(24)),
        RangeError,
        ['"b" span [8, 24) overlaps tensor "a" span [0, 16)'],
      ],
      [
        "meta.safetensors",
        rawSafetensors({ __metadata__: { format: "pt", step: 3 }, ...ok("w") }, new Uint8Array(8)),
        TypeError,
        ['__metadata__ field "step" must be a string'],
      ],
      [
        "entry.safetensors",
        rawSafetensors({ w: [1, 2] }, new Uint8Array(8)),
        TypeError,
        ['"w"', "must be an object"],
      ],
    ];
    for (const [name, bytes, cls, parts] of cases) {
      const p = await writeRaw(dir, name, bytes);
      await rejectsWith(SafetensorsFile.open(p), cls, [name, ...parts]);
      // The same file reached through a Checkpoint fails the same way.
      await rejectsWith(Checkpoint.open(p), cls, [name]);
    }
    // Valid counterparts open: zero-size tensors may share an offset, gaps are allowed.
    const fine = await writeRaw(
      dir,
      "fine.safetensors",
      rawSafetensors({
        a: { dtype: "F32", shape: [0], data_offsets: [0, 0] },
        b: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
        c: { dtype: "F32", shape: [], data_offsets: [12, 16] },
      }, new Uint8Array(16)),
    );
    using f = await SafetensorsFile.open(fine);
    assert.equal(f.tensors.size, 3);
    assert.equal((await f.readAs("a", "f32")).length, 0);
  });
});

Deno.test("a file truncated after opening fails the read with a RangeError naming the byte", async () => {
  await withTmp(async (dir) => {
    const path = join(dir, "model.safetensors");
    await writeSafetensors(path, { w: { dtype: "F32", shape: [1000], data: randomF32(1000, 9) } });
    using f = await SafetensorsFile.open(path);
    const cut = f.dataStart + 100;
    await Deno.truncate(path, cut);
    await rejectsWith(f.read("w"), RangeError, [
      "model.safetensors",
      `ends at byte ${cut}`,
      'tensor "w"',
    ]);
  });
});

// ---------------------------------------------------------------------------
// Reads by offset

Deno.test("a 64 MiB tensor is read by offset: garbage around it is never touched", async () => {
  await withTmp(async (dir) => {
    const n = 16 * 1024 * 1024; // 64 MiB of f32
    const big = new Float32Array(n);
    for (let i = 0; i < n; i++) big[i] = i;
    // Garbage regions on both sides, declared as U8 tensors so the header is valid.
    const junk = new Uint8Array(8 * 1024 * 1024).fill(0xab);
    const path = join(dir, "model.safetensors");
    await writeSafetensors(path, {
      "junk.before": { dtype: "U8", shape: [junk.length], data: junk },
      big: { dtype: "F32", shape: [n], data: big },
      "junk.after": { dtype: "U8", shape: [junk.length], data: junk },
    });
    using f = await SafetensorsFile.open(path);
    assert.equal(f.bytesRead, f.dataStart, "open reads only the header");
    const got = await f.readAs("big", "f32");
    assert.equal(got.length, n);
    assert.equal(got[0], 0);
    assert.equal(got[n - 1], n - 1);
    assert.equal(got[12345678], 12345678);
    assert.equal(f.bytesRead, f.dataStart + 4 * n, "only the header and the tensor were read");
  });
});

Deno.test("an 8 GiB sparse file: one tensor at its end reads quickly without reading the rest", async () => {
  await withTmp(async (dir) => {
    const size = 8 * 1024 ** 3;
    const small = Float32Array.from({ length: 1024 }, (_, i) => i * 0.5);
    // The header's length depends on the offsets written in it: iterate to a fixed point.
    let bytes: Uint8Array = new Uint8Array(0);
    let headerBytes = 8;
    for (;;) {
      const dataLen = size - headerBytes;
      const filler = dataLen - 4096;
      bytes = rawSafetensors({
        filler: { dtype: "U8", shape: [filler], data_offsets: [0, filler] },
        small: { dtype: "F32", shape: [1024], data_offsets: [filler, dataLen] },
      });
      if (bytes.length === headerBytes) break;
      headerBytes = bytes.length;
    }
    const path = join(dir, "sparse.safetensors");
    const file = await Deno.open(path, { write: true, create: true });
    try {
      await file.write(bytes);
      await file.truncate(size); // sparse: no blocks allocated for the filler
      await file.seek(size - 4096, Deno.SeekMode.Start);
      await file.write(new Uint8Array(small.buffer));
    } finally {
      file.close();
    }
    assert.equal((await Deno.stat(path)).size, size);

    const rss0 = Deno.memoryUsage().rss;
    const t0 = performance.now();
    using ckpt = await Checkpoint.open(path);
    const got = await ckpt.readF32("small");
    const ms = performance.now() - t0;
    assert.deepEqual(got, small);
    assert.equal(ckpt.files[0].bytesRead, headerBytes + 4096);
    assert.ok(ms < 2000, `open + read took ${ms.toFixed(0)} ms`);
    assert.ok(Deno.memoryUsage().rss - rss0 < 256 * 1024 ** 2, "no large allocation");
  });
});

// ---------------------------------------------------------------------------
// Progress

Deno.test("progress: throttled redraws with bytes, rate and ETA; done ends the line", () => {
  let t = 0;
  const out: string[] = [];
  const bar = createProgress({
    total: 100e6,
    label: "weights",
    write: (s) => out.push(s),
    now: () => t,
    columns: 100,
  });
  t = 1000;
  bar.advance(10e6); // first advance draws
  assert.equal(out.length, 1);
  assert.ok(out[0].startsWith("\rweights ["), out[0]);
  assert.ok(out[0].includes("10.0 MB/100.0 MB"), out[0]);
  assert.ok(out[0].includes("10.0 MB/s"), out[0]);
  assert.ok(out[0].includes("ETA 0:09"), out[0]);
  t = 1050;
  bar.advance(10e6); // within 100 ms: no redraw
  assert.equal(out.length, 1);
  t = 1200;
  bar.advance(10e6);
  assert.equal(out.length, 2);
  assert.ok(out[1].includes(" 30%"), out[1]);
  for (const line of out) assert.equal(line.length, 100, "fixed width so \\r overwrites fully");
  bar.done();
  assert.ok(out[2].endsWith("\n"));
  bar.done();
  bar.advance(1);
  assert.equal(out.length, 3, "done is idempotent and later advances are ignored");
  assert.throws(
    () => createProgress({ total: 1, label: "x", write: () => {} }).advance(-1),
    RangeError,
  );
});

Deno.test("progress: quiet, and silent on a non-terminal stderr", () => {
  const out: string[] = [];
  const q = createProgress({ total: 10, label: "q", quiet: true, write: (s) => out.push(s) });
  q.advance(10);
  q.done();
  assert.equal(out.length, 0);
  // Under `deno test` stderr is normally not a TTY; then the default bar draws nothing
  // (nothing to assert on stderr itself, but it must not throw).
  if (!Deno.stderr.isTerminal()) {
    const d = createProgress({ total: 10, label: "d" });
    d.advance(5);
    d.done();
  }
  assert.equal(formatBytes(999), "999 B");
  assert.equal(formatBytes(1_500_000), "1.5 MB");
  assert.equal(formatBytes(90e9), "90.0 GB");
  assert.equal(formatDuration(75), "1:15");
  assert.equal(formatDuration(3725), "1:02:05");
  assert.equal(formatDuration(Infinity), "--:--");
});

Deno.test("fixture writer rejects data that does not match the shape or dtype", () => {
  assert.throws(
    () => encodeSafetensors({ w: { dtype: "F32", shape: [3], data: new Float32Array(2) } }),
    (e: unknown) => e instanceof RangeError && e.message.includes('"w"'),
  );
  assert.throws(
    () =>
      encodeSafetensors({
        w: { dtype: "I32", shape: [1], data: new Float32Array(1) },
      }),
    (e: unknown) => e instanceof TypeError && e.message.includes("Int32Array"),
  );
});

// ---------------------------------------------------------------------------
// Found by the loader fuzzer (tools/fuzz_loaders.ts): each failed before its fix.

Deno.test("a tensor named twice in the header is refused, not silently taken from its last copy", async () => {
  await withTmp(async (dir) => {
    // Two copies of lm_head.weight in their own bytes: JSON.parse keeps the second (2.0).
    const entry = (b: number) => `{"dtype":"F32","shape":[1],"data_offsets":[${b},${b + 4}]}`;
    const header = `{"lm_head.weight":${entry(0)},"lm_head.weight":${entry(4)}}`;
    const p = await writeRaw(
      dir,
      "model.safetensors",
      rawSafetensors(header, new Uint8Array(new Float32Array([1, 2]).buffer)),
    );
    const msg = await rejectsWith(SafetensorsFile.open(p), SyntaxError, [
      p,
      'tensor "lm_head.weight" appears twice in the header',
    ]);
    assert.match(msg, /^\S+model\.safetensors: /);
    // A field twice inside one entry, and __metadata__ twice, change the meaning just as silently.
    const twiceField = `{"w":{"dtype":"F32","shape":[1],"shape":[0],"data_offsets":[0,4]}}`;
    await Deno.writeFile(p, rawSafetensors(twiceField, new Uint8Array(4)));
    await rejectsWith(SafetensorsFile.open(p), SyntaxError, [
      'tensor "w": field "shape" appears twice',
    ]);
    const twiceMeta = `{"__metadata__":{"a":"1"},"__metadata__":{"a":"2"}}`;
    await Deno.writeFile(p, rawSafetensors(twiceMeta));
    await rejectsWith(SafetensorsFile.open(p), SyntaxError, ["__metadata__ appears twice"]);
    // Escaped spellings of one name are one name.
    const escaped = `{"a\\u0062":${entry(0)},"ab":${entry(4)}}`;
    await Deno.writeFile(p, rawSafetensors(escaped, new Uint8Array(8)));
    await rejectsWith(SafetensorsFile.open(p), SyntaxError, ['tensor "ab" appears twice']);
  });
});

Deno.test("a tensor twice in the index's weight_map, or in two shards, is refused", async () => {
  await withTmp(async (dir) => {
    const one = (v: number): Record<string, FixtureTensor> => ({
      [`w${v}`]: { dtype: "F32", shape: [1], data: new Float32Array([v]) },
    });
    const names = await writeShardedSafetensors(dir, [one(0), one(1)]);
    const indexPath = join(dir, "model.safetensors.index.json");
    await Deno.writeTextFile(
      indexPath,
      `{"weight_map":{"w0":"${names[0]}","w1":"${names[1]}","w0":"${names[1]}"}}`,
    );
    await rejectsWith(Checkpoint.open(dir), SyntaxError, [
      indexPath,
      'tensor "w0" appears twice in weight_map',
    ]);
    // w0 stored in both shards: which copy is the model would depend on the reader.
    await writeSafetensors(join(dir, names[1]), { ...one(1), ...one(0) });
    await Deno.writeTextFile(
      indexPath,
      JSON.stringify({ weight_map: { w0: names[0], w1: names[1] } }),
    );
    await rejectsWith(Checkpoint.open(dir), RangeError, [
      indexPath,
      'tensor "w0" is in two shards',
      names[0],
      names[1],
    ]);
    // One shard spelled two ways is one file, opened once (no false "two shards").
    await writeSafetensors(join(dir, names[1]), one(1));
    await Deno.writeTextFile(
      indexPath,
      JSON.stringify({ weight_map: { w0: names[0], w1: `./${names[1]}`, w2: names[1] } }),
    );
    await rejectsWith(Checkpoint.open(dir), RangeError, ['weight_map puts tensor "w2"']);
  });
});

Deno.test("a shape whose element count overflows 2^53 is refused even when a later dimension is 0", async () => {
  await withTmp(async (dir) => {
    const max = Number.MAX_SAFE_INTEGER;
    const header = { w: { dtype: "F32", shape: [max, max, 0], data_offsets: [0, 0] } };
    const p = await writeRaw(dir, "m.safetensors", rawSafetensors(header));
    await rejectsWith(SafetensorsFile.open(p), RangeError, [
      p,
      '"w"',
      "more than 2^53 elements (overflow at shape[1])",
    ]);
  });
});

// A guard, not a regression: this already held; the fuzzer checks it on every case.
Deno.test("a header claiming 2^40 bytes is refused before anything is allocated", async () => {
  await withTmp(async (dir) => {
    const header = { w: { dtype: "U8", shape: [2 ** 40], data_offsets: [0, 2 ** 40] } };
    const p = await writeRaw(dir, "m.safetensors", rawSafetensors(header, new Uint8Array(16)));
    const before = Deno.memoryUsage().external;
    await rejectsWith(SafetensorsFile.open(p), RangeError, [p, "ends past the end of the data"]);
    // Array buffers count here as soon as they are allocated, touched or not.
    assert.ok(Deno.memoryUsage().external - before < 64 * 2 ** 20);
  });
});

Deno.test("huge names and values in a header or index give short messages", async () => {
  await withTmp(async (dir) => {
    const long = "x".repeat(100_000);
    const deep = JSON.parse("[".repeat(5000) + "]".repeat(5000));
    const cases: [unknown, typeof TypeError, string][] = [
      [{ w: { dtype: deep, shape: [], data_offsets: [0, 0] } }, TypeError, 'dtype array ["…"]'],
      [{ w: { dtype: long, shape: [], data_offsets: [0, 0] } }, TypeError, "(100000 characters)"],
      [{ [long]: { dtype: "F7", shape: [], data_offsets: [0, 0] } }, TypeError, "100000 char"],
      [
        { w: { dtype: "F32", shape: Array(100_000).fill(1), data_offsets: [0, 0] } },
        RangeError,
        "100000 dimensions",
      ],
    ];
    for (const [header, cls, part] of cases) {
      const p = await writeRaw(dir, "m.safetensors", rawSafetensors(header));
      const msg = await rejectsWith(SafetensorsFile.open(p), cls, [p, part]);
      assert.ok(msg.length < 1000, `message of ${msg.length} characters`);
    }
  });
});

Deno.test("shards that are folders or impossible names fail naming the file", async () => {
  await withTmp(async (dir) => {
    const one = { w0: { dtype: "F32" as const, shape: [1], data: new Float32Array([0]) } };
    const names = await writeShardedSafetensors(dir, [one]);
    await Deno.remove(join(dir, names[0]));
    await Deno.mkdir(join(dir, names[0]));
    await rejectsWith(Checkpoint.open(dir), Deno.errors.IsADirectory, [
      join(dir, names[0]),
      "is a folder",
    ]);
    const indexPath = join(dir, "model.safetensors.index.json");
    await Deno.writeTextFile(indexPath, JSON.stringify({ weight_map: { w0: "x".repeat(300) } }));
    await rejectsWith(Checkpoint.open(dir), RangeError, [
      indexPath,
      'weight_map["w0"]',
      "255 bytes",
    ]);
    await Deno.writeTextFile(indexPath, JSON.stringify({ weight_map: { w0: "a\0b" } }));
    await rejectsWith(Checkpoint.open(dir), RangeError, [indexPath, "NUL"]);
    await rejectsWith(Checkpoint.open(join(dir, "absent")), Deno.errors.NotFound, [
      join(dir, "absent"),
      "not found",
    ]);
  });
});
