"""Streamers, the text_generation pipeline and the chat session on a tiny random model with a real tokenizer."""
import io
import threading

import numpy as np
import pytest
import mindspore as ms

from mindformers import ConfigError, LlamaConfig, LlamaForCausalLM, TextIteratorStreamer, TextStreamer, pipeline
from mindformers.generation.chat import ChatSession, encode_with_specials, prompt_ids
from mindformers.models.llama import LlamaTokenizer


@pytest.fixture(autouse=True, scope="module", params=[ms.PYNATIVE_MODE, ms.GRAPH_MODE], ids=["pynative", "graph"])
def mode(request):
    ms.set_context(mode=request.param, device_target="CPU")
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


@pytest.fixture(scope="module")
def model_and_tokenizer(sp_model_file):
    np.random.seed(1)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=600, seq_length=48, hidden_size=32, num_layers=1, num_heads=4,
                                         intermediate_size=64, compute_dtype="float32", initializer_range=0.3,
                                         use_past=True, max_new_tokens=6))
    return model, LlamaTokenizer(vocab_file=sp_model_file)


def test_text_streamer_prints_the_continuation(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    ids = tokenizer.encode("The for statement")
    out = io.StringIO()
    result = model.generate([ids], streamer=TextStreamer(tokenizer, skip_prompt=True, file=out,
                                                         skip_special_tokens=True))[0]
    assert out.getvalue() == tokenizer.decode(result[len(ids):], skip_special_tokens=True) + "\n"


def test_text_iterator_streamer_from_another_thread(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    ids = tokenizer.encode("def")
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, timeout=120, skip_special_tokens=True)
    results = []
    worker = threading.Thread(target=lambda: results.append(model.generate([ids], streamer=streamer)[0]))
    worker.start()
    pieces = list(streamer)
    worker.join()
    assert "".join(pieces) == tokenizer.decode(results[0][len(ids):], skip_special_tokens=True)


def test_streamer_needs_one_prompt(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(ConfigError, match="streamer: expected one prompt"):
        model.generate([[1, 5], [1, 6]], streamer=TextStreamer(tokenizer))


def test_pipeline_text_generation(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    pipe = pipeline("text_generation", model=model, tokenizer=tokenizer, max_new_tokens=3)
    results = pipe(["The for statement", "def"])
    expected = model.generate([tokenizer.encode("def")], max_new_tokens=3)[0]
    assert results[1] == {"text_generation_text": [tokenizer.decode(expected, skip_special_tokens=True)]}
    assert results[0]["text_generation_text"][0].startswith("The for statement")
    with pytest.raises(ConfigError, match="unknown pipeline type 'text_classification'"):
        pipeline("text_classification", model=model, tokenizer=tokenizer)


def test_chat_session_uses_the_llama2_template(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    session = ChatSession(model, tokenizer, output=io.StringIO(), max_new_tokens=2)
    first = session.answer("Hi")
    session.answer("More")
    ids = encode_with_specials(tokenizer, session.conversation.get_prompt())
    assert ids[0] == tokenizer.bos_token_id and tokenizer.eos_token_id in ids  # "</s><s>" between the turns
    assert session.conversation.messages[1][1] == first
    session.clear()
    assert session.conversation.messages == []


def test_chat_session_with_the_folders_jinja_template(model_and_tokenizer, sp_model_file):
    """--template tokenizer: the prompt is the model folder's chat_template, as transformers' apply_chat_template
    renders and tokenizes it."""
    from tests.fixtures.family_tokenizers import LLAMA2_TEMPLATE  # pylint: disable=import-outside-toplevel
    model, plain = model_and_tokenizer
    tokenizer = LlamaTokenizer(vocab_file=sp_model_file, chat_template=LLAMA2_TEMPLATE)
    session = ChatSession(model, tokenizer, template="tokenizer", output=io.StringIO(), max_new_tokens=2)
    first = session.answer("Hi")
    session.conversation.append_message("user", "More")
    session.conversation.append_message("assistant", None)
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": first},
                {"role": "user", "content": "More"}]
    assert prompt_ids(tokenizer, session.conversation) == tokenizer.apply_chat_template(messages,
                                                                                       add_generation_prompt=True)
    with pytest.raises(ConfigError, match="--template tokenizer: chat_template: the tokenizer has none"):
        ChatSession(model, plain, template="tokenizer")
