"""Every family's tokenizer as its users have it (a HF folder written by transformers' own class) gives the ids,
text, special tokens and chat prompts transformers gives on the same folder."""
import json
import os
import re
import shutil

import pytest
import yaml

from mindformers.models.auto_tokenizer import tokenizer_from_path
from mindformers.models.chatglm3 import ChatGLM3Tokenizer
from mindformers.models.code_llama import CodeLlamaTokenizer
from mindformers.models.gpt3 import GPT2Tokenizer
from mindformers.models.llama import LlamaTokenizer, LlamaTokenizerFast
from mindformers.models.qwen2 import Qwen2Tokenizer
from mindformers.tools.errors import ConfigError, DataError
from mindformers.tools.register import MindFormerModuleType, build_from_config
from tests.e2e.helpers import REPO
from tests.fixtures.family_tokenizers import FAMILIES, REMOTE_CODE_FAMILIES
from tests.fixtures.tokenizers import CRAFTED, sample_lines

transformers = pytest.importorskip("transformers")

CONVERSATIONS = [
    [{"role": "user", "content": "What does  the \"for\" statement do?"},
     {"role": "assistant", "content": " It iterates over a sequence:\n    for x in [1, 2, 3]: print(x) "},
     {"role": "user", "content": "And 漢字, café and 3.14159?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hi"}],
]


def family_texts(family, text_files):
    texts = sample_lines(text_files, 300) + CRAFTED
    texts += [f"a{token}b {token} c{token}" for token in family.specials_in_text]
    texts.append("".join(family.specials_in_text) + " x")
    if family.plain_text_only:
        texts = [text for text in texts if "<" not in text]
    return texts


def chat_or_refusal(render):
    """The rendered chat, or ('refused', message) when the template raises (Gemma has no system role)."""
    try:
        return render()
    except Exception as error:  # pylint: disable=broad-except  (ours: ConfigError; transformers: jinja2's)
        return ("refused", str(error).split(": ", 1)[-1])


@pytest.mark.parametrize("name", FAMILIES)
def test_family_tokenizer_matches_transformers(name, family_folders, sample_text_files):
    family = family_folders(name)
    theirs = family.load_transformers()
    texts = family_texts(family, sample_text_files)
    for type_name, arguments in family.ours:
        # Built as a YAML processor.tokenizer section builds it; --vocab_file gives the folder.
        ours = build_from_config(dict({"type": type_name, "vocab_file": family.folder}, **arguments),
                                 MindFormerModuleType.TOKENIZER, where="processor.tokenizer")
        where = f"{name}: {type_name} {sorted(arguments)}"
        for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
            assert getattr(ours, key) == getattr(theirs, key), (where, key)
            assert getattr(ours, key + "_id") == getattr(theirs, key + "_id"), (where, key)
        assert len(ours) == len(theirs), where
        for text in texts:
            ids = ours(text)["input_ids"]
            assert ids == theirs(text)["input_ids"], (where, text)
            for skip in (False, True):
                assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip), \
                    (where, text, skip)
        assert ours(texts[:8], padding=False)["input_ids"] == theirs(texts[:8])["input_ids"], where
        if theirs.chat_template:
            for conversation in CONVERSATIONS:
                for prompt in (True, False):
                    mine = chat_or_refusal(lambda: ours.apply_chat_template(
                        conversation, tokenize=False, add_generation_prompt=prompt))
                    expected = chat_or_refusal(lambda: theirs.apply_chat_template(
                        conversation, tokenize=False, add_generation_prompt=prompt))
                    assert mine == expected, (where, conversation)
                    if not isinstance(mine, tuple):
                        assert ours.apply_chat_template(conversation, add_generation_prompt=prompt) == \
                            theirs.apply_chat_template(conversation, add_generation_prompt=prompt,
                                                       return_dict=False), (where, conversation)


