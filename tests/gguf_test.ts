/**
 * The GGUF reader and writer: round trips of every metadata type (nested arrays,
 * 64-bit values) and of f32/f16/bf16/q8_0/q4_k tensors for versions 2 and 3 and
 * alignments 32 and 64; a file built byte by byte here, independently of the
 * writer; a header read in chunks; every malformed-file case (error class
 * and message) on files crafted with a DataView; and the bugs the GGUF fuzzer
 * (tools/fuzz/gguf_loaders.ts) found in reading files as models.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { mulberry32 } from "../core/random.ts";
import {
  encodeGguf,
  type GgufEntry,
  GgufFile,
  GgufHeaderParser,
  type GgufTensorSpec,
  parseGgufHeader,
  writeGguf,
} from "../app/gguf/mod.ts";
import { convertToGguf, type GgufOutType, openGgufModel } from "../app/gguf/arch.ts";
import { GgufCheckpoint } from "../app/gguf/checkpoint.ts";
import { tokenizerFromGguf } from "../app/gguf/tokenizer.ts";
import { ggufTokenizerMetadata } from "../app/gguf/tokenizer_export.ts";
import { loadModel } from "../app/model/mod.ts";
import { Checkpoint } from "../app/safetensors/mod.ts";
import { cpuDevice } from "../runtime/device.ts";
import {
  writeTinyJamba,
  writeTinyMamba,
  writeTinyMixtral,
  writeTinyQwen2Moe,
} from "./fixtures/tiny_checkpoints.ts";
import { tinySentencePieceTokenizerJson } from "./fixtures/tiny_tokenizers.ts";
import { rejectsWith, withTmp } from "./_util.ts";

function randomBytes(n: number, seed: number): Uint8Array {
  const r = mulberry32(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
}

/** Little-endian bytes built by hand, independently of the writer. */
class Raw {
  #buf = new Uint8Array(1 << 16);
  #view = new DataView(this.#buf.buffer);
  length = 0;
  #at(n: number): number {
    const at = this.length;
    this.length += n;
    if (this.length > this.#buf.length) {
      const grown = new Uint8Array(this.length * 2);
      grown.set(this.#buf);
      this.#buf = grown;
      this.#view = new DataView(grown.buffer);
    }
    return at;
  }
  // Each claims its bytes before touching the view: claiming may grow the buffer.
  u8(v: number): this {
    const at = this.#at(1);
    return this.#view.setUint8(at, v), this;
  }
  u32(v: number): this {
    const at = this.#at(4);
    return this.#view.setUint32(at, v, true), this;
  }
  u64(v: number | bigint): this {
    const at = this.#at(8);
    return this.#view.setBigUint64(at, BigInt.asUintN(64, BigInt(v)), true), this;
  }
  bytes(b: ArrayLike<number>): this {
    const at = this.#at(b.length);
    return this.#buf.set(b, at), this;
  }
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    return this.u64(b.length).bytes(b);
  }
  pad(align: number): this {
    this.#at((align - (this.length % align)) % align);
    return this;
  }
  build(): Uint8Array {
    return this.#buf.slice(0, this.length);
  }
}

type Kv = (r: Raw) => void;
const kvStr = (key: string, v: string): Kv => (r) => r.str(key).u32(8).str(v);
const kvU32 = (key: string, v: number): Kv => (r) => r.str(key).u32(4).u32(v);

interface RawTensor {
  name: string;
  dims: (number | bigint)[];
  type: number;
  offset: number | bigint;
}

/** A GGUF file: header, kvs, tensor infos, padding, then `data` bytes of data. */
function craft(o: {
  magic?: number[];
  version?: number;
  tensorCount?: number | bigint;
  kvCount?: number | bigint;
  kvs?: Kv[];
  tensors?: RawTensor[];
  align?: number;
  data?: number;
}): Uint8Array {
  const kvs = o.kvs ?? [kvStr("general.architecture", "llama")];
  const tensors = o.tensors ?? [{ name: "w", dims: [8], type: 0, offset: 0 }];
  const r = new Raw().bytes(o.magic ?? [0x47, 0x47, 0x55, 0x46]).u32(o.version ?? 3);
  r.u64(o.tensorCount ?? tensors.length).u64(o.kvCount ?? kvs.length);
  for (const kv of kvs) kv(r);
  for (const t of tensors) {
    r.str(t.name).u32(t.dims.length);
    for (const d of t.dims) r.u64(d);
    r.u32(t.type).u64(t.offset);
  }
  r.pad(o.align ?? 32);
  return r.pad(1).bytes(new Uint8Array(o.data ?? 32)).build();
}

