/**
 * Reference data for ggml's newer block formats (TQ1_0, TQ2_0, Q1_0, Q2_0, MXFP4,
 * NVFP4) from a recent ggml, which the llama.cpp of `llama_cpp_reference.ts`
 * (c392e50) predates for most of them. A small driver compiled against ggml's base
 * library asks ggml itself — never Kiln — for:
 *
 * - `blocks TYPE_ID FILE N`: N elements of raw blocks through the type's
 *   `to_float`, as an FNV-1a hash of the f32 bytes
 *   (`tests/fixtures/llama_cpp/dequant_low_bit_blocks.json`);
 * - `quantize TYPE_ID IN N OUT`: N f32 values through the type's reference quantizer
 *   (`quantize_row_*_ref`), the bytes written to OUT (the SHA-256s of
 *   `tests/quant_formats_test.ts`'s golden blocks);
 * - `wquantize TYPE_ID IN NROWS N_PER_ROW QW OUT`: NROWS rows of f32 values through
 *   `ggml_quantize_chunk` with the N_PER_ROW f32 importance values in QW (what
 *   llama-quantize runs with an importance matrix), the bytes written to OUT (the
 *   SHA-256s of `tests/quant_importance_test.ts`);
 * - `requant IN OUT TYPE`: an f32 GGUF file with its matrices quantized by ggml's
 *   reference quantizer (`ggml_quantize_chunk`) and written by ggml's GGUF writer
 *   (`tests/fixtures/llama_cpp/converted/<source>_<type>.gguf`);
 * - `dequant IN OUT`: every tensor of a GGUF file back to f32 through `to_float`, for
 *   llama.cpp c392e50 to compute the reference logits of (`llama_cpp_reference.ts`);
 * - `hashes IN`: every tensor through `to_float`, one JSON line each (name, type, FNV-1a
 *   of the f32 bytes), as llama.cpp's driver prints them.
 *
 * Which tensors `requant` quantizes: `mxfp4_moe` as llama-quantize's `MXFP4_MOE`
 * (3-D expert tensors MXFP4, every other matrix Q8_0); the other types every matrix
 * whose rows are whole blocks of that type (the rest Q8_0), 1-D tensors kept f32.
 *
 * Build ggml (the fixtures were made with ggml d99724f2, August 2026; ~2 minutes):
 *
 * ```sh
 * git clone https://github.com/ggml-org/ggml /tmp/ggml
 * cmake -S /tmp/ggml -B /tmp/ggml/build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF
 * cmake --build /tmp/ggml/build -j 2 --target ggml-base
 * ```
 *
 * Then `deno run -A tools/llama_cpp_reference.ts --llama /tmp/llama.cpp --ggml /tmp/ggml …`.
 *
 * @module
 */

import { join } from "node:path";

