/**
 * Fuzz cases for the JSON loaders: config.json (`parseConfig` on mutated objects,
 * NaN and ±Infinity included; `readConfig` on mutated text) and tokenizer.json
 * (`Tokenizer.fromJSON` on mutated objects and text, `Tokenizer.fromFile` with a
 * mutated tokenizer_config.json beside it), each followed by use: a parsed
 * config is checked for sizes that make sense, a tokenizer encodes and decodes
 * a set of texts (plain, streamed, with and without special tokens).
 *
 * @module
 */

import { join } from "node:path";
import { parseConfig } from "../../models/architectures/mod.ts";
import { ARCHITECTURES, type ModelConfig } from "../../models/config.ts";
import { readConfig } from "../../app/config_file.ts";
import { Tokenizer } from "../../app/tokenizer/mod.ts";
import { type CaseResult, judgeError, wrongSuccess } from "./judge.ts";
import {
  brief,
  chance,
  int,
  type Json,
  mutateJson,
  mutateText,
  pick,
  type Rng,
  stringifyWithDuplicate,
} from "./mutate.ts";
import { TEXTS } from "./seeds.ts";

/** Context shared by the cases of one worker. */
export interface TextContext {
  /** Scratch folder of this worker. */
  dir: string;
  /** Valid config.json objects. */
  configs: Record<string, Json>[];
  /** Valid tokenizer.json objects (`big`: a whole real file, given more time). */
  tokenizers: { json: Record<string, Json>; big: boolean }[];
  /** Told what a case is about to load (so a hang can be described). */
  note: (what: string) => void;
}

const CONFIG_WORDS = [
  ...ARCHITECTURES,
  "LlamaForCausalLM",
  "mixtral",
  "mamba",
  "jamba",
  "qwen2_moe",
  "olmoe",
  "silu",
  "gelu",
  "swish",
  "auto",
  "default",
  "linear",
  "yarn",
  "llama3",
  "dynamic",
  "longrope",
  "full_attention",
  "sliding_attention",
  "random",
  "constant",
  "rope_scaling",
  "rope_parameters",
  "rope_type",
  "type",
  "factor",
  "head_dim",
];

/** Why a parsed config does not make sense, or undefined. */
function insaneConfig(c: ModelConfig): string | undefined {
  const pos = (v: unknown) => typeof v === "number" && Number.isSafeInteger(v) && v > 0;
  const nat = (v: unknown) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
  const bad: string[] = [];
  const walk = (v: unknown, at: string): void => {
    // Δ's upper limit is ∞ when a Mamba-2 has none (time_step_limit's default).
    const unbounded = at.endsWith(".dtLimit.1") && v === Infinity;
    if (typeof v === "number" && !Number.isFinite(v) && !unbounded) bad.push(`${at} = ${v}`);
    else if (v !== null && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) walk(x, `${at}.${k}`);
    }
  };
  walk({ ...c, pattern: undefined }, "config");
  for (const f of ["vocabSize", "hidden", "layers"] as const) {
    if (!pos(c[f])) bad.push(`${f} = ${c[f]}`);
  }
  if (!nat(c.intermediate)) bad.push(`intermediate = ${c.intermediate}`);
  if (c.pattern.length !== c.layers) bad.push(`pattern has ${c.pattern.length} layers`);
  if (!(c.normEps >= 0)) bad.push(`normEps = ${c.normEps}`);
  for (const id of [...c.eosTokenIds, ...(c.bosTokenId === undefined ? [] : [c.bosTokenId])]) {
    if (!nat(id)) bad.push(`token id ${id}`);
  }
  const a = c.attention;
  if (a) {
    for (const f of ["heads", "kvHeads", "headDim"] as const) {
      if (!pos(a[f])) bad.push(`attention.${f} = ${a[f]}`);
    }
    if (a.heads % a.kvHeads !== 0) bad.push("heads not a multiple of kvHeads");
    if (!nat(a.slidingWindow)) bad.push(`slidingWindow = ${a.slidingWindow}`);
  }
  const m = c.mamba;
  if (m) {
    for (const f of ["stateSize", "inner", "convKernel", "dtRank"] as const) {
      if (!pos(m[f])) bad.push(`mamba.${f} = ${m[f]}`);
    }
  }
  const e = c.moe;
  if (e && !(pos(e.experts) && pos(e.topK) && e.topK <= e.experts)) {
    bad.push(`moe experts ${e.experts} topK ${e.topK}`);
  }
  if (e?.ff !== undefined && !pos(e.ff)) bad.push(`moe.ff = ${e.ff}`);
  for (const [i, p] of c.pattern.entries()) {
    if (p.window !== undefined && !nat(p.window)) bad.push(`pattern[${i}].window = ${p.window}`);
    if (p.mixer === "attention" && !a) bad.push(`pattern[${i}] attention without settings`);
    if (p.mixer === "mamba" && !m) bad.push(`pattern[${i}] mamba without settings`);
    if (p.ffn === "moe" && !e) bad.push(`pattern[${i}] moe without settings`);
  }
  return bad.length ? `accepted a config with ${bad.slice(0, 4).join(", ")}` : undefined;
}