/** Writes `bytes` to `dir/name` and opens it. */
async function openRaw(dir: string, bytes: Uint8Array, name = "bad.gguf"): Promise<GgufFile> {
  const p = join(dir, name);
  await Deno.writeFile(p, bytes);
  return await GgufFile.open(p);
}

// ---------------------------------------------------------------------------
// Round trips

const METADATA: [string, GgufEntry][] = [
  ["general.architecture", { type: "string", value: "llama" }],
  ["t.u8", { type: "u8", value: 255 }],
  ["t.i8", { type: "i8", value: -128 }],
  ["t.u16", { type: "u16", value: 65535 }],
  ["t.i16", { type: "i16", value: -32768 }],
  ["t.u32", { type: "u32", value: 4294967295 }],
  ["t.i32", { type: "i32", value: -2147483648 }],
  ["t.f32", { type: "f32", value: 3.140625 }],
  ["t.bool", { type: "bool", value: true }],
  ["t.false", { type: "bool", value: false }],
  ["t.string", { type: "string", value: "\uFEFFü 𝄞 \0 end" }],
  ["t.empty", { type: "string", value: "" }],
  ["t.u64", { type: "u64", value: 2n ** 64n - 1n }],
  ["t.i64", { type: "i64", value: -(2n ** 63n) }],
  ["t.f64", { type: "f64", value: Math.PI }],
  ["t.small_u64", { type: "u64", value: 4096n }],
  ["a.u8", { type: "array", value: { type: "u8", values: [0, 1, 255] } }],
  ["a.i8", { type: "array", value: { type: "i8", values: [-1, 127] } }],
  ["a.u16", { type: "array", value: { type: "u16", values: [7] } }],
  ["a.i16", { type: "array", value: { type: "i16", values: [-7, 8] } }],
  ["a.u32", { type: "array", value: { type: "u32", values: [1, 2, 3] } }],
  ["a.i32", { type: "array", value: { type: "i32", values: [-5] } }],
  ["a.f32", { type: "array", value: { type: "f32", values: [0, -0.5, Infinity] } }],
  ["a.bool", { type: "array", value: { type: "bool", values: [true, false, true] } }],
  ["a.string", { type: "array", value: { type: "string", values: ["<s>", "", "ü"] } }],
  ["a.u64", { type: "array", value: { type: "u64", values: [0n, 2n ** 63n] } }],
  ["a.i64", { type: "array", value: { type: "i64", values: [-1n, 2n ** 62n] } }],
  ["a.f64", { type: "array", value: { type: "f64", values: [1e300, -0] } }],
  ["a.empty", { type: "array", value: { type: "u32", values: [] } }],
  ["a.nested", {
    type: "array",
    value: {
      type: "array",
      values: [
        { type: "string", values: ["a", "b"] },
        { type: "u64", values: [1n] },
        { type: "array", values: [{ type: "bool", values: [true] }] },
      ],
    },
  }],
];

/** A tensor of random bytes of the right size for `type` and `shape`. */
function tensor(name: string, type: GgufTensorSpec["type"], shape: number[], seed: number) {
  const numel = shape.reduce((a, b) => a * b, 1);
  const per = { f32: 4, f16: 2, bf16: 2, q8_0: 34 / 32, q4_k: 144 / 256 } as Record<string, number>;
  return { name, type, shape, data: randomBytes(numel * per[type], seed) };
}

const TENSORS = [
  tensor("f32.w", "f32", [3, 5], 1),
  tensor("f16.w", "f16", [2, 7], 2),
  tensor("bf16.w", "bf16", [4], 3),
  tensor("q8_0.w", "q8_0", [3, 64], 4),
  tensor("q4_k.w", "q4_k", [2, 1, 512], 5),
];

