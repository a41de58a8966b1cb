/**
 * Regenerates the llama.cpp reference fixtures of `tests/fixtures/llama_cpp/`: builds
 * each recipe's GGUF file with Kiln (`tests/fixtures/llama_cpp/recipes.ts`), asks a real
 * llama.cpp about it through a small driver program compiled against `llama.h`, and
 * stores llama.cpp's answers as JSON — never Kiln's. `tests/llama_cpp_reference_test.ts`
 * holds Kiln to them in CI, where llama.cpp cannot be built.
 *
 * What the driver (below, compiled with g++) asks llama.cpp:
 * - `logits MODEL OUT.f32 ID…`: every position's logits of one batch (CPU, f32 KV cache:
 *   llama.cpp's default f16 cache alone moves the logits by ~1e-3);
 * - `dequant MODEL`: each tensor through ggml's own `to_float`, as an FNV-1a hash of
 *   the f32 bytes;
 * - `tokenize MODEL TEXTS.hex`: `llama_tokenize` with (add_special, parse_special) =
 *   (true, true) and (false, false), `llama_detokenize` of both, and the second's
 *   `llama_token_to_piece` pieces joined (without the clean_spaces passes
 *   `llama_detokenize` applies to most BPE vocabularies).
 *
 * Build llama.cpp (the fixtures were made with commit c392e50, February 2025; only the
 * library is needed, ~10 minutes on 2 cores):
 *
 * ```sh
 * git clone https://github.com/ggml-org/llama.cpp /tmp/llama.cpp
 * git -C /tmp/llama.cpp checkout c392e50
 * cmake -S /tmp/llama.cpp -B /tmp/llama.cpp/build -DCMAKE_BUILD_TYPE=Release \
 *   -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=OFF
 * cmake --build /tmp/llama.cpp/build -j 2 --target llama
 * ```
 *
 * Then, from the repository root:
 *
 * ```sh
 * deno run -A tools/llama_cpp_reference.ts --llama /tmp/llama.cpp [--commit c392e50] \
 *   [--python PYTHON] [--ggml GGML_DIR [--ggml-commit d99724f2]] [NAME…]
 * ```
 *
 * With `--python` (a Python with torch, transformers, sentencepiece and tokenizers; and
 * `cmake --build build --target llama-quantize`), the GGUF files of
 * `tests/fixtures/llama_cpp/converted/` are first made again with llama.cpp's own
 * converter and quantizer (`tools/llama_cpp_converted.ts`); without it the checked-in
 * files are asked about as they are.
 *
 * With `--ggml` (a recent ggml checkout built as `tools/ggml_reference.ts` says), the
 * low-bit formats' fixtures are made too: their random blocks through that ggml's
 * `to_float`, and the files of the `ggmlQuantize` recipes.
 *
 * NAMEs limit the run to those fixtures. Files llama.cpp refuses are reported and get no
 * fixture (see `tests/fixtures/llama_cpp/README.md` for the known refusals).
 *
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { GgufFile } from "../app/gguf/file.ts";
import { GGML_TYPES } from "../core/quant/formats.ts";
import {
  DEQUANT_RECIPES,
  LATTICE_FORMATS,
  logitRows,
  LOW_BIT_FORMATS,
  MODEL_RECIPES,
  type RandomBlockFormat,
  randomFormatBlocks,
  TOKENIZER_RECIPES,
  TOKENIZER_TEXTS,
} from "../tests/fixtures/llama_cpp/recipes.ts";
import { makeConvertedFiles } from "./llama_cpp_converted.ts";
import { buildGgmlDriver, ggmlDriver } from "./ggml_reference.ts";

const OUT = new URL("../tests/fixtures/llama_cpp/", import.meta.url).pathname;

/** The llama.cpp driver; String.raw keeps its C escapes as written. */
const PROBE_CPP = String.raw`// Tiny llama.cpp driver for Kiln's cross-checks.
//   probe logits MODEL OUT.f32 ID...        all positions' logits, [n, vocab] f32 LE
//   probe tokenize MODEL TEXTS.hex          one hex-encoded UTF-8 text per line; prints one JSON line each
//   probe dequant MODEL                     each tensor via ggml to_float: one JSON line (FNV-1a of the f32 bytes)
//   probe blocks TYPE_ID FILE N             N elements of raw blocks via to_float: FNV-1a of the f32 bytes
#include "llama.h"
#include "ggml.h"
#include "gguf.h"
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include <fstream>
#include <iterator>

static void quiet_log(ggml_log_level level, const char * text, void *) {
    if (level >= GGML_LOG_LEVEL_WARN || getenv("PROBE_VERBOSE")) fputs(text, stderr);
}

static std::string unhex(const std::string & h) {
    std::string s;
    for (size_t i = 0; i + 1 < h.size(); i += 2) s.push_back((char) strtol(h.substr(i, 2).c_str(), nullptr, 16));
    return s;
}
static std::string hex(const std::string & s) {
    static const char * d = "0123456789abcdef";
    std::string h;
    for (unsigned char c : s) { h.push_back(d[c >> 4]); h.push_back(d[c & 15]); }
    return h;
}

static std::vector<llama_token> tok(const llama_vocab * v, const std::string & text, bool add, bool parse) {
    std::vector<llama_token> ids(text.size() * 4 + 16);
    int n = llama_tokenize(v, text.data(), (int) text.size(), ids.data(), (int) ids.size(), add, parse);
    if (n < 0) { ids.resize(-n); n = llama_tokenize(v, text.data(), (int) text.size(), ids.data(), (int) ids.size(), add, parse); }
    ids.resize(n);
    return ids;
}
static std::string detok(const llama_vocab * v, const std::vector<llama_token> & ids, bool remove_special, bool unparse) {
    std::vector<char> buf(ids.size() * 64 + 64);
    int n = llama_detokenize(v, ids.data(), (int) ids.size(), buf.data(), (int) buf.size(), remove_special, unparse);
    if (n < 0) { buf.resize(-n); n = llama_detokenize(v, ids.data(), (int) ids.size(), buf.data(), (int) buf.size(), remove_special, unparse); }
    return std::string(buf.data(), n);
}
// The pieces of llama_token_to_piece, joined: what llama-cli prints while generating.
// llama_detokenize may differ: it also applies the vocabulary's clean_spaces passes.
static std::string pieces(const llama_vocab * v, const std::vector<llama_token> & ids) {
    std::string out;
    char buf[256];
    for (llama_token id : ids) {
        int n = llama_token_to_piece(v, id, buf, sizeof(buf), 0, false);
        if (n > 0) out.append(buf, n);
    }
    return out;
}
// Flash attention off, in the spelling of either API generation (a bool before
// mid-2025, llama_flash_attn_type after).
template <typename P> auto no_flash(P & p, int) -> decltype(p.flash_attn_type, void()) {
    p.flash_attn_type = (decltype(p.flash_attn_type)) 0;
}
template <typename P> auto no_flash(P & p, long) -> decltype(p.flash_attn, void()) {
    p.flash_attn = false;
}
static void print_ids(const std::vector<llama_token> & ids) {
    printf("[");
    for (size_t i = 0; i < ids.size(); i++) printf(i ? ",%d" : "%d", ids[i]);
    printf("]");
}

int main(int argc, char ** argv) {
    if (argc < 3 || (std::string(argv[1]) != "dequant" && argc < 4)) { fprintf(stderr, "usage: probe logits|tokenize|dequant|blocks ...\n"); return 2; }
    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
    std::string mode = argv[1];
    if (mode == "blocks") {
        // probe blocks TYPE_ID FILE N: raw blocks of one ggml type through its to_float.
        std::ifstream in(argv[3], std::ios::binary);
        std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        int64_t n = atoll(argv[4]);
        std::vector<float> f(n);
        ggml_get_type_traits((ggml_type) atoi(argv[2]))->to_float(raw.data(), f.data(), n);
        uint64_t h = 14695981039346656037ull;
        for (int64_t j = 0; j < n; j++) {
            uint32_t b; memcpy(&b, &f[j], 4);
            for (int k = 0; k < 4; k++) { h ^= (b >> (8 * k)) & 255; h *= 1099511628211ull; }
        }
        printf("%016llx\n", (unsigned long long) h);
        return 0;
    }
    if (mode == "dequant") {
        // Every tensor through ggml's own to_float: FNV-1a of the f32 bits, and their sum.
        ggml_context * gctx = nullptr;
        gguf_init_params gp = { /*no_alloc*/ false, &gctx };
        gguf_context * g = gguf_init_from_file(argv[2], gp);
        if (!g) { fprintf(stderr, "probe: gguf_init_from_file failed\n"); return 3; }
        for (int64_t i = 0; i < gguf_get_n_tensors(g); i++) {
            const char * name = gguf_get_tensor_name(g, i);
            ggml_tensor * t = ggml_get_tensor(gctx, name);
            int64_t n = ggml_nelements(t);
            std::vector<float> f(n);
            if (t->type == GGML_TYPE_F32) memcpy(f.data(), t->data, n * 4);
            else ggml_get_type_traits(t->type)->to_float(t->data, f.data(), n);
            uint64_t h = 14695981039346656037ull; double sum = 0;
            for (int64_t j = 0; j < n; j++) {
                uint32_t b; memcpy(&b, &f[j], 4);
                for (int k = 0; k < 4; k++) { h ^= (b >> (8 * k)) & 255; h *= 1099511628211ull; }
                sum += f[j];
            }
            printf("{\"name\":\"%s\",\"type\":\"%s\",\"n\":%lld,\"fnv\":\"%016llx\",\"sum\":%.9g}\n", name, ggml_type_name(t->type), (long long) n, (unsigned long long) h, sum);
        }
        gguf_free(g); ggml_free(gctx);
        return 0;
    }
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.vocab_only = mode == "tokenize";
    llama_model * model = llama_model_load_from_file(argv[2], mp);
    if (!model) { fprintf(stderr, "probe: failed to load %s\n", argv[2]); return 3; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    if (mode == "tokenize") {
        std::ifstream in(argv[3]);
        std::string line;
        printf("{\"bos\":%d,\"eos\":%d,\"n_vocab\":%d}\n", llama_vocab_bos(vocab), llama_vocab_eos(vocab), llama_vocab_n_tokens(vocab));
        while (std::getline(in, line)) {
            std::string text = unhex(line);
            auto a = tok(vocab, text, true, true);
            auto b = tok(vocab, text, false, false);
            printf("{\"special\":"); print_ids(a);
            printf(",\"plain\":"); print_ids(b);
            printf(",\"detok\":\"%s\"", hex(detok(vocab, b, false, false)).c_str());
            printf(",\"detok_special\":\"%s\"", hex(detok(vocab, a, false, true)).c_str());
            printf(",\"pieces\":\"%s\"}\n", hex(pieces(vocab, b)).c_str());
        }
    } else if (mode == "logits") {
        std::vector<llama_token> ids;
        for (int i = 4; i < argc; i++) ids.push_back(atoi(argv[i]));
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = 256; cp.n_batch = 256; cp.n_ubatch = 256; cp.n_threads = 2; cp.n_threads_batch = 2;
        cp.no_perf = true; cp.type_k = GGML_TYPE_F32; cp.type_v = GGML_TYPE_F32; no_flash(cp, 0);
        llama_context * ctx = llama_init_from_model(model, cp);
        if (!ctx) { fprintf(stderr, "probe: failed to create context\n"); return 4; }
        llama_batch batch = llama_batch_init((int) ids.size(), 0, 1);
        for (size_t i = 0; i < ids.size(); i++) {
            batch.token[i] = ids[i]; batch.pos[i] = (int) i; batch.n_seq_id[i] = 1; batch.seq_id[i][0] = 0; batch.logits[i] = 1;
        }
        batch.n_tokens = (int) ids.size();
        if (llama_decode(ctx, batch) != 0) { fprintf(stderr, "probe: decode failed\n"); return 5; }
        int nv = llama_vocab_n_tokens(vocab);
        FILE * f = fopen(argv[3], "wb");
        for (size_t i = 0; i < ids.size(); i++) fwrite(llama_get_logits_ith(ctx, (int) i), sizeof(float), nv, f);
        fclose(f);
        printf("{\"n_vocab\":%d,\"n\":%zu}\n", nv, ids.size());
        llama_batch_free(batch);
        llama_free(ctx);
    }
    llama_model_free(model);
    return 0;
}
`;

