/**
 * Bugs the loader fuzzer (tools/fuzz_loaders.ts) found in config.json and
 * tokenizer.json reading, one test each; every one failed before its fix.
 * (The safetensors ones are in safetensors_test.ts.)
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseConfig } from "../models/architectures/mod.ts";
import { Tokenizer } from "../app/tokenizer/mod.ts";
import {
  TINY_MAMBA_CONFIG,
  TINY_MIXTRAL_CONFIG,
  TINY_QWEN2_MOE_CONFIG,
} from "./fixtures/tiny_checkpoints.ts";
import {
  tinyByteLevelTokenizerJson,
  tinySentencePieceTokenizerJson,
} from "./fixtures/tiny_tokenizers.ts";

const FILE = "models/x/config.json";
const MIXTRAL: Record<string, unknown> = { ...TINY_MIXTRAL_CONFIG, vocab_size: 300 };
const MAMBA: Record<string, unknown> = { ...TINY_MAMBA_CONFIG, vocab_size: 300 };

/** Asserts `fn` throws `cls` with a message starting with `prefix` and matching `re`. */
function throwsKiln(
  fn: () => unknown,
  cls: typeof TypeError,
  prefix: string,
  re: RegExp,
): string {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
  const msg = (err as Error).message;
  assert.ok(msg.startsWith(prefix), `message ${JSON.stringify(msg)} does not start with ${prefix}`);
  assert.match(msg, re);
  assert.doesNotMatch(msg, /\bundefined\b|Invalid array length|Maximum call stack/);
  assert.ok(msg.length < 1000, `message of ${msg.length} characters`);
  return msg;
}

// ---------------------------------------------------------------------------
// config.json

Deno.test("config: a missing field says so, not 'got undefined'", () => {
  const { hidden_size: _, ...rest } = MIXTRAL;
  throwsKiln(
    () => parseConfig(rest, FILE),
    TypeError,
    FILE,
    /field "hidden_size" must be a non-negative integer, got nothing \(missing\)/,
  );
});

Deno.test("config: a huge num_hidden_layers is refused before the layer list is built", () => {
  // 2^31 hung building 2^31 layer objects; 2^53 + 2 threw the engine's "Invalid array length".
  for (const n of [2 ** 31, 2 ** 53 + 2, 100_000]) {
    throwsKiln(
      () => parseConfig({ ...MIXTRAL, num_hidden_layers: n }, FILE),
      RangeError,
      FILE,
      /num_hidden_layers" is \d+, over the limit/,
    );
  }
});

Deno.test("config: sizes beyond 2^31 - 1 (1e308, 2^64) are refused, not accepted as models", () => {
  for (const [field, v] of [["vocab_size", 2 ** 53], ["num_local_experts", 1e308]] as const) {
    throwsKiln(
      () => parseConfig({ ...MIXTRAL, [field]: v }, FILE),
      RangeError,
      FILE,
      new RegExp(`field "${field}" is .*over the limit of 2147483647`),
    );
  }
  const qwen = { ...TINY_QWEN2_MOE_CONFIG, vocab_size: 300, mlp_only_layers: [2 ** 40] };
  throwsKiln(
    () => parseConfig(qwen, FILE),
    TypeError,
    FILE,
    /field "mlp_only_layers" must be a list of non-negative integers up to 2147483647/,
  );
});

Deno.test("config: token ids must be non-negative integers", () => {
  for (const eos of [-1, 1.5, NaN, Infinity, [2, "</s>"]]) {
    throwsKiln(
      () => parseConfig({ ...MIXTRAL, eos_token_id: eos }, FILE),
      TypeError,
      FILE,
      /field "eos_token_id" must be a token id or a list of them/,
    );
  }
  throwsKiln(
    () => parseConfig({ ...MIXTRAL, bos_token_id: -Infinity }, FILE),
    TypeError,
    FILE,
    /field "bos_token_id" must be a non-negative integer, got -Infinity/,
  );
  assert.deepEqual(parseConfig({ ...MIXTRAL, eos_token_id: [2, 3] }, FILE).eosTokenIds, [2, 3]);
});