for (const version of [2, 3] as const) {
  for (const alignment of [32, 64]) {
    Deno.test(`round trip: every metadata type and tensors, v${version}, alignment ${alignment}`, async () => {
      await withTmp(async (dir) => {
        const path = join(dir, "m.gguf");
        const spec = { metadata: METADATA, tensors: TENSORS, alignment, version };
        await writeGguf(path, spec);
        const bytes = await Deno.readFile(path);
        assert.deepEqual(bytes, encodeGguf(spec), "file and in-memory encodings agree");
        assert.equal(bytes.length % alignment, 0, "each tensor padded to the alignment");
        const progress: [number, number][] = [];
        using f = await GgufFile.open(path, { onProgress: (d, t) => progress.push([d, t]) });
        const total = METADATA.length + (alignment === 32 ? 0 : 1) + TENSORS.length;
        assert.deepEqual(progress.at(-1), [total, total]);
        assert.equal(f.version, version);
        assert.equal(f.alignment, alignment);
        assert.equal(f.dataOffset % alignment, 0);
        const want = new Map(METADATA);
        if (alignment !== 32) want.set("general.alignment", { type: "u32", value: alignment });
        assert.deepEqual(f.entries, want);
        assert.deepEqual([...f.metadata.keys()], [...want.keys()]);
        assert.equal(f.metadata.get("t.u64"), 2n ** 64n - 1n);
        assert.deepEqual([...f.tensors.keys()], TENSORS.map((t) => t.name));
        for (const t of TENSORS) {
          const info = f.info(t.name);
          assert.deepEqual(info.shape, t.shape);
          assert.deepEqual(info.dims, t.shape.toReversed());
          assert.equal(info.type.name, t.type);
          assert.equal(info.bytes, t.data.length);
          assert.equal((info.offset - f.dataOffset) % alignment, 0);
          assert.deepEqual(await f.read(t.name), t.data, t.name);
        }
        const f32 = await f.readF32("f32.w");
        assert.deepEqual(f32, new Float32Array(TENSORS[0].data.buffer));
        const f16 = await f.readF32("f16.w");
        assert.deepEqual(f16, new Float32Array(new Float16Array(TENSORS[1].data.buffer)));
        const bf16 = new Uint16Array(TENSORS[2].data.buffer);
        const widened = new Float32Array(new Uint32Array(Array.from(bf16, (b) => b << 16)).buffer);
        assert.deepEqual(await f.readF32("bf16.w"), widened);
      });
    });
  }
}

Deno.test("typed getters: values, missing keys and wrong types name the file, key and types", async () => {
  await withTmp(async (dir) => {
    const path = join(dir, "m.gguf");
    await writeGguf(path, { metadata: METADATA, tensors: [] });
    using f = await GgufFile.open(path);
    assert.equal(f.string("general.architecture"), "llama");
    assert.equal(f.number("t.i8"), -128);
    assert.equal(f.number("t.small_u64"), 4096);
    assert.equal(f.number("t.f64"), Math.PI);
    assert.equal(f.bool("t.false"), false);
    assert.deepEqual(f.array("a.string", "string").values, ["<s>", "", "ü"]);
    assert.equal(f.has("t.u8"), true);
    assert.equal(f.type("t.u8"), "u8");
    assert.equal(f.optionalString("nope"), undefined);
    assert.equal(f.optionalNumber("nope"), undefined);
    const wrong = (fn: () => unknown, parts: string[]) =>
      rejectsWith(Promise.resolve().then(() => fn()), TypeError, [path, ...parts]);
    await wrong(() => f.string("t.u32"), ['"t.u32"', "u32 4294967295", "expected a string"]);
    await wrong(() => f.number("t.string"), ['"t.string"', "is string", "expected a number"]);
    await wrong(() => f.bool("a.u8"), ['"a.u8"', "an array of 3 u8", "expected a bool"]);
    await wrong(() => f.array("a.u32", "string"), ["an array of 3 u32", "an array of string"]);
    await wrong(() => f.optionalBool("t.u8"), ['"t.u8"', "expected a bool"]);
    await rejectsWith(Promise.resolve().then(() => f.number("t.u64")), RangeError, [
      path,
      '"t.u64"',
      "2^53",
    ]);
    await rejectsWith(Promise.resolve().then(() => f.string("x.y")), RangeError, [
      path,
      '"x.y"',
      "missing",
    ]);
    await rejectsWith(Promise.resolve().then(() => f.info("nope")), RangeError, [path, '"nope"']);
  });
});

