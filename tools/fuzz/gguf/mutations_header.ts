/**
 * Mutations of a GGUF file's header, for the GGUF fuzzer: the preamble (magic,
 * version, counts), strings (length prefixes, UTF-8, duplicates, huge
 * strings), metadata values (type ids, array element types, lengths and
 * nesting, bool bytes) and `general.alignment`.
 *
 * @module
 */

import {
  arr,
  editArray,
  enc,
  findKv,
  keyOf,
  nameOf,
  num,
  Out,
  type RawArray,
  type RawGguf,
  type RawString,
  type RawValue,
  relayout,
  setKv,
  str,
  VT,
} from "./codec.ts";
import type { Op, SeedInfo } from "./op.ts";
import { chance, int, pick, type Rng } from "../../fuzz_loaders/mutate.ts";

const HUGE_LENGTHS = [2n ** 64n - 1n, 2n ** 63n, 2n ** 53n, 2n ** 32n, 2n ** 40n + 7n];

/** Odd UTF-8: invalid bytes (for keys and names: must be refused) or valid oddities. */
const BAD_UTF8: readonly [string, number[]][] = [
  ["a lone 0xff", [0xff]],
  ["an overlong NUL", [0xc0, 0x80]],
  ["a UTF-16 surrogate", [0xed, 0xa0, 0x80]],
  ["a code point past U+10FFFF", [0xf4, 0x90, 0x80, 0x80]],
  ["a cut 3-byte sequence", [0x61, 0xe2, 0x82]],
  ["a stray continuation byte", [0x80, 0x61]],
];
const ODD_UTF8: readonly [string, number[]][] = [
  ["a BOM", [0xef, 0xbb, 0xbf, 0x61]],
  ["a NUL", [0x61, 0x00, 0x62]],
  ["a combining accent", [0x65, 0xcc, 0x81]],
  ["an emoji", [0xf0, 0x9f, 0xa6, 0xa9]],
  ["nothing", []],
];

/** Every string of the file, by where it is, resolved again at apply time. */
function stringRefs(
  g: RawGguf,
  r: Rng,
): { desc: string; exact: boolean; get: (g: RawGguf) => RawString | undefined }[] {
  const out: { desc: string; exact: boolean; get: (g: RawGguf) => RawString | undefined }[] = [];
  g.kvs.forEach((kv, i) => {
    out.push({
      desc: `key #${i} ${JSON.stringify(keyOf(kv))}`,
      exact: true,
      get: (h) => h.kvs[i]?.key,
    });
    if (kv.value.kind === "string") {
      out.push({
        desc: `the string value of ${JSON.stringify(keyOf(kv))}`,
        exact: false,
        get: (h) => {
          const v = h.kvs[i]?.value;
          return v?.kind === "string" ? v.s : undefined;
        },
      });
    }
    const v = kv.value;
    if (v.kind === "array" && v.elem === VT.string && v.items.length > 0) {
      const k = int(r, v.items.length);
      out.push({
        desc: `${JSON.stringify(keyOf(kv))}[${k}]`,
        exact: false,
        get: (h) => {
          const a = h.kvs[i]?.value;
          const x = a?.kind === "array" ? a.items[k] : undefined;
          return x?.kind === "string" ? x.s : undefined;
        },
      });
    }
  });
  g.tensors.forEach((t, i) => {
    out.push({
      desc: `the name of tensor #${i} ${JSON.stringify(nameOf(t))}`,
      exact: true,
      get: (h) => h.tensors[i]?.name,
    });
  });
  return out;
}

/** Arrays of the file (metadata values), by key. */
function arrayKeys(g: RawGguf): string[] {
  // The first pair of each key (a repeated key's later copies are not found by name).
  return g.kvs.filter((kv) => kv.value.kind === "array" && findKv(g, keyOf(kv)) === kv)
    .map(keyOf);
}

const hex = (b: Uint8Array | number[]) =>
  [...b].map((x) => x.toString(16).padStart(2, "0")).join(" ");

/** Preamble: magic, version, counts. */
export function preambleOp(r: Rng, g: RawGguf): Op {
  switch (int(r, 4)) {
    case 0: {
      const magic = pick(r, [
        [0x67, 0x67, 0x75, 0x66],
        [0x47, 0x47, 0x4d, 0x4c],
        [0x47, 0x47, 0x4a, 0x54],
        [0x46, 0x55, 0x47, 0x47],
        [0, 0, 0, 0],
        [0x47, 0x47, 0x55, 0x00],
        Array.from({ length: 4 }, () => int(r, 256)),
      ]);
      const same = magic.every((b, i) => b === [0x47, 0x47, 0x55, 0x46][i]);
      return {
        what: `magic ${hex(magic)}`,
        refuse: !same,
        model: (h) => h.magic = new Uint8Array(magic),
      };
    }
    case 1: {
      const v = pick(r, [0, 1, 4, 5, 2 ** 32 - 1, 0x03000000, 0x02000000, 2 ** 31, 2, 3]);
      return { what: `version ${v}`, refuse: v !== 2 && v !== 3, model: (h) => h.version = v };
    }
    default: {
      const tensors = chance(r, 0.5);
      const n = BigInt(tensors ? g.tensors.length : g.kvs.length);
      const v = pick(r, [
        0n,
        n - 1n,
        n + 1n,
        n + 2n,
        2n ** 32n,
        2n ** 32n + n,
        2n ** 53n,
        2n ** 63n,
        2n ** 64n - 1n,
        n * 1000n + 1000000n,
      ]);
      if (v < 0n || v === n) return preambleOp(r, g);
      return {
        what: `${tensors ? "tensor" : "metadata"} count ${v} (was ${n})`,
        refuse: v >= 2n ** 32n,
        model: (h) => tensors ? h.tensorCount = v : h.kvCount = v,
      };
    }
  }
}