Deno.test("config: a negative norm epsilon and a Mamba inner width below 1 are refused", () => {
  throwsKiln(
    () => parseConfig({ ...MIXTRAL, rms_norm_eps: -1 }, FILE),
    RangeError,
    FILE,
    /field "rms_norm_eps" must be >= 0, got -1/,
  );
  throwsKiln(
    () => parseConfig({ ...MAMBA, layer_norm_epsilon: -1e-5 }, FILE),
    RangeError,
    FILE,
    /layer_norm_epsilon/,
  );
  for (const expand of [-1, 0, 0.001]) {
    throwsKiln(
      () => parseConfig({ ...MAMBA, expand }, FILE),
      RangeError,
      FILE,
      /gives an inner width of -?\d+, not between 1 and/,
    );
  }
});

Deno.test("config: huge or deeply nested values give short messages", () => {
  const long = "x".repeat(1_000_000);
  const deep = JSON.parse("[".repeat(20_000) + "]".repeat(20_000));
  const cases: [Record<string, unknown>, typeof TypeError, RegExp][] = [
    [{ ...MIXTRAL, hidden_act: long }, TypeError, /hidden_act "x{99}… \(1000002 characters\)/],
    [{ ...MIXTRAL, architectures: [long] }, TypeError, /architecture/],
    [{ ...MIXTRAL, rope_scaling: Array(100_000).fill(0) }, TypeError, /rope_scaling/],
    [
      { ...MIXTRAL, rope_scaling: { rope_type: long } },
      TypeError,
      /rope_type "x{99}… \(1000002 characters\)/,
    ],
    [{ ...MIXTRAL, rope_theta: deep }, TypeError, /rope_theta/],
    [{ ...MIXTRAL, intermediate_size: deep }, TypeError, /intermediate_size/],
  ];
  for (const [json, cls, re] of cases) throwsKiln(() => parseConfig(json, FILE), cls, FILE, re);
});

// ---------------------------------------------------------------------------
// tokenizer.json

const SRC = "models/x/tokenizer.json";
type Json = Record<string, unknown>;

/** The tiny SentencePiece tokenizer with `edit` applied to a deep copy. */
function sp(edit: (j: Json) => void): Json {
  const j = structuredClone(tinySentencePieceTokenizerJson({ merges: 8 })) as Json;
  edit(j);
  return j;
}

Deno.test("tokenizer: a missing added-token id says so, not 'undefined undefined'", () => {
  throwsKiln(
    () => Tokenizer.fromJSON(sp((j) => delete (j.added_tokens as Json[])[1].id), { source: SRC }),
    TypeError,
    SRC,
    /added_tokens\[1\]\.id is not a non-negative integer \(got nothing \(missing\)\)/,
  );
});

Deno.test("tokenizer: token ids past 2^26 are refused (they threw 'Invalid array length')", () => {
  const big = 2 ** 53 - 1;
  throwsKiln(
    () =>
      Tokenizer.fromJSON(sp((j) => ((j.model as Json).vocab as Json)["▁the"] = big), {
        source: SRC,
      }),
    RangeError,
    SRC,
    /model\.vocab\["▁the"\] is 9007199254740991, over the limit of 67108863/,
  );
  throwsKiln(
    () =>
      Tokenizer.fromJSON(sp((j) => (j.added_tokens as Json[])[0].id = 2 ** 40), { source: SRC }),
    RangeError,
    SRC,
    /added_tokens\[0\]\.id is 1099511627776, over the limit/,
  );
});

Deno.test("tokenizer: a String pattern with '-' compiles (it threw a raw RegExp 'Invalid escape')", () => {
  const tok = Tokenizer.fromJSON(
    sp((j) => {
      j.normalizer = { type: "Replace", pattern: { String: "-" }, content: " " };
    }),
    { source: SRC },
  );
  assert.equal(tok.decode(tok.encode("a-b")), tok.decode(tok.encode("a b")));
});

Deno.test("tokenizer: Sequences nested too deep are refused, not a stack overflow", () => {
  let normalizer: Json = { type: "NFC" };
  for (let i = 0; i < 20_000; i++) normalizer = { type: "Sequence", normalizers: [normalizer] };
  throwsKiln(
    () => Tokenizer.fromJSON(sp((j) => (j.normalizer = normalizer)), { source: SRC }),
    RangeError,
    SRC,
    /nests Sequences more than 32 deep/,
  );
  let post: Json = { type: "ByteLevel" };
  for (let i = 0; i < 20_000; i++) post = { type: "Sequence", processors: [post] };
  throwsKiln(
    () => Tokenizer.fromJSON(sp((j) => (j.post_processor = post)), { source: SRC }),
    RangeError,
    SRC,
    /post_processor\.processors\[0\].* nests Sequences more than 32 deep/,
  );
  let decoder: Json = { type: "Fuse" };
  for (let i = 0; i < 4; i++) decoder = { type: "Sequence", decoders: [decoder] };
  Tokenizer.fromJSON(sp((j) => (j.decoder = decoder)), { source: SRC }); // shallow ones still load
});

Deno.test("tokenizer: template special tokens are looked up as own keys, and must be in the vocabulary", () => {
  const template = (name: string, ids: unknown[]): Json => ({
    type: "TemplateProcessing",
    single: [{ SpecialToken: { id: name, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
    special_tokens: { "<s>": { id: "<s>", ids } },
  });
  throwsKiln(
    () =>
      Tokenizer.fromJSON(sp((j) => (j.post_processor = template("toString", [1]))), {
        source: SRC,
      }),
    TypeError,
    SRC,
    /names special token "toString", which special_tokens lacks/,
  );
  // Encode would return id 99999 and decode then refuse it.
  throwsKiln(
    () =>
      Tokenizer.fromJSON(sp((j) => (j.post_processor = template("<s>", [99999]))), { source: SRC }),
    RangeError,
    SRC,
    /post_processor adds token id 99999, which is not in the vocabulary/,
  );
  // A negative [token, id] pair was taken as is: encode then returned id -1.
  const roberta = { type: "RobertaProcessing", cls: ["<s>", -1], sep: ["</s>", 2] };
  throwsKiln(
    () => Tokenizer.fromJSON(sp((j) => (j.post_processor = roberta)), { source: SRC }),
    TypeError,
    SRC,
    /post_processor\.cls\[1\] is not a token id \(got number -1\)/,
  );
});

Deno.test("tokenizer: a character with no token and no unk_token is dropped, as Hugging Face drops it", () => {
  // tokenizers' BPE (models/bpe/model.rs, merge_word) skips a character it has
  // no token, byte fallback or unk_token for: ids match the library, not an error.
  const json = structuredClone(tinyByteLevelTokenizerJson({ merges: 8 })) as Json;
  (json.model as Json).vocab = { a: 0 };
  (json.model as Json).merges = [];
  json.added_tokens = [];
  json.pre_tokenizer = null;
  json.normalizer = null;
  const tok = Tokenizer.fromJSON(json, { source: SRC });
  assert.deepEqual(tok.encode("b"), []);
  assert.deepEqual(tok.encode("bab"), [0]);
});

Deno.test("tokenizer: huge type names and tokens give short messages", () => {
  const long = "x".repeat(1_000_000);
  const cases: [Json, typeof TypeError, RegExp][] = [
    [
      sp((j) => (j.normalizer = { type: long })),
      TypeError,
      /normalizer\.type "x{60}"… \(1000000 characters\)/,
    ],
    [sp((j) => ((j.model as Json).merges = [`${long} a`])), SyntaxError, /model\.merges\[0\]/],
    [
      sp((j) => (((j.model as Json).vocab as Json)[long] = -1)),
      TypeError,
      /model\.vocab\["x{60}"…/,
    ],
    [
      sp((j) => (j.decoder = { type: "Replace", pattern: { [long]: 1 }, content: "" })),
      TypeError,
      /got keys/,
    ],
  ];
  for (const [json, cls, re] of cases) {
    throwsKiln(() => Tokenizer.fromJSON(json, { source: SRC }), cls, SRC, re);
  }
});

Deno.test("tokenizer: a folder where tokenizer.json or tokenizer_config.json should be is named", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kiln_tok_" });
  try {
    const path = join(dir, "tokenizer.json");
    await Deno.mkdir(path);
    await assert.rejects(
      Tokenizer.fromFile(path),
      (e: Error) => e instanceof Deno.errors.IsADirectory && e.message.startsWith(path),
    );
    await Deno.remove(path);
    await Deno.writeTextFile(path, JSON.stringify(sp(() => {})));
    const config = join(dir, "tokenizer_config.json");
    await Deno.mkdir(config);
    await assert.rejects(
      Tokenizer.fromFile(path),
      (e: Error) => e instanceof Deno.errors.IsADirectory && e.message.startsWith(config),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tokenizer: a pattern too large to compile fails at load, naming the file", () => {
  // V8 compiles a RegExp on first use: this failed in the middle of encode with its
  // 800 KB source in the message.
  const big = "[".repeat(400_000);
  const msg = throwsKiln(
    () =>
      Tokenizer.fromJSON(
        sp((j) => (j.normalizer = { type: "Replace", pattern: { String: big }, content: "" })),
        { source: SRC },
      ),
    SyntaxError,
    SRC,
    /normalizer\.pattern\.String pattern "\[{59}.*does not compile: Regular expression too large/,
  );
  assert.ok(msg.length < 300);
});

Deno.test("tokenizer: components that grow text without bound fail instead of hanging", () => {
  // Each Replace of the empty pattern puts 10 characters at every position: ×11 per step.
  const grow = { type: "Replace", pattern: { Regex: "" }, content: "x".repeat(10) };
  const normalizer = { type: "Sequence", normalizers: Array(12).fill(grow) };
  const tok = Tokenizer.fromJSON(sp((j) => (j.normalizer = normalizer)), { source: SRC });
  throwsKiln(
    () => tok.encode("ab"),
    RangeError,
    SRC,
    /normalizer\.normalizers\[\d+\] makes the text longer than 65664 characters/,
  );
  // A Metaspace replacement of two spaces would double them at every step;
  // tokenizers takes one character only, so it is refused at load.
  const meta = { type: "Metaspace", replacement: "  ", prepend_scheme: "never", split: false };
  throwsKiln(
    () =>
      Tokenizer.fromJSON(
        sp((j) => (j.pre_tokenizer = { type: "Sequence", pretokenizers: [meta] })),
        { source: SRC },
      ),
    TypeError,
    SRC,
    /pre_tokenizer\.pretokenizers\[0\]\.replacement must be exactly one character/,
  );
  const decoders = { type: "Sequence", decoders: Array(12).fill(grow) };
  const tok3 = Tokenizer.fromJSON(sp((j) => (j.decoder = decoders)), { source: SRC });
  throwsKiln(
    () => tok3.decode(tok3.encode("the sea")),
    RangeError,
    SRC,
    /decoder\.decoders\[\d+\] makes/,
  );
  // Real growth stays far inside the budget.
  const real = Tokenizer.fromJSON(sp(() => {}), { source: SRC });
  assert.equal(real.decode(real.encode("the sea  is wide")), "the sea  is wide");
});

Deno.test("tokenizer: a huge continuing_subword_prefix costs nothing per character (it hung)", () => {
  // No token can hold a 1 MB prefix: the encoder must not build and look up one
  // such string per character (fuzz case tokenizer #8053, seed 3, took seconds).
  const huge = "x".repeat(1_000_000);
  // No merges (a merge's second token must carry the prefix: tokenizers strips
  // it) and no byte fallback (tokenizers would spell the prefix out in bytes).
  const withPrefix = Tokenizer.fromJSON(
    sp((j) => {
      (j.model as Json).continuing_subword_prefix = huge;
      (j.model as Json).merges = [];
      (j.model as Json).byte_fallback = false;
    }),
    { source: SRC },
  );
  // A short prefix no token carries either: looked up, missing, the same outcome.
  const plain = Tokenizer.fromJSON(
    sp((j) => {
      (j.model as Json).continuing_subword_prefix = "§§";
      (j.model as Json).merges = [];
      (j.model as Json).byte_fallback = false;
    }),
    { source: SRC },
  );
  const text = "the sea and the whale ".repeat(200);
  const t0 = performance.now();
  const ids = withPrefix.encode(text);
  const ms = performance.now() - t0;
  // Same ids as with a prefix no token carries …
  assert.deepEqual(ids, plain.encode(text));
  // … and nowhere near the seconds it took (a generous bound: a loaded machine).
  assert.ok(ms < 1500, `${ms.toFixed(0)} ms`);
  // With byte fallback tokenizers spells each prefixed character out in bytes: a
  // megabyte prefix is refused by name instead of building a million ids a character.
  const spelled = Tokenizer.fromJSON(
    sp((j) => {
      (j.model as Json).continuing_subword_prefix = huge;
      (j.model as Json).merges = [];
    }),
    { source: SRC },
  );
  throwsKiln(
    () => spelled.encode("the sea"),
    RangeError,
    SRC,
    /continuing_subword_prefix \/ end_of_word_suffix of 1000000 \/ 0 characters spelled in byte_fallback tokens/,
  );
});
