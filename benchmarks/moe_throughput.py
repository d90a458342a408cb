"""Training throughput of our Mixtral (mixture of experts, top-2 of 8) against HF transformers' MixtralForCausalLM
on PyTorch, measured in the same run.

One training step = forward + backward + AdamW update with global-norm clipping, on both sides with the
load-balancing loss in the loss (transformers: output_router_logits=True). Both start from the same weights (a
random transformers model, saved and read by MixtralForCausalLM.from_pretrained), so they route alike; with the
default --capacity-factor -1 ours is dropless, the computation transformers does (the first losses are printed side
by side). Ours runs in MindSpore graph mode, theirs in eager PyTorch, fp32 on the CPU with the same thread count;
compilation and warmup steps are not timed and the timed steps alternate between the sides (train_throughput.py).

    python benchmarks/moe_throughput.py              # 4 layers, hidden 512, 8 experts of FFN 1792, seq 256, batch 2
    python benchmarks/moe_throughput.py --capacity-factor 1.25   # MindFormers-style capacity (drops some tokens)

Prints tokens/s of both and `ratio ours/theirs: X.XX` (> 1: ours is faster).
"""
import argparse
import os
import sys
import tempfile

os.environ.setdefault("GLOG_v", "3")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_throughput import REPO, core_count, fmt, timed_alternately  # noqa: E402,F401  pylint: disable=C0413


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add = parser.add_argument
    add("--layers", type=int, default=4)
    add("--hidden", type=int, default=512)
    add("--heads", type=int, default=8)
    add("--kv-heads", type=int, default=4)
    add("--ffn", type=int, default=1792, help="each expert's FFN size (Mixtral: 3.5 x hidden)")
    add("--experts", type=int, default=8)
    add("--top-k", type=int, default=2)
    add("--capacity-factor", type=float, default=-1.0, help="ours only; <= 0: dropless, as transformers")
    add("--aux-loss-factor", type=float, default=0.02)
    add("--vocab", type=int, default=8000)
    add("--seq", type=int, default=256)
    add("--batch", type=int, default=2)
    add("--steps", type=int, default=8, help="timed steps per side")
    add("--warmup", type=int, default=2, help="untimed steps per side (after compilation)")
    add("--threads", type=int, default=None, help="CPU threads for both sides; default: core count")
    add("--lr", type=float, default=1e-4)
    add("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    args.threads = args.threads or core_count()
    return args


def build_hf(args, folder):
    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel
    torch.manual_seed(args.seed)
    config = transformers.MixtralConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.ffn, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, num_local_experts=args.experts,
        num_experts_per_tok=args.top_k, router_aux_loss_coef=args.aux_loss_factor,
        max_position_embeddings=args.seq, sliding_window=None, tie_word_embeddings=False, use_cache=False)
    model = transformers.MixtralForCausalLM(config).float()
    model.save_pretrained(folder)
    return model


def build_ours(args, folder, tokens):
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindformers.core.optim import AdamW  # pylint: disable=import-outside-toplevel
    from mindformers.models import MixtralForCausalLM  # pylint: disable=import-outside-toplevel
    from mindformers.wrapper import MFTrainOneStepCell  # pylint: disable=import-outside-toplevel
    moe = {"expert_num": args.experts, "num_experts_chosen": args.top_k, "capacity_factor": args.capacity_factor,
           "aux_loss_factor": args.aux_loss_factor}
    model = MixtralForCausalLM.from_pretrained(folder, moe_config=moe, seq_length=args.seq)
    model.set_train(True)
    optimizer = AdamW(model.trainable_params(), learning_rate=args.lr, betas=(0.9, 0.95), eps=1e-8,
                      weight_decay=0.0)
    cell = MFTrainOneStepCell(model, optimizer, use_clip_grad=True, max_grad_norm=1.0)
    cell.set_train(True)
    input_ids = ms.Tensor(tokens)
    dropped = []

    def step():
        loss, *_, metrics = cell(input_ids)
        dropped.append(model.step_metrics(metrics.asnumpy())["dropped_tokens"])
        return float(loss.asnumpy())

    return step, dropped


def hf_step(args, model, tokens):
    import torch  # pylint: disable=import-outside-toplevel
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    data = torch.from_numpy(tokens.astype(np.int64))
    inputs, targets = data[:, :-1], data[:, 1:].contiguous()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model(input_ids=inputs, labels=inputs, shift_labels=targets, output_router_logits=True).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return float(loss.detach())

    return step


def main(argv=None):
    args = parse_args(argv)
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE, jit_config={"jit_level": "O0"})
    ms.device_context.cpu.op_tuning.threads_num(args.threads)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"threads: {args.threads} (machine cores: {core_count()}, load average {load:.1f} at start)")
    capacity = "dropless" if args.capacity_factor <= 0 else f"capacity_factor {args.capacity_factor:g}"
    print(f"model: layers={args.layers} hidden={args.hidden} heads={args.heads}/{args.kv_heads} kv, "
          f"{args.experts} experts of ffn {args.ffn}, top-{args.top_k}, ours {capacity}; vocab={args.vocab} "
          f"seq={args.seq} batch={args.batch} fp32, aux loss factor {args.aux_loss_factor}")
    tokens = np.random.default_rng(args.seed).integers(1, args.vocab, (args.batch, args.seq + 1)).astype(np.int32)
    with tempfile.TemporaryDirectory() as folder:
        theirs = build_hf(args, folder)
        ours_step, dropped = build_ours(args, folder, tokens)
    theirs_step = hf_step(args, theirs, tokens)
    first = (ours_step(), theirs_step())  # ours compiles its graph here; both take one step from the same weights
    (ours_seconds, ours_losses), (theirs_seconds, theirs_losses) = timed_alternately(
        args.steps, args.warmup, ours_step, theirs_step)
    tokens_per_step = args.batch * args.seq
    ours_tps, theirs_tps = tokens_per_step / ours_seconds, tokens_per_step / theirs_seconds
    print(f"first step loss (same weights): ours {first[0]:.5f}, theirs {first[1]:.5f}")
    print(f"token choices dropped per step by ours (all layers): {max(dropped)} of "
          f"{tokens_per_step * args.top_k * args.layers} at most")
    print(f"ours   (MindSpore {ms.__version__}, graph mode): {ours_seconds * 1e3:.1f} ms/step, {ours_tps:.1f} "
          f"tokens/s, losses {fmt(ours_losses)}")
    print(f"theirs (torch {torch.__version__}, transformers MixtralForCausalLM): {theirs_seconds * 1e3:.1f} ms/step, "
          f"{theirs_tps:.1f} tokens/s, losses {fmt(theirs_losses)}")
    print(f"ratio ours/theirs: {ours_tps / theirs_tps:.2f}")
    return ours_tps / theirs_tps


if __name__ == "__main__":
    main()
