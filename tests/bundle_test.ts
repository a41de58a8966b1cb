/**
 * Weight bundles (runtime/bundle.ts, app/build/bundle_writer.ts): the payload
 * compressed when DEFLATE pays and stored raw when it does not, both read back
 * exactly, streamed in awkward chunk sizes, and a corrupted stored payload
 * caught by its checksums; CRC-32 against a bit-by-bit reference.
 */
import assert from "node:assert/strict";
import { encodeBundle, MIN_DEFLATE_SAVING } from "../app/build/bundle_writer.ts";
import {
  type BundleEntry,
  type BundleHeader,
  bundlePrefix,
  crc32,
  readBundle,
} from "../runtime/bundle.ts";
import type { HostArray } from "../core/dtype.ts";

/** CRC-32 one bit at a time, from the polynomial: independent of the table code. */
function crcBits(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return (c ^ 0xffffffff) >>> 0;
}

function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s ^ (s << 13)) >>> 0;
    s = (s ^ (s >>> 17)) >>> 0;
    s = (s ^ (s << 5)) >>> 0;
    out[i] = s & 0xff;
  }
  return out;
}

Deno.test("crc32 equals the bit-by-bit CRC at every length mod 8, and chains", () => {
  for (const n of [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4099]) {
    const b = randomBytes(n, n + 1);
    assert.equal(crc32(0, b), crcBits(b), `length ${n}`);
    const cut = n >> 1;
    assert.equal(crc32(crc32(0, b.subarray(0, cut)), b.subarray(cut)), crcBits(b), `chained ${n}`);
  }
});

/** Streams `bytes` in chunks of `size`. */
function chunked(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) return c.close();
      c.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

async function readAll(bytes: Uint8Array, chunk: number) {
  const got = new Map<string, HostArray>();
  const entries: BundleEntry[] = [];
  const header: BundleHeader = await readBundle(chunked(bytes, chunk), {
    name: "t.kwb",
    size: bytes.length,
    onTensor: (e, data) => {
      entries.push(e);
      got.set(e.name, data);
    },
  });
  return { header, got };
}

Deno.test("bundles: compressible weights deflated, random ones stored; both read back exactly", async () => {
  const random = new Float32Array(randomBytes(4 * 3001, 7).buffer);
  const smooth = Float32Array.from({ length: 5000 }, (_, i) => Math.round(Math.sin(i / 50) * 8));
  const tensors = [
    { name: "a", dtype: "f32" as const, shape: [3001], data: random },
    { name: "empty", dtype: "f32" as const, shape: [0], data: new Float32Array(0) },
    {
      name: "b",
      dtype: "u32" as const,
      shape: [5, 2],
      data: Uint32Array.from({ length: 10 }, (_, i) => i),
    },
  ];
  const cases: [string, typeof tensors, "deflate" | "stored"][] = [
    ["random", tensors, "stored"],
    ["smooth", [{ name: "s", dtype: "f32" as const, shape: [5000], data: smooth }], "deflate"],
  ];
  for (const [what, ts, kind] of cases) {
    const bytes = encodeBundle(ts);
    for (const chunk of [1, 7, 4096, 1 << 20]) {
      const { header, got } = await readAll(bytes, chunk);
      assert.equal(header.payload ?? "deflate", kind, what);
      if (kind === "stored") assert.equal(header.compressedBytes, header.rawBytes);
      else assert.ok(header.compressedBytes < (1 - MIN_DEFLATE_SAVING) * header.rawBytes);
      for (const t of ts) assert.deepEqual(got.get(t.name), t.data, `${what} ${t.name} @${chunk}`);
    }
  }
  // Level 0 always stores.
  const zeros = [{ name: "z", dtype: "f32" as const, shape: [4096], data: new Float32Array(4096) }];
  assert.equal((await readAll(encodeBundle(zeros, 0), 999)).header.payload, "stored");
  assert.equal((await readAll(encodeBundle(zeros), 999)).header.payload, undefined);
});

Deno.test("bundles: a stored payload's corruption is a checksum error naming the tensor", async () => {
  const data = new Float32Array(randomBytes(4 * 200, 3).buffer);
  const bytes = encodeBundle([{ name: "w", dtype: "f32", shape: [200], data }]);
  const payload = bytes.length - data.byteLength;
  const bad = bytes.slice();
  bad[payload + 100] ^= 1;
  await assert.rejects(readAll(bad, 64), /t\.kwb: tensor "w" checksum mismatch/);
  // Headers that disagree with their payload kind are refused before the payload is read.
  const entry = {
    name: "w",
    dtype: "f32" as const,
    shape: [200],
    bytes: 800,
    crc32: crc32(0, new Uint8Array(data.buffer)),
  };
  const withHeader = (h: Record<string, unknown>) => {
    const head = bundlePrefix(
      { format: 1, tensors: [entry], rawBytes: 800, ...h } as unknown as BundleHeader,
    );
    const out = new Uint8Array(head.length + 800);
    out.set(head);
    out.set(new Uint8Array(data.buffer), head.length);
    return out;
  };
  await readAll(withHeader({ compressedBytes: 800, payload: "stored" }), 100); // consistent
  await assert.rejects(
    readAll(withHeader({ compressedBytes: 10, payload: "stored" }), 100),
    /t\.kwb: header: a stored payload of 800 bytes, header says 10 stored/,
  );
  await assert.rejects(
    readAll(withHeader({ compressedBytes: 800, payload: "zstd" }), 100),
    /t\.kwb: header: payload "zstd", expected "deflate" or "stored"/,
  );
});