Deno.test("a file built byte by byte is read, and the writer produces the same bytes", async () => {
  await withTmp(async (dir) => {
    const data = new Float32Array([0, 1, 2, 3, 4, 5, 6, 7]);
    const r = new Raw().bytes([0x47, 0x47, 0x55, 0x46]).u32(3).u64(1).u64(1);
    r.str("general.architecture").u32(8).str("llama");
    r.str("w").u32(2).u64(4).u64(2).u32(0).u64(0);
    const headerEnd = r.length;
    r.pad(32).bytes(new Uint8Array(data.buffer));
    const bytes = r.build();
    assert.equal(headerEnd, 4 + 4 + 8 + 8 + (8 + 20 + 4 + 8 + 5) + (8 + 1 + 4 + 16 + 4 + 8));
    using f = await openRaw(dir, bytes, "hand.gguf");
    assert.equal(f.dataOffset, 128);
    assert.equal(f.string("general.architecture"), "llama");
    const w = f.info("w");
    assert.deepEqual([w.dims, w.shape, w.offset, w.bytes], [[4, 2], [2, 4], 128, 32]);
    assert.deepEqual(await f.readF32("w"), data);
    const encoded = encodeGguf({
      metadata: { "general.architecture": { type: "string", value: "llama" } },
      tensors: [{ name: "w", shape: [2, 4], type: "f32", data: new Uint8Array(data.buffer) }],
    });
    assert.deepEqual(encoded, bytes);
  });
});

Deno.test("a header bigger than the first read is read in chunks; tensor data is not read", async () => {
  await withTmp(async (dir) => {
    const path = join(dir, "big.gguf");
    const tokens = Array.from({ length: 50_000 }, (_, i) => `token_${i}_${"x".repeat(i % 17)}`);
    const vocab = (tensorCount: number) => {
      const r = new Raw().bytes([0x47, 0x47, 0x55, 0x46]).u32(3).u64(tensorCount).u64(2);
      r.str("tokenizer.ggml.tokens").u32(9).u32(8).u64(tokens.length);
      for (const t of tokens) r.str(t);
      r.str("tokenizer.ggml.scores").u32(9).u32(6).u64(tokens.length);
      for (let i = 0; i < tokens.length; i++) {
        r.bytes(new Uint8Array(new Float32Array([-i]).buffer));
      }
      return r;
    };
    // The writer lays out a header this big (its buffer grows) as built by hand.
    const metadata: Record<string, GgufEntry> = {
      "tokenizer.ggml.tokens": { type: "array", value: { type: "string", values: tokens } },
      "tokenizer.ggml.scores": {
        type: "array",
        value: { type: "f32", values: tokens.map((_, i) => -i) },
      },
    };
    assert.deepEqual(encodeGguf({ metadata, tensors: [] }), vocab(0).pad(32).build());
    const r = vocab(1);
    // One f32 tensor of 2^30 elements: 4 GiB, left sparse; opening must not read it.
    r.str("big").u32(1).u64(2 ** 30).u32(0).u64(0);
    const header = r.pad(32).build();
    assert.ok(header.length > 1_000_000);
    const file = await Deno.open(path, { write: true, create: true });
    await file.write(header);
    await file.truncate(header.length + 4 * 2 ** 30);
    file.close();
    const calls: number[][] = [];
    using f = await GgufFile.open(path, { onProgress: (d, t) => calls.push([d, t]) });
    // Told once per chunk read: the first (1 MiB) ends inside the vocabulary.
    assert.deepEqual([calls[0], calls.at(-1)], [[0, 3], [3, 3]]);
    assert.deepEqual(f.array("tokenizer.ggml.tokens", "string").values, tokens);
    assert.equal(f.array("tokenizer.ggml.scores", "f32").values[49_999], -49_999);
    assert.deepEqual(f.info("big"), {
      name: "big",
      dims: [2 ** 30],
      shape: [2 ** 30],
      type: f.info("big").type,
      offset: header.length,
      bytes: 4 * 2 ** 30,
    });
    assert.equal(f.dataOffset, header.length);
  });
});

Deno.test("the header parser gives the same header whichever bytes each chunk ends at", () => {
  const bytes = encodeGguf({ metadata: METADATA, tensors: TENSORS, alignment: 64 });
  const whole = parseGgufHeader("m.gguf", bytes);
  for (const step of [1, 7, 100]) {
    const p = new GgufHeaderParser("m.gguf", bytes.length);
    let need: number;
    while ((need = p.advance()) > 0) {
      assert.ok(p.held < whole.dataOffset, "asks only for header bytes");
      p.push(bytes.subarray(p.held, p.held + Math.max(step, need)));
    }
    assert.deepEqual(p.finish(), whole, `chunks of ${step}`);
  }
});

