"""Writes a float Hugging Face folder as a GPTQ, compressed-tensors or ModelOpt
checkpoint, in the layouts those tools publish, for Kiln's dequantizing loader.

Usage: python tools/quantized_checkpoint.py SRC_DIR OUT_DIR VARIANT [--seed S] [--for-converter]

VARIANT is one of:
  gptq4_actorder  4-bit GPTQ (v1 zero points, stored minus one), groups of 32,
                  desc_act: inputs assigned to groups by a random permutation (g_idx);
                  weights whose sizes are not whole words stay float, as GPTQ needs
  gptq8_v2        8-bit GPTQ, checkpoint_format gptq_v2, groups of 32, g_idx in order
  ct_fp8_channel  compressed-tensors float-quantized, E4M3 with a scale per output
                  channel ([out, 1]) and a static input_scale (RedHat's "FP8")
  ct_fp8_block    compressed-tensors float-quantized, scales per 24 x 40 block
                  (a grid rounded up at the edges)
  ct_int8_channel compressed-tensors int-quantized, int8 with a scale per channel
                  ("W8A8")
  ct_w4a16        compressed-tensors pack-quantized, 4-bit symmetric (offset 8)
                  in int32 words, a scale per group of inputs ("W4A16")
  ct_w4a16_zp     the same, asymmetric: zero points packed along the rows
  modelopt_fp8    NVIDIA ModelOpt FP8: E4M3 times one weight_scale per tensor,
                  with input_scale and k_scale / v_scale beside

Every linear weight of the attention and MLP blocks is quantized; embeddings,
norms, routers and the LM head stay float (each tool's default `ignore`).
What the formats mean is checked elsewhere, independently: llama.cpp's
convert_hf_to_gguf.py dequantizes OUT_DIR to an f32 GGUF (its `dequant_model`),
and Kiln's loader must read the same values. That converter cannot map the
static activation and KV-cache scales (which a dequantized model drops), so
`--for-converter` writes the folder without them.
"""

import json
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

# Groups of 4 inputs: every width of the test models is a multiple (llama.cpp's converter
# needs whole groups), and 12-wide rows still end in a part-filled word.
GROUP_W4 = 4
LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def quantized(name):
    return name.endswith(".weight") and any(f".{p}." in name for p in LINEAR)


