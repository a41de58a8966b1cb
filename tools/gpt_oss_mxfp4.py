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
import shutil
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import load_file, save_file

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
    save_file(packed, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    config["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"],
    }
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shutil.copy(os.path.join(src, "generation_config.json"), out)

    q = transformers.Mxfp4Config(dequantize=True)
    m64 = transformers.GptOssForCausalLM.from_pretrained(
        out, dtype=torch.float64, quantization_config=q, experts_implementation="eager"
    ).eval()
    # The dequantized experts come back in bfloat16 (exact: E2M1 codes times powers of 2).
    m64 = m64.to(torch.float64)
    with open(os.path.join(src, "ref.json")) as f:
        ref = json.load(f)
    ids = ref["ids"]
    with torch.no_grad():
        o = m64(torch.tensor([ids]), output_hidden_states=want_hidden, use_cache=False)
        logits = o.logits[0].to(torch.float64)
        gen = m64.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
            do_sample=False,
            max_new_tokens=16,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=m64.config.eos_token_id,
        )
    greedy = [int(t) for t in gen.sequences[0, len(ids):]]
    margins = []
    for s in gen.scores:
        top = torch.topk(s[0].to(torch.float64), 2).values
        margins.append(float(top[0] - top[1]))
    logits.to(torch.float32).numpy().astype("<f4").tofile(os.path.join(out, "logits.f32"))
    rms = float(torch.sqrt(torch.mean(logits**2)))
    new_ref = {
        "arch": "GptOssForCausalLM",
        "ids": ids,
        "vocab": ref["vocab"],
        "greedy": greedy,
        "margins": margins,
        "logit_rms": rms,
        "dtype": "float64 from MXFP4 (transformers' dequantization)",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "seed": ref["seed"],
        "greedy_via": "generate",
        "source": os.path.basename(os.path.normpath(src)),
    }
    if want_hidden:
        hs = torch.stack([h[0] for h in o.hidden_states]).to(torch.float32)
        hs.numpy().astype("<f4").tofile(os.path.join(out, "hidden.f32"))
        new_ref["hidden_shape"] = list(hs.shape)
    with open(os.path.join(out, "ref.json"), "w") as f:
        json.dump(new_ref, f, indent=1)
    print(json.dumps({"name": os.path.basename(out), "ok": True, "logit_rms": rms}))


if __name__ == "__main__":
    main()