Deno.test("writeGguf streams lazily produced tensors and leaves nothing behind on failure", async () => {
  await withTmp(async (dir) => {
    const path = join(dir, "lazy.gguf");
    const data = randomBytes(34 * 4, 9);
    let made = 0;
    const lazy = { name: "q", shape: [2, 64], type: "q8_0" as const };
    await writeGguf(path, {
      metadata: [],
      tensors: [{ ...lazy, data: () => (made++, Promise.resolve(data)) }],
    });
    assert.equal(made, 1);
    using f = await GgufFile.open(path);
    assert.deepEqual(await f.read("q"), data);
    await rejectsWith(
      writeGguf(join(dir, "bad.gguf"), {
        metadata: [],
        tensors: [{ ...lazy, data: () => data.subarray(1) }],
      }),
      RangeError,
      ["bad.gguf", 'tensor "q"', "q8_0 [2, 64]", "needs 136 bytes", "holds 135"],
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["lazy.gguf"]);
  });
});

Deno.test("the writer refuses bad specs, naming the file and the key or tensor", async () => {
  const t = { name: "w", shape: [2, 32], type: "q8_0" as const, data: new Uint8Array(68) };
  const bad: [Partial<Parameters<typeof writeGguf>[1]>, typeof Error, string[]][] = [
    [{ tensors: [{ ...t, data: new Uint8Array(67) }] }, RangeError, ['"w"', "needs 68 bytes"]],
    [{ tensors: [{ ...t, shape: [2, 33] }] }, RangeError, ['"w"', "32-element block"]],
    [{ tensors: [t, t] }, RangeError, ['tensor "w" appears twice']],
    [{ tensors: [{ ...t, shape: [1, 1, 1, 1, 32] }] }, RangeError, ["5 sizes, expected 1 to 4"]],
    [{ tensors: [{ ...t, shape: [0, 32] }] }, RangeError, ['"w" shape[0] is 0']],
    [{ metadata: { k: { type: "u8", value: 300 } } }, RangeError, ['metadata "k"', "0..255"]],
    [{ metadata: { k: { type: "u32", value: "1" } } }, TypeError, ['"k"', "expected a number"]],
    [
      { metadata: { k: { type: "array", value: { type: "u64", values: [-1n] } } } },
      RangeError,
      ['metadata "k"[0] is bigint -1', "u64"],
    ],
    [
      { metadata: [["k", { type: "bool", value: true }], ["k", { type: "bool", value: false }]] },
      RangeError,
      ['metadata "k" appears twice'],
    ],
    [{ alignment: 24 }, RangeError, ["alignment 24"]],
  ];
  for (const [spec, cls, parts] of bad) {
    await rejectsWith(writeGguf("out.gguf", { metadata: [], tensors: [], ...spec }), cls, [
      "out.gguf",
      ...parts,
    ]);
  }
});

// ---------------------------------------------------------------------------
// Malformed files: each error names the file, the thing, and what was expected.

/** A file whose one tensor "w" (f32 [8] at 0 unless told) differs as given. */
const one = (t: Partial<RawTensor>, data = 32) =>
  craft({ tensors: [{ name: "w", dims: [8], type: 0, offset: 0, ...t }], data });
const kv = (...kvs: Kv[]) => craft({ kvs });