def gptq(w, bits, group, rng, actorder, v2):
    """[out, in] float -> qweight [in/pack, out], qzeros [groups, out/pack], scales, g_idx."""
    out, inp = w.shape
    pack, maxq = 32 // bits, 2**bits - 1
    perm = rng.permutation(inp) if actorder else np.arange(inp)
    g_idx = np.empty(inp, dtype=np.int32)
    g_idx[perm] = np.arange(inp) // group
    groups = -(-inp // group)
    wt = w.T.astype(np.float64)  # [in, out]
    scales = np.zeros((groups, out))
    zeros = np.zeros((groups, out), dtype=np.int64)
    q = np.zeros((inp, out), dtype=np.int64)
    for g in range(groups):
        rows = g_idx == g
        lo, hi = np.minimum(wt[rows].min(0), 0), np.maximum(wt[rows].max(0), 0)
        s = np.where(hi > lo, (hi - lo) / maxq, 1.0)
        s = s.astype(np.float16).astype(np.float64)
        # Zero points from 1 up: v1 stores them minus one, and 0 would wrap.
        z = np.clip(np.round(-lo / s), 1, maxq)
        scales[g], zeros[g] = s, z
        q[rows] = np.clip(np.round(wt[rows] / s) + z, 0, maxq)
    qweight = np.zeros((inp // pack, out), dtype=np.int64)
    for k in range(pack):
        qweight |= q[k::pack] << (k * bits)
    stored = zeros if v2 else zeros - 1
    qzeros = np.zeros((groups, -(-out // pack)), dtype=np.int64)
    for o in range(out):
        qzeros[:, o // pack] |= stored[:, o] << ((o % pack) * bits)
    as_i32 = lambda a: torch.from_numpy((a & 0xFFFFFFFF).astype(np.uint32).view(np.int32))
    return {
        "qweight": as_i32(qweight),
        "qzeros": as_i32(qzeros),
        "scales": torch.from_numpy(scales.astype(np.float16)),
        "g_idx": torch.from_numpy(g_idx),
    }


def fp8(w, scale):
    return (w.double() / scale).clamp(-448, 448).to(torch.float8_e4m3fn)


def block_scales(w, br, bc):
    rows, cols = w.shape
    gr, gc = -(-rows // br), -(-cols // bc)
    s = torch.zeros(gr, gc, dtype=torch.float64)
    for i in range(gr):
        for j in range(gc):
            a = w[i * br:(i + 1) * br, j * bc:(j + 1) * bc].abs().max().double()
            s[i, j] = a / 448 if a > 0 else 1.0
    return s.float()


def pack_rows(q, bits):
    """[rows, cols] ints in [0, 2^bits) -> int32 [rows, ceil(cols / pack)], low bits first."""
    rows, cols = q.shape
    pack = 32 // bits
    words = np.zeros((rows, -(-cols // pack)), dtype=np.int64)
    for c in range(cols):
        words[:, c // pack] |= q[:, c].astype(np.int64) << ((c % pack) * bits)
    return torch.from_numpy((words & 0xFFFFFFFF).astype(np.uint32).view(np.int32))


def w4a16(w, group, asym):
    out, inp = w.shape
    groups = -(-inp // group)
    wn = w.double().numpy()
    scale = np.zeros((out, groups))
    zp = np.zeros((out, groups), dtype=np.int64)
    q = np.zeros((out, inp), dtype=np.int64)
    for g in range(groups):
        part = wn[:, g * group:(g + 1) * group]
        if asym:
            lo, hi = np.minimum(part.min(1), 0), np.maximum(part.max(1), 0)
            s = np.where(hi > lo, (hi - lo) / 15, 1.0).astype(np.float16).astype(np.float64)
            z = np.clip(np.round(-lo / s), 0, 15)
        else:
            s = np.maximum(np.abs(part).max(1) / 7, 1e-8).astype(np.float16).astype(np.float64)
            z = np.full(out, 8)
        scale[:, g], zp[:, g] = s, z
        q[:, g * group:(g + 1) * group] = np.clip(np.round(part / s[:, None]) + z[:, None], 0, 15)
    t = {
        "weight_packed": pack_rows(q, 4),
        "weight_scale": torch.from_numpy(scale.astype(np.float16)),
        "weight_shape": torch.tensor([out, inp], dtype=torch.int64),
    }
    if asym:
        # Zero points pack along the rows: [ceil(out / 8), groups].
        t["weight_zero_point"] = pack_rows(zp.T.copy(), 4).T.contiguous()
    return t


def main():
    src, out, variant = sys.argv[1:4]
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 0
    for_converter = "--for-converter" in sys.argv
    rng = np.random.default_rng(seed)
    tensors = load_file(os.path.join(src, "model.safetensors"))
    packed = {}
    for name, t in tensors.items():
        if not quantized(name):
            packed[name] = t
            continue
        base = name[: -len(".weight")]
        w = t.float()
        if variant.startswith("gptq"):
            bits = 4 if variant.startswith("gptq4") else 8
            if w.shape[0] % (32 // bits) or w.shape[1] % (32 // bits):
                packed[name] = t  # GPTQ packs whole words of inputs and outputs: this one stays float
                continue
            parts = gptq(w.numpy(), bits, 32, rng, "actorder" in variant, variant.endswith("_v2"))
            packed.update({f"{base}.{k}": v for k, v in parts.items()})
        elif variant == "ct_fp8_channel":
            s = (w.abs().amax(1, keepdim=True).double() / 448).clamp(min=1e-12).float()
            packed[name] = fp8(w, s.double())
            packed[f"{base}.weight_scale"] = s
            packed[f"{base}.input_scale"] = torch.tensor([0.02])
        elif variant == "ct_fp8_block":
            s = block_scales(w, 24, 40)
            full = s.double().repeat_interleave(24, 0).repeat_interleave(40, 1)[: w.shape[0], : w.shape[1]]
            packed[name] = fp8(w, full)
            packed[f"{base}.weight_scale"] = s
        elif variant == "ct_int8_channel":
            s = (w.abs().amax(1, keepdim=True).double() / 127).clamp(min=1e-12)
            packed[name] = (w.double() / s).round().clamp(-127, 127).to(torch.int8)
            packed[f"{base}.weight_scale"] = s.float()
        elif variant in ("ct_w4a16", "ct_w4a16_zp"):
            parts = w4a16(w, GROUP_W4, variant.endswith("_zp"))
            packed.update({f"{base}.{k}": v for k, v in parts.items()})
        elif variant == "modelopt_fp8":
            s = (w.abs().max().double() / 448).float().reshape([])
            packed[name] = fp8(w, s.double())
            packed[f"{base}.weight_scale"] = s
            packed[f"{base}.input_scale"] = torch.tensor(0.03)
            if name.endswith("self_attn.k_proj.weight"):
                attn = base[: -len(".k_proj")]
                packed[f"{attn}.k_scale"] = torch.tensor(1.0)
                packed[f"{attn}.v_scale"] = torch.tensor(1.0)
        else:
            raise SystemExit(f"unknown variant {variant}")
    if for_converter:
        unused = (".input_scale", ".k_scale", ".v_scale")
        packed = {k: v for k, v in packed.items() if not k.endswith(unused)}
    os.makedirs(out, exist_ok=True)
    save_file(packed, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    config["quantization_config"] = quantization_config(variant)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shutil.copy(os.path.join(src, "generation_config.json"), out)


def quantization_config(variant):
    if variant.startswith("gptq"):
        return {
            "quant_method": "gptq",
            "bits": 4 if variant.startswith("gptq4") else 8,
            "group_size": 32,
            "desc_act": "actorder" in variant,
            "sym": False,
            "checkpoint_format": "gptq_v2" if variant.endswith("_v2") else "gptq",
        }
    if variant == "modelopt_fp8":
        return {"quant_method": "modelopt", "quant_algo": "FP8", "kv_cache_quant_algo": "FP8"}
    weights = {
        "ct_fp8_channel": {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": True},
        "ct_fp8_block": {"num_bits": 8, "type": "float", "strategy": "block", "block_structure": [24, 40],
                         "symmetric": True},
        "ct_int8_channel": {"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": True},
        "ct_w4a16": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": GROUP_W4, "symmetric": True},
        "ct_w4a16_zp": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": GROUP_W4,
                        "symmetric": False},
    }[variant]
    fmt = {"ct_fp8_channel": "float-quantized", "ct_fp8_block": "float-quantized",
           "ct_int8_channel": "int-quantized"}.get(variant, "pack-quantized")
    return {
        "quant_method": "compressed-tensors",
        "format": fmt,
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": {**weights, "dynamic": False}}},
        "ignore": ["lm_head"],
        "quantization_status": "compressed",
    }


if __name__ == "__main__":
    main()
