"""transformers' float64 logits for a checkpoint folder (one Kiln wrote).

Usage: python tools/transformers_logits.py MODEL_DIR IDS OUT.json

IDS is a comma-separated list of token ids. The folder is loaded with
AutoModelForCausalLM in float64 (experts_implementation="eager": grouped_mm
has no float64 kernel) and run once over the ids; OUT.json gets
{"arch", "logits": [T * vocab floats]}, or {"error": "..."} when transformers
refuses the folder (its config or its tensors).
"""

import json
import sys
import warnings

import torch
import transformers

warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()


def main():
    model_dir, ids, out = sys.argv[1], [int(i) for i in sys.argv[2].split(",")], sys.argv[3]
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.float64, experts_implementation="eager"
        ).eval()
    except Exception as e:  # noqa: BLE001 - any refusal is reported, not raised
        json.dump({"error": f"{type(e).__name__}: {e}"[:2000]}, open(out, "w"))
        return
    with torch.no_grad():
        logits = model(torch.tensor([ids]), use_cache=False).logits[0]
    json.dump({"arch": type(model).__name__, "logits": logits.flatten().tolist()}, open(out, "w"))


if __name__ == "__main__":
    main()