const cases: [string, Uint8Array, new (...a: never[]) => Error, string[]][] = [
  ["bad magic", craft({ magic: [0x7b, 0x22, 0, 0] }), SyntaxError, ["7b 22 00 00", '"GGUF"']],
  ["version 1", craft({ version: 1 }), RangeError, ["version 1", "expected version 2 or 3"]],
  ["version 4", craft({ version: 4 }), RangeError, ["version 4", "expected 2 or 3"]],
  ["big-endian", craft({ version: 3 << 24 }), RangeError, ["big-endian"]],
  ["tensor count past the end", craft({ tensorCount: 2n ** 60n }), RangeError, [
    "the tensor count is 1152921504606846976",
    "past the end of the file",
  ]],
  ["counts together past the end", craft({ tensorCount: 4 }), RangeError, [
    "4 tensors and 1 metadata pairs (bytes 8..24) need at least 141 bytes",
  ]],
  ["metadata count past the end", craft({ kvCount: 1000 }), RangeError, ["metadata count is 1000"]],
  ["key length past the end", kv((r) => r.u64(2n ** 63n)), RangeError, [
    "the length of the key of metadata pair #0",
    "past the end",
  ]],
  ["string past the end", kv((r) => r.str("k").u32(8).u64(9999)), RangeError, [
    'the length of metadata "k" is 9999',
  ]],
  ["array past the end", kv((r) => r.str("k").u32(9).u32(4).u64(1e6)), RangeError, [
    'metadata "k" (an array of u32) is 1000000',
  ]],
  ["header cut short", craft({ kvs: [kvU32("a", 1)], tensors: [] }).subarray(0, 39), RangeError, [
    'file ends at byte 39 inside metadata "a" (bytes 37..41)',
    "truncated",
  ]],
  ["empty file", new Uint8Array(0), RangeError, ["file ends at byte 0 inside the magic"]],
  ["duplicate key", kv(kvU32("a", 1), kvU32("a", 2)), SyntaxError, [
    'metadata "a" appears twice',
  ]],
  ["unknown value type", kv((r) => r.str("k").u32(13)), SyntaxError, [
    'the value type of metadata "k" is 13',
    "0..12",
  ]],
  ["bool byte 2", kv((r) => r.str("k").u32(7).u8(2)), SyntaxError, [
    'metadata "k"',
    "expected 0 or 1",
  ]],
  ["key not UTF-8", kv((r) => r.u64(1).u8(0xff).u32(4).u32(0)), SyntaxError, [
    "the key of metadata pair #0",
    "UTF-8",
  ]],
  [
    "duplicate tensor",
    craft({
      tensors: [{ name: "w", dims: [8], type: 0, offset: 0 }, {
        name: "w",
        dims: [8],
        type: 0,
        offset: 32,
      }],
      data: 64,
    }),
    SyntaxError,
    ['tensor "w" appears twice'],
  ],
  ["unknown tensor type", one({ type: 99 }), TypeError, ['"w" has type id 99', "not a ggml type"]],
  ["unsupported type", one({ dims: [256], type: 15 }), TypeError, [
    'tensor "w"',
    "q8_k",
    "is not supported; Kiln reads f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs, iq3_xxs, iq3_s, tq1_0, tq2_0, q1_0, q2_0, mxfp4, nvfp4, iq2_xxs, iq2_xs, iq2_s, iq1_s, iq1_m",
  ]],
  ["0 dimensions", one({ dims: [] }), RangeError, ['"w" has 0 dimensions', "expected 1 to 4"]],
  ["5 dimensions", one({ dims: [1, 1, 1, 1, 8] }), RangeError, ['"w" has 5 dimensions']],
  ["zero size", one({ dims: [8, 0] }), RangeError, [
    '"w" dims[1] is 0',
    "expected a positive size",
  ]],
  ["negative size", one({ dims: [-3n] }), RangeError, ['tensor "w" dims[0] is -3']],
  ["ne0 not whole blocks", one({ dims: [33], type: 8 }), RangeError, [
    'tensor "w" is q8_0 [33]',
    "ne0 (dims[0]) = 33",
    "32-element block",
  ]],
  ["misaligned offset", one({ offset: 16 }), RangeError, [
    'tensor "w" data offset 16',
    "alignment 32",
  ]],
  ["data past the end", one({ dims: [16] }), RangeError, [
    'tensor "w" data',
    "runs past the end of the file",
  ]],
  ["offset past the end", one({ offset: 2n ** 62n }), RangeError, [
    "data offset 4611686018427387904",
    "past the end",
  ]],
  [
    "overlapping tensors",
    craft({
      tensors: [{ name: "a", dims: [16], type: 0, offset: 0 }, {
        name: "b",
        dims: [8],
        type: 0,
        offset: 32,
      }],
      data: 96,
    }),
    RangeError,
    ['tensor "b" data', 'overlaps tensor "a"'],
  ],
  ["alignment as a string", kv(kvStr("general.alignment", "32")), TypeError, [
    'metadata "general.alignment" is string "32"',
    "expected a u32",
  ]],
  ["alignment 24", kv(kvU32("general.alignment", 24)), RangeError, [
    'metadata "general.alignment" is 24',
    "power of two",
  ]],
  ["alignment 0", kv(kvU32("general.alignment", 0)), RangeError, ['alignment" is 0']],
];

for (const [what, bytes, cls, parts] of cases) {
  Deno.test(`malformed: ${what} is a ${cls.name} naming the file and the problem`, async () => {
    await withTmp(async (dir) => {
      await rejectsWith(openRaw(dir, bytes), cls, [join(dir, "bad.gguf"), ...parts]);
    });
  });
}

