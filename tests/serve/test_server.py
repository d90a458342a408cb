"""End to end: `python -m mindformers.serve` on 127.0.0.1 with a tiny model, spoken to with the `openai` client.

One server for the module: 8 concurrent chat requests give the greedy text of generate() and are batched, chat
and completions stream, stop strings end replies, unsupported parameters are refused, the throughput benchmark
runs against it, and Ctrl-C (SIGINT) stops the server with FastChat's controller and API server.
"""
import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tests.e2e.helpers import REPO, TINY_SIZES, write_user_config

openai = pytest.importorskip("openai")
psutil = pytest.importorskip("psutil")

SIZES = dict(TINY_SIZES, seq_length=64)
MODEL_NAME = "llama2_tiny"  # trainer.model_name of the tiny configs
QUESTIONS = ["What is a list?", "What does the for statement do?", "How is a dict built?", "What is a tuple?",
             "Explain the while loop.", "What is a class?", "What does import do?", "What is a string?"]
NEW_TOKENS = 6
PROMPT = "A list is a mutable sequence of items that may hold any"  # ~24 tokens, like the chat prompts


@pytest.fixture(scope="module")
def served_model(tmp_path_factory, sp_model_file):
    """(config path, checkpoint) of a random tiny model, in graph mode as the tiny configs run. The requests are
    sized so that their prompts fill one 32-column bucket and 48 columns hold prompt and reply: few shapes to
    compile."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindformers import LlamaConfig, LlamaForCausalLM  # pylint: disable=import-outside-toplevel
    folder = tmp_path_factory.mktemp("serve")
    np.random.seed(7)
    model = LlamaForCausalLM(LlamaConfig(compute_dtype="float32", initializer_range=0.3, **SIZES))
    checkpoint = str(folder / "tiny.ckpt")
    ms.save_checkpoint(model, checkpoint)
    config = write_user_config(folder / "serve.yaml", "llama2/predict_llama2_tiny.yaml", sp_model_file, sizes=SIZES,
                               output_dir=folder / "output")
    return config, checkpoint, folder / "output"


def free_port():
    import socket  # pylint: disable=import-outside-toplevel
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(served_model, request):
    config, checkpoint, output = served_model
    port = free_port()
    env = dict(os.environ, GLOG_v="3", PYTHONWARNINGS="ignore")
    process = subprocess.Popen([sys.executable, "-m", "mindformers.serve", "--config", config, "--load_checkpoint",
                                checkpoint, "--host", "127.0.0.1", "--port", str(port)], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    request.getfixturevalue("greedy_replies")  # the reference answers, while the server comes up
    deadline = time.monotonic() + 300
    while not any(line.startswith("serving ") for line in lines):
        assert process.poll() is None, "".join(lines)[-3000:]
        assert time.monotonic() < deadline, "".join(lines)[-3000:]
        time.sleep(0.2)
    children = psutil.Process(process.pid).children()
    assert len(children) == 2, children  # FastChat's controller and API server
    yield {"url": f"http://127.0.0.1:{port}/v1", "process": process, "lines": lines, "children": children,
           "output": output}
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


def client(server):
    return openai.OpenAI(base_url=server["url"], api_key="unused", timeout=300, max_retries=0)


@pytest.fixture(scope="module")
def greedy_replies(served_model):
    """{question: what generate() answers it with in the server's default chat template (llama-2)}, from the
    model built in this process from the same config and checkpoint, as predict builds it."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from fastchat.conversation import get_conv_template  # pylint: disable=import-outside-toplevel
    from mindformers.core.context import build_context  # pylint: disable=import-outside-toplevel
    from mindformers.generation.chat import encode_with_specials  # pylint: disable=import-outside-toplevel
    from mindformers.run import load_config_with  # pylint: disable=import-outside-toplevel
    from mindformers.trainer.inference_model import build_inference_model  # noqa: E501 pylint: disable=import-outside-toplevel
    from mindformers.trainer.predict import continuation  # pylint: disable=import-outside-toplevel
    config_path, checkpoint, _ = served_model
    mode = ms.get_context("mode")
    config = load_config_with(config_path, load_checkpoint=checkpoint)
    build_context(config)
    _, network, tokenizer = build_inference_model(config, "the test")
    replies = {}
    for question in QUESTIONS:
        conversation = get_conv_template("llama-2")
        conversation.append_message(conversation.roles[0], question)
        conversation.append_message(conversation.roles[1], None)
        ids = encode_with_specials(tokenizer, conversation.get_prompt())
        output = network.generate([ids], max_new_tokens=NEW_TOKENS)[0]
        generated = [t for t in output[len(ids):] if t != tokenizer.eos_token_id]
        replies[question] = continuation(tokenizer, ids, ids + generated).lstrip()
    ms.set_context(mode=mode)
    return replies


def test_eight_concurrent_chats_are_batched_and_give_generates_greedy_text(server, greedy_replies):
    api = client(server)

    def ask(question):
        answer = api.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": question}],
                                             temperature=0, max_tokens=NEW_TOKENS)
        return answer.choices[0].message.content, answer.usage.completion_tokens

    with concurrent.futures.ThreadPoolExecutor(len(QUESTIONS)) as pool:
        answers = list(pool.map(ask, QUESTIONS))
    for question, (content, tokens) in zip(QUESTIONS, answers):
        assert content == greedy_replies[question], question
        assert 1 <= tokens <= NEW_TOKENS
    batches = [int(n) for n in re.findall(r"batch of (\d+) request", "".join(server["lines"]))]
    assert sum(batches) >= len(QUESTIONS) and max(batches) > 1, batches  # requests in flight share batches


