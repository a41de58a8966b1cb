"""Transformers' training loss and parameter gradients for a checkpoint.

Usage: python tools/transformers_grads.py MODEL_DIR [--tokens BATCH.json]
           [--batch B --seq T --seed S] [--out grads.json] [--full grads.safetensors]

For MODEL_DIR (a folder transformers wrote, e.g. tests/fixtures/hf/<name>/)
and a token batch x of shape [B, T+1] (a JSON list of lists; without
--tokens, B rows of T+1 ids drawn with numpy's default_rng(seed)), this loads
the model in float64 (experts_implementation="eager": grouped_mm has no
float64 kernel) in train() mode and computes what `model(input_ids=x,
labels=x)` computes with output_router_logits off: the mean next-token
cross-entropy over the B·T shifted positions (the model's loss_function), and
its gradient with respect to every parameter.

For MoE models it also computes, separately, the load-balancing term the
model would add with output_router_logits on: router_aux_loss_coef ×
load_balancing_loss_func(all router logits) (transformers pools every MoE
layer's tokens into one loss; "pooled" over all B·(T+1) positions as the
model does, "pooled_trained" with each row's last position masked out), that
function per layer alone on the B·T trained positions ("per_layer": what a
per-layer sum, Kiln's convention, adds up), and the gradient of the per-layer
sum Σ_l coef · per_layer[l], so a per-layer implementation can be checked
exactly.

Gradients are keyed by the checkpoint's own tensor names (per-expert tensors
as written on disk): they are saved through save_pretrained, so transformers'
own conversion maps its fused in-memory experts back to those names.

Output (--out, JSON): {"tokens", "loss", "grads": {name: summary}, "aux"?}
with each summary {"n", "norm", "sum", "val"}: the element count, the float64
L2 norm and sum of the whole gradient and its values at a deterministic sample
of flat indices (sample_indices; the aux gradients: norm and sum only), to 7
significant digits. --full writes every gradient as float32
safetensors (the cross-entropy's and, as "aux:<name>", the aux sum's).
"""

import argparse
import json
import os
import tempfile
import warnings

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()

SAMPLES = 4

# transformers upcasts with `.float()` where a half-precision model would lose
# accuracy (the cross-entropy's logits, Mamba's scan, the load-balancing
# sums); on a float64 model that is a downcast that leaves float32 rounding
# (~1e-7) in the reference. Keeping float64 tensors float64 there gives the
# same math in float64 throughout.
_float = torch.Tensor.float


def _keep_f64(self, *args, **kwargs):
    return self if self.dtype == torch.float64 else _float(self, *args, **kwargs)


torch.Tensor.float = _keep_f64


