/**
 * Mutations of what a GGUF file says about its model, for the GGUF fuzzer:
 * the architecture's own metadata keys (`<arch>.block_count`,
 * `.expert_count`, RoPE scaling, …) and the `tokenizer.ggml.*` keys.
 *
 * @module
 */

import { GGUF_VALUE_TYPES } from "../../../app/gguf/value.ts";
import {
  arr,
  deleteKv,
  editArray,
  findKv,
  fixedOf,
  keyOf,
  num,
  type RawArray,
  type RawGguf,
  type RawKv,
  type RawString,
  type RawValue,
  readFixed,
  setKv,
  str,
  stringOf,
  VT,
} from "./codec.ts";
import type { Op, SeedInfo } from "./op.ts";
import { chance, int, pick, type Rng } from "../../fuzz_loaders/mutate.ts";

const U32_EDGES = [0, 1, 2, 3, 7, 16, 33, 255, 1000, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1];

/** A value for a model key: edge numbers, other types, off by one. */
function keyValue(
  r: Rng,
  kv: RawKv | undefined,
): { type: number; value: RawValue; desc: string; wrongType: boolean } {
  const cur = fixedOf(kv);
  switch (int(r, 6)) {
    case 0:
    case 1: {
      const v = pick(r, U32_EDGES);
      return { type: VT.u32, value: num("u32", v), desc: `u32 ${v}`, wrongType: false };
    }
    case 2: {
      if (typeof cur === "number" && kv) {
        const v = pick(r, [cur + 1, cur - 1, cur * 2, Math.floor(cur / 2), cur * 1000]);
        const t = GGUF_VALUE_TYPES[kv.type];
        return {
          type: kv.type,
          value: num(t, v),
          desc: `${t} ${v} (was ${cur})`,
          wrongType: false,
        };
      }
      return keyValue(r, undefined);
    }
    case 3: {
      const [desc, type, value] = pick<[string, number, RawValue]>(r, [
        ["i32 -1", VT.i32, num("i32", -1)],
        ["i32 -2147483648", VT.i32, num("i32", -(2 ** 31))],
        ["u64 2^53", VT.u64, num("u64", 2n ** 53n)],
        ["u64 2^64-1", VT.u64, num("u64", 2n ** 64n - 1n)],
        ["i64 -1", VT.i64, num("i64", -1n)],
        ["f32 1.5", VT.f32, num("f32", 1.5)],
        ["f32 NaN", VT.f32, num("f32", NaN)],
        ["f32 Infinity", VT.f32, num("f32", Infinity)],
        ["f32 -0.5", VT.f32, num("f32", -0.5)],
        ["f32 1e-30", VT.f32, num("f32", 1e-30)],
        ["f64 1e300", VT.f64, num("f64", 1e300)],
        ["u8 4", VT.u8, num("u8", 4)],
      ]);
      return { type, value, desc, wrongType: false };
    }
    default: {
      const [desc, type, value] = pick<[string, number, RawValue]>(r, [
        ['string "4"', VT.string, str("4")],
        ["bool true", VT.bool, num("bool", true)],
        ["[u32 4, u32 4]", VT.array, arr("u32", [num("u32", 4), num("u32", 4)])],
        ["[] of string", VT.array, arr("string", [])],
        ['["a"]', VT.array, arr("string", [str("a")])],
      ]);
      return { type, value, desc, wrongType: true };
    }
  }
}

/** Keys whose value fixes tensor shapes: another value must be refused. */
const SHAPE_KEYS = [
  "block_count",
  "embedding_length",
  "vocab_size",
  "ssm.inner_size",
  "ssm.state_size",
  "ssm.conv_kernel",
  "ssm.time_step_rank",
];
/** Keys every architecture reads (a wrong type must be refused). */
const READ_KEYS = [
  ...SHAPE_KEYS,
  "context_length",
  "attention.layer_norm_rms_epsilon",
];

