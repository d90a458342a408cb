"""The serving pieces in-process: the batching engine on a tiny random model (requests with different options in
one batch give what generate() gives each alone), the reply text rules and the mapping of request parameters."""
import numpy as np
import pytest
import mindspore as ms

from mindformers import LlamaConfig, LlamaForCausalLM
from mindformers.models.llama import LlamaTokenizer
from mindformers.serve.engine import BatchingEngine, GenerationRequest, batch_buckets
from mindformers.serve.reply import ReplyText, cut_at_stop, held_back
from mindformers.serve.worker import RequestError, generation_options
from mindformers.trainer.predict import continuation


@pytest.fixture(scope="module")
def model_and_tokenizer(sp_model_file):
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    np.random.seed(5)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=600, seq_length=96, hidden_size=32, num_layers=1, num_heads=4,
                                         intermediate_size=64, compute_dtype="float32", initializer_range=0.3,
                                         use_past=True))
    yield model, LlamaTokenizer(vocab_file=sp_model_file)
    ms.set_context(mode=mode)


def test_one_batch_of_requests_with_different_options_equals_each_alone(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    defaults = model.generation_config()
    prompts = [tokenizer.encode(text) for text in ("The for statement", "def", "A list is a sequence of")]
    options = [dict(max_new_tokens=6),
               dict(max_new_tokens=4, do_sample=True, temperature=0.8, top_k=20, seed=11),
               dict(max_new_tokens=3, do_sample=True, top_p=0.9, seed=3, repetition_penalty=1.3)]
    alone = [model.generate([ids], tokenizer=tokenizer, **opts)[0] for ids, opts in zip(prompts, options)]
    greedy = tokenizer.decode(alone[0][len(prompts[0]):][2:4], skip_special_tokens=True).strip()
    if greedy:  # a stop string out of the greedy reply itself: the row ends where it appears
        options[0]["stop_strings"] = [greedy]

    engine = BatchingEngine(model, tokenizer, max_batch_size=4, gather_seconds=0.5, max_wait_seconds=0.5)
    try:
        requests = [GenerationRequest(ids, opts["max_new_tokens"], defaults.updated(**opts))
                    for ids, opts in zip(prompts, options)]
        streamed = [[] for _ in requests]
        for request in requests:
            engine.submit(request)
        for request, tokens in zip(requests, streamed):
            tokens.extend(request.tokens())
    finally:
        engine.stop()
    assert engine.batch_sizes == [3]  # one batch (run as 4 rows: a finished filler row makes the power of two)
    for request, tokens, expected, ids in zip(requests[1:], streamed[1:], alone[1:], prompts[1:]):
        assert ids + request.row.generated == expected
        assert tokens == request.row.generated
    first = requests[0].row
    if greedy:
        assert first.finish_reason == "stop"
        assert greedy in tokenizer.decode(first.generated, skip_special_tokens=True)
        assert first.generated == alone[0][len(prompts[0]):][:len(first.generated)]
    else:
        assert prompts[0] + first.generated == alone[0]


def test_batch_buckets():
    assert batch_buckets(8) == [1, 2, 4, 8]
    assert batch_buckets(6) == [1, 2, 4, 6]
    assert batch_buckets(1) == [1]


def test_reply_text_keeps_the_leading_space_and_stops_before_a_stop_string(sp_model_file):
    tokenizer = LlamaTokenizer(vocab_file=sp_model_file)
    prompt = tokenizer.encode("The for statement")
    reply_ids = tokenizer.encode(" is used to iterate over a sequence", add_special_tokens=False)
    full = continuation(tokenizer, prompt, prompt + reply_ids)
    assert full.startswith(" is")

    reply = ReplyText(tokenizer, prompt, stops=["iterate"])
    released = [reply.add(token) for token in reply_ids]
    growing = [text for text in released if text is not None]
    assert all(later.startswith(earlier) for earlier, later in zip(growing, growing[1:]))
    assert all("iter" not in text for text in growing)  # never the start of the stop string
    assert reply.final() == full[:full.index("iterate")]

    chat = ReplyText(tokenizer, prompt, skip_ids=[tokenizer.eos_token_id], chat=True)
    for token in reply_ids + [tokenizer.eos_token_id]:
        chat.add(token)
    assert chat.final() == full.lstrip()


def test_reply_text_holds_byte_pieces_until_their_run_ends(sp_model_file):
    """A byte piece that decodes alone ('<0x01>' is '\\x01') decodes to U+FFFD once an invalid byte joins its run:
    nothing is released while the last token is a byte piece, so the streamed text never changes behind the
    client (a random model generated '▁▁', <0x01>, <0xF2>, <0x2D>, 'an', 't')."""
    tokenizer = LlamaTokenizer(vocab_file=sp_model_file)
    prompt = tokenizer.encode("The for statement")
    byte = {value: tokenizer.convert_tokens_to_ids(f"<0x{value:02X}>") for value in (0x01, 0xF2, 0x2D)}
    word = tokenizer.encode(" any", add_special_tokens=False)
    reply = ReplyText(tokenizer, prompt)
    released = [reply.add(token) for token in [byte[0x01], byte[0xF2], byte[0x2D]] + word]
    assert released[:3] == [None, None, None]
    final = reply.final()
    assert released[-1] == final and final.endswith("any") and "\x01" not in final


def test_stop_string_helpers():
    assert cut_at_stop("abc STOP def END", ["END", "STOP"]) == ("abc ", True)
    assert cut_at_stop("abc", ["x"]) == ("abc", False)
    assert held_back("hello wor", ["world"]) == 3
    assert held_back("hello", ["xyz"]) == 0


def test_generation_options_follow_fastchat():
    greedy = generation_options({"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 5, "stop": "\n"})
    assert greedy == {"max_new_tokens": 5, "repetition_penalty": 1.0, "stop_strings": ["\n"], "do_sample": False}
    sampled = generation_options({"temperature": 0.7, "top_p": 0.9, "top_k": -1, "stop": ["", "###"]})
    assert sampled["do_sample"] and sampled["top_k"] == 0 and sampled["stop_strings"] == ["###"]
    for params, fragment in (({"presence_penalty": 0.5}, "presence_penalty"), ({"logprobs": 1}, "logprobs"),
                             ({"use_beam_search": True}, "beam"), ({"temperature": "hot"}, "temperature")):
        with pytest.raises(RequestError, match=fragment):
            generation_options(params)


def worker_for(model, tokenizer, template):
    """The FastChat worker object, without its HTTP server or a controller (it registers only when told to)."""
    from mindformers.serve.worker import create_worker  # pylint: disable=import-outside-toplevel
    engine = BatchingEngine(model, tokenizer, max_batch_size=2, gather_seconds=0.0)
    return create_worker(engine, tokenizer, "tiny", model.config.seq_length, template, "http://127.0.0.1:9",
                         "http://127.0.0.1:9", 4), engine


def test_the_worker_renders_chats_with_the_folders_jinja_template(model_and_tokenizer, sp_model_file):
    """--template tokenizer: a chat is rendered by the tokenizer's own chat_template (as apply_chat_template does),
    counted and answered with what generate() answers that prompt."""
    import json  # pylint: disable=import-outside-toplevel
    from mindformers.serve.worker import CHAT_PROMPT_MARK  # pylint: disable=import-outside-toplevel
    from tests.fixtures.family_tokenizers import LLAMA2_TEMPLATE  # pylint: disable=import-outside-toplevel
    model, _ = model_and_tokenizer
    tokenizer = LlamaTokenizer(vocab_file=sp_model_file, chat_template=LLAMA2_TEMPLATE)
    worker, engine = worker_for(model, tokenizer, "tokenizer")
    try:
        messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is a list?"}]
        prompt = CHAT_PROMPT_MARK + json.dumps(messages)
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        assert worker.count_token({"prompt": prompt})["count"] == len(ids)
        assert worker.conv.name == "raw"  # FastChat's API server is told a template that adds nothing
        answer = worker.generate_gate({"prompt": prompt, "temperature": 0, "max_new_tokens": 4})
        output = model.generate([ids], max_new_tokens=4)[0]
        generated = [t for t in output[len(ids):] if t != tokenizer.eos_token_id]
        assert answer["text"] == continuation(tokenizer, ids, ids + generated).lstrip()
        assert answer["usage"]["prompt_tokens"] == len(ids) and answer["error_code"] == 0
        refused = worker.generate_gate({"prompt": CHAT_PROMPT_MARK + json.dumps(messages[1:] * 2)})
        assert refused["error_code"] != 0 and "alternate" in refused["text"]  # the template's own exception
    finally:
        engine.stop()