/**
 * What one run needs: the driver's path, the llama.cpp commit named in the fixtures.
 *
 * @example
 * ```ts ignore
 * const env: Env = { probe: "/tmp/probe", llama: "/tmp/llama.cpp", commit: "c392e50", tmp: "/tmp" };
 * ```
 */
export interface Env {
  probe: string;
  /** A recent ggml's driver (`tools/ggml_reference.ts`), for the types c392e50 predates. */
  ggml?: string;
  /** That ggml's commit, named in the fixtures it answers. */
  ggmlCommit?: string;
  /** The llama.cpp checkout (for llama-quantize). */
  llama: string;
  commit: string;
  tmp: string;
}

/**
 * Compiles the driver against the llama.cpp checkout `llama` (headers and build/bin)
 * into `tmp`, returning its path.
 *
 * @example
 * ```ts ignore
 * const probe = await buildProbe("/tmp/llama.cpp", await Deno.makeTempDir());
 * ```
 */
export async function buildProbe(llama: string, tmp: string): Promise<string> {
  const src = join(tmp, "probe.cpp");
  const bin = join(tmp, "probe");
  await Deno.writeTextFile(src, PROBE_CPP);
  const lib = join(llama, "build", "bin");
  const args = [
    "-O2",
    "-std=c++17",
    src,
    `-I${join(llama, "include")}`,
    `-I${join(llama, "ggml", "include")}`,
    `-L${lib}`,
    "-lllama",
    "-lggml",
    "-lggml-base",
    `-Wl,-rpath,${lib}`,
    "-o",
    bin,
  ];
  const r = await new Deno.Command("g++", { args, stderr: "inherit" }).output();
  if (!r.success) throw new Error(`g++ failed to build the driver against ${llama}`);
  return bin;
}