def test_each_family_folder_loads_as_its_users_load_it(family_folders, tmp_path):
    """tokenizer_from_path (what --model_file / --vocab_file folders use) picks the family's class."""
    expected = {"llama2": LlamaTokenizerFast, "internlm": LlamaTokenizer, "codellama": CodeLlamaTokenizer,
                "qwen2": Qwen2Tokenizer, "aquila2": GPT2Tokenizer, "gpt2": GPT2Tokenizer,
                "bloom": LlamaTokenizerFast, "baichuan2": LlamaTokenizer, "chatglm3": ChatGLM3Tokenizer}
    for name, kind in expected.items():
        assert type(tokenizer_from_path(family_folders(name).folder)) is kind, name
    # a GPT-2 folder without tokenizer.json (vocab.json + merges.txt only) reads those files
    gpt2 = tmp_path / "gpt2"
    shutil.copytree(family_folders("gpt2").folder, gpt2)
    os.remove(gpt2 / "tokenizer.json")
    text = "GPT-2's <|endoftext|> splits 1234 words,  and spaces\n"
    assert tokenizer_from_path(str(gpt2)).encode(text) == family_folders("gpt2").load_transformers().encode(text)
    assert tokenizer_from_path(family_folders("internlm").folder).legacy  # InternLM's own tokenizer is legacy
    assert tokenizer_from_path(family_folders("baichuan2").folder).legacy  # so is Baichuan2's


def test_codellama_infilling_prompt(family_folders):
    """[bos] ▁<PRE> " "+prefix ▁<SUF> suffix ▁<MID> (suffix_first: ▁<PRE> ▁<SUF> suffix ▁<MID> " "+prefix), prefix and
    suffix as continuations, in transformers' tokenization."""
    folder = family_folders("codellama").folder
    ours = CodeLlamaTokenizer(folder)
    theirs = transformers.CodeLlamaTokenizer.from_pretrained(folder)

    def continuation(text):
        return theirs.encode(theirs.bos_token + text, add_special_tokens=False)[1:]

    cases = [("def remove_non_ascii(s: str) -> str:\n    \"\"\" ", "\n    return result\n"), ("x = ", " + 1"),
             ("  indented", "tail  "), ("", "only the suffix")]
    pre, suf, mid = (theirs.convert_tokens_to_ids(t) for t in ("\u2581<PRE>", "\u2581<SUF>", "\u2581<MID>"))
    for prefix, suffix in cases:
        before, after = continuation(" " + prefix), continuation(suffix)
        assert ours(prefix, suffix=suffix)["input_ids"] == [theirs.bos_token_id, pre] + before + [suf] + after + [mid]
        assert ours.encode(prefix + "<FILL_ME>" + suffix) == ours(prefix, suffix=suffix)["input_ids"]
        assert ours(prefix, suffix=suffix, suffix_first=True)["input_ids"] == \
            [theirs.bos_token_id, pre, suf] + after + [mid] + before
        # transformers 5 agrees except that it puts a dummy-prefix "▁" before the suffix (transformers 4 and Meta's
        # reference code do not: the suffix continues the code after the hole). Its infilling call changes the
        # tokenizer's normalizer for later calls, so it gets a fresh one.
        infilling = transformers.CodeLlamaTokenizer.from_pretrained(folder)
        assert infilling(prefix, suffix=suffix)["input_ids"] == \
            [theirs.bos_token_id, pre] + before + [suf] + theirs.encode(suffix, add_special_tokens=False) + [mid]
    assert ours.eot_id == theirs.eot_id and ours.decode([ours.eot_id]) == theirs.decode([theirs.eot_id])
    ours.pad_token = ours.unk_token
    batch = ours(["a = <FILL_ME>\nb", "plain text"], padding=True)
    assert batch["input_ids"][0] == ours("a = ", suffix="\nb")["input_ids"]
    assert batch["input_ids"][1][:len(ours.encode("plain text"))] == ours.encode("plain text")
    with pytest.raises(ConfigError, match="one <FILL_ME>"):
        ours.encode("a <FILL_ME> b <FILL_ME>")