Deno.test("a valid crafted file opens (the cases above differ from it in one thing)", async () => {
  await withTmp(async (dir) => {
    using f = await openRaw(dir, craft({}), "ok.gguf");
    assert.deepEqual(await f.readF32("w"), new Float32Array(8));
    using g = await openRaw(dir, craft({ kvs: [kvU32("general.alignment", 64)], align: 64 }));
    assert.equal(g.dataOffset % 64, 0);
  });
});

Deno.test("missing files, folders, quantized readF32 and reads after close", async () => {
  await withTmp(async (dir) => {
    await rejectsWith(GgufFile.open(join(dir, "none.gguf")), Deno.errors.NotFound, ["none.gguf"]);
    await rejectsWith(GgufFile.open(dir), Deno.errors.IsADirectory, [dir, "GGUF"]);
    const path = join(dir, "q.gguf");
    await writeGguf(path, { metadata: [], tensors: [TENSORS[3]] });
    const f = await GgufFile.open(path);
    await rejectsWith(f.readF32("q8_0.w"), TypeError, [
      path,
      '"q8_0.w"',
      "q8_0",
      "f32, f16 or bf16",
    ]);
    f.close();
    await rejectsWith(f.read("q8_0.w"), TypeError, [path, "after close()"]);
  });
});

// ---------------------------------------------------------------------------
// Bugs the GGUF fuzzer (tools/fuzz/gguf_loaders.ts) found, one test each;
// every one failed (or hung) before its fix.

/** A tiny checkpoint written by `write` with `config`, converted to GGUF at each of `types`. */
async function tinyGguf(
  dir: string,
  write: typeof writeTinyMixtral,
  types: GgufOutType[],
  config: Record<string, unknown> = {},
): Promise<string[]> {
  const ckptDir = join(dir, "ckpt");
  await write(ckptDir, { config, tokenizer: "none" });
  const hf = JSON.parse(await Deno.readTextFile(join(ckptDir, "config.json")));
  using ckpt = await Checkpoint.open(ckptDir);
  const out: string[] = [];
  for (const type of types) {
    const path = join(dir, `model-${type}.gguf`);
    await convertToGguf(
      { config: hf, tensors: ckpt.tensors, readF32: (n) => ckpt.readF32(n) },
      path,
      {
        type,
      },
    );
    out.push(path);
  }
  return out;
}

/** `path` written again as `out`, its metadata and tensor bytes edited by `edit`. */
async function rewrite(
  path: string,
  out: string,
  edit: (entries: Map<string, GgufEntry>, data: Map<string, Uint8Array>) => void,
): Promise<string> {
  using f = await GgufFile.open(path);
  const entries = new Map(f.entries);
  entries.delete("general.alignment");
  const data = new Map<string, Uint8Array>();
  for (const name of f.tensors.keys()) data.set(name, await f.read(name));
  edit(entries, data);
  const tensors = [...f.tensors.values()].map((t): GgufTensorSpec => ({
    name: t.name,
    shape: t.shape,
    type: t.type.name as GgufTensorSpec["type"],
    data: data.get(t.name)!,
  }));
  await Deno.writeFile(out, encodeGguf({ metadata: entries, tensors, alignment: f.alignment }));
  return out;
}

const u32 = (value: number): GgufEntry => ({ type: "u32", value });

Deno.test("fuzz: a huge block_count is refused before any per-layer work (was a hang)", async () => {
  await withTmp(async (dir) => {
    // Qwen2-MoE looped over every layer for routers, Jamba built per-layer arrays,
    // before parseConfig's limit was reached: 2^31 layers hung for minutes.
    for (
      const [arch, write] of [["qwen2moe", writeTinyQwen2Moe], ["jamba", writeTinyJamba]] as const
    ) {
      const [path] = await tinyGguf(join(dir, arch), write, ["f32"]);
      for (const n of [2 ** 32 - 1, 2 ** 31, 65537, 0]) {
        const bad = await rewrite(path, join(dir, `${arch}-${n}.gguf`), (e) => {
          e.set(`${arch}.block_count`, u32(n));
        });
        await rejectsWith(openGgufModel(bad), RangeError, [
          bad,
          `metadata "${arch}.block_count" is ${n}, expected a number of layers from 1 to 65536`,
        ]);
      }
    }
  });
});