/** The model's own metadata keys. */
export function modelKeyOp(r: Rng, g: RawGguf, s: SeedInfo): Op | undefined {
  const arch = s.arch!;
  const keys = g.kvs.map(keyOf).filter((k) => k.startsWith(`${arch}.`));
  const targeted = [
    "block_count",
    "expert_count",
    "expert_used_count",
    "embedding_length",
    "attention.head_count",
    "attention.head_count_kv",
    "feed_forward_length",
  ].map((k) => `${arch}.${k}`);
  if (chance(r, 0.15)) {
    // Optional keys the seeds do not have: RoPE scaling, head size, windows, flags.
    const [k, desc, type, value] = pick<[string, string, number, RawValue]>(r, [
      ["rope.scaling.type", '"yarn"', VT.string, str("yarn")],
      ["rope.scaling.type", '"linear"', VT.string, str("linear")],
      ["rope.scaling.type", '"longrope"', VT.string, str("longrope")],
      ["rope.scaling.type", '"none"', VT.string, str("none")],
      ["rope.scaling.type", "u32 1", VT.u32, num("u32", 1)],
      ["rope.scaling.factor", "f32 4", VT.f32, num("f32", 4)],
      ["rope.scaling.factor", "f32 0", VT.f32, num("f32", 0)],
      ["rope.scaling.factor", "f32 -1", VT.f32, num("f32", -1)],
      ["rope.scale_linear", "f32 2", VT.f32, num("f32", 2)],
      ["rope.scaling.original_context_length", "u32 0", VT.u32, num("u32", 0)],
      ["rope.dimension_count", "u32 4", VT.u32, num("u32", 4)],
      ["rope.freq_base", "f32 0", VT.f32, num("f32", 0)],
      ["rope.freq_base", "f32 NaN", VT.f32, num("f32", NaN)],
      ["attention.key_length", "u32 16", VT.u32, num("u32", 16)],
      ["attention.key_length", "u32 0", VT.u32, num("u32", 0)],
      ["attention.key_length", "u32 7", VT.u32, num("u32", 7)],
      ["attention.sliding_window", "u32 4", VT.u32, num("u32", 4)],
      ["attention.sliding_window", "i32 -1", VT.i32, num("i32", -1)],
      ["expert_weights_norm", "bool true", VT.bool, num("bool", true)],
      ["expert_weights_norm", "u8 1", VT.u8, num("u8", 1)],
      ["ssm.dt_b_c_rms", "bool true", VT.bool, num("bool", true)],
      ["expert_feed_forward_length", "u32 8", VT.u32, num("u32", 8)],
      ["expert_shared_feed_forward_length", "u32 0", VT.u32, num("u32", 0)],
    ]);
    return {
      what: `${JSON.stringify(`${arch}.${k}`)} = ${desc}`,
      model: (h) => setKv(h, `${arch}.${k}`, type, value),
    };
  }
  if (chance(r, 0.15)) {
    const v = pick(r, ["llama", "mamba", "jamba", "qwen2moe", "gpt2", "", "LLAMA", "mixtral"]);
    return {
      what: `general.architecture = ${JSON.stringify(v)} (was ${JSON.stringify(arch)})`,
      refuse: v !== arch,
      model: (h) => setKv(h, "general.architecture", VT.string, str(v)),
    };
  }
  const key = chance(r, 0.4) ? pick(r, targeted) : pick(r, keys.length ? keys : targeted);
  const short = key.slice(arch.length + 1);
  const kv = findKv(g, key);
  if (kv && chance(r, 0.15)) {
    return {
      what: `${JSON.stringify(key)} deleted`,
      refuse: [
        ...READ_KEYS.filter((k) => k !== "vocab_size"),
        "attention.head_count",
      ].includes(short) &&
        !(arch === "mamba" && short === "attention.head_count"),
      model: (h) => deleteKv(h, key),
    };
  }
  if (short === "attention.head_count_kv" && chance(r, 0.5)) {
    // One value per layer (Jamba), of the wrong length or with zeros.
    const blocks = findKv(g, `${arch}.block_count`);
    const L = Number(fixedOf(blocks) ?? 1);
    // (An earlier mutation may have made the block count huge.)
    if (!(L >= 0 && L <= 4096)) return undefined;
    const n = pick(r, [0, L - 1, L + 1, L]);
    const v = pick(r, [0, 1, 2, 3]);
    const items = Array.from({ length: Math.max(0, n) }, (_, i) => num("i32", i === 0 ? v : 2));
    return {
      what: `${JSON.stringify(key)} = ${Math.max(0, n)} i32 values per layer (${v}, 2, 2, …)`,
      model: (h) => setKv(h, key, VT.array, arr("i32", items)),
    };
  }
  const { type, value, desc, wrongType } = keyValue(r, kv);
  const cur = fixedOf(kv);
  const nv = value.kind === "fixed" ? readFixed(type, value.bytes) : undefined;
  const changed = nv === undefined || cur === undefined || Number(nv) !== Number(cur);
  const readByAll = READ_KEYS.includes(short);
  return {
    what: `${JSON.stringify(key)} = ${desc}`,
    refuse: (wrongType && readByAll) ||
      (SHAPE_KEYS.includes(short) && kv !== undefined && changed),
    model: (h) => setKv(h, key, type, value),
  };
}

