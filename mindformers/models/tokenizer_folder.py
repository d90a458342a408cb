"""What a HF model folder says about its tokenizer, read the way transformers reads it.

A folder written by `save_pretrained` (or downloaded from the hub) keeps the vocabulary in tokenizer.model /
tokenizer.json / vocab.json + merges.txt and everything else in small JSON files:

    tokenizer_config.json     special tokens, add_bos_token / add_eos_token, chat_template, added_tokens_decoder,
                              model_max_length, padding_side, legacy, add_prefix_space, ...
    special_tokens_map.json   older home of the special tokens (tokenizer_config.json wins over it)
    chat_template.jinja       where transformers >= 4.43 saves the chat template (chat_template.json before)
    generation_config.json    bos/eos/pad ids the model generates with; used only to name a token the tokenizer
                              files leave unnamed (a GGUF export, a folder without special tokens)

`folder_settings` turns them into tokenizer constructor arguments; explicit arguments (a YAML section) win.
"""
import os

from mindformers.tools.errors import DataError
from mindformers.tools.json_file import load_json

TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
GENERATION_CONFIG = "generation_config.json"
CHAT_TEMPLATE_JINJA = "chat_template.jinja"
CHAT_TEMPLATE_JSON = "chat_template.json"
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")
# Settings of tokenizer_config.json the tokenizers here honour; the rest (auto_map, tokenizer_class, sp_model_kwargs,
# clean-up flags of other implementations, ...) describe other implementations and are left alone.
HONOURED_KEYS = ("add_bos_token", "add_eos_token", "model_max_length", "padding_side", "truncation_side", "legacy",
                 "add_prefix_space")
GENERATION_ID_KEYS = {"bos_token_id": "bos_token", "eos_token_id": "eos_token", "pad_token_id": "pad_token"}


class Unset:
    """The default of a constructor argument the caller did not give (None is a real value: 'no bos token')."""

    def __repr__(self):
        return "<unset>"

    def __bool__(self):
        return False


UNSET = Unset()


def resolve_tokenizer_file(path, names, kind):
    """A file path, or a directory holding one of `names`; DataError names what is missing."""
    if not path:
        raise DataError(f"no {kind} file given (expected a path to {' or '.join(names)})")
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in names:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        present = sorted(name for name in os.listdir(path) if name.startswith(("tokenizer", "vocab", "merges")))
        raise DataError(f"{path}: directory holds no {' or '.join(names)}"
                        f"{' (it has ' + ', '.join(present) + ')' if present else ''}")
    if not os.path.isfile(path):
        raise DataError(f"{kind} file not found: {path}")
    return path


def read_json(path):
    """A JSON object from `path`; a file that is not one is a one-line DataError naming it."""
    value = load_json(path)
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def token_text(value, where):
    """A special token as tokenizer_config.json writes it: a string, an AddedToken mapping or null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise DataError(f"{where}: expected a token string or {{\"content\": ...}}, got {value!r}")


def token_list(value, where):
    """additional_special_tokens / extra_special_tokens: a list, or (transformers 5) a name -> token mapping."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list):
        raise DataError(f"{where}: expected a list of tokens, got {value!r}")
    return [token_text(item, where) for item in value]


def added_tokens(value, where):
    """added_tokens_decoder: {id: {"content": ..., "special": ...}} -> {id: (content, special)}."""
    tokens = {}
    for key, item in (value or {}).items():
        try:
            index = int(key)
        except ValueError:
            raise DataError(f"{where}: expected integer ids as keys, got {key!r}") from None
        tokens[index] = (token_text(item, f"{where}.{key}"), bool(item.get("special", True))
                         if isinstance(item, dict) else True)
    return tokens


