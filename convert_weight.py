"""Convert HuggingFace checkpoints to this project's and back.

    python convert_weight.py --model llama --input_path HF_DIR --output_path OUT.ckpt [--dtype fp32|fp16|bf16]
    python convert_weight.py --model llama --input_path model.gguf --output_path OUT.ckpt [--dtype ...]
    python convert_weight.py --model llama --input_path OUT.ckpt --output_path HF_DIR --reversed

HF -> ours writes OUT.ckpt (or OUT.safetensors) and OUT.yaml (the model config, usable as a base_config). A llama.cpp
.gguf file is dequantized to --dtype (default fp32), and its tokenizer is written as HF files to OUT_tokenizer/.
--reversed reads OUT.ckpt with the YAML beside it (or --config) and writes config.json, sharded safetensors
and model.safetensors.index.json. Tensors stream a chunk at a time; outputs appear only when complete.
"""
import argparse
import os
import sys

os.environ.setdefault("GLOG_v", "3")  # keep MindSpore's C++ logging out of the CLI's output


def parse_size(text):
    units = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "b": 1}
    lowered = str(text).strip().lower()
    for unit, factor in units.items():
        if lowered.endswith(unit) and lowered[:-len(unit)].strip().replace(".", "", 1).isdigit():
            return int(float(lowered[:-len(unit)]) * factor)
    if lowered.isdigit():
        return int(lowered)
    raise argparse.ArgumentTypeError(f"expected a size such as 5GB or 500MB, got {text!r}")


def build_parser():
    from mindformers.tools.errors import OneLineParser  # pylint: disable=import-outside-toplevel
    parser = OneLineParser(prog="convert_weight.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model family: one registered in mindformers/models (llama, "
                                                         "qwen2, gemma, ...; an unknown name lists them all) or "
                                                         "by --register_path")
    parser.add_argument("--input_path", required=True,
                        help="HF folder or .gguf file (or our checkpoint with --reversed)")
    parser.add_argument("--output_path", required=True, help="OUT.ckpt / OUT.safetensors (or a HF folder)")
    parser.add_argument("--dtype", default=None, help="fp32, fp16 or bf16 (default: keep each tensor's dtype)")
    parser.add_argument("--reversed", action="store_true", help="convert our checkpoint to a HF folder")
    parser.add_argument("--config", default=None, help="--reversed: YAML with model.model_config "
                                                         "(default: the .yaml beside the checkpoint)")
    parser.add_argument("--max_shard_size", type=parse_size, default="5GB", help="--reversed: shard size")
    parser.add_argument("--register_path", default=None, help="folder of a research model to import "
                                                                          "first (its code RUNS: trusted folders only)")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def load_family(name, register_path):
    from mindformers.checkpoint.hf_mapping import get_family  # pylint: disable=import-outside-toplevel
    from mindformers.run import register_path as import_folder  # pylint: disable=import-outside-toplevel
    if register_path:
        import_folder(register_path)
    return get_family(name)


def main(argv=None):
    from mindformers.tools.errors import exit_on_user_error  # pylint: disable=import-outside-toplevel
    return exit_on_user_error(run)(argv)


def run(argv=None):
    args = build_parser().parse_args(argv)
    from mindformers.checkpoint import hf_convert  # pylint: disable=import-outside-toplevel
    from mindformers.tools.errors import ConfigError  # pylint: disable=import-outside-toplevel
    family = load_family(args.model, args.register_path)
    if not os.path.exists(args.input_path):
        raise ConfigError(f"--input_path: not found: {args.input_path}")
    if args.reversed:
        summary = hf_convert.checkpoint_to_hf(family, args.input_path, args.output_path, args.config, args.dtype,
                                              args.max_shard_size, progress=not args.no_progress)
        print(f"wrote {summary['tensors']} tensors in {summary['shards']} shard(s) to {summary['output']}")
    else:
        if not args.output_path.endswith((".ckpt", ".safetensors")):
            raise ConfigError(f"--output_path: expected a .ckpt or .safetensors file name, got {args.output_path}")
        summary = hf_convert.hf_to_ours(family, args.input_path, args.output_path, args.dtype,
                                        progress=not args.no_progress)
        print(f"wrote {summary['tensors']} tensors to {summary['output']} and its config to {summary['config']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
