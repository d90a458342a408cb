"""tokenizer_from_path: the right tokenizer for a file or a HF model folder, as transformers' AutoTokenizer picks it.

A file goes by its kind: a sentencepiece .model -> LlamaTokenizer, a tokenizer.json -> LlamaTokenizerFast. A folder
goes by its tokenizer_config.json `tokenizer_class` where a family's tokenizer behaves differently (CodeLlama's
infilling, Qwen2's and GPT-2's vocab.json + merges.txt, InternLM's and Baichuan2's sentencepiece-on-every-chunk,
ChatGLM3's special tokens and [gMASK]sop prefix), else by the files it holds: tokenizer.json first (what AutoTokenizer
loads), then tokenizer.model.
"""
import os

from mindformers.models.tokenizer_folder import TOKENIZER_CONFIG, read_json
from mindformers.tools.errors import DataError

# transformers class names (and remote-code ones) -> (our class, the files it reads, settings the name implies)
FAMILY_CLASSES = {
    "CodeLlamaTokenizer": ("CodeLlamaTokenizer", ("tokenizer.model",), {}),
    "CodeLlamaTokenizerFast": ("CodeLlamaTokenizer", ("tokenizer.model",), {}),
    "Qwen2Tokenizer": ("Qwen2Tokenizer", ("tokenizer.json", "vocab.json"), {}),
    "Qwen2TokenizerFast": ("Qwen2Tokenizer", ("tokenizer.json", "vocab.json"), {}),
    "GPT2Tokenizer": ("GPT2Tokenizer", ("tokenizer.json", "vocab.json"), {}),
    "GPT2TokenizerFast": ("GPT2Tokenizer", ("tokenizer.json", "vocab.json"), {}),
    # InternLM's own (remote-code) tokenizer runs sentencepiece on every chunk between special tokens.
    "InternLMTokenizer": ("LlamaTokenizer", ("tokenizer.model",), {"legacy": True}),
    # Baichuan2's too (its model has no dummy prefix and an identity normalizer: Llama's pipeline computes that).
    "BaichuanTokenizer": ("LlamaTokenizer", ("tokenizer.model",), {"legacy": True}),
    "ChatGLMTokenizer": ("ChatGLM3Tokenizer", ("tokenizer.model",), {}),
}
VOCAB_FILES_HINT = " (vocab.json + merges.txt alone need tokenizer_class Qwen2Tokenizer or GPT2Tokenizer)"


def tokenizer_class_for(path):
    """(class name, constructor arguments) for a tokenizer file or model folder."""
    path = os.fspath(path)
    if os.path.isfile(path):
        fast = path.lower().endswith(".json")
        return ("LlamaTokenizerFast" if fast else "LlamaTokenizer"), {"vocab_file": path}
    if not os.path.isdir(path):
        raise DataError(f"tokenizer file or folder not found: {path}")
    config_path = os.path.join(path, TOKENIZER_CONFIG)
    declared = read_json(config_path).get("tokenizer_class") if os.path.isfile(config_path) else None
    has = {name for name in ("tokenizer.json", "tokenizer.model", "vocab.json") if
           os.path.isfile(os.path.join(path, name))}
    if declared in FAMILY_CLASSES:
        name, files, settings = FAMILY_CLASSES[declared]
        if has & set(files):
            return name, dict(settings, vocab_file=path)
    if "tokenizer.json" in has:
        return "LlamaTokenizerFast", {"vocab_file": path}
    if "tokenizer.model" in has:
        return "LlamaTokenizer", {"vocab_file": path}
    raise DataError(f"{path}: holds no tokenizer.json or tokenizer.model"
                    f"{VOCAB_FILES_HINT if has else ''}")


def tokenizer_from_path(path, **settings):
    """The tokenizer of a file or HF model folder; `settings` override what the folder says."""
    from mindformers.tools.register import MindFormerModuleType, MindFormerRegister
    import mindformers.models  # noqa: F401  (registers the tokenizer classes)  pylint: disable=unused-import

    name, arguments = tokenizer_class_for(path)
    arguments.update(settings)
    return MindFormerRegister.get_cls(MindFormerModuleType.TOKENIZER, name)(**arguments)