/**
 * Runs the driver; a refusal (non-zero exit) is returned as llama.cpp's error lines.
 *
 * @example
 * ```ts ignore
 * const r = await probe(env, ["tokenize", "model.gguf", "texts.hex"]);
 * ```
 */
export async function probe(
  env: Env,
  args: string[],
): Promise<{ out: string } | { refused: string }> {
  const r = await new Deno.Command(env.probe, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  if (r.success) return { out: dec.decode(r.stdout) };
  const lines = dec.decode(r.stderr).split("\n").filter((l) => /error|fail|missing/i.test(l));
  return { refused: lines.join(" | ") || `exit ${r.code}` };
}

/** llama.cpp's per-tensor hashes of a GGUF file. */
async function tensorHashes(env: Env, path: string): Promise<Record<string, string>> {
  const r = await probe(env, ["dequant", path]);
  if ("refused" in r) throw new Error(`${path}: dequant failed: ${r.refused}`);
  const out: Record<string, string> = {};
  for (const line of r.out.trim().split("\n")) {
    const t = JSON.parse(line) as { name: string; type: string; fnv: string };
    out[t.name] = `${t.type.toLowerCase()}:${t.fnv}`;
  }
  return out;
}

/** Rounds for the JSON file: 8 significant digits keep f32 values exact enough. */
function round(x: number): number {
  return Number(x.toPrecision(8));
}

/**
 * Writes `tests/fixtures/llama_cpp/<name>.json`. Number lists are stored as one string
 * of space-separated numbers, which \`deno fmt\` leaves on one line (it would put each
 * number of an array on its own line and triple the files).
 */
async function writeFixture(name: string, value: Record<string, unknown>): Promise<void> {
  await Deno.writeTextFile(join(OUT, `${name}.json`), JSON.stringify(value) + "\n");
  console.log(`wrote ${name}.json`);
}

async function modelFixture(env: Env, recipe: typeof MODEL_RECIPES[number]): Promise<void> {
  // A type c392e50 predates: a recent ggml dequantizes and hashes the tensors.
  const byGgml = "ggmlQuantize" in recipe && recipe.ggmlQuantize !== undefined;
  if (byGgml && env.ggml === undefined) {
    return console.log(`${recipe.name}: needs --ggml, kept as checked in`);
  }
  const dir = await Deno.makeTempDir({ dir: env.tmp });
  const path = await recipe.build(dir);
  const logitsFile = join(dir, "logits.f32");
  // The weights dequantized by llama-quantize itself (ggml's to_float, the hashes
  // below), so the logits are free of llama.cpp's rounding of activations.
  const run = recipe.dequantizedLogits ? join(dir, "dequantized.gguf") : path;
  if (byGgml) {
    await ggmlDriver(env.ggml!, ["dequant", path, run]);
  } else if (recipe.dequantizedLogits) {
    const quantizer = join(env.llama, "build", "bin", "llama-quantize");
    const q = await new Deno.Command(quantizer, {
      args: ["--allow-requantize", path, run, "F32"],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!q.success) throw new Error(`llama-quantize could not dequantize ${path}`);
  }
  const r = await probe(env, ["logits", run, logitsFile, ...recipe.ids.map(String)]);
  if ("refused" in r) return console.log(`${recipe.name}: llama.cpp refused: ${r.refused}`);
  const { n_vocab: vocab } = JSON.parse(r.out.trim()) as { n_vocab: number };
  const bytes = await Deno.readFile(logitsFile);
  const logits = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  using f = await GgufFile.open(path);
  await writeFixture(recipe.name, {
    llama_cpp: env.commit,
    architecture: f.string("general.architecture"),
    ids: recipe.ids,
    logits_of: byGgml
      ? "weights dequantized to f32 by ggml's to_float"
      : recipe.dequantizedLogits
      ? "weights dequantized to f32 by llama-quantize"
      : "file",
    vocab,
    rows: logitRows(logits, vocab).map((row) => ({
      argmax: row.argmax,
      sum: round(row.sum),
      norm: round(row.norm),
      sample: row.sample.map(round).join(" "),
    })),
    tensors: byGgml ? await ggmlTensorHashes(env.ggml!, path) : await tensorHashes(env, path),
  });
}

/** A recent ggml's per-tensor hashes of a GGUF file, as `tensorHashes`. */
async function ggmlTensorHashes(driver: string, path: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const line of (await ggmlDriver(driver, ["hashes", path])).trim().split("\n")) {
    const t = JSON.parse(line) as { name: string; type: string; fnv: string };
    out[t.name] = `${t.type.toLowerCase()}:${t.fnv}`;
  }
  return out;
}

/** One file for every type: `{ type: { tensor: "type:fnv" } }`. */
async function dequantFixture(env: Env, recipes: typeof DEQUANT_RECIPES): Promise<void> {
  const types: Record<string, Record<string, string>> = {};
  for (const recipe of recipes) {
    const dir = await Deno.makeTempDir({ dir: env.tmp });
    const path = await recipe.build(dir);
    if (!PREDATED.includes(recipe.name)) {
      types[recipe.name] = await tensorHashes(env, path);
    } else if (env.ggml) {
      types[recipe.name] = await ggmlTensorHashes(env.ggml, path);
    } else {
      throw new Error(`dequant_wide_mixtral: ${recipe.name} needs --ggml (llama.cpp predates it)`);
    }
  }
  await writeFixture("dequant_wide_mixtral", {
    llama_cpp: env.commit,
    ggml: `${env.ggmlCommit} (${PREDATED.join(", ")})`,
    types,
  });
}

/**
 * `hash(typeId, file, n)` of each format's random blocks (`randomFormatBlocks`), written to
 * a file of `env.tmp` first.
 */
async function blockHashes(
  env: Env,
  formats: readonly RandomBlockFormat[],
  hash: (id: string, file: string, n: string) => Promise<string>,
): Promise<Record<string, string>> {
  const types: Record<string, string> = {};
  for (const format of formats) {
    const bytes = randomFormatBlocks(format);
    const file = join(env.tmp, `${format}.bin`);
    await Deno.writeFile(file, bytes);
    const { id, blockBytes, blockElems } = GGML_TYPES[format];
    const n = String((bytes.length / blockBytes) * blockElems);
    types[format] = (await hash(String(id), file, n)).trim();
  }
  return types;
}

/** llama.cpp's to_float of every lattice format's random blocks, as hashes. */
async function latticeFixture(env: Env): Promise<void> {
  const types = await blockHashes(env, LATTICE_FORMATS, async (id, file, n) => {
    const r = await probe(env, ["blocks", id, file, n]);
    if ("refused" in r) throw new Error(`type ${id}: ${r.refused}`);
    return r.out;
  });
  await writeFixture("dequant_lattice_blocks", { llama_cpp: env.commit, types });
}

/**
 * A recent ggml's to_float of every low-bit format's random blocks, as hashes (c392e50
 * predates most of them): `driver` from `tools/ggml_reference.ts`.
 */
async function lowBitFixture(env: Env, driver: string): Promise<void> {
  const types = await blockHashes(
    env,
    LOW_BIT_FORMATS,
    (id, file, n) => ggmlDriver(driver, ["blocks", id, file, n]),
  );
  await writeFixture("dequant_low_bit_blocks", { ggml: env.ggmlCommit, types });
}

/** The kiln quantize types llama.cpp c392e50 cannot read: a recent ggml hashes them. */
const PREDATED = ["mxfp4_moe", "mxfp4", "nvfp4", "q1_0", "q2_0"];

/** UTF-8 bytes of `s` as hex: the driver's texts, one a line. */
export const hex = (s: string): string =>
  Array.from(new TextEncoder().encode(s), (b) => b.toString(16).padStart(2, "0")).join("");
/** The driver's hex back to text, a leading U+FEFF kept (TextDecoder drops it by default). */
export const unhex = (h: string): string =>
  new TextDecoder("utf-8", { ignoreBOM: true }).decode(
    new Uint8Array((h.match(/../g) ?? []).map((x) => parseInt(x, 16))),
  );

async function tokenizerFixture(
  env: Env,
  recipe: typeof TOKENIZER_RECIPES[number],
): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: env.tmp });
  const path = await recipe.build(dir);
  const texts = join(dir, "texts.hex");
  // One text a line, hex-encoded: texts hold newlines and every other byte.
  const all = [...TOKENIZER_TEXTS, ...(recipe.texts ?? [])];
  await Deno.writeTextFile(texts, all.map(hex).join("\n") + "\n");
  const r = await probe(env, ["tokenize", path, texts]);
  if ("refused" in r) return console.log(`${recipe.name}: llama.cpp refused: ${r.refused}`);
  const [head, ...lines] = r.out.trim().split("\n").map((l) => JSON.parse(l));
  using f = await GgufFile.open(path);
  await writeFixture(recipe.name, {
    llama_cpp: env.commit,
    pre: f.metadata.get("tokenizer.ggml.pre") ?? null,
    ...head,
    cases: all.map((text, i) => ({
      text,
      special: lines[i].special.join(" "),
      plain: lines[i].plain.join(" "),
      detok: unhex(lines[i].detok),
      detok_special: unhex(lines[i].detok_special),
      pieces: unhex(lines[i].pieces),
    })),
  });
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: {
      llama: { type: "string" },
      commit: { type: "string", default: "c392e50" },
      python: { type: "string" },
      ggml: { type: "string" },
      "ggml-commit": { type: "string", default: "d99724f2" },
    },
    allowPositionals: true,
  });
  if (!values.llama) {
    console.error(
      "usage: deno run -A tools/llama_cpp_reference.ts --llama LLAMA_CPP_DIR [--python P] " +
        "[--ggml GGML_DIR] [NAME…]",
    );
    Deno.exit(2);
  }
  const only = new Set(positionals);
  const wanted = (name: string) => only.size === 0 || only.has(name);
  const tmp = await Deno.makeTempDir({ prefix: "kiln_llama_cpp_" });
  try {
    const env: Env = {
      probe: await buildProbe(values.llama, tmp),
      ggml: values.ggml ? await buildGgmlDriver(values.ggml, tmp) : undefined,
      ggmlCommit: values["ggml-commit"],
      llama: values.llama,
      commit: values.commit!,
      tmp,
    };
    await Deno.mkdir(OUT, { recursive: true });
    if (values.python) {
      const opts = { llama: values.llama, python: values.python, tmp, ggmlDriver: env.ggml };
      await makeConvertedFiles(opts, wanted);
    }
    for (const r of MODEL_RECIPES) if (wanted(r.name)) await modelFixture(env, r);
    if (wanted("dequant_wide_mixtral")) await dequantFixture(env, DEQUANT_RECIPES);
    if (wanted("dequant_lattice_blocks")) await latticeFixture(env);
    if (env.ggml && wanted("dequant_low_bit_blocks")) {
      await lowBitFixture(env, env.ggml);
    }
    for (const r of TOKENIZER_RECIPES) if (wanted(r.name)) await tokenizerFixture(env, r);
    // The files as `deno fmt --check` wants them (CI runs it).
    await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", OUT] }).output();
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}