Deno.test("fuzz: block and expert counts the tensors cannot fill are refused before the tensor table", async () => {
  await withTmp(async (dir) => {
    // 65536 blocks built a table of ~600k tensors (seconds) to report the first missing one;
    // 2^31 - 1 experts (within parseConfig's limits) a list of 2^31 names per layer (a hang).
    const [mamba] = await tinyGguf(join(dir, "mamba"), writeTinyMamba, ["f32"]);
    const blocks = await rewrite(mamba, join(dir, "blocks.gguf"), (e) => {
      e.set("mamba.block_count", u32(65536));
    });
    await rejectsWith(openGgufModel(blocks), RangeError, [
      blocks,
      '65536 blocks (metadata "mamba.block_count") need at least 327682 tensors, but the file has',
    ]);
    const [mixtral] = await tinyGguf(join(dir, "mixtral"), writeTinyMixtral, ["f32"]);
    for (const n of [2 ** 31 - 1, 5]) {
      const experts = await rewrite(mixtral, join(dir, `experts-${n}.gguf`), (e) => {
        e.set("llama.expert_count", u32(n));
      });
      await rejectsWith(openGgufModel(experts), RangeError, [
        experts,
        `${n} experts (metadata "llama.expert_count"), but tensor "blk.0.ffn_gate_inp.weight" ` +
        "has shape [4, 32], not",
      ]);
    }
    // llama.cpp limits a softmax router to its best expert groups too; Kiln does not.
    const groups = await rewrite(mixtral, join(dir, "groups.gguf"), (e) => {
      e.set("llama.expert_group_count", u32(2));
      e.set("llama.expert_group_used_count", u32(1));
    });
    await rejectsWith(openGgufModel(groups), TypeError, [
      groups,
      // The list grows with the families that route by groups; the test names one.
      'metadata "llama.expert_group_count" is 2: group-limited routing is implemented for ',
      "glm4moe",
      ", not llama",
    ]);
  });
});

Deno.test("fuzz: a NaN or infinite block scale is refused by name (was NaN logits)", async () => {
  await withTmp(async (dir) => {
    const types: GgufOutType[] = ["q8_0", "q4_k", "q6_k"];
    const paths = await tinyGguf(dir, writeTinyMamba, types, {
      hidden_size: 256,
      num_hidden_layers: 1,
      vocab_size: 64,
    });
    // d of q8_0 and q6_k (the last 2 bytes of its 210), dmin of q4_k.
    const field = { q8_0: 0, q4_k: 2, q6_k: 208 } as Record<string, number>;
    const block = { q8_0: 34, q4_k: 144, q6_k: 210 } as Record<string, number>;
    for (const [i, type] of types.entries()) {
      for (const bits of [0x7c00, 0xfe00]) {
        const bad = await rewrite(paths[i], join(dir, `${type}-${bits}.gguf`), (_, data) => {
          const d = data.get("blk.0.ssm_x.weight")!;
          new DataView(d.buffer, d.byteOffset).setUint16(block[type] + field[type], bits, true);
        });
        const hf = "backbone.layers.0.mixer.x_proj.weight";
        const parts = [
          bad,
          `tensor "${hf}" (GGUF "blk.0.ssm_x.weight", ${type}) has 1 block scale`,
        ];
        using w = await GgufCheckpoint.open(bad);
        await rejectsWith(w.readRaw(hf), RangeError, [...parts, "NaN or ±Inf, first in block 1"]);
        await rejectsWith(w.readAs(hf, "f32"), RangeError, parts);
        await rejectsWith(
          loadModel(bad, { device: cpuDevice(), quiet: true, maxSeq: 8 }),
          RangeError,
          parts,
        );
      }
    }
  });
});

Deno.test("fuzz: a million-character token does not make a SentencePiece vocabulary quadratic", () => {
  const meta = new Map(
    [...ggufTokenizerMetadata(tinySentencePieceTokenizerJson({ merges: 8 }))].map((
      [k, e],
    ) => [k, e.value]),
  );
  const tokens = meta.get("tokenizer.ggml.tokens") as { type: "string"; values: string[] };
  const values = tokens.values.slice();
  values[87] = "▁".repeat(1_000_000);
  meta.set("tokenizer.ggml.tokens", { type: "string", values });
  // Every prefix of the token was hashed to find merges: minutes; now a few ms.
  const t0 = performance.now();
  const tok = tokenizerFromGguf(meta, "long.gguf");
  const ms = performance.now() - t0;
  assert.ok(ms < 5000, `${ms.toFixed(0)} ms to build the tokenizer`);
  assert.equal(tok.decode(tok.encode("hello")), "hello");
});