def without_broken_bytes(text):
    """FastChat's API server drops U+FFFD (a random model's stray bytes) from streamed text only."""
    return text.replace("\ufffd", "")


def test_chat_and_completions_stream(server, greedy_replies):
    api = client(server)
    question = QUESTIONS[0]
    pieces = [chunk.choices[0].delta.content for chunk in api.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=NEW_TOKENS,
        stream=True) if chunk.choices and chunk.choices[0].delta.content]
    assert len(pieces) > 1, pieces  # the reply comes in pieces as it is generated
    assert "".join(pieces) == without_broken_bytes(greedy_replies[question])

    whole = api.completions.create(model=MODEL_NAME, prompt=PROMPT, temperature=0, max_tokens=NEW_TOKENS)
    text = whole.choices[0].text
    streamed = "".join(chunk.choices[0].text for chunk in api.completions.create(
        model=MODEL_NAME, prompt=PROMPT, temperature=0, max_tokens=NEW_TOKENS, stream=True))
    assert streamed == without_broken_bytes(text) and text
    echoed = api.completions.create(model=MODEL_NAME, prompt=PROMPT, temperature=0, max_tokens=NEW_TOKENS,
                                    echo=True)
    assert echoed.choices[0].text == PROMPT + text


def test_stop_strings_and_refused_parameters(server):
    api = client(server)
    text = api.completions.create(model=MODEL_NAME, prompt=PROMPT, temperature=0, max_tokens=10).choices[0].text
    stop = text.strip()[2:5]
    if stop.strip():
        stopped = api.completions.create(model=MODEL_NAME, prompt=PROMPT, temperature=0, max_tokens=10,
                                         stop=[stop]).choices[0]
        assert stopped.text == text[:text.index(stop)] and stopped.finish_reason == "stop"
    sampled = api.completions.create(model=MODEL_NAME, prompt=PROMPT, temperature=0.9, top_p=0.9, max_tokens=4)
    assert sampled.choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.BadRequestError, match="presence_penalty"):
        api.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=4, presence_penalty=1.0)
    models = [model.id for model in api.models.list()]
    assert models == [MODEL_NAME]


def test_throughput_benchmark_runs_against_the_server(server):
    script = os.path.join(REPO, "benchmarks", "serve_throughput.py")
    result = subprocess.run([sys.executable, script, "--url", server["url"], "--model", MODEL_NAME, "--requests",
                             "8", "--max_tokens", "3", "--prompt_words", "8", "--concurrency", "1", "8"], capture_output=True, text=True,
                            timeout=600, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^concurrency 8: [\d.]+ requests/s, [\d.]+ tokens/s", result.stdout, re.M), result.stdout
    assert re.search(r"^ratio tokens/s concurrency 8 vs 1: \d+\.\d+$", result.stdout, re.M), result.stdout


def test_ctrl_c_stops_the_server_and_its_fastchat_processes(server):
    process = server["process"]
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0, "".join(server["lines"])[-3000:]
    deadline = time.monotonic() + 30
    while any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in server["children"]):
        assert time.monotonic() < deadline, server["children"]
        time.sleep(0.2)
    logs = os.listdir(os.path.join(server["output"], "log", "serve"))
    assert sorted(logs) == ["controller.log", "openai_api_server.log"]
