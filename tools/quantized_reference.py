"""What transformers computes for a quantized fixture folder it loaded itself:
logits, hidden states and greedy continuation, written beside the checkpoint
as transformers_reference.py writes them (shared by gpt_oss_mxfp4.py and
fp8_checkpoint.py).
"""

import json
import os
import shutil

import torch
import transformers


def write_quantized_folder(src, out, packed, quantization_config, save_file):
    """OUT gets `packed` as model.safetensors (written by `save_file`, numpy's or torch's),
    SRC's config.json with `quantization_config` added, and its generation_config.json.
    Returns the config."""
    save_file(packed, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    config["quantization_config"] = quantization_config
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shutil.copy(os.path.join(src, "generation_config.json"), out)
    return config


def write_reference(model, src, out, arch, dtype_note, want_hidden, extra=None):
    """Runs `model` (float64) on SRC's ref.json prompt; writes OUT's logits.f32, ref.json
    (and hidden.f32). Returns the float64 logits and their RMS."""
    with open(os.path.join(src, "ref.json")) as f:
        ref = json.load(f)
    ids = ref["ids"]
    with torch.no_grad():
        o = model(torch.tensor([ids]), output_hidden_states=want_hidden, use_cache=False)
        logits = o.logits[0].to(torch.float64)
        gen = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
            do_sample=False,
            max_new_tokens=16,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=model.config.eos_token_id,
        )
    greedy = [int(t) for t in gen.sequences[0, len(ids):]]
    margins = []
    for s in gen.scores:
        top = torch.topk(s[0].to(torch.float64), 2).values
        margins.append(float(top[0] - top[1]))
    logits.to(torch.float32).numpy().astype("<f4").tofile(os.path.join(out, "logits.f32"))
    rms = float(torch.sqrt(torch.mean(logits**2)))
    new_ref = {
        "arch": arch,
        "ids": ids,
        "vocab": ref["vocab"],
        "greedy": greedy,
        "margins": margins,
        "logit_rms": rms,
        "dtype": dtype_note,
        **(extra or {}),
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
    return logits, rms