def params_f64(model):
    """A class's `_keep_in_fp32_modules` (ERNIE 4.5's router and selection bias)
    stay float32 through dtype=float64: cast those parameters too (buffers such
    as RoPE's inverse frequencies keep the dtype transformers gives them)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dtype == torch.float32:
                p.data = p.data.to(torch.float64)
    return model


def sample_indices(n, count=SAMPLES):
    """Flat indices spread over [0, n): the first, the last and evenly between.

    The same formula is in tools/transformers_grads.ts and the test, so the
    sample can be recomputed without storing it.
    """
    if n <= count:
        return list(range(n))
    return [(k * (n - 1)) // (count - 1) for k in range(count)]


def sig(v):
    """Seven significant digits: f32 precision, a compact JSON."""
    return float(f"{v:.7g}")


def summary(t, values=True):
    flat = t.detach().reshape(-1).to(torch.float64)
    s = {
        "n": flat.numel(),
        "norm": sig(float(torch.linalg.vector_norm(flat))),
        "sum": sig(float(flat.sum())),
    }
    if values:
        s["val"] = [sig(float(flat[i])) for i in sample_indices(flat.numel())]
    return s


def checkpoint_grads(model, grads):
    """Gradients keyed as the checkpoint's tensors (per-expert names included).

    The parameters are overwritten with their gradients and saved: transformers'
    save path undoes its load-time conversions (fused experts, renamed modules).
    Values pass through float32 on the way, which is the precision they are
    compared at.
    """
    with torch.no_grad():
        for n, p in model.named_parameters():
            g = grads.get(n)
            p.copy_(torch.zeros_like(p) if g is None else g)
        # Saved buffers (GLM-4.5's e_score_correction_bias) are not trained: no gradient.
        for n, b in model.named_buffers():
            if b.is_floating_point():
                b.zero_()
    with tempfile.TemporaryDirectory() as d:
        model.to(torch.float32).save_pretrained(d, safe_serialization=True)
        files = [f for f in os.listdir(d) if f.endswith(".safetensors")]
        out = {}
        for f in files:
            out.update(load_file(os.path.join(d, f)))
    return out


def param_grads(model, loss):
    params = dict(model.named_parameters())
    gs = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {n: g for n, g in zip(params, gs) if g is not None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--tokens")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out")
    ap.add_argument("--full")
    a = ap.parse_args()
    torch.set_num_threads(1)

    with open(os.path.join(a.model_dir, "config.json")) as f:
        arch = json.load(f)["architectures"][0]
    cls = getattr(transformers, arch)
    kw = {"experts_implementation": "eager"} if "Mamba" not in arch else {}
    model = params_f64(cls.from_pretrained(a.model_dir, dtype=torch.float64, **kw))
    # train(): the path `model(input_ids, labels)` takes when fine-tuning.
    # Dropout and router jitter default to 0 in these configs, so it is
    # deterministic; refuse anything else rather than compare noise.
    for k in ("router_jitter_noise", "attention_dropout", "hidden_dropout"):
        v = getattr(model.config, k, 0) or 0
        if v != 0:
            raise SystemExit(f"{k} = {v}: training forward is random")
    model.train()
    cfg = model.config

    if a.tokens:
        with open(a.tokens) as f:
            tokens = json.load(f)
    else:
        rng = np.random.default_rng(a.seed)
        tokens = rng.integers(0, cfg.vocab_size, size=(a.batch, a.seq + 1)).tolist()
    x = torch.tensor(tokens, dtype=torch.long)

    moe = hasattr(cfg, "router_aux_loss_coef") and (
        getattr(cfg, "num_local_experts", None) or getattr(cfg, "num_experts", None)
    )
    out = model(input_ids=x, labels=x, use_cache=False, output_router_logits=False)
    # The model's loss_function (ForCausalLMLoss), recomputed from the logits
    # so that the reference does not rely on it, checked against its value.
    logits = out.logits[:, :-1].reshape(-1, out.logits.shape[-1])
    loss = torch.nn.functional.cross_entropy(logits, x[:, 1:].reshape(-1))
    if abs(float(loss) - float(out.loss)) > 1e-12 * abs(float(loss)):
        raise SystemExit(f"float64 loss {float(loss)} != transformers' {float(out.loss)}")
    grads = param_grads(model, loss)
    res = {
        "arch": arch,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "tokens": tokens,
        "loss": float(loss),
    }

    aux_grads = None
    if moe:
        ne = getattr(cfg, "num_local_experts", None) or cfg.num_experts
        k = cfg.num_experts_per_tok
        coef = cfg.router_aux_loss_coef
        o2 = model(input_ids=x, labels=x, use_cache=False, output_router_logits=True)
        # Only MoE layers' router logits (Jamba, Qwen2-MoE with dense layers
        # return None or nothing for the others).
        rl = tuple(r for r in o2.router_logits if r is not None)
        mod = __import__(
            f"transformers.models.{cfg.model_type}.modeling_{cfg.model_type}",
            fromlist=["load_balancing_loss_func"],
        )
        lb = mod.load_balancing_loss_func
        pooled = lb(rl, ne, k)
        # The router also sees each row's last token, which has no target; a
        # training batch of T inputs + T targets (Kiln's) does not. Masking that
        # position out (the function's own attention_mask) gives the same
        # loss on the B·T positions that are trained.
        mask = torch.ones_like(x)
        mask[:, -1] = 0
        per_layer = [lb((r,), ne, k, attention_mask=mask) for r in rl]
        per_sum = sum(per_layer) * coef
        aux_grads = param_grads(model, per_sum)
        res["aux"] = {
            "coef": coef,
            "top_k": k,
            "experts": ne,
            # transformers' own total with output_router_logits on: CE + coef·pooled.
            "loss_with_aux": float(o2.loss),
            "pooled": float(pooled),
            "pooled_trained": float(lb(rl, ne, k, attention_mask=mask)),
            "per_layer": [float(v) for v in per_layer],
        }

    ck = checkpoint_grads(model, grads)
    res["grads"] = {n: summary(t) for n, t in sorted(ck.items())}
    full = dict(ck)
    if aux_grads is not None:
        # checkpoint_grads overwrote the weights; reload for the aux mapping.
        model = params_f64(cls.from_pretrained(a.model_dir, dtype=torch.float64, **kw))
        ak = checkpoint_grads(model, {n: g for n, g in aux_grads.items()})
        res["aux"]["grads"] = {n: summary(t, False) for n, t in sorted(ak.items())}
        full.update({f"aux:{n}": t for n, t in ak.items()})
    if a.full:
        save_file({n: t.contiguous() for n, t in full.items()}, a.full)
    text = json.dumps(res, indent=None, separators=(",", ":"))
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
