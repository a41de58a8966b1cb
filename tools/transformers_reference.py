"""Writes tiny Hugging Face checkpoints with transformers' outputs for them.

Usage: python tools/transformers_reference.py CASES.json OUT_DIR [--hidden]

CASES.json is a list of cases, each
  {"name": "...", "arch": "MixtralForCausalLM", "config": {...overrides...},
   "seed": 7, "prompt_len": 37, "drop_saved": ["layer_types"]?}
For each case the model class is built from its config class with those
overrides (torch.manual_seed(seed), random init, then weights re-drawn at a
scale that makes the logits far from flat), saved with
save_pretrained(safe_serialization=True) in float32 under OUT_DIR/<name>/, and
reloaded from there, so every number comes from the checkpoint as written.
Next to it go, in the format of tests/fixtures/hf/README.md:
  ref.json   ids, vocab, greedy (generate(do_sample=False, max_new_tokens=16)
             on the float64 model), margins (top-1 minus top-2 at each greedy
             step), logit_rms, hf_f32_rel (transformers' float32 forward against
             its float64 forward), seed, config overrides;
  logits.f32 the float64 forward of the prompt rounded once to float32;
  hidden.f32 (with --hidden) the float64 output_hidden_states.
A case transformers itself rejects is reported, not written. One line of JSON
per case goes to stdout: {"name", "ok", "error"?}.
"""

import contextlib
import json
import math
import os
import sys
import traceback
import warnings

import numpy as np
import torch
import transformers

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()

# Parameters whose default initialisation already has the meaning the model
# needs (Mamba's S4D-real A, the inverse-softplus Δ bias, D = 1, the conv
# filters): re-drawing them would give an unphysical SSM, so they are kept.
KEEP = ("A_log", ".D", "dt_proj.", "conv1d.")


def redraw(model, seed):
    """Re-draws weights so that random logits have rms ~1 and clear argmaxes.

    Transformers' init (std 0.02) gives near-flat logits where every greedy
    step is a near-tie; unit-variance embeddings, 1/sqrt(fan_in) projections and
    norms near 1 keep activations O(1) through every layer.
    """
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("dt_bias"):
                # Mamba-2's Δ bias: its init (Δ in [0.001, 0.1]) leaves the scan
                # nearly idle beside D·x; Δ in [0.05, 0.8] makes it count.
                lo, hi = math.log(0.05), math.log(0.8)
                dt = torch.exp(lo + (hi - lo) * torch.rand(tuple(p.shape), generator=g, dtype=torch.float64))
                p.copy_(dt + torch.log(-torch.expm1(-dt)))
                continue
            if any(k in name for k in KEEP):
                continue
            shape = tuple(p.shape)
            if name.endswith("embed_tokens.weight") or name.endswith("embeddings.weight"):
                p.copy_(torch.randn(shape, generator=g))
            elif p.dim() == 1 and "norm" in name:
                p.copy_(1 + 0.1 * torch.randn(shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn(shape, generator=g))
            elif name.endswith("_proj_bias"):
                # GPT-OSS's expert biases (init zeros): large enough to matter.
                p.copy_(0.5 * torch.randn(shape, generator=g))
            elif name.endswith(".sinks"):
                # GPT-OSS's attention sinks: logits of the same order as the scores.
                p.copy_(torch.randn(shape, generator=g))
            elif name.endswith("experts.gate_up_proj"):
                # GPT-OSS stores it [E, hidden, 2·I] (fan-in first): a spread wide
                # enough that the SwiGLU's clamp at ±7 is hit by some values.
                p.copy_(5.0 / math.sqrt(shape[1]) * torch.randn(shape, generator=g))
            elif name.endswith("experts.down_proj") and "GptOss" in type(model).__name__:
                p.copy_(0.5 / math.sqrt(shape[1]) * torch.randn(shape, generator=g))
            elif p.dim() >= 2:
                # Routers get a wider spread so expert choice is decisive rather
                # than a coin toss at every token.
                router = (name.endswith("mlp.gate.weight") or name.endswith("router.weight")
                          or name.endswith("mixer.gate.weight"))
                std = (2.0 if router else 1.0) / math.sqrt(shape[-1])
                p.copy_(std * torch.randn(shape, generator=g))


def redraw_buffers(model, seed):
    """Buffers that are weights in all but name (GLM-4.5's and DeepSeek-V3's expert
    selection bias, LFM2-MoE's expert_bias, zeros at init): drawn so that they
    change which experts win."""
    g = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias") or name.endswith("expert_bias"):
                b.copy_(0.3 * torch.randn(tuple(b.shape), generator=g, dtype=torch.float64))


class _Float64Torch:
    """torch, except that torch.float32 (and torch.float) name float64 (see float64_globals)."""

    def __getattr__(self, name):
        return torch.float64 if name in ("float32", "float") else getattr(torch, name)


@contextlib.contextmanager
def float64_globals(model):
    """Qwen3-Next's and Qwen3.5's modeling code runs its gated delta rule (and the
    softmaxes of eager attention and the router) in float32 by name,
    `.to(torch.float32)`, whatever the model's dtype: the float64 reference would be float32 there (1.5e-5 of the
    logit rms on qwen3_next). Within this block that module reads torch.float32
    as float64, so the same code computes in float64. Other modules unchanged."""
    module = sys.modules[type(model).__module__]
    if not hasattr(module, "torch_chunk_gated_delta_rule"):
        yield
        return
    saved = module.torch
    module.torch = _Float64Torch()
    try:
        yield
    finally:
        module.torch = saved


def forward(model, ids, hidden=False):
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=hidden, use_cache=False)
    return out


