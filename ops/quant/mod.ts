/**
 * Ops that read block-quantized weights (llama.cpp's Q8_0, Q4_0, Q4_1, Q5_0,
 * Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS), dequantizing inside the kernel: `qmatmul` (Linear layers, LM heads)
 * and `qgather` (embeddings). The WGSL readers of each format are in
 * `./wgsl.ts`; the CPU codecs in `core/quant/`.
 *
 * @module
 */

export { qgather } from "./qgather.ts";
export {
  checkQuantWeight,
  dequantizeHost,
  qmatmul,
  type QuantAttrs,
  quantWords,
} from "./qmatmul.ts";
export { QUANT_GROUP, quantReaders, quantRowBytes } from "./wgsl.ts";