def test_folder_files_win_over_defaults_and_arguments_over_files(family_folders, tmp_path):
    """special_tokens_map.json < tokenizer_config.json < the YAML's arguments; generation_config.json only names a
    token the files leave unnamed; chat_template.jinja is read when the config has none."""
    folder = tmp_path / "qwen"
    shutil.copytree(family_folders("qwen2").folder, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("eos_token", None)
    config["pad_token"] = "<|im_end|>"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "special_tokens_map.json").write_text(json.dumps({"pad_token": "<|endoftext|>",
                                                                "eos_token": {"content": "<|im_start|>"}}))
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [902, 900], "bos_token_id": 900}))
    tokenizer = tokenizer_from_path(str(folder))
    assert tokenizer.pad_token == "<|im_end|>"      # tokenizer_config.json over special_tokens_map.json
    assert tokenizer.eos_token == "<|im_start|>"    # special_tokens_map.json over generation_config.json
    assert tokenizer.bos_token is None              # the config says null: generation_config does not add one
    os.remove(folder / "special_tokens_map.json")
    assert tokenizer_from_path(str(folder)).eos_token == "<|im_end|>"  # generation_config's first eos id
    assert tokenizer_from_path(str(folder), eos_token="<|endoftext|>").eos_token == "<|endoftext|>"
    assert "im_start" in tokenizer.chat_template    # from chat_template.jinja


def test_folder_errors_are_one_line(family_folders, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(family_folders("llama2").folder, folder)
    (folder / "tokenizer_config.json").write_text('{"bos_token": "<s>",\n "eos_token": }')
    with pytest.raises(DataError, match=r"tokenizer_config.json:2: not valid JSON"):
        LlamaTokenizer(str(folder))
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": 5}))
    with pytest.raises(DataError, match=r"tokenizer_config.json: bos_token: expected a token string"):
        LlamaTokenizer(str(folder))
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{% for m in messages %}"}))
    with pytest.raises(ConfigError, match="chat_template: line 1: not a valid Jinja template"):
        LlamaTokenizer(str(folder)).apply_chat_template([{"role": "user", "content": "x"}])
    (folder / "tokenizer_config.json").write_text(json.dumps({}))
    os.remove(folder / "chat_template.jinja")
    with pytest.raises(ConfigError, match="chat_template: the tokenizer has none"):
        LlamaTokenizer(str(folder)).apply_chat_template([{"role": "user", "content": "x"}])
    qwen = tmp_path / "qwen"
    shutil.copytree(family_folders("qwen2").folder, qwen)
    os.remove(qwen / "tokenizer.json")
    (qwen / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "Qwen2Tokenizer", "added_tokens_decoder": {"5": {"content": "<|im_start|>"}}}))
    with pytest.raises(DataError, match="'<|im_start|>' is declared with id 5 but the next free id is 900"):
        tokenizer_from_path(str(qwen))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "vocab.json").write_text("{}")
    with pytest.raises(DataError, match="holds no tokenizer.json or tokenizer.model"):
        tokenizer_from_path(str(empty))


def remote_code_ids(processor, text, specials):
    """What Baichuan2's and THUDM's own (remote-code) tokenizers do: the special tokens written in the text split it
    (into their ids), and every other piece goes through sentencepiece as the model was trained."""
    pattern = re.compile("|".join(re.escape(token) for token in sorted(specials, key=len, reverse=True)))
    ids, last = [], 0
    for match in pattern.finditer(text):
        ids += processor.encode(text[last:match.start()]) if match.start() > last else []
        ids.append(specials[match.group()])
        last = match.end()
    return ids + (processor.encode(text[last:]) if last < len(text) else [])


