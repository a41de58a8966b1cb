"""Converts a Hugging Face folder to GGUF with llama.cpp's own convert_hf_to_gguf.py.

Usage: python tools/llama_cpp_convert.py LLAMA_CPP_DIR HF_DIR OUT.gguf
           [--outtype f32|f16|bf16|q8_0] [--tokenizer spm|bpe] [--pre NAME]

Used by tools/llama_cpp_reference.ts to make GGUF files the way Kiln's users get
them: written by llama.cpp's converter, not by Kiln. Three things stand between a
transformers-5 folder of tests/fixtures and the February-2025 converter, and this
script bridges each without touching what the converter writes:

- the folder is copied and its config.json rewritten as transformers 4 wrote it
  (no null values, `rope_theta` / `rope_scaling` instead of `rope_parameters`),
  since the converter reads `head_dim: null` as a value and knows no
  `rope_parameters`; an OLMoE's `rms_norm_eps` of 1e-5 is left out, since its
  OlmoeModel writes that value a second time and then refuses the duplicate;
- `--tokenizer` trains a tokenizer for the checkpoint's vocabulary size, since
  the converter needs one: `spm` a SentencePiece BPE model with byte fallback
  (tokenizer.model, as Mixtral ships), `bpe` a byte-level BPE tokenizer.json;
- a byte-level tokenizer's pre-tokenizer is recognised by the hash of its ids on
  a test text, which no made-up vocabulary matches: `--pre` names the
  `tokenizer.ggml.pre` the converter writes when the hash is unknown.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

# Text the tokenizers are trained on: plain English with digits and punctuation.
CORPUS = """Call me Ishmael. Some years ago, never mind how long precisely, having little
or no money in my purse, and nothing particular to interest me on shore, I thought I
would sail about a little and see the watery part of the world. It is a way I have of
driving off the spleen and regulating the circulation. Whenever I find myself growing
grim about the mouth; whenever it is a damp, drizzly November in my soul; 1851, 3 ships,
42 whales and 7 seas: that's what they'd say, isn't it? "The sea!" - said he.
"""


def transformers4_config(config):
    """config.json as transformers 4 wrote it, for a converter that predates 5."""
    out = {k: v for k, v in config.items() if v is not None}
    rope = out.pop("rope_parameters", None)
    if rope:
        out["rope_theta"] = rope.get("rope_theta", 10000.0)
        # transformers 5 keeps the rotary share in rope_parameters (and may leave a
        # class default beside it at the top level); transformers 4 wrote it at the
        # top level, where the converter (GLM-4.5's Glm4MoeModel) reads it.
        if "partial_rotary_factor" in rope:
            out["partial_rotary_factor"] = rope["partial_rotary_factor"]
        if rope.get("rope_type", "default") != "default":
            skip = ("rope_theta", "partial_rotary_factor")
            scaling = {k: v for k, v in rope.items() if k not in skip}
            scaling["type"] = scaling["rope_type"]
            out["rope_scaling"] = scaling
    # transformers 5's {"__float__": "Infinity"} was a bare Infinity in transformers 4.
    for key, value in list(out.items()):
        if isinstance(value, list):
            out[key] = [float(v["__float__"]) if isinstance(v, dict) and "__float__" in v else v
                        for v in value]
    # Hybrid layer kinds by their transformers 4 names (llama.cpp's Granite converter
    # looks for "attention").
    legacy = {"linear_attention": "mamba", "full_attention": "attention"}
    if out.get("model_type") == "granitemoehybrid" and "layer_types" in out:
        out["layer_types"] = [legacy.get(t, t) for t in out["layer_types"]]
    # Nemotron-H: transformers 4 wrote the blocks as hybrid_override_pattern ("M", "*",
    # "-", "E") beside num_hidden_layers, which the converter reads; transformers 5's
    # list of "linear_attention" / "full_attention" / "mlp" / "moe" it misreads.
    if out.get("model_type") == "nemotron_h" and "layers_block_type" in out:
        letters = {"linear_attention": "M", "full_attention": "*", "mlp": "-", "moe": "E"}
        kinds = out.pop("layers_block_type")
        out["hybrid_override_pattern"] = "".join(letters[t] for t in kinds)
        out["num_hidden_layers"] = len(kinds)
    # This converter's OlmoeModel writes rms eps 1e-5 itself after its base class
    # wrote config's value: a duplicate key it refuses. Same value, written once.
    if out.get("model_type") == "olmoe" and out.get("rms_norm_eps") == 1e-5:
        del out["rms_norm_eps"]
    return out


def train_spm(folder, vocab):
    """A SentencePiece BPE model with byte fallback, ids 0-2 <unk>, <s>, </s>."""
    import sentencepiece as spm

    lines = [line for line in CORPUS.split("\n") if line.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 4),
        model_prefix=os.path.join(folder, "tokenizer"),
        vocab_size=vocab,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    os.remove(os.path.join(folder, "tokenizer.vocab"))
    write_json(
        os.path.join(folder, "tokenizer_config.json"),
        {
            "tokenizer_class": "LlamaTokenizer",
            "add_bos_token": True,
            "add_eos_token": False,
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
        },
    )


def train_bpe(folder, vocab, extra_special=()):
    """A byte-level BPE tokenizer.json (GPT-2's regex) with <|endoftext|> at id 0,
    then `extra_special` added tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<|endoftext|>", *extra_special],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS] * 4, trainer)
    tok.save(os.path.join(folder, "tokenizer.json"))
    write_json(
        os.path.join(folder, "tokenizer_config.json"),
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<|endoftext|>",
            "eos_token": "<|endoftext|>",
        },
    )


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("llama")
    p.add_argument("hf")
    p.add_argument("out")
    p.add_argument("--outtype", default="f32")
    p.add_argument("--tokenizer", choices=["spm", "bpe"])
    p.add_argument("--pre", default=None)
    args = p.parse_args()

    work = tempfile.mkdtemp(prefix="kiln_convert_")
    try:
        folder = os.path.join(work, "model")
        os.mkdir(folder)
        for name in os.listdir(args.hf):
            if name.endswith(".safetensors") or name == "generation_config.json":
                shutil.copy(os.path.join(args.hf, name), folder)
        with open(os.path.join(args.hf, "config.json")) as f:
            config = json.load(f)
        write_json(os.path.join(folder, "config.json"), transformers4_config(config))
        if args.tokenizer == "spm":
            train_spm(folder, config["vocab_size"])
        elif args.tokenizer == "bpe":
            # GLM's vocabulary step (_set_vocab_glm) looks these added tokens up by name.
            glm = ["[gMASK]", "<|user|>", "<|observation|>"]
            extra = glm if config.get("model_type") == "glm4_moe" else []
            train_bpe(folder, config["vocab_size"], extra)

        sys.path.insert(0, os.path.join(args.llama, "gguf-py"))
        sys.path.insert(0, args.llama)
        import convert_hf_to_gguf as convert

        # The February-2025 converter's base class is Model; later ones' TextModel.
        base = getattr(convert, "Model", None) or convert.TextModel
        base_pre = base.get_vocab_base_pre

        def vocab_base_pre(self, tokenizer):
            try:
                return base_pre(self, tokenizer)
            except NotImplementedError:
                if args.pre is None:
                    raise
                return args.pre

        base.get_vocab_base_pre = vocab_base_pre
        sys.argv = ["convert_hf_to_gguf.py", folder, "--outtype", args.outtype, "--outfile", args.out]
        convert.main()
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