/** The `tokenizer.ggml.*` keys. */
export function tokenizerOp(r: Rng, g: RawGguf): Op | undefined {
  const P = "tokenizer.ggml.";
  const tokens = findKv(g, `${P}tokens`);
  const n = tokens?.value.kind === "array" ? tokens.value.items.length : 0;
  const model = stringOf(findKv(g, `${P}model`));
  const edit = (key: string, fn: (v: RawArray) => void) => editArray(P + key, fn);
  switch (int(r, 10)) {
    case 0:
      return {
        what: `${P}tokens deleted (${P}model kept)`,
        refuse: findKv(g, `${P}model`) !== undefined,
        model: (h) => deleteKv(h, `${P}tokens`),
      };
    case 1: {
      const [desc, type, value] = pick<[string, number, RawValue]>(r, [
        ["[] of string", VT.array, arr("string", [])],
        ["an array of u32", VT.array, arr("u32", [num("u32", 1), num("u32", 2)])],
        ['string "a"', VT.string, str("a")],
        ['[["a"]]', VT.array, arr("array", [arr("string", [str("a")])])],
      ]);
      return {
        what: `${P}tokens = ${desc}`,
        refuse: true,
        model: (h) => setKv(h, `${P}tokens`, type, value),
      };
    }
    case 2: {
      if (n < 2) return undefined;
      const i = int(r, n), j = (i + 1 + int(r, n - 1)) % n;
      const how = int(r, 3);
      return {
        what: how === 0
          ? `${P}tokens[${i}] = tokens[${j}] (repeated)`
          : how === 1
          ? `${P}tokens[${i}] = ""`
          : `${P}tokens[${i}] = "\\u0000"`,
        refuse: how === 0,
        model: edit("tokens", (v) => {
          // An earlier mutation of this case may have made the items something else.
          const other = (v.items[j] as { s?: RawString }).s;
          const b = how === 0
            ? other?.bytes.slice() ?? new Uint8Array(0)
            : how === 1
            ? new Uint8Array(0)
            : new Uint8Array([0]);
          v.items[i] = str(b);
        }),
      };
    }
    case 3:
    case 4: {
      // token_type / scores: one entry short or long, a wrong element type, odd values.
      const key = pick(r, ["token_type", "scores"]);
      const present = findKv(g, P + key) !== undefined;
      if (!present || n === 0) return undefined;
      const how = int(r, 4);
      if (how <= 1) {
        return {
          what: `${P}${key}: one entry ${how === 0 ? "dropped" : "added"} (tokens has ${n})`,
          refuse: true,
          model: edit(key, (v) => how === 0 ? v.items.pop() : v.items.push(v.items[0])),
        };
      }
      if (how === 2) {
        const elem = pick(r, ["string", "f64", "u64", "bool", "u8"] as const);
        const item = elem === "string" ? str("1") : num(elem, 1);
        return {
          what: `${P}${key}: elements of type ${elem}`,
          refuse: elem === "string" || elem === "bool" ||
            (key === "scores" ? elem === "u64" : elem === "f64"),
          model: edit(key, (v) => {
            v.elem = VT[elem];
            v.items = v.items.map(() => item);
          }),
        };
      }
      const i = int(r, n);
      const val = key === "scores"
        ? pick(r, [NaN, Infinity, -Infinity, 1e30])
        : pick(r, [0, 7, -1, 2 ** 31 - 1, 3, 4, 6]);
      return {
        what: `${P}${key}[${i}] = ${val}`,
        refuse: Number.isNaN(val),
        model: edit(key, (v) => {
          v.items[i] = num(GGUF_VALUE_TYPES[v.elem], val);
        }),
      };
    }
    case 5: {
      const merges = findKv(g, `${P}merges`);
      if (!merges || merges.value.kind !== "array") return undefined;
      const m = merges.value.items.length;
      const bad = pick(r, ["ab", " ab", "a  b", "", " ", "zz qq", "\u0000 \u0000", "Ġ Ġ Ġ"]);
      const i = int(r, Math.max(1, m));
      return {
        what: `${P}merges[${i}] = ${JSON.stringify(bad)}`,
        refuse: true,
        model: edit("merges", (v) => {
          v.items[i] = str(bad);
        }),
      };
    }
    case 6: {
      const v = pick(r, ["bert", "none", "no_vocab", "", "LLAMA", "gpt2", "llama", "t5"]);
      if (v === model) return undefined;
      return {
        what: `${P}model = ${JSON.stringify(v)} (was ${JSON.stringify(model)})`,
        // A "llama" vocabulary may do without scores; "gpt2" needs merges.
        refuse: n > 0 &&
          (v === "gpt2" ? findKv(g, `${P}merges`) === undefined : v !== "llama"),
        model: (h) => setKv(h, `${P}model`, VT.string, str(v)),
      };
    }
    case 7: {
      const v = pick(r, ["qwen2", "llama-bpe", "deepseek-v3", "default", "unknown-pre", ""]);
      return {
        what: `${P}pre = ${JSON.stringify(v)}`,
        refuse: n > 0 && model === "gpt2" && (v === "" || v === "unknown-pre"),
        model: (h) => setKv(h, `${P}pre`, VT.string, str(v)),
      };
    }
    case 8: {
      const key = pick(r, ["bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id"]);
      const [desc, type, value, bad] = pick<[string, number, RawValue, boolean]>(r, [
        [`u32 ${n}`, VT.u32, num("u32", n), false],
        [`u32 ${n - 1}`, VT.u32, num("u32", n - 1), false],
        ["u32 4294967295", VT.u32, num("u32", 2 ** 32 - 1), false],
        ["i32 -1", VT.i32, num("i32", -1), true],
        ["u64 2^63", VT.u64, num("u64", 2n ** 63n), true],
        ["f32 1.5", VT.f32, num("f32", 1.5), true],
        ['string "1"', VT.string, str("1"), true],
      ]);
      return {
        what: `${P}${key} = ${desc}`,
        // The tokenizer reads every id; the config only BOS and EOS.
        refuse: bad && (n > 0 || key === "bos_token_id" || key === "eos_token_id"),
        model: (h) => setKv(h, P + key, type, value),
      };
    }
    default: {
      const how = int(r, 3);
      if (how === 0) {
        return {
          what: `${P}add_bos_token = true, ${P}bos_token_id deleted`,
          model: (h) => {
            setKv(h, `${P}add_bos_token`, VT.bool, num("bool", true));
            deleteKv(h, `${P}bos_token_id`);
          },
        };
      }
      if (how === 1) {
        return {
          what: `${P}add_eos_token = u8 1`,
          refuse: n > 0,
          model: (h) => setKv(h, `${P}add_eos_token`, VT.u8, num("u8", 1)),
        };
      }
      return {
        what: "tokenizer.chat_template = a 1 MB string",
        model: (h) => setKv(h, "tokenizer.chat_template", VT.string, str("{{x}}".repeat(200_000))),
      };
    }
  }
}
