"""The tokenizer a GGUF file's metadata describes, written as HuggingFace's standard files: tokenizer.json (built with
the `tokenizers` library), tokenizer_config.json (special tokens, add_bos_token, chat_template) and
special_tokens_map.json, so any HF-style tokenizer loader reads it.

Byte-level BPE (tokenizer.ggml.model "gpt2": GPT-2, SmolLM, Qwen-style vocabularies) is supported: its tokens are
already in the byte-to-unicode alphabet and its merges are the BPE merges. The pre-tokenizer follows llama.cpp's
`tokenizer.ggml.pre` where it adds to the GPT-2 split (SmolLM splits digits one by one).
"""
import json
import os

from mindformers.tools.errors import ConfigError

CONTROL, USER_DEFINED = 3, 4  # llama.cpp token types that are special tokens
DIGIT_SPLITTING_PRE = ("smollm",)


def _bpe_tokenizer(metadata, path):
    # pylint: disable-next=import-outside-toplevel
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    tokens = list(metadata["tokenizer.ggml.tokens"])
    merges = [tuple(merge.split(" ", 1)) for merge in metadata.get("tokenizer.ggml.merges") or []]
    if any(len(merge) != 2 for merge in merges):
        raise ConfigError(f"{path}: tokenizer.ggml.merges holds an entry that is not two tokens")
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=bool(metadata.get("tokenizer.ggml.add_space_prefix")),
                                          use_regex=True)
    if metadata.get("tokenizer.ggml.pre") in DIGIT_SPLITTING_PRE:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    types = list(metadata.get("tokenizer.ggml.token_type") or [])
    special = [AddedToken(token, special=True, normalized=False)
               for token, kind in zip(tokens, types) if kind in (CONTROL, USER_DEFINED)]
    tokenizer.add_special_tokens(special)
    bos = _token(metadata, tokens, "bos_token_id")
    if metadata.get("tokenizer.ggml.add_bos_token") and bos is not None:
        tokenizer.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                                 special_tokens=[(bos, vocab[bos])])
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def _token(metadata, tokens, key):
    index = metadata.get(f"tokenizer.ggml.{key}")
    return tokens[int(index)] if index is not None and 0 <= int(index) < len(tokens) else None


def tokenizer_settings(metadata):
    """Special tokens and flags, as tokenizer_config.json and our tokenizer classes name them."""
    tokens = list(metadata.get("tokenizer.ggml.tokens") or [])
    settings = {name: _token(metadata, tokens, key) for name, key in
                (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("unk_token", "unknown_token_id"),
                 ("pad_token", "padding_token_id"))}
    settings["add_bos_token"] = bool(metadata.get("tokenizer.ggml.add_bos_token", False))
    settings["add_eos_token"] = bool(metadata.get("tokenizer.ggml.add_eos_token", False))
    return settings


def write_tokenizer_files(metadata, folder, path):
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `folder`; returns the settings
    (special tokens, add_bos_token, chat_template) for the YAML."""
    kind = metadata.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ConfigError(f"{path}: tokenizer.ggml.model {kind!r} is not supported (expected gpt2, byte-level BPE)")
    tokenizer = _bpe_tokenizer(metadata, path)
    os.makedirs(folder, exist_ok=True)
    tokenizer.save(os.path.join(folder, "tokenizer.json"))
    settings = tokenizer_settings(metadata)
    special = {key: value for key, value in settings.items() if key.endswith("_token") and value is not None}
    config = dict(special, add_bos_token=settings["add_bos_token"], add_eos_token=settings["add_eos_token"],
                  clean_up_tokenization_spaces=False, tokenizer_class="PreTrainedTokenizerFast",
                  model_max_length=int(metadata.get(f"{metadata.get('general.architecture')}.context_length")
                                       or 2048))
    if metadata.get("tokenizer.chat_template"):
        config["chat_template"] = metadata["tokenizer.chat_template"]
        settings["chat_template"] = metadata["tokenizer.chat_template"]
    for name, document in (("tokenizer_config.json", config), ("special_tokens_map.json", special)):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
    return settings
