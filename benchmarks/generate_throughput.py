"""Generation speed of our generate() (MindSpore graph mode, KV cache) against transformers' generate on PyTorch
CPU, on the same weights, in one run.

For each batch size: time to first token (the prompt's prefill plus choosing one token) and decode tokens/s
(tokens generated after the first, over all rows, per second of decoding). Greedy, no eos, fp32, same threads.
Graph compilation is excluded by warm-up calls with the same shapes; timed runs alternate between the sides.

    python benchmarks/generate_throughput.py                   # 8 layers, hidden 512, vocab 32000, 128+128, b 1, 8
    python benchmarks/generate_throughput.py --layers 1 --hidden 64 --heads 4 --vocab 256 --prompt 8 --new 4 \
        --batches 1 2 --repeat 1                               # smoke run

    python benchmarks/generate_throughput.py --mode pynative --new 32 --batches 1   # our PyNative generate instead
    python benchmarks/generate_throughput.py --mode layerwise --new 32 --batches 1  # PyNative, layer graphs

Prints a line per side and batch, and `ratio decode ours/theirs batch B: X.XX` (> 1: we are faster). PyNative runs
ops one after the other (pynative_synchronize), as build_context sets it on CPU.

A decode step reads every weight once whatever the batch, so at small batches its speed is bounded by how fast the
machine streams memory: the script also prints the bytes of weights a step reads, the rate each side reads them at
(steps/s x bytes), and the rate of a matrix-vector product over as many bytes (PyTorch, same threads, best of
several): `decode ceiling batch B: X.XX x theirs` is the most any fp32 decode could gain over theirs.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("GLOG_v", "3")

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--layers", type=int, default=8)
    add("--hidden", type=int, default=512)
    add("--heads", type=int, default=8)
    add("--kv-heads", type=int, default=None)
    add("--ffn", type=int, default=None, help="intermediate size (default: Llama's rule for the hidden size)")
    add("--vocab", type=int, default=32000)
    add("--prompt", type=int, default=128)
    add("--new", type=int, default=128)
    add("--batches", type=int, nargs="+", default=[1, 8])
    add("--repeat", type=int, default=2, help="timed runs per side and batch (median taken)")
    add("--threads", type=int, default=os.cpu_count())
    add("--mode", choices=("graph", "pynative", "layerwise"), default="graph",
        help="MindSpore mode of our side (layerwise: PyNative with context.layerwise_compile's layer graphs)")
    add("--tie-word-embeddings", action="store_true", help="the head multiplies by the embedding table (SmolLM2)")
    add("--without-transposed", action="store_true",
        help="also time ours with GenerationConfig.transposed_weights False (no (in, out) weight copies)")
    return parser.parse_args(argv)


def build_hf(args, folder):
    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel
    from mindformers.models.llama.llama_config import ffn_hidden_size  # pylint: disable=import-outside-toplevel
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.kv_heads or args.heads,
        intermediate_size=args.ffn or ffn_hidden_size(args.hidden, 256),
        max_position_embeddings=args.prompt + args.new + 16, rms_norm_eps=1e-5,
        tie_word_embeddings=args.tie_word_embeddings)
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    return model


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def streaming_rate(nbytes, threads, hidden, repeat=7):
    """Bytes/s of the fastest of `repeat` float32 matrix-vector products over a matrix of about `nbytes`: the
    rate a decode step streaming that many bytes of weights cannot beat."""
    import torch  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(threads)
    matrix = torch.randn(max(1, nbytes // (4 * hidden)), hidden)
    vector = torch.randn(1, hidden)
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeat + 1):  # the first run warms up
            best = min(best, timed(lambda: vector @ matrix.T))
    return matrix.numel() * 4 / best


def measure(runs, batch, new, repeat):
    """For each side in `runs`: (ttft seconds, decode tokens/s). A 1-token run gives the first-token time, a full
    run the rest; the sides take turns within each repeat, so a change in machine load hits both alike."""
    firsts = {side: [] for side in runs}
    fulls = {side: [] for side in runs}
    for _ in range(repeat):
        for side, run in runs.items():
            firsts[side].append(timed(lambda run=run: run(1)))
            fulls[side].append(timed(lambda run=run: run(new)))
    result = {}
    for side in runs:
        first, full = statistics.median(firsts[side]), statistics.median(fulls[side])
        result[side] = (first, batch * (new - 1) / max(full - first, 1e-9))
    return result


def main(argv=None):
    args = parse_args(argv)
    import torch  # pylint: disable=import-outside-toplevel
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(args.threads)
    if args.mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU", jit_config={"jit_level": "O0"})
    else:
        ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU", pynative_synchronize=True)
    from mindformers import LlamaForCausalLM  # pylint: disable=import-outside-toplevel
    print(f"threads: {args.threads}; ours in {args.mode} mode")
    print(f"model: {args.layers} layers, hidden {args.hidden}, heads {args.heads}, vocab {args.vocab}"
          f"{' (tied head)' if args.tie_word_embeddings else ''}; "
          f"{args.prompt} prompt tokens, {args.new} new tokens, greedy, fp32")
    with tempfile.TemporaryDirectory() as folder:
        theirs = build_hf(args, folder)
        ours = LlamaForCausalLM.from_pretrained(folder, use_past=True)
    if args.mode == "layerwise":
        from mindformers.models.decoder.layerwise import compile_layerwise  # noqa: E501 pylint: disable=import-outside-toplevel
        compile_layerwise(ours)
    # The embedding table gives a step one row per token, unless the head multiplies by it (tied: counted once)
    table = theirs.get_input_embeddings().weight
    weight_bytes = sum(p.numel() * p.element_size() for p in theirs.parameters()) - (
        0 if args.tie_word_embeddings else table.numel() * table.element_size())
    stream = streaming_rate(weight_bytes, args.threads, args.hidden)
    print(f"a decode step reads {weight_bytes / 2**20:.1f} MiB of weights; a matrix-vector product over as many "
          f"bytes streams {stream / 1e9:.2f} GB/s")
    rng = np.random.default_rng(0)
    for batch in args.batches:
        prompts = rng.integers(3, args.vocab, size=(batch, args.prompt))
        torch_prompts = torch.tensor(prompts)
        mask = torch.ones_like(torch_prompts)

        def run_ours(new, prompts=prompts, transposed=True):
            return ours.generate(prompts.tolist(), max_new_tokens=new, eos_token_id=[], transposed_weights=transposed)

        def run_theirs(new, torch_prompts=torch_prompts, mask=mask):
            with torch.no_grad():
                return theirs.generate(torch_prompts, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                                       do_sample=False, pad_token_id=0)

        # The timed runs' own shapes: 1 and `new` tokens fall in different cache-length buckets, each compiled once.
        warm_up = timed(lambda: (run_ours(1), run_ours(args.new)))
        run_theirs(args.new)
        same = [row[args.prompt:] for row in run_ours(min(args.new, 8))] == \
            run_theirs(min(args.new, 8))[:, args.prompt:].tolist()
        sides = {"ours": run_ours, "theirs": run_theirs}
        if args.without_transposed:
            sides["ours without copies"] = lambda new, prompts=prompts: run_ours(new, prompts, transposed=False)
            for new in (1, args.new):  # its own decoding graphs compile here, outside the timed runs
                sides["ours without copies"](new)
        timings = measure(sides, batch, args.new, args.repeat)
        (ours_ttft, ours_rate), (theirs_ttft, theirs_rate) = timings["ours"], timings["theirs"]
        print(f"ours   batch {batch}: time to first token {ours_ttft * 1000:.1f} ms, decode {ours_rate:.1f} tokens/s "
              f"(warm-up with graph compiles {warm_up:.1f} s)")
        print(f"theirs batch {batch}: time to first token {theirs_ttft * 1000:.1f} ms, decode {theirs_rate:.1f} "
              f"tokens/s")
        print(f"same greedy tokens batch {batch}: {same}")
        print(f"ratio ttft theirs/ours batch {batch}: {theirs_ttft / ours_ttft:.2f}")
        print(f"ratio decode ours/theirs batch {batch}: {ours_rate / theirs_rate:.2f}", flush=True)
        print(f"weights read batch {batch}: ours {ours_rate / batch * weight_bytes / 1e9:.2f} GB/s, theirs "
              f"{theirs_rate / batch * weight_bytes / 1e9:.2f} GB/s; decode ceiling batch {batch}: "
              f"{stream / (theirs_rate / batch * weight_bytes):.2f} x theirs", flush=True)
        if args.without_transposed:
            plain_ttft, plain_rate = timings["ours without copies"]
            print(f"ours without copies batch {batch}: time to first token {plain_ttft * 1000:.1f} ms, decode "
                  f"{plain_rate:.1f} tokens/s; ratio decode with/without copies: {ours_rate / plain_rate:.2f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
