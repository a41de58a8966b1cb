"""Writes a block-scaled FP8 checkpoint, as DeepSeek-V3's and Qwen3's "-FP8"
releases are stored, with transformers' outputs for it.

Usage: python tools/fp8_checkpoint.py SRC_DIR OUT_DIR --block R,C [--ue8m0] [--hidden]

SRC_DIR is a float folder written by transformers (a fixture). Every linear
weight (2-D `.weight`, or a 3-D stacked experts tensor) except the embedding,
the LM head and routers is quantized to float8_e4m3fn in blocks of R rows × C
columns: the block's scale is amax / 448 (the E4M3 maximum), stored beside the
weight as `<name>_scale_inv` (for `X.weight`: `X.weight_scale_inv`), float32
`[ceil(rows/R), ceil(cols/C)]`, and the weight is `fp8(w / scale)`. With
`--ue8m0` the scales are rounded up to powers of two and stored as
float8_e8m0fnu (DeepSeek-V3.1's `scale_fmt: "ue8m0"`). config.json gains
`quantization_config: {"quant_method": "fp8", "weight_block_size": [R, C],
"activation_scheme": "dynamic", ...}`. transformers then loads OUT_DIR itself
(FineGrainedFP8Config(dequantize=True): its own `Fp8Dequantize`) in float64,
and its logits, hidden states and greedy continuation are written as
transformers_reference.py writes them.
"""

import json
import os
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file

from quantized_reference import write_quantized_folder, write_reference

E4M3_MAX = 448.0
SKIP = ("embed_tokens", "lm_head", "mlp.gate.weight", "router", "norm")


def quantize(w, block, ue8m0):
    """[..., rows, cols] float32 → (float8_e4m3fn weight, scales [..., ceil(rows/R), ceil(cols/C)])."""
    R, C = block
    rows, cols = w.shape[-2:]
    gr, gc = -(-rows // R), -(-cols // C)
    pad = torch.zeros(*w.shape[:-2], gr * R, gc * C, dtype=torch.float64)
    pad[..., :rows, :cols] = w.to(torch.float64)
    b = pad.reshape(*w.shape[:-2], gr, R, gc, C)
    amax = b.abs().amax(dim=(-3, -1))
    scale = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax))
    if ue8m0:
        scale = torch.pow(2.0, torch.ceil(torch.log2(scale)))
    scale32 = scale.to(torch.float32)
    full = scale32.to(torch.float64).repeat_interleave(R, -2).repeat_interleave(C, -1)
    q = (pad / full)[..., :rows, :cols].clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    s = scale32.to(torch.float8_e8m0fnu) if ue8m0 else scale32
    return q, s


def quantized(name, t):
    if any(s in name for s in SKIP):
        return False
    return (name.endswith(".weight") and t.dim() == 2) or (t.dim() == 3 and "experts" in name)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    src, out = args[0], args[1]
    block = [int(x) for x in sys.argv[sys.argv.index("--block") + 1].split(",")]
    args = [a for a in args if a != sys.argv[sys.argv.index("--block") + 1]]
    ue8m0 = "--ue8m0" in sys.argv
    want_hidden = "--hidden" in sys.argv
    os.makedirs(out, exist_ok=True)
    tensors = load_file(os.path.join(src, "model.safetensors"))
    packed = {}
    for name, t in tensors.items():
        if quantized(name, t):
            q, s = quantize(t, block, ue8m0)
            packed[name] = q
            base = name[: -len(".weight")] + ".weight_scale_inv" if name.endswith(".weight") else name + "_scale_inv"
            packed[base] = s
        else:
            packed[name] = t
    config = write_quantized_folder(
        src,
        out,
        packed,
        {
            "quant_method": "fp8",
            "activation_scheme": "dynamic",
            "fmt": "e4m3",
            "weight_block_size": block,
            **({"scale_fmt": "ue8m0"} if ue8m0 else {}),
        },
        save_file,
    )

    q = transformers.FineGrainedFP8Config(dequantize=True, weight_block_size=block)
    m64 = transformers.AutoModelForCausalLM.from_pretrained(
        out, dtype=torch.float64, quantization_config=q, experts_implementation="eager"
    ).eval()
    m64 = m64.to(torch.float64)
    src_model = transformers.AutoModelForCausalLM.from_pretrained(
        src, dtype=torch.float64, experts_implementation="eager"
    ).eval()
    logits, rms = write_reference(
        m64, src, out, config["architectures"][0], "float64 from FP8 blocks (transformers' dequantization)", want_hidden
    )
    # The oracle must be transformers' dequantization, not the float source: check it moved.
    with open(os.path.join(src, "ref.json")) as f:
        ids = json.load(f)["ids"]
    with torch.no_grad():
        base_logits = src_model(torch.tensor([ids]), use_cache=False).logits[0]
    moved = float((logits - base_logits).abs().max()) / rms
    assert moved > 1e-3, f"FP8 logits equal the float source's ({moved})"
    print(json.dumps({"name": os.path.basename(out), "ok": True, "logit_rms": rms, "moved": moved}))


if __name__ == "__main__":
    main()
