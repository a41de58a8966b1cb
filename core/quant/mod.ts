/**
 * ggml's (llama.cpp's) block-quantized weight formats: the type table
 * ({@linkcode GGML_TYPES}, {@linkcode quantBytes}) and bit-exact CPU reference
 * codecs ({@linkcode quantize}, {@linkcode dequantize}).
 *
 * @example
 * ```ts
 * import { dequantize, quantBytes, quantize } from "./mod.ts";
 * const x = new Float32Array(64).fill(0.5);
 * const q = quantize("q4_0", x);
 * q.length === quantBytes("q4_0", 64); // true
 * dequantize("q4_0", q, 64)[0]; // 0.5
 * ```
 *
 * @module
 */

export * from "./formats.ts";
export { dequantize, quantize } from "./codecs.ts";
