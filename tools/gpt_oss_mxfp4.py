"""Writes an MXFP4 GPT-OSS checkpoint, as the published ones are stored, with
transformers' outputs for it.

Usage: python tools/gpt_oss_mxfp4.py SRC_DIR OUT_DIR [--hidden]

SRC_DIR is a float GPT-OSS folder written by transformers_reference.py. Each
layer's `mlp.experts.gate_up_proj` [E, d, 2I] and `down_proj` [E, I, d] are
quantized to MXFP4 in the Hugging Face layout (`*_blocks` [E, rows, cols/32,
16] u8 — byte i of a block holds values 2i in its low nibble and 2i + 1 in its
high one — and `*_scales` [E, rows, cols/32] u8, the E8M0 exponent + 127; rows
are the transposed tensor's, so blocks run along the contraction axis), and
config.json gains `quantization_config: {"quant_method": "mxfp4"}`.
transformers then loads OUT_DIR itself (Mxfp4Config(dequantize=True): its own
`convert_moe_packed_tensors` reads the blocks) in float64, and its logits,
hidden states and greedy continuation are written as transformers_reference.py
writes them.
"""

import json
import os
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file, save_file

from quantized_reference import write_quantized_folder, write_reference

FP4 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6])


def quantize(w):
    """[E, rows, cols] float → blocks [E, rows, cols/32, 16] u8, scales [E, rows, cols/32] u8."""
    E, rows, cols = w.shape
    b = w.reshape(E, rows, cols // 32, 32).astype(np.float64)
    amax = np.abs(b).max(axis=-1)
    # OCP MX: shared exponent floor(log2(amax)) − 2 (the E2M1 maximum is 6 = 1.5·2²).
    exp = np.where(amax > 0, np.floor(np.log2(np.maximum(amax, 1e-30))) - 2, -127)
    exp = np.clip(exp, -127, 127)
    scaled = b / (2.0 ** exp)[..., None]
    codes = np.abs(scaled[..., None] - FP4[None, None, None, None, :]).argmin(axis=-1).astype(np.uint8)
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    return blocks, (exp + 127).astype(np.uint8)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    src, out = args
    want_hidden = "--hidden" in sys.argv
    os.makedirs(out, exist_ok=True)
    tensors = load_file(os.path.join(src, "model.safetensors"))
    packed = {}
    for name, t in tensors.items():
        if name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
            # Stored [E, in, out]; MXFP4 holds the [E, out, in] form.
            blocks, scales = quantize(np.ascontiguousarray(t.transpose(0, 2, 1)))
            packed[name + "_blocks"] = blocks
            packed[name + "_scales"] = scales
        else:
            packed[name] = t
    write_quantized_folder(
        src,
        out,
        packed,
        {
            "quant_method": "mxfp4",
            "modules_to_not_convert": [
                "model.layers.*.self_attn",
                "model.layers.*.mlp.router",
                "model.embed_tokens",
                "lm_head",
            ],
        },
        save_file,
    )

    q = transformers.Mxfp4Config(dequantize=True)
    m64 = transformers.GptOssForCausalLM.from_pretrained(
        out, dtype=torch.float64, quantization_config=q, experts_implementation="eager"
    ).eval()
    # The dequantized experts come back in bfloat16 (exact: E2M1 codes times powers of 2).
    m64 = m64.to(torch.float64)
    _, rms = write_reference(
        m64, src, out, "GptOssForCausalLM", "float64 from MXFP4 (transformers' dequantization)", want_hidden
    )
    print(json.dumps({"name": os.path.basename(out), "ok": True, "logit_rms": rms}))


if __name__ == "__main__":
    main()
