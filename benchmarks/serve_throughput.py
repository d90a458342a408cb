"""Throughput of `python -m mindformers.serve` at concurrency 1 and 8: requests/s and generated tokens/s over the
OpenAI API, and their ratio (what batching the requests in flight buys).

By default it builds a model to serve (random weights, 8 layers, hidden 512, graph mode, a sentencepiece tokenizer
trained on the shipped sample text), starts the server on a free port and stops it at the end; `--url` measures a
server that is already running instead. Every request is a greedy /v1/completions call with a different prompt of
the same token length; each concurrency level first runs a warm-up round (graph compilation) that is not timed.

    python benchmarks/serve_throughput.py                      # 8 layers, hidden 512, 32 requests of 64 tokens
    python benchmarks/serve_throughput.py --url http://127.0.0.1:8000/v1 --model llama2_7b

Prints `concurrency C: R requests/s, T tokens/s, mean latency L s` per level and
`ratio tokens/s concurrency 8 vs 1: X.XX`.
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_TEXT = os.path.join(REPO, "datasets", "sample", "python_docs.txt")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--url", default=None, help="a running server's base URL (…/v1); default: start one")
    add("--model", default="serve_bench", help="model name (with --url: the server's trainer.model_name)")
    add("--concurrency", type=int, nargs="+", default=[1, 8])
    add("--requests", type=int, default=32, help="timed requests per concurrency level")
    add("--max_tokens", type=int, default=64)
    add("--prompt_words", type=int, default=24, help="words of sample text per prompt (their token count is made "
                                                     "equal)")
    add("--layers", type=int, default=8)
    add("--hidden", type=int, default=512)
    add("--heads", type=int, default=8)
    add("--vocab", type=int, default=4000, help="tokenizer (and model) vocabulary size")
    add("--seq_length", type=int, default=256)
    return parser.parse_args(argv)


def equal_length_prompts(url, model, count, words, max_tokens):
    """`count` different prompts of the same token length: windows of `words` words of the shipped sample text,
    counted by the server (FastChat's /api/v1/token_check), keeping the most common length."""
    with open(SAMPLE_TEXT, encoding="utf-8") as stream:
        text = stream.read().split()
    candidates = 20 * count
    step = max(1, (len(text) - words) // candidates)
    windows = [" ".join(text[i * step:i * step + words]) for i in range(candidates)]
    checks = post(f"{url[:-len('/v1')] if url.endswith('/v1') else url}/api/v1/token_check",
                  {"prompts": [{"model": model, "prompt": w, "max_tokens": max_tokens} for w in windows]})["prompts"]
    lengths = [check["tokenCount"] for check in checks if check["fits"]]
    if not lengths:
        raise SystemExit(f"no prompt of {words} words leaves room for {max_tokens} new tokens in this model")
    length = max(set(lengths), key=lengths.count)
    chosen = [w for w, check in zip(windows, checks) if check["fits"] and check["tokenCount"] == length]
    print(f"prompts: {len(chosen)} different ones of {length} tokens", flush=True)
    return [chosen[i % len(chosen)] for i in range(count)]


def post(url, payload):
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=3600) as response:
        return json.loads(response.read())


def run_level(url, model, prompts, concurrency, max_tokens):
    """(seconds, completion tokens, mean latency) of all `prompts` sent by `concurrency` clients."""
    latencies, tokens = [], []

    def one(prompt):
        start = time.perf_counter()
        answer = post(f"{url}/completions", {"model": model, "prompt": prompt, "temperature": 0,
                                             "max_tokens": max_tokens})
        latencies.append(time.perf_counter() - start)
        tokens.append(answer["usage"]["completion_tokens"])

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, prompts))
    return time.perf_counter() - start, sum(tokens), sum(latencies) / len(latencies)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def build_served_model(args, folder):
    """(config, checkpoint) of a random model with a tokenizer trained on the sample text."""
    sys.path.insert(0, REPO)
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    import yaml  # pylint: disable=import-outside-toplevel
    from mindformers import LlamaConfig, LlamaForCausalLM  # pylint: disable=import-outside-toplevel
    from mindformers.models.llama.llama_config import ffn_hidden_size  # pylint: disable=import-outside-toplevel
    from mindformers.tools.tokenizer_training import train_sentencepiece  # noqa: E501 pylint: disable=import-outside-toplevel
    tokenizer = train_sentencepiece([SAMPLE_TEXT], os.path.join(folder, "tokenizer"), args.vocab, num_threads=2)
    sizes = {"vocab_size": args.vocab, "seq_length": args.seq_length, "num_layers": args.layers,
             "hidden_size": args.hidden, "num_heads": args.heads, "n_kv_heads": args.heads,
             "intermediate_size": ffn_hidden_size(args.hidden, 256)}
    np.random.seed(0)
    model = LlamaForCausalLM(LlamaConfig(compute_dtype="float32", **sizes))
    checkpoint = os.path.join(folder, "model.ckpt")
    ms.save_checkpoint(model, checkpoint)
    config = os.path.join(folder, "serve.yaml")
    with open(config, "w", encoding="utf-8") as stream:
        yaml.safe_dump({"base_config": [os.path.join(REPO, "configs", "llama2", "predict_llama2_tiny.yaml")],
                        "output_dir": os.path.join(folder, "output"), "trainer": {"model_name": args.model},
                        "processor": {"tokenizer": {"vocab_file": tokenizer}},
                        "model": {"model_config": sizes}}, stream)
    return config, checkpoint