def greedy_by_forward(model, ids, steps):
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    seq, greedy, scores = list(ids), [], []
    for _ in range(steps):
        last = forward(model, seq).logits[0, -1]
        nxt = int(torch.argmax(last))
        greedy.append(nxt)
        scores.append(last)
        seq.append(nxt)
        if nxt in eos:
            break
    return greedy, scores


def run_case(case, out_root, want_hidden):
    arch = case["arch"]
    cls = getattr(transformers, arch)
    overrides = dict(case["config"])
    config = cls.config_class(**overrides)
    torch.manual_seed(case["seed"])
    model = cls(config).to(torch.float32).eval()
    redraw(model, case["seed"])
    redraw_buffers(model, case["seed"])
    out = os.path.join(out_root, case["name"])
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    del model
    if case.get("drop_saved"):
        # Keys transformers writes but older writers did not (e.g. layer_types):
        # dropping them makes transformers derive them again on load.
        path = os.path.join(out, "config.json")
        with open(path) as f:
            saved = json.load(f)
        for key in case["drop_saved"]:
            saved.pop(key, None)
        with open(path, "w") as f:
            json.dump(saved, f, indent=2)

    # grouped_mm has no float64 kernel; the eager loop over experts is the
    # reference semantics anyway.
    m64 = cls.from_pretrained(out, dtype=torch.float64, experts_implementation="eager").eval()
    m32 = cls.from_pretrained(out, dtype=torch.float32, experts_implementation="eager").eval()
    # A vision-language class's sizes and token ids live in its text config.
    text = m64.config.get_text_config()
    vocab = text.vocab_size
    rng = np.random.default_rng(case["seed"])
    ids = [int(i) for i in rng.integers(0, vocab, size=case["prompt_len"])]

    l32 = forward(m32, ids).logits[0].to(torch.float64)
    with float64_globals(m64):
        o64 = forward(m64, ids, want_hidden)
        logits = o64.logits[0].to(torch.float64)
        rms = float(torch.sqrt(torch.mean(logits**2)))
        f32_rel = float(torch.max(torch.abs(l32 - logits))) / rms

        steps = case.get("max_new_tokens", 16)
        try:
            with torch.no_grad():
                # An explicit mask: without one, generate() masks every prompt id equal
                # to pad_token_id (0 for a model without an eos).
                gen = m64.generate(
                    torch.tensor([ids]),
                    attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                    do_sample=False,
                    max_new_tokens=steps,
                    output_scores=True,
                    return_dict_in_generate=True,
                    pad_token_id=text.eos_token_id if text.eos_token_id is not None else 0,
                )
            greedy = [int(t) for t in gen.sequences[0, len(ids):]]
            scores = [s[0] for s in gen.scores]
            greedy_via = "generate"
        except ValueError:
            # generate() of a Jamba without attention layers fails in its cache
            # bookkeeping (get_seq_length); greedy decoding by full forwards is the
            # same math without the cache.
            greedy, scores = greedy_by_forward(m64, ids, steps)
            greedy_via = "full_forward"
        margins = []
        for s in scores:
            top = torch.topk(s.to(torch.float64), 2).values
            margins.append(float(top[0] - top[1]))
        # The argmax of a full forward over prompt + greedy: equal to greedy unless
        # the cached decode path of transformers itself differs.
        full = forward(m64, ids + greedy[:-1]).logits[0, len(ids) - 1:]
        full_argmax = [int(i) for i in torch.argmax(full, dim=-1)]

    logits.to(torch.float32).numpy().astype("<f4").tofile(os.path.join(out, "logits.f32"))
    ref = {
        "arch": arch,
        "class": type(m64).__name__,
        "ids": ids,
        "vocab": vocab,
        "greedy": greedy,
        "greedy_full_forward_argmax": full_argmax,
        "margins": margins,
        "logit_rms": rms,
        "dtype": "float32",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "seed": case["seed"],
        "hf_f32_rel": f32_rel,
        "greedy_via": greedy_via,
        "overrides": overrides,
    }
    if want_hidden:
        hs = torch.stack([h[0] for h in o64.hidden_states]).to(torch.float32)
        hs.numpy().astype("<f4").tofile(os.path.join(out, "hidden.f32"))
        ref["hidden_shape"] = list(hs.shape)
    with open(os.path.join(out, "ref.json"), "w") as f:
        json.dump(ref, f, indent=1)
    return {"name": case["name"], "ok": True, "logit_rms": rms, "hf_f32_rel": f32_rel}


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit("usage: transformers_reference.py CASES.json OUT_DIR [--hidden]")
    want_hidden = "--hidden" in sys.argv
    torch.set_num_threads(1)
    with open(args[0]) as f:
        cases = json.load(f)
    for case in cases:
        try:
            res = run_case(case, args[1], want_hidden)
        except Exception as e:  # a config transformers refuses is a result, not a crash
            res = {
                "name": case["name"],
                "ok": False,
                "error": f"{type(e).__name__}: {e}",
                "trace": traceback.format_exc(limit=3),
            }
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