def chat_template_of(config, folder, where):
    """The folder's chat template: tokenizer_config.json's chat_template (a string, or a list of named templates
    -> {name: template}), else chat_template.jinja, else chat_template.json."""
    template = config.get("chat_template")
    if isinstance(template, list):
        try:
            return {item["name"]: item["template"] for item in template}
        except (KeyError, TypeError):
            raise DataError(f"{where}: chat_template: expected a string or a list of {{name, template}}") from None
    if template is not None and not isinstance(template, str):
        raise DataError(f"{where}: chat_template: expected a string, got {type(template).__name__}")
    if template:
        return template
    jinja = os.path.join(folder, CHAT_TEMPLATE_JINJA)
    if os.path.isfile(jinja):
        with open(jinja, encoding="utf-8") as stream:
            return stream.read()
    as_json = os.path.join(folder, CHAT_TEMPLATE_JSON)
    if os.path.isfile(as_json):
        return read_json(as_json).get("chat_template")
    return None


def generation_ids(folder):
    """{'bos_token': id, ...} from generation_config.json (eos may be a list: the first is the document end)."""
    path = os.path.join(folder, GENERATION_CONFIG)
    if not os.path.isfile(path):
        return {}
    config, ids = read_json(path), {}
    for key, name in GENERATION_ID_KEYS.items():
        value = config.get(key)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            ids[name] = value
    return ids


def folder_settings(folder):
    """Constructor arguments from the folder's JSON files ({} for a folder without them).

    Keys: the special tokens, additional_special_tokens, added_tokens (id -> (content, special)), chat_template,
    generation_ids and HONOURED_KEYS, each only when a file gives it.
    """
    if not folder or not os.path.isdir(folder):
        return {}
    settings = {}
    config_path = os.path.join(folder, TOKENIZER_CONFIG)
    map_path = os.path.join(folder, SPECIAL_TOKENS_MAP)
    config = read_json(config_path) if os.path.isfile(config_path) else {}
    sources = [(read_json(map_path), map_path)] if os.path.isfile(map_path) else []
    sources.append((config, config_path))
    for source, where in sources:  # later files win
        for key in SPECIAL_TOKEN_KEYS:
            if key in source:
                settings[key] = token_text(source[key], f"{where}: {key}")
        extra = token_list(source.get("additional_special_tokens"), f"{where}: additional_special_tokens")
        extra += token_list(source.get("extra_special_tokens"), f"{where}: extra_special_tokens")
        if extra:
            settings["additional_special_tokens"] = list(dict.fromkeys(extra))
    if "additional_special_tokens" in settings:  # transformers 5 also lists bos/eos there; they are named already
        named = {settings.get(key) for key in SPECIAL_TOKEN_KEYS}
        settings["additional_special_tokens"] = [t for t in settings["additional_special_tokens"] if t not in named]
    for key in HONOURED_KEYS:
        if config.get(key) is not None:  # transformers writes null for "the class default"
            settings[key] = config[key]
    if "added_tokens_decoder" in config:
        settings["added_tokens"] = added_tokens(config["added_tokens_decoder"], f"{config_path}: added_tokens_decoder")
    template = chat_template_of(config, folder, config_path)
    if template:
        settings["chat_template"] = template
    ids = generation_ids(folder)
    if ids:
        settings["generation_ids"] = ids
    return settings


def template_special_tokens(tokenizer_json):
    """(bos, eos) a tokenizer.json's TemplateProcessing puts around a single sequence (None for each it lacks);
    `tokenizer_json` is the parsed file."""
    processor = tokenizer_json.get("post_processor") or {}
    for item in [processor] + list(processor.get("processors") or []):
        if item.get("type") == "TemplateProcessing":
            single = item.get("single") or []
            first = single[0].get("SpecialToken", {}).get("id") if single else None
            last = single[-1].get("SpecialToken", {}).get("id") if len(single) > 1 else None
            return first, last
    return None, None


def merge_settings(explicit, folder, defaults):
    """Explicit arguments win over the folder's files, which win over the class defaults; UNSET means not given."""
    merged = dict(defaults)
    merged.update(folder)
    merged.update({key: value for key, value in explicit.items() if value is not UNSET})
    for key in SPECIAL_TOKEN_KEYS:  # MindFormers YAMLs write `unk_token: None` for "no such token"
        if merged.get(key) in ("None", ""):
            merged[key] = None
    return merged