def shipped_tokenizer(config, folder):
    """The processor.tokenizer section of a shipped family YAML, built over `folder` as --vocab_file sets it."""
    with open(os.path.join(REPO, "configs", config), encoding="utf-8") as stream:
        section = dict(yaml.safe_load(stream)["processor"]["tokenizer"], vocab_file=folder)
    return build_from_config(section, MindFormerModuleType.TOKENIZER, where="processor.tokenizer")


@pytest.mark.parametrize("name", REMOTE_CODE_FAMILIES)
def test_remote_code_family_tokenizer_gives_the_published_ids(name, family_folders, sample_text_files):
    """Baichuan2: sentencepiece on every piece between <s>, </s> and <unk>, no bos (as its BaichuanTokenizer).
    ChatGLM3: GLM's nine special tokens after the model's pieces, the [gMASK] sop prefix, sentencepiece as trained
    on every piece between special tokens (</s>, <unk> and GLM's; <s> is text), and the published chat template (as
    THUDM's ChatGLMTokenizer)."""
    import jinja2  # pylint: disable=import-outside-toplevel
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel
    family = family_folders(name)
    processor = spm.SentencePieceProcessor(model_file=os.path.join(family.folder, "tokenizer.model"))
    pieces = processor.get_piece_size()
    texts = family_texts(family, sample_text_files)
    yaml_config = {"baichuan2": "baichuan2/baichuan2_base.yaml", "chatglm3": "glm3/glm3_base.yaml"}[name]
    for ours in (tokenizer_from_path(family.folder), shipped_tokenizer(yaml_config, family.folder)):
        if name == "baichuan2":
            specials = {token: processor.piece_to_id(token) for token in ("<s>", "</s>", "<unk>")}
            prefix = []
            assert (ours.bos_token, ours.eos_token, ours.pad_token, ours.add_bos_token) == ("<s>", "</s>", "<unk>",
                                                                                            False)
        else:
            from mindformers.models.chatglm3.chatglm3_tokenizer import GLM_SPECIAL_TOKENS  # noqa: E501 pylint: disable=import-outside-toplevel
            specials = {token: pieces + index for index, token in enumerate(GLM_SPECIAL_TOKENS)}
            specials.update({"</s>": processor.eos_id(), "<unk>": processor.unk_id()})  # its registered specials
            prefix = [specials["[gMASK]"], specials["sop"]]
            assert (ours.bos_token, ours.eos_token, ours.pad_token, ours.padding_side) == (None, "</s>", "<unk>",
                                                                                           "left")
            assert len(ours) == pieces + 9 and ours.convert_tokens_to_ids("<|observation|>") == pieces + 8
            # where GLM's prompts do not write it, "sop" is only letters (THUDM's own matches it inside words)
            assert ours.encode("isopropyl sop", add_special_tokens=False) == processor.encode("isopropyl sop")
            texts = [text for text in texts if not re.search(r"(?<!MASK\])sop|eop", text)]
        for text in texts:
            ids = ours(text)["input_ids"]
            assert ids == prefix + remote_code_ids(processor, text, specials), (name, text)
            plain = [index for index in ids if index not in set(specials.values()) | set(ours.all_special_ids)]
            assert ours.decode(ids, skip_special_tokens=True) == processor.decode(plain), (name, text)
    if name == "chatglm3":
        for conversation in CONVERSATIONS:
            for prompt in (True, False):
                text = jinja2.Environment().from_string(family_template(family)).render(
                    messages=conversation, add_generation_prompt=prompt)
                assert ours.apply_chat_template(conversation, tokenize=False, add_generation_prompt=prompt) == text
                assert ours.apply_chat_template(conversation, add_generation_prompt=prompt) == \
                    remote_code_ids(processor, text, specials)


def family_template(family):
    with open(os.path.join(family.folder, "tokenizer_config.json"), encoding="utf-8") as stream:
        return json.load(stream)["chat_template"]
