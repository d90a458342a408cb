"""Merge a distributed checkpoint into one file, or split a checkpoint for another parallel strategy.

    python -m mindformers.tools.transform_ckpt --src_checkpoint output/checkpoint --dst_checkpoint full.ckpt
    python -m mindformers.tools.transform_ckpt --src_checkpoint full.ckpt --dst_checkpoint out/ \\
        --dst_mesh 2,4,1 --config configs/llama2/pretrain_llama2_7b.yaml
    python -m mindformers.tools.transform_ckpt --src_checkpoint output/checkpoint --dst_checkpoint out/ \\
        --dst_strategy other_run/checkpoint

The source is a checkpoint file or a folder of rank_<r>/ folders, laid out as the strategy.json in each rank
folder says (or --src_strategy: our strategy.json, a folder of them, or MindSpore strategy files). Without a target
mesh or strategy the tensors are merged whole into the one .ckpt --dst_checkpoint names. With one, --dst_checkpoint
is a folder that receives rank_<r>/<name>.ckpt and strategy.json for every rank of the target mesh (dp,mp,pp, and
for mixture-of-experts models a fourth number, expert_parallel);
weights split as --config's layers declare them, or as the source's strategy does. Optimizer state follows its
weight. One tensor is in memory at a time; outputs appear only when complete.
"""
import os
import sys

os.environ.setdefault("GLOG_v", "3")  # keep MindSpore's C++ logging out of the CLI's output

if __package__ in (None, ""):  # run as a script from a checkout that is not pip-installed
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)))

from mindformers.run import OneLineParser  # noqa: E402
from mindformers.tools.errors import ConfigError, exit_on_user_error  # noqa: E402


def parse_mesh(text):
    """'dp,mp,pp[,ep]' -> mesh dict (pp may be left out; ep, the expert-parallel size, too)."""
    parts = str(text).replace("x", ",").split(",")
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        sizes = []
    if len(sizes) not in (2, 3, 4) or any(size < 1 for size in sizes):
        raise ConfigError(f"--dst_mesh: expected data_parallel,model_parallel[,pipeline_stage[,expert_parallel]] as "
                          f"positive integers, e.g. 2,4,1; got {text!r}")
    if len(sizes) == 4 and sizes[0] % sizes[3]:
        raise ConfigError(f"--dst_mesh: expert_parallel ({sizes[3]}) must divide data_parallel ({sizes[0]}); got "
                          f"{text!r}")
    sizes += [1] * (4 - len(sizes))
    mesh = dict(zip(("data_parallel", "model_parallel", "pipeline_stage"), sizes))
    if sizes[3] > 1:
        mesh["expert_parallel"] = sizes[3]
    return mesh


def declared_splits(config_path):
    """({weight: {mesh axis: dim}} from the model a YAML builds (shape only, nothing allocated): the layers'
    declarations; the bytes from which the YAML's parallel optimizer splits a weight's optimizer state, or None)."""
    # pylint: disable=import-outside-toplevel
    from mindformers.models.modules.layout import parameter_splits
    from mindformers.parallel.dry_run import build_structure
    from mindformers.parallel.parallel_check import parallel_settings
    from mindformers.tools.register import MindFormerConfig
    if not os.path.isfile(config_path):
        raise ConfigError(f"--config: file not found: {config_path}")
    config = MindFormerConfig(config_path)
    _, network = build_structure(config)
    settings = parallel_settings(config)
    return parameter_splits(network), settings.optimizer_shard_threshold_kb * 1024 if settings.optimizer_shard else None


def target_records(args, source):
    """{rank: layout record} of the target: --dst_strategy (ours), or --dst_mesh with --config / the source's
    declarations."""
    # pylint: disable=import-outside-toplevel  (MindSpore loads only once the arguments are known to be usable)
    from mindformers.checkpoint.checkpoint_source import our_layout_records
    from mindformers.checkpoint.transform import mesh_records, records_from_layout, source_weights
    if args.dst_strategy:
        path = os.path.expanduser(args.dst_strategy)
        records = our_layout_records(path, "--dst_strategy") if os.path.exists(path) else None
        if not records:
            raise ConfigError(f"--dst_strategy: {args.dst_strategy} is not a strategy.json of ours or a folder "
                              "holding them (MindSpore strategy files are read as sources only; give --dst_mesh for "
                              "a target)")
        first = records[min(records)][0]
        return records_from_layout(first, {rank: record for rank, (record, _) in records.items()})
    declared, state_threshold = declared_splits(args.config) if args.config else (source_weights(source), None)
    if not declared:
        raise ConfigError(f"--config: {args.src_checkpoint} has no strategy saying how its weights split; pass the "
                          "model's YAML (--config) or a target --dst_strategy")
    return mesh_records(source, parse_mesh(args.dst_mesh), declared, state_threshold=state_threshold)


def build_parser():
    parser = OneLineParser(prog="transform_ckpt", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--src_checkpoint", required=True, help="a checkpoint file, or a folder of rank_*/ folders")
    parser.add_argument("--src_strategy", default=None,
                        help="the source's strategy when its rank folders have no strategy.json (ours or MindSpore's)")
    parser.add_argument("--dst_checkpoint", required=True,
                        help="the merged .ckpt, or (with --dst_mesh / --dst_strategy) the folder for rank_*/")
    parser.add_argument("--dst_mesh", default=None, help="target data_parallel,model_parallel,pipeline_stage[,expert_parallel]")
    parser.add_argument("--dst_strategy", default=None, help="target strategy.json, or a folder of rank_*/ ones")
    parser.add_argument("--config", default=None, help="model YAML whose layers say how weights split")
    parser.add_argument("--prefix", default=None, help="checkpoint name prefix of the rank files")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


@exit_on_user_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    # pylint: disable=import-outside-toplevel
    from mindformers.checkpoint.checkpoint_source import CheckpointSource
    from mindformers.checkpoint.transform import merge_to_file, write_distributed
    if args.dst_mesh and args.dst_strategy:
        raise ConfigError("--dst_mesh / --dst_strategy: expected one of them, got both")
    source = CheckpointSource(args.src_checkpoint, args.src_strategy, key="--src_checkpoint")
    destination = os.path.abspath(args.dst_checkpoint)
    if not (args.dst_mesh or args.dst_strategy):
        count = merge_to_file(source, destination, progress=not args.no_progress)
        print(f"merged {count} tensors from {len(source.ranks)} rank file(s) into {destination}")
        return 0
    records = target_records(args, source)
    ranks = write_distributed(source, records, destination, args.prefix, progress=not args.no_progress)
    print(f"wrote {ranks} rank folders to {destination}")
    return 0


if __name__ == "__main__":
    main()