/** Strings: length prefixes, UTF-8, duplicates, huge strings. */
export function stringOp(r: Rng, g: RawGguf, s: SeedInfo): Op | undefined {
  const refs = stringRefs(g, r);
  if (refs.length === 0) return undefined;
  const ref = pick(r, refs);
  const cur = ref.get(g)!;
  const len = BigInt(cur.bytes.length);
  switch (int(r, 5)) {
    case 0:
    case 1: {
      const v = pick(r, [...HUGE_LENGTHS, len + 1n, len + 8n, len - 1n, 0n, len + 1000n]);
      if (v < 0n || v === len) return undefined;
      return {
        what: `${ref.desc}: length ${v} (was ${len})`,
        refuse: v >= 2n ** 32n,
        model: (h) => {
          const x = ref.get(h);
          if (x) x.len = v;
        },
      };
    }
    case 2: {
      const bad = chance(r, 0.6);
      const [desc, bytes] = pick(r, bad ? BAD_UTF8 : ODD_UTF8);
      const where = pick(r, ["replaced by", "prefixed with", "suffixed with"] as const);
      const make = (old: Uint8Array) => {
        const b = new Uint8Array(bytes);
        if (where === "replaced by") return b;
        const out = new Uint8Array(old.length + b.length);
        out.set(where === "prefixed with" ? b : old);
        out.set(
          where === "prefixed with" ? old : b,
          where === "prefixed with" ? b.length : old.length,
        );
        return out;
      };
      return {
        what: `${ref.desc} ${where} ${desc} (${hex(bytes)})`,
        // Keys and tensor names must be exact UTF-8; values are read leniently.
        refuse: bad && ref.exact,
        model: (h) => {
          const x = ref.get(h);
          if (x) x.bytes = make(x.bytes);
        },
      };
    }
    case 3: {
      // The same key or tensor name twice.
      const tensor = chance(r, 0.5) && g.tensors.length > 1;
      const list = tensor ? g.tensors.map(nameOf) : g.kvs.map(keyOf);
      if (list.length < 2) return undefined;
      const i = int(r, list.length);
      let j = int(r, list.length - 1);
      if (j >= i) j++;
      return {
        what: `${tensor ? "tensor" : "key"} #${i} renamed ${JSON.stringify(list[j])}, as #${j}`,
        refuse: true,
        model: (h) => {
          const items = tensor ? h.tensors.map((t) => t.name) : h.kvs.map((kv) => kv.key);
          if (items[i] && items[j]) items[i].bytes = items[j].bytes.slice();
        },
      };
    }
    default: {
      // Huge strings: a vocabulary token of a million characters must not make the
      // tokenizer quadratic; a huge key or name must not be echoed whole in a message.
      const n = pick(r, [10_000, 200_000, 1_000_000]);
      const unit = pick(r, ["x", "▁", "é", "ab"]);
      const target = s.model && chance(r, 0.5)
        ? refs.find((x) => x.desc.startsWith('"tokenizer.ggml.tokens"')) ?? ref
        : ref;
      return {
        what: `${target.desc} = ${JSON.stringify(unit)} × ${n}`,
        model: (h) => {
          const x = target.get(h);
          if (x) x.bytes = enc.encode(unit.repeat(n));
        },
      };
    }
  }
}

