"""Peak memory and throughput of convert_weight.py on a synthetic HF Llama checkpoint of several GB.

    python benchmarks/convert_memory.py                 # ~4.3 GB: Llama-2-7B widths, 4 layers, fp32
    python benchmarks/convert_memory.py --smoke         # a few MB, to check the script runs

Builds sharded fp32 safetensors (random data, written tensor by tensor) in a temp folder, then converts it in a
child process whose peak RSS comes from wait4's rusage. Prints peak RSS / largest tensor (goal <= 3: the
converter must not hold the model), the same ratio after subtracting the RSS of a child that only imports the
converter (the reference), and MB/s against a plain copy of the same files measured in the same run.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from mindformers.checkpoint.safetensors_stream import SafetensorsWriter, write_index  # noqa: E402
from child_process import run_child  # noqa: E402  pylint: disable=wrong-import-position,import-error  (this script's folder)

MB = 1 << 20


def llama_tensors(hidden, ffn, vocab, layers, kv_heads_ratio=1):
    kv = hidden // kv_heads_ratio
    yield "model.embed_tokens.weight", (vocab, hidden)
    for i in range(layers):
        prefix = f"model.layers.{i}"
        yield f"{prefix}.input_layernorm.weight", (hidden,)
        for name, shape in (("q_proj", (hidden, hidden)), ("k_proj", (kv, hidden)), ("v_proj", (kv, hidden)),
                            ("o_proj", (hidden, hidden))):
            yield f"{prefix}.self_attn.{name}.weight", shape
        yield f"{prefix}.post_attention_layernorm.weight", (hidden,)
        for name, shape in (("gate_proj", (ffn, hidden)), ("up_proj", (ffn, hidden)), ("down_proj", (hidden, ffn))):
            yield f"{prefix}.mlp.{name}.weight", shape
    yield "model.norm.weight", (hidden,)
    yield "lm_head.weight", (vocab, hidden)


def random_chunks(shape, pool):
    """Random fp32 data without generating GBs of random numbers: slices of a random pool at varying offsets."""
    remaining = int(np.prod(shape))
    offset = np.random.randint(0, pool.size // 2)
    while remaining:
        take = min(remaining, pool.size - offset)
        yield pool[offset:offset + take]
        remaining -= take
        offset = 0


def build_checkpoint(folder, args):
    tensors = list(llama_tensors(args.hidden_size, args.intermediate_size, args.vocab_size, args.num_layers))
    pool = np.random.standard_normal(min(16 * MB, max(1024, args.hidden_size * args.vocab_size))).astype(np.float32)
    shards, current, size = [], [], 0
    for name, shape in tensors:
        nbytes = int(np.prod(shape)) * 4
        if current and size + nbytes > args.shard_mb * MB:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += nbytes
    shards.append(current)
    weight_map, total = {}, 0
    for index, shard in enumerate(shards):
        file_name = f"model-{index + 1:05d}-of-{len(shards):05d}.safetensors"
        writer = SafetensorsWriter(os.path.join(folder, file_name), [(n, "F32", s) for n, s in shard])
        for name, shape in shard:
            writer.write_tensor(name, random_chunks(shape, pool))
            weight_map[name] = file_name
            total += int(np.prod(shape)) * 4
        writer.close()
    write_index(os.path.join(folder, "model.safetensors.index.json"), weight_map, total)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": args.hidden_size,
              "intermediate_size": args.intermediate_size, "num_hidden_layers": args.num_layers,
              "num_attention_heads": args.num_heads, "num_key_value_heads": args.num_heads,
              "vocab_size": args.vocab_size, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
              "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float32"}
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as handle:
        json.dump(config, handle)
    largest = max(int(np.prod(shape)) * 4 for _, shape in tensors)
    return total, largest


def copy_throughput(folder, target):
    """MB/s of copying the same shards: the reference the converter's MB/s is compared with."""
    os.makedirs(target)
    start = time.perf_counter()
    copied = 0
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            shutil.copyfile(os.path.join(folder, name), os.path.join(target, name))
            copied += os.path.getsize(os.path.join(target, name))
    elapsed = time.perf_counter() - start
    shutil.rmtree(target)
    return copied / MB / elapsed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny checkpoint, to check the script runs")
    parser.add_argument("--hidden_size", type=int, default=4096)
    parser.add_argument("--intermediate_size", type=int, default=11008)
    parser.add_argument("--vocab_size", type=int, default=32000)
    parser.add_argument("--num_layers", type=int, default=4)
    parser.add_argument("--num_heads", type=int, default=32)
    parser.add_argument("--shard_mb", type=int, default=1000)
    parser.add_argument("--dtype", default=None, help="passed to convert_weight.py --dtype")
    parser.add_argument("--no_reference", action="store_true", help="skip the import-only child (faster smoke)")
    parser.add_argument("--workdir", default=None, help="where the temp folder goes (default: $TMPDIR)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.hidden_size, args.intermediate_size, args.vocab_size = 64, 172, 512
        args.num_layers, args.num_heads, args.shard_mb = 2, 4, 1
    return args


def main(argv=None):
    args = parse_args(argv)
    expected = 4 * (2 * args.vocab_size * args.hidden_size + args.num_layers * (
        4 * args.hidden_size ** 2 + 3 * args.hidden_size * args.intermediate_size))
    workdir = tempfile.mkdtemp(prefix="convert_memory_", dir=args.workdir)
    free = shutil.disk_usage(workdir).free
    if free < 2.5 * expected:
        shutil.rmtree(workdir)
        raise SystemExit(f"{workdir}: {free / 2**30:.1f} GiB free, the benchmark needs "
                         f"{2.5 * expected / 2**30:.1f} GiB (input, output and a copy)")
    try:
        hf_dir = os.path.join(workdir, "hf")
        os.makedirs(hf_dir)
        start = time.perf_counter()
        total, largest = build_checkpoint(hf_dir, args)
        print(f"synthetic checkpoint: {total / 2**30:.2f} GiB in {hf_dir} "
              f"(largest tensor {largest / MB:.0f} MiB), built in {time.perf_counter() - start:.1f} s")
        copy_mb_s = copy_throughput(hf_dir, os.path.join(workdir, "copy"))
        base_s, base_rss = 0.0, 0
        if not args.no_reference:
            base_s, base_rss, _, _ = run_child([sys.executable, "-c",
                                                "import convert_weight, mindformers.checkpoint.hf_convert"])
        command = [sys.executable, "convert_weight.py", "--model", "llama", "--input_path", hf_dir,
                   "--output_path", os.path.join(workdir, "out.ckpt"), "--no_progress"]
        if args.dtype:
            command += ["--dtype", args.dtype]
        conv_s, conv_rss, _, _ = run_child(command)
        mb_s = total / MB / conv_s
        if base_rss:
            print(f"reference (import only): peak RSS {base_rss / MB:.0f} MiB, {base_s:.1f} s")
        print(f"convert: peak RSS {conv_rss / MB:.0f} MiB, {conv_s:.1f} s")
        print(f"peak RSS / largest tensor: {conv_rss / largest:.2f} (goal <= 3)")
        if base_rss:
            print(f"(peak RSS - import RSS) / largest tensor: {(conv_rss - base_rss) / largest:.2f}")
        print(f"throughput: {mb_s:.0f} MB/s (plain copy of the same files: {copy_mb_s:.0f} MB/s, "
              f"ratio {mb_s / copy_mb_s:.2f}); excluding the import time: {total / MB / max(conv_s - base_s, 1e-6):.0f} MB/s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
