"""Fold LoRA adapters into the base weights: W' = W + (alpha / rank) B A, for export and plain inference.

    python mindformers/pet/merge.py --config configs/llama2/lora_llama2_tiny.yaml \\
        --load_checkpoint output/lora/checkpoint/rank_0/llama2_tiny_lora_rank_0-1_20.ckpt \\
        [--adapter_checkpoint adapters.ckpt] --output_path llama2_tiny_merged.ckpt

The result holds only the model's base tensors under their usual names (no adapters, no optimizer state),
so it loads into the config without pet_config (pretrain_/predict_llama2_tiny.yaml) and into
convert_weight.py. lora_alpha comes from the config's pet_config (or --lora_alpha); the rank from the tensors.
"""
import os
import sys

import numpy as np

if __package__ in (None, ""):  # run as a script from a checkout that is not pip-installed
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)))

from mindformers.tools.errors import ConfigError, OneLineParser, exit_on_user_error  # noqa: E402

OPTIMIZER_PREFIXES = ("adam_m.", "adam_v.", "moment1.", "moment2.", "global_step", "scale_sense", "learning_rate",
                      "beta1_power", "beta2_power", "step_num", "epoch_num", "loss_scale")


def merge_lora_arrays(weights, lora_alpha):
    """{name: ndarray} with `<cell>.lora_a/.lora_b` beside `<cell>.weight` -> the merged base tensors only."""
    weights = {name: value for name, value in weights.items() if not name.startswith(OPTIMIZER_PREFIXES)}
    merged = {name: value for name, value in weights.items() if not name.endswith((".lora_a", ".lora_b"))}
    pairs = 0
    for name, lora_a in weights.items():
        if not name.endswith(".lora_a"):
            continue
        cell = name[:-len(".lora_a")]
        lora_b, weight = weights.get(cell + ".lora_b"), weights.get(cell + ".weight")
        if lora_b is None or weight is None:
            raise ConfigError(f"--load_checkpoint: '{name}' has no matching '{cell}.lora_b' and '{cell}.weight'")
        scaling = float(lora_alpha) / lora_a.shape[0]
        delta = scaling * (lora_b.astype(np.float64) @ lora_a.astype(np.float64))
        merged[cell + ".weight"] = (weight.astype(np.float64) + delta).astype(weight.dtype)
        pairs += 1
    return merged, pairs


def merge_checkpoint(load_checkpoint, output_path, lora_alpha, adapter_checkpoint=None):
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindformers.checkpoint.checkpoint_io import read_checkpoint, save_checkpoint_atomic
    weights = {name: value.asnumpy() for name, value in read_checkpoint(load_checkpoint).items()}
    if adapter_checkpoint:
        adapters = read_checkpoint(adapter_checkpoint, key="--adapter_checkpoint")
        weights.update({name: value.asnumpy() for name, value in adapters.items()
                        if name.endswith((".lora_a", ".lora_b"))})
    merged, pairs = merge_lora_arrays(weights, lora_alpha)
    if not pairs:
        raise ConfigError(f"--load_checkpoint: {load_checkpoint} holds no LoRA adapters (*.lora_a / *.lora_b)"
                          f"{'' if adapter_checkpoint else '; pass them with --adapter_checkpoint'}")
    items = [{"name": name, "data": ms.Tensor(value)} for name, value in merged.items()]
    save_checkpoint_atomic(items, os.path.abspath(output_path))
    return pairs


def lora_alpha_from_config(path):
    from mindformers.tools.register import MindFormerConfig  # pylint: disable=import-outside-toplevel
    config = MindFormerConfig(path)
    pet = ((config.get("model") or {}).get("model_config") or {}).get("pet_config")
    if not pet or str(pet.get("pet_type", "")).lower() != "lora":
        raise ConfigError(f"--config: {path} has no model.model_config.pet_config with pet_type lora")
    from mindformers.pet.pet_config import parse_pet_config  # pylint: disable=import-outside-toplevel
    return parse_pet_config(pet).lora_alpha


@exit_on_user_error
def main(argv=None):
    parser = OneLineParser(prog="merge.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="the LoRA YAML the adapters were trained with (for lora_alpha)")
    parser.add_argument("--lora_alpha", type=float, help="instead of --config")
    parser.add_argument("--load_checkpoint", required=True, help="base weights (+ adapters, after LoRA training)")
    parser.add_argument("--adapter_checkpoint", help="adapters saved separately (save_trainable_params)")
    parser.add_argument("--output_path", required=True, help="the merged .ckpt to write")
    args = parser.parse_args(argv)
    if args.lora_alpha is None and not args.config:
        raise ConfigError("--config or --lora_alpha: expected one (lora_alpha scales the adapters)")
    alpha = args.lora_alpha if args.lora_alpha is not None else lora_alpha_from_config(args.config)
    pairs = merge_checkpoint(args.load_checkpoint, args.output_path, alpha, args.adapter_checkpoint)
    print(f"merged {pairs} LoRA adapters (alpha {alpha:g}) into {os.path.abspath(args.output_path)}")
    return pairs


if __name__ == "__main__":
    main()
