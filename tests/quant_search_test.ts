/**
 * The searched fits of the K-quants (make_qkx2_quants: Q2_K, Q4_K, Q5_K;
 * make_qx_quants: Q6_K) and IQ4_XS against llama.cpp's on 360 super-blocks in
 * nine styles — uniform, narrow, sparse, positive, eighths (exact ties),
 * outliers, 1e-20-scaled, cubed, negative — so that the shortcuts Kiln takes
 * (trial grids skipped when a closed-form error bound says they cannot win or
 * when they repeat the best fit's codes; IQ4's nearest level found by table)
 * give the bytes ggml's full search gives.
 */
import assert from "node:assert/strict";
import { quantize } from "../core/quant/codecs.ts";
import { mulberry32 } from "../core/random.ts";
import { styledValues } from "./fixtures/quant_blocks.ts";

// SHA-256 of ggml d99724f2's quantize_row_*_ref output for `input()`
// (tools/ggml_reference.ts's `quantize`, gcc 12 -O2 on x86-64).
const GGML: Record<"q4_k" | "q5_k" | "q2_k" | "q6_k" | "iq4_xs", string> = {
  q4_k: "44c9465671dbef77a2f5ae6d4bdcc3eeaaf35a703a0359914082b515d05f53d7",
  q5_k: "e86221f2ffae00c5f9b6a624e51216550817fa108cb8d9035f460656f2db9a46",
  q2_k: "2ae902549d56ae2bae68db79deb291fee03c72c49be06edbadc754232c962dd5",
  q6_k: "dcbb6a39a294fdd9dbeb6a33440d18a117aeb82571db115d92787e3256320a6e",
  iq4_xs: "3b0b64d5015530722b8298afee9bd06396010f7f43314e3b77a76f6eacc892e9",
};

function input(): Float32Array {
  return styledValues(mulberry32(20261206), 256 * 9 * 40);
}

Deno.test("K-quant and IQ4 searches: 360 super-blocks in nine styles, the bytes llama.cpp writes", async () => {
  const x = input();
  for (const [format, want] of Object.entries(GGML) as [keyof typeof GGML, string][]) {
    const q = quantize(format, x);
    const sha = new Uint8Array(await crypto.subtle.digest("SHA-256", q));
    assert.equal(Array.from(sha, (b) => b.toString(16).padStart(2, "0")).join(""), want, format);
  }
});