/** One config.json case. */
export async function configCase(r: Rng, ctx: TextContext, index: number): Promise<CaseResult> {
  const s = int(r, ctx.configs.length);
  let value: Json = ctx.configs[s];
  const words = [...CONFIG_WORDS, ...Object.keys(ctx.configs[s])];
  const whats: string[] = [];
  const asText = chance(r, 0.4);
  for (let k = 0, n = 1 + int(r, 3); k < n; k++) {
    const m = mutateJson(r, value, words, !asText);
    value = m.value;
    whats.push(m.what);
  }
  if (!asText) {
    const file = `case${index}/config.json`;
    const what = `config ${s} (object): ${whats.join("; ")}`;
    ctx.note(what);
    let cfg: ModelConfig;
    try {
      cfg = parseConfig(value, file);
    } catch (e) {
      return judgeError(e, [file], what);
    }
    const bad = insaneConfig(cfg);
    return bad ? wrongSuccess(what, bad) : { outcome: "ok", what };
  }
  let text = stringifyWithDuplicate(value, 2);
  if (chance(r, 0.5)) {
    const t = mutateText(r, text);
    text = t.text;
    whats.push(t.what);
  }
  const what = `config ${s} (text): ${whats.join("; ")}`;
  ctx.note(what);
  const dir = join(ctx.dir, `case${index}`);
  await Deno.mkdir(dir);
  try {
    await Deno.writeTextFile(join(dir, "config.json"), text);
    let cfg: ModelConfig;
    try {
      cfg = await readConfig(dir);
    } catch (e) {
      return judgeError(e, [join(dir, "config.json")], what);
    }
    const bad = insaneConfig(cfg);
    return bad ? wrongSuccess(what, bad) : { outcome: "ok", what };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const TOKENIZER_WORDS = [
  "BPE",
  "WordPiece",
  "Unigram",
  "Sequence",
  "ByteLevel",
  "Split",
  "Metaspace",
  "Digits",
  "Whitespace",
  "WhitespaceSplit",
  "Prepend",
  "Replace",
  "NFC",
  "NFKC",
  "Lowercase",
  "Strip",
  "ByteFallback",
  "Fuse",
  "TemplateProcessing",
  "RobertaProcessing",
  "BertProcessing",
  "Isolated",
  "Removed",
  "MergedWithPrevious",
  "MergedWithNext",
  "Contiguous",
  "always",
  "first",
  "never",
  "<s>",
  "</s>",
  "<unk>",
  "<|endoftext|>",
  "▁",
  "Ġ",
  "<0x41>",
  "String",
  "Regex",
  "(?:",
  "\\p{L}+",
  "[a-",
  "a-b",
  "(a+)+$",
  "\\s+",
  "a b",
  "type",
  "id",
  "ids",
  "content",
  "special",
  "pattern",
  "normalizers",
  "pretokenizers",
  "decoders",
  "processors",
  "single",
  "special_tokens",
  "SpecialToken",
  "toString",
  "__proto__",
  "constructor",
];

const PATTERNS: readonly Json[] = [
  { String: "-" },
  { String: " " },
  { String: "" },
  { String: "[" },
  { String: "\\" },
  { String: "▁" },
  { Regex: "\\s+" },
  { Regex: "[a-" },
  { Regex: "(?<=a)b" },
  { Regex: "\\p{L}+|\\p{N}" },
  { Regex: "(?i)abc" },
  { Regex: "" },
  { Nope: 1 },
];

/** A Sequence of `depth` levels around `leaf`, under the list key of its kind. */
function sequence(kind: string, depth: number, leaf: Json): Json {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = { type: "Sequence", [kind]: [v] };
  return v;
}

/**
 * A whole component swapped in: edge settings of each normalizer, pre-tokenizer,
 * decoder and post-processor type, and Sequences nested deep.
 */
function componentMutation(r: Rng, json: Record<string, Json>): { value: Json; what: string } {
  // 33 is one past Kiln's limit; 1000 is as deep as JSON.stringify (recursive) can write out.
  const depth = pick(r, [1, 2, 33, 1000]);
  const pattern = pick(r, PATTERNS);
  const word = pick(r, ["", "▁", "-", "x".repeat(10_000), "<s>", "\u0000"]);
  const [field, component]: [string, Json] = pick(r, [
    ["normalizer", sequence("normalizers", depth, { type: "Replace", pattern, content: word })],
    ["normalizer", { type: "Prepend", prepend: word }],
    ["normalizer", { type: pick(r, ["NFKC", "Lowercase", "Strip", "NFD"]) }],
    [
      "pre_tokenizer",
      sequence("pretokenizers", depth, {
        type: "Split",
        pattern,
        behavior: pick(r, [
          "Isolated",
          "Removed",
          "MergedWithPrevious",
          "MergedWithNext",
          "Contiguous",
          "x",
        ]),
        invert: chance(r, 0.5),
      }),
    ],
    ["pre_tokenizer", {
      type: "Metaspace",
      replacement: word,
      prepend_scheme: pick(r, ["always", "first", "never", "sometimes"]),
    }],
    ["pre_tokenizer", {
      type: pick(r, ["Digits", "Whitespace", "WhitespaceSplit", "ByteLevel"]),
      individual_digits: true,
    }],
    ["decoder", sequence("decoders", depth, { type: "Replace", pattern, content: word })],
    ["decoder", {
      type: "Strip",
      content: word,
      start: pick(r, [0, 1, 1e9]),
      stop: pick(r, [0, 2, 2 ** 53]),
    }],
    ["decoder", { type: pick(r, ["ByteFallback", "Fuse", "ByteLevel", "Metaspace"]) }],
    [
      "post_processor",
      sequence("processors", depth, {
        type: "TemplateProcessing",
        single: [
          { SpecialToken: { id: pick(r, ["<s>", "toString", "__proto__", "constructor"]) } },
          { Sequence: { id: "A" } },
        ],
        special_tokens: { "<s>": { ids: [pick(r, [0, 1, 2, 300, 99_999, 2 ** 26, -1])] } },
      }),
    ],
    ["post_processor", {
      type: pick(r, ["RobertaProcessing", "BertProcessing"]),
      cls: ["<s>", pick(r, [0, -1, 1.5, 2 ** 40])],
      sep: ["</s>", 2],
    }],
  ]);
  return {
    value: { ...json, [field]: component },
    what: `${field} = ${JSON.stringify(depth > 2 ? "(nested)" : component).slice(0, 160)} ` +
      `(Sequence depth ${depth}, pattern ${JSON.stringify(pattern)}, word ${brief(word)})`,
  };
}

/** Why the result of an encode is wrong, or undefined. */
function badIds(ids: unknown, vocabSize: number): string | undefined {
  if (!Array.isArray(ids)) return "encode did not return an array";
  const bad = ids.find((id) => !Number.isInteger(id) || id < 0 || id >= vocabSize);
  return bad === undefined ? undefined : `encode gave id ${bad} (vocabSize ${vocabSize})`;
}

/** Encodes and decodes every text; a string when something is wrong that no error reported. */
function use(tok: Tokenizer, r: Rng): string | undefined {
  // A mutated normalizer can expand each space into a megabyte: encoding then
  // takes time in proportion to its output (not a hang), so a tokenizer that has
  // produced this many ids is used no further.
  let budget = 200_000;
  for (const text of TEXTS) {
    if (budget <= 0) break;
    const opts = { addSpecialTokens: chance(r, 0.5), splitSpecialTokens: chance(r, 0.3) };
    const ids = tok.encode(text, opts);
    const bad = badIds(ids, tok.vocabSize);
    if (bad) return bad;
    const out = tok.decode(ids, { skipSpecialTokens: chance(r, 0.5) });
    if (typeof out !== "string") return "decode did not return a string";
    budget -= ids.length;
    if (ids.length > 20_000) continue; // streaming re-decodes a window per id: slow, not wrong
    const stream = tok.decoder();
    let streamed = "";
    for (const id of ids) streamed += stream.push(id);
    streamed += stream.flush();
    if (
      /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(streamed) &&
      !/[\ud800-\udfff]/.test(text)
    ) {
      return "the stream decoder emitted a lone surrogate";
    }
  }
  return undefined;
}

/** Prepares one tokenizer case; `big` cases (whole real files) get more time. */
export function tokenizerCase(
  r: Rng,
  ctx: TextContext,
  index: number,
): { budget: number; run: () => Promise<CaseResult> } {
  const s = int(r, ctx.tokenizers.length);
  const seed = ctx.tokenizers[s];
  return { budget: seed.big ? 10 : 1, run: () => runTokenizerCase(r, ctx, index, s) };
}

async function runTokenizerCase(
  r: Rng,
  ctx: TextContext,
  index: number,
  s: number,
): Promise<CaseResult> {
  const seed = ctx.tokenizers[s].json;
  const vocab = Object.keys((seed.model as Record<string, Json>).vocab as Record<string, Json>);
  const words = [...TOKENIZER_WORDS, ...Array.from({ length: 8 }, () => pick(r, vocab))];
  let value: Json = seed;
  const whats: string[] = [];
  const mode = pick(r, ["object", "object", "object", "text", "text", "file"] as const);
  for (let k = 0, n = 1 + int(r, 2); k < n; k++) {
    const m: { value: Json; what: string } =
      chance(r, 0.25) && value !== null && typeof value === "object" && !Array.isArray(value)
        ? componentMutation(r, value)
        : mutateJson(r, value, words, mode === "object");
    value = m.value;
    whats.push(m.what);
  }
  let text = "";
  if (mode !== "object") {
    text = stringifyWithDuplicate(value);
    if (chance(r, 0.5)) {
      const t = mutateText(r, text);
      text = t.text;
      whats.push(t.what);
    }
  }
  const what = `tokenizer ${s} (${mode}): ${whats.join("; ")}`;
  ctx.note(what);
  if (mode === "file") return await fileCase(r, ctx, index, text, what);
  const source = `case${index}/tokenizer.json`;
  let tok: Tokenizer;
  try {
    tok = Tokenizer.fromJSON(mode === "object" ? value : text, { source });
  } catch (e) {
    return judgeError(e, [source], what);
  }
  try {
    const bad = use(tok, r);
    return bad ? wrongSuccess(what, bad) : { outcome: "ok", what };
  } catch (e) {
    return judgeError(e, [source], `${what} (while encoding)`);
  }
}

/** tokenizer.json from disk, with a tokenizer_config.json beside it (sometimes broken). */
async function fileCase(
  r: Rng,
  ctx: TextContext,
  index: number,
  text: string,
  what: string,
): Promise<CaseResult> {
  const dir = join(ctx.dir, `case${index}`);
  await Deno.mkdir(dir);
  const path = join(dir, "tokenizer.json");
  const configPath = join(dir, "tokenizer_config.json");
  try {
    await Deno.writeTextFile(path, text);
    let config = JSON.stringify({ bos_token: "<s>", eos_token: { content: "</s>" } });
    const how = int(r, 5);
    if (how === 1) config = mutateText(r, config).text;
    if (how === 2) config = JSON.stringify({ bos_token: pick(r, ["<nope>", "", "<|endoftext|>"]) });
    if (how === 3) await Deno.mkdir(configPath);
    else if (how !== 4) await Deno.writeTextFile(configPath, config);
    const full = `${what}; tokenizer_config.json ${
      ["as usual", "mutated", "odd bos", "a folder", "absent"][how]
    }`;
    let tok: Tokenizer;
    try {
      tok = await Tokenizer.fromFile(path);
    } catch (e) {
      return judgeError(e, [path, configPath], full);
    }
    try {
      const bad = use(tok, r);
      return bad ? wrongSuccess(full, bad) : { outcome: "ok", what: full };
    } catch (e) {
      return judgeError(e, [path], `${full} (while encoding)`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