class Server:
    """`python -m mindformers.serve` in a subprocess, up until stop()."""

    def __init__(self, config, checkpoint):
        self.port = free_port()
        self.lines = []
        env = dict(os.environ, GLOG_v="3", PYTHONPATH=os.pathsep.join(filter(None, [REPO,
                                                                                    os.environ.get("PYTHONPATH")])))
        self.process = subprocess.Popen([sys.executable, "-m", "mindformers.serve", "--config", config,
                                         "--load_checkpoint", checkpoint, "--port", str(self.port)],
                                        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()
        while not any(line.startswith("serving ") for line in self.lines):
            if self.process.poll() is not None:
                raise SystemExit("the server did not start:\n" + "".join(self.lines[-30:]))
            time.sleep(0.2)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def batch_sizes(self):
        return [int(n) for n in re.findall(r"batch of (\d+) request", "".join(self.lines))]

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=60)


def main(argv=None):
    args = parse_args(argv)
    server = None
    with tempfile.TemporaryDirectory() as folder:
        if args.url:
            url = args.url.rstrip("/")
        else:
            print(f"building a {args.layers}-layer, hidden-{args.hidden}, vocab-{args.vocab} model and starting "
                  "the server ...", flush=True)
            server = Server(*build_served_model(args, folder))
            url = server.url
        try:
            prompts = equal_length_prompts(url, args.model, args.requests + max(args.concurrency), args.prompt_words,
                                           args.max_tokens)
            results = {}
            for level in args.concurrency:
                run_level(url, args.model, prompts[-level:], level, args.max_tokens)  # warm-up: compiles the shapes
                seen = len(server.batch_sizes()) if server else 0
                seconds, tokens, latency = run_level(url, args.model, prompts[:args.requests], level,
                                                     args.max_tokens)
                results[level] = tokens / seconds
                batches = f", batches {server.batch_sizes()[seen:]}" if server else ""
                print(f"concurrency {level}: {args.requests / seconds:.2f} requests/s, {tokens / seconds:.1f} "
                      f"tokens/s, mean latency {latency:.2f} s{batches}", flush=True)
        finally:
            if server is not None:
                server.stop()
    base = args.concurrency[0]
    for level in args.concurrency[1:]:
        print(f"ratio tokens/s concurrency {level} vs {base}: {results[level] / results[base]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