/** The driver; String.raw keeps its C escapes as written. */
const DRIVER_CPP = String
  .raw`// ggml driver for Kiln's low-bit format fixtures (see tools/ggml_reference.ts).
#include "ggml.h"
#include "gguf.h"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

static uint64_t fnv1a(const void * p, size_t n) {
    const uint8_t * b = (const uint8_t *) p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 0x100000001b3ull; }
    return h;
}

static ggml_type type_of(const std::string & s) {
    if (s == "mxfp4_moe" || s == "mxfp4") return GGML_TYPE_MXFP4;
    if (s == "nvfp4") return GGML_TYPE_NVFP4;
    if (s == "q1_0") return GGML_TYPE_Q1_0;
    if (s == "q2_0") return GGML_TYPE_Q2_0;
    if (s == "tq1_0") return GGML_TYPE_TQ1_0;
    if (s == "tq2_0") return GGML_TYPE_TQ2_0;
    fprintf(stderr, "unknown type %s\n", s.c_str());
    exit(2);
}

int main(int argc, char ** argv) {
    if (argc < 3) { fprintf(stderr, "usage: driver blocks|requant|dequant|hashes ...\n"); return 2; }
    std::string mode = argv[1];
    if (mode == "blocks") {
        ggml_type t = (ggml_type) atoi(argv[2]);
        int64_t n = atoll(argv[4]);
        FILE * f = fopen(argv[3], "rb");
        std::vector<uint8_t> raw(ggml_row_size(t, n));
        if (fread(raw.data(), 1, raw.size(), f) != raw.size()) { fprintf(stderr, "short file\n"); return 3; }
        fclose(f);
        std::vector<float> out(n);
        ggml_get_type_traits(t)->to_float(raw.data(), out.data(), n);
        printf("%016llx\n", (unsigned long long) fnv1a(out.data(), n * sizeof(float)));
        return 0;
    }
    if (mode == "quantize") {
        ggml_type t = (ggml_type) atoi(argv[2]);
        int64_t n = atoll(argv[4]);
        std::vector<float> x(n);
        FILE * f = fopen(argv[3], "rb");
        if (fread(x.data(), sizeof(float), n, f) != (size_t) n) { fprintf(stderr, "short file\n"); return 3; }
        fclose(f);
        std::vector<uint8_t> q(ggml_row_size(t, n));
        ggml_quantize_init(t); // the IQ formats' grids and neighbour lists
        ggml_get_type_traits(t)->from_float_ref(x.data(), q.data(), n);
        f = fopen(argv[5], "wb");
        fwrite(q.data(), 1, q.size(), f);
        fclose(f);
        return 0;
    }
    if (mode == "wquantize") {
        ggml_type t = (ggml_type) atoi(argv[2]);
        int64_t nrows = atoll(argv[4]), npr = atoll(argv[5]);
        std::vector<float> x(nrows * npr), qw(npr);
        FILE * f = fopen(argv[3], "rb");
        if (fread(x.data(), sizeof(float), x.size(), f) != x.size()) { fprintf(stderr, "short file\n"); return 3; }
        fclose(f);
        f = fopen(argv[6], "rb");
        if (fread(qw.data(), sizeof(float), npr, f) != (size_t) npr) { fprintf(stderr, "short file\n"); return 3; }
        fclose(f);
        // ggml_init fills the f16 table the K-quants' requantization reads back.
        ggml_init_params ip = { 1024, nullptr, false };
        ggml_free(ggml_init(ip));
        ggml_quantize_init(t);
        std::vector<uint8_t> q(ggml_row_size(t, npr) * nrows);
        ggml_quantize_chunk(t, x.data(), q.data(), 0, nrows, npr, qw.data());
        f = fopen(argv[7], "wb");
        fwrite(q.data(), 1, q.size(), f);
        fclose(f);
        return 0;
    }
    ggml_context * data = nullptr;
    gguf_init_params params = { /*no_alloc*/ false, /*ctx*/ &data };
    gguf_context * src = gguf_init_from_file(argv[2], params);
    if (!src) { fprintf(stderr, "cannot read %s\n", argv[2]); return 3; }
    if (mode == "hashes") {
        for (int64_t i = 0; i < gguf_get_n_tensors(src); i++) {
            ggml_tensor * t = ggml_get_tensor(data, gguf_get_tensor_name(src, i));
            const int64_t n = ggml_nelements(t);
            std::vector<float> f(n);
            if (t->type == GGML_TYPE_F32) memcpy(f.data(), t->data, n * sizeof(float));
            else ggml_get_type_traits(t->type)->to_float(t->data, f.data(), n);
            printf("{\"name\":\"%s\",\"type\":\"%s\",\"fnv\":\"%016llx\"}\n", t->name,
                ggml_type_name(t->type), (unsigned long long) fnv1a(f.data(), n * sizeof(float)));
        }
        return 0;
    }
    gguf_context * dst = gguf_init_empty();
    gguf_set_kv(dst, src);
    std::vector<std::vector<uint8_t>> keep;
    const bool requant = mode == "requant";
    const std::string rule = requant && argc > 4 ? argv[4] : "";
    if (!requant) gguf_set_val_u32(dst, "general.file_type", 0);
    for (int64_t i = 0; i < gguf_get_n_tensors(src); i++) {
        const char * name = gguf_get_tensor_name(src, i);
        ggml_tensor * t = ggml_get_tensor(data, name);
        gguf_add_tensor(dst, t);
        const int64_t n = ggml_nelements(t), cols = t->ne[0], rows = n / cols;
        ggml_type to = t->type;
        if (requant) {
            if (t->type != GGML_TYPE_F32) { fprintf(stderr, "%s is not f32\n", name); return 4; }
            if (ggml_n_dims(t) >= 2) {
                ggml_type want = type_of(rule);
                if (rule == "mxfp4_moe" && t->ne[2] <= 1) want = GGML_TYPE_Q8_0;
                to = cols % ggml_blck_size(want) == 0 ? want : GGML_TYPE_Q8_0;
            }
        } else {
            to = GGML_TYPE_F32;
        }
        if (to == t->type) continue;
        std::vector<uint8_t> out(ggml_row_size(to, cols) * rows);
        if (requant) {
            ggml_quantize_chunk(to, (const float *) t->data, out.data(), 0, rows, cols, nullptr);
        } else {
            ggml_get_type_traits(t->type)->to_float(t->data, (float *) out.data(), n);
        }
        gguf_set_tensor_type(dst, name, to);
        gguf_set_tensor_data(dst, name, out.data());
        keep.push_back(std::move(out));
    }
    if (!gguf_write_to_file(dst, argv[3], false)) { fprintf(stderr, "cannot write %s\n", argv[3]); return 5; }
    printf("{\"tensors\":%lld}\n", (long long) gguf_get_n_tensors(dst));
    gguf_free(dst);
    gguf_free(src);
    ggml_free(data);
    return 0;
}
`;

/**
 * Compiles the driver against the ggml checkout `ggml` (include/ and build/src) into
 * `tmp`, returning its path.
 *
 * @example
 * ```ts ignore
 * const driver = await buildGgmlDriver("/tmp/ggml", await Deno.makeTempDir());
 * ```
 */
export async function buildGgmlDriver(ggml: string, tmp: string): Promise<string> {
  const src = join(tmp, "ggml_driver.cpp");
  const bin = join(tmp, "ggml_driver");
  await Deno.writeTextFile(src, DRIVER_CPP);
  const lib = join(ggml, "build", "src");
  const r = await new Deno.Command("g++", {
    args: [
      "-O2",
      "-std=c++17",
      src,
      `-I${join(ggml, "include")}`,
      `-L${lib}`,
      "-lggml-base",
      `-Wl,-rpath,${lib}`,
      "-o",
      bin,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!r.success) throw new Error(`g++ failed:\n${new TextDecoder().decode(r.stderr)}`);
  return bin;
}

/**
 * Runs the driver; its stdout, or an Error with its stderr.
 *
 * @example
 * ```ts ignore
 * const hash = await ggmlDriver(driver, ["blocks", "39", "blocks.bin", "2048"]);
 * ```
 */
export async function ggmlDriver(driver: string, args: string[]): Promise<string> {
  const r = await new Deno.Command(driver, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  if (!r.success) {
    throw new Error(`ggml driver ${args.join(" ")} failed:\n${dec.decode(r.stderr).slice(-2000)}`);
  }
  return dec.decode(r.stdout);
}