/** Value type ids, array element types, lengths and nesting, bool bytes. */
export function valueOp(r: Rng, g: RawGguf): Op | undefined {
  if (g.kvs.length === 0) return undefined;
  const i = int(r, g.kvs.length);
  const kv = g.kvs[i];
  const key = keyOf(kv);
  switch (int(r, 6)) {
    case 0: {
      const bad = chance(r, 0.5);
      const t = bad ? pick(r, [13, 14, 255, 2 ** 31, 2 ** 32 - 1]) : int(r, 13);
      if (t === kv.type) return undefined;
      return {
        what: `${JSON.stringify(key)}: value type ${t} (was ${kv.type})`,
        refuse: bad,
        model: (h) => {
          const x = findKv(h, key);
          if (x) x.type = t;
        },
      };
    }
    case 1: {
      const keys = arrayKeys(g);
      if (keys.length === 0) return undefined;
      const k = pick(r, keys);
      const v = findKv(g, k)!.value as RawArray;
      const bad = chance(r, 0.5);
      const t = bad ? pick(r, [13, 100, 255, 2 ** 32 - 1]) : int(r, 13);
      if (t === v.elem) return undefined;
      return {
        what: `${JSON.stringify(k)}: element type ${t} (was ${v.elem})`,
        refuse: bad,
        model: editArray(k, (x) => x.elem = t),
      };
    }
    case 2: {
      const keys = arrayKeys(g);
      if (keys.length === 0) return undefined;
      const k = pick(r, keys);
      const v = findKv(g, k)!.value as RawArray;
      const n = BigInt(v.items.length);
      const len = pick(r, [...HUGE_LENGTHS, 2n ** 62n, 0n, n - 1n, n + 1n, n * 2n, n + 100n]);
      if (len < 0n || len === n) return undefined;
      return {
        what: `${JSON.stringify(k)}: length ${len} (was ${n})`,
        refuse: len >= 2n ** 32n,
        model: editArray(k, (x) => x.len = len),
      };
    }
    case 3: {
      // Arrays of arrays: 64 levels are allowed, 65 are not.
      const depth = pick(r, [2, 8, 63, 64, 65, 66, 100, 1000, 100_000]);
      const o = new Out();
      for (let d = 1; d < depth; d++) {
        o.u32(VT.array);
        o.u64(1n);
      }
      o.u32(VT.u8);
      o.u64(0n);
      const bytes = o.done();
      const target = chance(r, 0.5) ? key : "fuzz.nested";
      return {
        what: `${JSON.stringify(target)} = arrays nested ${depth} deep`,
        refuse: depth > 64,
        model: (h) => setKv(h, target, VT.array, { kind: "raw", bytes }),
      };
    }
    case 4: {
      // Many small elements: each is parsed, nothing is quadratic.
      const n = pick(r, [1000, 100_000]);
      const elem = pick(r, ["array", "string", "bool", "u64"] as const);
      const item: RawValue = elem === "array"
        ? arr("u8", [])
        : elem === "string"
        ? str("")
        : num(elem, 1);
      return {
        what: `${JSON.stringify(key)} = an array of ${n} ${elem}`,
        model: (h) =>
          setKv(h, key, VT.array, { kind: "array", elem: VT[elem], items: Array(n).fill(item) }),
      };
    }
    default: {
      // A bool byte other than 0 or 1, in a scalar or an array.
      const b = pick(r, [2, 3, 0x80, 0xff]);
      const bools = g.kvs.filter((x) => x.type === VT.bool).map(keyOf);
      const k = bools.length && chance(r, 0.7) ? pick(r, bools) : "fuzz.bool";
      const inArray = chance(r, 0.3);
      const value: RawValue = inArray
        ? {
          kind: "array",
          elem: VT.bool,
          items: [num("bool", 1), { kind: "fixed", bytes: new Uint8Array([b]) }],
        }
        : { kind: "fixed", bytes: new Uint8Array([b]) };
      return {
        what: `${JSON.stringify(k)} = ${inArray ? "[true, bool byte" : "bool byte"} ${b}${
          inArray ? "]" : ""
        }`,
        refuse: true,
        model: (h) => setKv(h, k, inArray ? VT.array : VT.bool, value),
      };
    }
  }
}

/** `general.alignment`: invalid values, wrong types, valid ones with and without a relayout. */
export function alignmentOp(r: Rng): Op {
  const K = "general.alignment";
  switch (int(r, 4)) {
    case 0: {
      const v = pick(r, [
        0,
        1,
        3,
        4,
        7,
        12,
        24,
        48,
        100,
        2 ** 32 - 1,
        2 ** 31 + 8,
        2 ** 30 + 2 ** 29,
      ]);
      return {
        what: `${K} = u32 ${v}`,
        refuse: true,
        model: (h) => setKv(h, K, VT.u32, num("u32", v)),
      };
    }
    case 1: {
      const [desc, type, value] = pick<[string, number, RawValue]>(r, [
        ["u64 32", VT.u64, num("u64", 32)],
        ["i32 32", VT.i32, num("i32", 32)],
        ["u16 32", VT.u16, num("u16", 32)],
        ["u8 32", VT.u8, num("u8", 32)],
        ["f32 32", VT.f32, num("f32", 32)],
        ['string "32"', VT.string, str("32")],
        ["bool true", VT.bool, num("bool", true)],
        ["[u32 32]", VT.array, arr("u32", [num("u32", 32)])],
      ]);
      return { what: `${K} = ${desc}`, refuse: true, model: (h) => setKv(h, K, type, value) };
    }
    case 2: {
      // Declared without moving the data: the tensors may now start elsewhere.
      const v = pick(r, [8, 16, 64, 128, 2 ** 31]);
      return {
        what: `${K} = u32 ${v}, data left where it was`,
        model: (h) => setKv(h, K, VT.u32, num("u32", v)),
      };
    }
    default: {
      // A valid alignment, the data laid out for it: the file stays valid.
      const v = pick(r, [8, 16, 64, 256, 4096]);
      return {
        what: `${K} = u32 ${v}, data laid out again`,
        model: (h) => {
          setKv(h, K, VT.u32, num("u32", v));
          h.align = v;
          relayout(h);
        },
      };
    }
  }
}
