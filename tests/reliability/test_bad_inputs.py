"""Bad input, as an adversarial user brings it, to every door of the product: configs, flags, data, tokenizers,
checkpoints, the launcher and conversion. For each case: the exit code, ONE line naming what is wrong, no
traceback, and nothing half-written (the output the command was asked for does not exist; a run that failed before
writing leaves no output folder at all, one that failed later leaves nothing but its log).

The CLIs run in this process (their `main(argv)`, SystemExit caught), so a case costs milliseconds: almost all of
them fail before MindSpore builds or compiles anything. Only the launcher, a shell script, runs as a subprocess.
"""
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

import convert_weight
from mindformers.pet import merge as merge_cli
from mindformers.run import main as run_main
from mindformers.tools import transform_ckpt
from mindformers.tools.dataset_preprocess.llama import llama_preprocess
from tests.e2e.helpers import REPO, TINY_SIZES, merge_sections

TINY = os.path.join(REPO, "configs", "llama2", "pretrain_llama2_tiny.yaml")
PREDICT = os.path.join(REPO, "configs", "llama2", "predict_llama2_tiny.yaml")
LAUNCHER = os.path.join(REPO, "scripts", "msrun_launcher.sh")


@dataclass
class Ctx:
    """What a case builds its command from: its own folder, the output folder it must not leave behind, and the
    session's real tokenizer and MindRecord data."""

    tmp: Path
    sp_model: str
    mindrecord: str

    @property
    def out(self):
        return self.tmp / "out"

    def file(self, name, content):
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return str(path)

    def config(self, body="", base=TINY, sizes=True):
        """A user YAML over a shipped config (tiny sizes, the test tokenizer and data) with `body` on top."""
        head = {"base_config": [base], "processor": {"tokenizer": {"vocab_file": self.sp_model}},
                "train_dataset": {"data_loader": {"dataset_dir": self.mindrecord}}}
        if sizes:
            head["model"] = {"model_config": dict(TINY_SIZES)}
        merged = merge_sections(head, yaml.safe_load(textwrap.dedent(body)) or {})
        return self.file("user.yaml", yaml.safe_dump(merged, sort_keys=False))

    def train(self, body="", *flags, run_mode="train"):
        return ["--config", self.config(body), "--run_mode", run_mode, "--output_dir", str(self.out), *flags]

    def predict(self, *flags):
        return ["--config", self.config(base=PREDICT), "--run_mode", "predict", "--output_dir", str(self.out),
                *flags]

    def checkpoint(self, name="w.ckpt", damage=None, manifest=True):
        """A real checkpoint saved the way training saves one (CRC + manifest); `damage` flips a byte at that
        offset from the end, a negative size truncates."""
        import mindspore as ms  # pylint: disable=import-outside-toplevel
        from mindformers.checkpoint import save_checkpoint_atomic  # pylint: disable=import-outside-toplevel
        path = self.tmp / name
        save_checkpoint_atomic([{"name": "model.norm_out.weight", "data": ms.Parameter(
            ms.Tensor(np.linspace(0.5, 1.5, 64).astype(np.float32)), name="model.norm_out.weight")}], str(path))
        if manifest == "garbage":
            Path(f"{path}.sha256").write_text("not a manifest\n")
        elif not manifest:
            os.remove(f"{path}.sha256")
        if damage is not None:
            data = bytearray(path.read_bytes())
            os.chmod(path, 0o600)
            if damage < 0:
                data = data[:damage]
            else:
                data[-damage] ^= 0xFF
            path.write_bytes(bytes(data))
        return str(path)


# ---------------------------------------------------------------- the cases
# (id, entry, argv(ctx), exit code, fragments of the one error line, fails before writing anything)
CASES = []


def case(case_id, entry, argv, code, *fragments, early=True):
    CASES.append(pytest.param(entry, argv, code, fragments, early, id=case_id))


def bad_value(case_id, body, *fragments):
    case(f"config-{case_id}", "run", lambda c: c.train(body), 2, "user.yaml", *fragments)


# Values of registered classes' arguments and of the fixed sections: refused, never replaced.
bad_value("lr-word", "lr_schedule:\n  learning_rate: fast\n", "lr_schedule.learning_rate", "a number >= 0", "'fast'")
bad_value("lr-negative", "lr_schedule:\n  learning_rate: -0.001\n", "lr_schedule.learning_rate", "-0.001")
bad_value("lr-nan", "lr_schedule:\n  learning_rate: .nan\n", "lr_schedule.learning_rate", "nan")
bad_value("lr-inf", "lr_schedule:\n  learning_rate: .inf\n", "lr_schedule.learning_rate", "inf")
bad_value("lr-null", "lr_schedule:\n  learning_rate: null\n", "lr_schedule.learning_rate", "None")
bad_value("warmup-ratio", "lr_schedule:\n  warmup_ratio: 1.5\n", "lr_schedule.warmup_ratio", "<= 1")
bad_value("warmup-steps", "lr_schedule:\n  warmup_steps: -1\n", "lr_schedule.warmup_steps", ">= 0")
bad_value("warmup-steps-float", "lr_schedule:\n  warmup_steps: 2.5\n", "lr_schedule.warmup_steps", "an integer")
bad_value("total-steps-zero", "lr_schedule:\n  total_steps: 0\n", "lr_schedule.total_steps", "-1: the whole run")
bad_value("lr-end", "lr_schedule:\n  lr_end: -1.0e-5\n", "lr_schedule.lr_end", ">= 0")
bad_value("num-cycles", "lr_schedule:\n  num_cycles: -0.5\n", "lr_schedule.num_cycles", ">= 0")
bad_value("lr-schedule-unknown-key", "lr_schedule:\n  warmup_step: 3\n", "lr_schedule.warmup_step",
          "did you mean 'warmup_steps'")
bad_value("lr-schedule-type", "lr_schedule:\n  type: CosineLR\n", "lr_schedule.type", "CosineLR")
bad_value("optimizer-lr", "optimizer:\n  learning_rate: -1\n", "optimizer.learning_rate", ">= 0")
bad_value("betas-range", "optimizer:\n  betas: [0.9, 1.5]\n", "optimizer.betas", "a list of 2 numbers >= 0 and < 1")
bad_value("betas-length", "optimizer:\n  betas: [0.9]\n", "optimizer.betas", "[0.9]")
bad_value("betas-word", "optimizer:\n  betas: fast\n", "optimizer.betas", "'fast'")
bad_value("eps-zero", "optimizer:\n  eps: 0\n", "optimizer.eps", "> 0")
bad_value("weight-decay", "optimizer:\n  weight_decay: -0.1\n", "optimizer.weight_decay", ">= 0")
bad_value("optimizer-type", "optimizer:\n  type: AdamWW\n", "optimizer.type", "did you mean 'AdamW'")
bad_value("optimizer-key", "optimizer:\n  beta: 0.9\n", "optimizer.beta", "unknown key")
bad_value("batch-size-zero", "runner_config:\n  batch_size: 0\n", "runner_config.batch_size", ">= 1, got 0")
bad_value("batch-size-negative", "runner_config:\n  batch_size: -4\n", "runner_config.batch_size", "-4")
bad_value("epochs-zero", "runner_config:\n  epochs: 0\n", "runner_config.epochs", ">= 1, got 0")
bad_value("epochs-word", "runner_config:\n  epochs: two\n", "runner_config.epochs", "'two'")
bad_value("accumulation-zero", "runner_config:\n  gradient_accumulation_steps: 0\n",
          "runner_config.gradient_accumulation_steps", ">= 1, got 0")
bad_value("global-batch", "runner_config:\n  global_batch_size: -8\n", "runner_config.global_batch_size", "-8")
bad_value("max-nonfinite-zero", "runner_config:\n  max_nonfinite_steps: 0\n", "runner_config.max_nonfinite_steps",
          ">= 1")
bad_value("scale-negative", "runner_wrapper:\n  scale_sense: -1.0\n", "runner_wrapper.scale_sense", "> 0", "-1.0")
bad_value("scale-word", "runner_wrapper:\n  scale_sense: big\n", "runner_wrapper.scale_sense", "'big'")
bad_value("dynamic-scale-negative", "runner_wrapper:\n  scale_sense:\n    type: DynamicLossScaleUpdateCell\n"
          "    loss_scale_value: -4\n    scale_factor: 2\n    scale_window: 10\n",
          "runner_wrapper.scale_sense.loss_scale_value", "> 0")
bad_value("dynamic-scale-factor", "runner_wrapper:\n  scale_sense:\n    type: DynamicLossScaleUpdateCell\n"
          "    loss_scale_value: 1024\n    scale_factor: 1\n    scale_window: 10\n",
          "runner_wrapper.scale_sense.scale_factor", "> 1")
bad_value("dynamic-scale-window", "runner_wrapper:\n  scale_sense:\n    type: DynamicLossScaleUpdateCell\n"
          "    loss_scale_value: 1024\n    scale_factor: 2\n    scale_window: 0\n",
          "runner_wrapper.scale_sense.scale_window", ">= 1")
bad_value("fixed-scale-zero", "runner_wrapper:\n  scale_sense:\n    type: FixedLossScaleUpdateCell\n"
          "    loss_scale_value: 0\n", "runner_wrapper.scale_sense.loss_scale_value", "> 0")
bad_value("max-grad-norm", "runner_wrapper:\n  max_grad_norm: 0\n", "runner_wrapper.max_grad_norm", "> 0")
bad_value("clip-word", "runner_wrapper:\n  use_clip_grad: sometimes\n", "runner_wrapper.use_clip_grad", "true/false")
bad_value("wrapper-type", "runner_wrapper:\n  type: TrainOneStep\n", "runner_wrapper.type", "TrainOneStep")


def bad_callback(case_id, body, *fragments):
    bad_value(f"callback-{case_id}", "callbacks:\n" + textwrap.indent(textwrap.dedent(body), "  "), *fragments)


bad_callback("save-steps-word", "- type: CheckpointMonitor\n  save_checkpoint_steps: five\n",
             "callbacks[0].save_checkpoint_steps", "'five'")
bad_callback("save-steps-negative", "- type: CheckpointMonitor\n  save_checkpoint_steps: -5\n",
             "callbacks[0].save_checkpoint_steps", ">= 1, got -5")
bad_callback("save-steps-zero", "- type: CheckpointMonitor\n  save_checkpoint_steps: 0\n",
             "callbacks[0].save_checkpoint_steps", ">= 1, got 0")
bad_callback("keep-negative", "- type: CheckpointMonitor\n  keep_checkpoint_max: -1\n",
             "callbacks[0].keep_checkpoint_max", ">= 1, got -1")
bad_callback("keep-zero", "- type: CheckpointMonitor\n  keep_checkpoint_max: 0\n",
             "callbacks[0].keep_checkpoint_max", ">= 1, got 0")
bad_callback("format", "- type: CheckpointMonitor\n  checkpoint_format: zip\n", "callbacks[0].checkpoint_format",
             "one of 'ckpt', 'safetensors'")
bad_callback("prefix-null", "- type: CheckpointMonitor\n  prefix: null\n", "callbacks[0].prefix", "a string")
bad_callback("print-zero", "- type: MFLossMonitor\n  per_print_times: 0\n", "callbacks[0].per_print_times", ">= 1")
bad_callback("peak-negative", "- type: MFLossMonitor\n  device_peak_tflops: -5\n",
             "callbacks[0].device_peak_tflops", "> 0")
bad_callback("profile-start", "- type: ProfileMonitor\n  start_step: 0\n", "callbacks[0].start_step", ">= 1")
bad_callback("type", "- type: CheckpointMonitr\n", "callbacks[0].type", "did you mean 'CheckpointMonitor'")
bad_callback("key", "- type: CheckpointMonitor\n  save_steps: 5\n", "callbacks[0].save_steps", "unknown key")
bad_value("callback-not-mapping", "callbacks:\n  - CheckpointMonitor\n", "callbacks[0]", "a mapping with 'type'")
bad_value("seed-negative", "seed: -1\n", "seed", ">= 0")
bad_value("seed-too-large", "seed: 4294967296\n", "seed", "<= 4294967295")
bad_value("data-parallel", "parallel_config:\n  data_parallel: 0\n", "parallel_config.data_parallel", ">= 1")
bad_value("model-parallel", "parallel_config:\n  model_parallel: -2\n", "parallel_config.model_parallel", "-2")
bad_value("micro-batches", "parallel_config:\n  micro_batch_num: 0\n", "parallel_config.micro_batch_num", ">= 1")
bad_value("device-id", "context:\n  device_id: -1\n", "context.device_id", ">= 0")
bad_value("context-mode", "context:\n  mode: 3\n", "context.mode", "one of 0, 1")
bad_value("device-target", "context:\n  device_target: TPU\n", "context.device_target", "'TPU'")
bad_value("context-key", "context:\n  modes: 0\n", "context.modes", "did you mean 'mode'")
bad_value("dataset-batch", "train_dataset:\n  batch_size: 0\n", "train_dataset.batch_size", ">= 1")
bad_value("dataset-workers", "train_dataset:\n  num_parallel_workers: 0\n", "train_dataset.num_parallel_workers",
          ">= 1")
bad_value("dataset-dir-number", "train_dataset:\n  data_loader:\n    dataset_dir: 5\n",
          "train_dataset.data_loader.dataset_dir", "a string")
bad_value("loader-type", "train_dataset:\n  data_loader:\n    type: TFRecordDataset\n",
          "train_dataset.data_loader.type", "TFRecordDataset")
bad_value("model-key", "model:\n  model_config:\n    hiden_size: 64\n", "model.model_config.hiden_size",
          "did you mean 'hidden_size'")
bad_value("model-heads", "model:\n  model_config:\n    num_heads: 3\n", "model.model_config.num_heads",
          "divisor of hidden_size")
bad_value("model-dtype", "model:\n  model_config:\n    compute_dtype: float8\n", "model.model_config.compute_dtype",
          "float32, float16, bfloat16")
bad_value("trainer-type", "trainer:\n  type: MagicTrainer\n", "trainer.type", "MagicTrainer")
case("config-not-yaml", "run", lambda c: ["--config", c.file("bad.yaml", "a: [1, 2\nb: :\n")], 2, "bad.yaml",
     "not valid YAML")
case("config-list", "run", lambda c: ["--config", c.file("list.yaml", "- 1\n- 2\n")], 2, "list.yaml",
     "a mapping at the top level")
case("config-binary", "run", lambda c: ["--config", c.file("bin.yaml", bytes(range(256)) * 4)], 2, "bin.yaml",
     "not a YAML file")
case("config-missing", "run", lambda c: ["--config", str(c.tmp / "nope.yaml")], 2, "config file not found",
     "nope.yaml")
case("config-base-missing", "run", lambda c: ["--config", c.file("b.yaml", "base_config: ['gone.yaml']\n")], 2,
     "base_config[0]", "gone.yaml")
case("config-base-cycle", "run", lambda c: ["--config", c.file("cycle.yaml", "base_config: ['cycle.yaml']\n")], 2,
     "base_config cycle")
case("config-interpolation", "run", lambda c: ["--config", c.file("i.yaml", "output_dir: ${nowhere}\n")], 2,
     "cannot resolve interpolation")
case("finetune-without-weights", "run", lambda c: c.train("", run_mode="finetune"), 2, "load_checkpoint",
     "run_mode finetune", early=False)

# Flags.
for flag, value, fragments in (("--epochs", "0", ("runner_config.epochs", ">= 1")),
                               ("--epochs", "many", ("--epochs", "invalid int value")),
                               ("--batch_size", "0", ("runner_config.batch_size", ">= 1")),
                               ("--batch_size", "-3", ("runner_config.batch_size", "-3")),
                               ("--seed", "-1", ("--seed", ">= 0")),
                               ("--device_id", "-1", ("--device_id", "context.device_id")),
                               ("--device_target", "TPU", ("--device_target", "invalid choice")),
                               ("--run_mode", "serve", ("--run_mode", "invalid choice")),
                               ("--use_parallel", "maybe", ("--use_parallel", "True or False")),
                               ("--auto_trans_ckpt", "2", ("--auto_trans_ckpt", "True or False")),
                               ("--no_such_flag", "1", ("unrecognized arguments",))):
    case(f"flag{flag}={value}", "run", lambda c, f=flag, v=value: c.train("", f, v), 2, *fragments)
for flag, value, fragments in (("--predict_batch_size", "0", ("predict_batch_size", ">= 1")),
                               ("--max_new_tokens", "0", ("max_new_tokens", ">= 1")),
                               ("--max_new_tokens", "100000", ("max_new_tokens", "seq_length 32", "at most 31")),
                               ("--evaluation_batch_size", "0", ("evaluation_batch_size", ">= 1"))):
    case(f"flag{flag}={value}", "run", lambda c, f=flag, v=value: c.predict("--predict_data", "hi", f, v), 2,
         *fragments)
case("flag-config-missing", "run", lambda c: ["--run_mode", "train"], 2, "--config")
case("flag-output-under-file", "run", lambda c: c.train("") + ["--output_dir", c.file("taken", "x") + "/out"], 2,
     "output_dir", "is a file, not a folder")
case("flag-register-path-missing", "run", lambda c: c.train("", "--register_path", str(c.tmp / "none")), 2,
     "--register_path", "not a folder")
case("flag-register-path-syntax", "run",
     lambda c: c.train("", "--register_path", os.path.dirname(c.file("research/model.py", "def broken(:\n"))), 2,
     "--register_path", "model.py:1", "SyntaxError")
case("flag-register-path-raises", "run",
     lambda c: c.train("", "--register_path", os.path.dirname(c.file("r2/model.py", "x = 1\nraise ValueError('no')\n"))),
     2, "--register_path", "model.py:2", "ValueError: no")
case("flag-predict-data-binary", "run", lambda c: c.predict("--predict_data", c.file("p.txt", b"\xff\xfe\x00\x81" * 9)),
     2, "predict_data", "not a UTF-8 text file")
case("flag-predict-data-missing", "run", lambda c: c.predict("--predict_data", "prompts.txt"), 2, "predict_data",
     "file not found: prompts.txt")
case("flag-predict-data-empty", "run", lambda c: c.predict("--predict_data", c.file("empty.txt", "\n\n")), 2,
     "predict_data", "holds no prompt")
case("flag-dry-run-devices", "run", lambda c: ["--config", TINY, "--dry_run", "--device_num", "0"], 2,
     "--device_num")

# Data.
case("data-missing", "run", lambda c: c.train("", "--train_dataset_dir", str(c.tmp / "absent.mindrecord")), 2,
     "train_dataset.data_loader.dataset_dir", "absent.mindrecord", early=False)
case("data-index-file", "run", lambda c: c.train("", "--train_dataset_dir", c.mindrecord + ".db"), 2,
     "MindRecord index file", early=False)
case("data-not-mindrecord", "run", lambda c: c.train("", "--train_dataset_dir", c.file("rows.txt", "1 2 3\n")), 2,
     "rows.txt", "is not a MindRecord file", early=False)
case("data-empty-folder", "run", lambda c: c.train("", "--train_dataset_dir", str(c.tmp)), 2,
     "holds no MindRecord files", early=False)
case("data-rows-too-short", "run", lambda c: c.train("model:\n  model_config:\n    seq_length: 64\n"), 2,
     "rows hold 33 tokens", "--seq_length 64", early=False)
case("data-no-labels", "run", lambda c: c.train("train_dataset:\n  input_columns: [input_ids, labels]\n"), 2,
     "train_dataset.input_columns", "'labels'", early=False)


def preprocess(ctx, *extra, inputs=None, model_file=None):
    inputs = inputs or ctx.file("docs.txt", "A document about lists.\n\nAnother one about dicts.\n")
    return ["--dataset_type", "wiki", "--input_glob", inputs, "--model_file", model_file or ctx.sp_model,
            "--seq_length", "16", "--output_file", str(ctx.out / "data.mindrecord"), *extra]


case("preprocess-no-input", "preprocess", lambda c: preprocess(c, inputs=str(c.tmp / "none*.txt")), 2,
     "--input_glob", "none*.txt")
case("preprocess-seq-zero", "preprocess", lambda c: preprocess(c, "--seq_length", "0"), 2, "--seq_length")
case("preprocess-seq-word", "preprocess", lambda c: preprocess(c, "--seq_length", "long"), 2, "--seq_length",
     "invalid int value")
case("preprocess-type", "preprocess", lambda c: preprocess(c, "--dataset_type", "books"), 2, "--dataset_type",
     "invalid choice")
case("preprocess-model-missing", "preprocess", lambda c: preprocess(c, model_file=str(c.tmp / "tok.model")), 2,
     "tok.model")
case("preprocess-output-folder", "preprocess", lambda c: preprocess(c)[:-1] + [str(c.tmp)] + [], 2,
     "--output_file", "is a folder")
case("preprocess-qa-not-json", "preprocess",
     lambda c: preprocess(c, "--dataset_type", "qa", inputs=c.file("conv.json", "{not json")), 2, "conv.json",
     "JSON")

# Tokenizers.
case("tokenizer-missing", "run", lambda c: c.train("", "--vocab_file", str(c.tmp / "gone.model")), 2,
     "processor.tokenizer.vocab_file", "gone.model", early=False)
case("tokenizer-garbage", "run", lambda c: c.train("", "--vocab_file", c.file("bad.model", b"\x00garbage" * 50)), 2,
     "bad.model", early=False)
case("tokenizer-json-broken", "run",
     lambda c: c.train("processor:\n  tokenizer:\n    type: LlamaTokenizerFast\n    vocab_file: null\n"
                       f"    tokenizer_file: {c.file('tokenizer.json', '{broken')}\n"), 2, "tokenizer.json",
     early=False)
case("tokenizer-larger-than-model", "run", lambda c: c.train("model:\n  model_config:\n    vocab_size: 100\n"), 2,
     "vocab", "100", early=False)
case("preprocess-tokenizer-garbage", "preprocess",
     lambda c: preprocess(c, model_file=c.file("junk.model", b"\x01\x02junk" * 40)), 2, "junk.model")

# Checkpoints: damaged ones are refused by name before anything is loaded.
case("ckpt-missing", "run", lambda c: c.train("", "--load_checkpoint", str(c.tmp / "nothing.ckpt")), 2,
     "load_checkpoint", "nothing.ckpt", early=False)
case("ckpt-empty-folder", "run", lambda c: c.train("", "--load_checkpoint", str(c.tmp)), 2, "load_checkpoint",
     "no .ckpt files", early=False)
case("ckpt-flipped-byte", "run", lambda c: c.train("", "--load_checkpoint", c.checkpoint(damage=40)), 2,
     "w.ckpt", "damaged checkpoint", "sha256 differs", early=False)
case("ckpt-truncated", "run", lambda c: c.train("", "--load_checkpoint", c.checkpoint(damage=-30)), 2, "w.ckpt",
     "damaged checkpoint", early=False)
case("ckpt-flipped-no-manifest", "run",
     lambda c: c.train("", "--load_checkpoint", c.checkpoint(damage=60, manifest=False)), 2, "w.ckpt",
     "CRC32 differs", early=False)
case("ckpt-folder-all-damaged", "run",
     lambda c: c.train("", "--load_checkpoint", os.path.dirname(c.checkpoint("d/a_rank_0-1_2.ckpt", damage=40))),
     2, "no intact checkpoint", "a_rank_0-1_2.ckpt", "sha256 differs", early=False)
case("ckpt-manifest-garbage", "run",
     lambda c: c.train("", "--load_checkpoint", c.checkpoint(manifest="garbage")), 2, "w.ckpt", "unreadable",
     early=False)
case("ckpt-not-a-checkpoint", "run", lambda c: c.train("", "--load_checkpoint", c.file("notes.ckpt", "hello")), 2,
     "cannot read checkpoint", "notes.ckpt", early=False)
case("ckpt-wrong-shape", "run", lambda c: c.train("", "--load_checkpoint", c.checkpoint()), 2, "w.ckpt",
     "has no tensor", early=False)
case("ckpt-resume-name", "run",
     lambda c: c.train("", "--load_checkpoint", os.path.dirname(c.checkpoint("d/x_rank_0-1_2.ckpt")),
                       "--resume_training", "y_rank_0-1_9.ckpt"), 2, "resume_training", "y_rank_0-1_9.ckpt",
     early=False)

# Conversion and checkpoint tools.
case("convert-model", "convert", lambda c: ["--model", "gpt9", "--input_path", str(c.tmp), "--output_path",
                                            str(c.out / "x.ckpt")], 2, "--model", "gpt9")
case("convert-input-missing", "convert", lambda c: ["--model", "llama2", "--input_path", str(c.tmp / "hf"),
                                                    "--output_path", str(c.out / "x.ckpt")], 2, "--input_path",
     "not found")
case("convert-not-hf", "convert", lambda c: ["--model", "llama2", "--input_path", str(c.tmp), "--output_path",
                                             str(c.out / "x.ckpt")], 2, "config.json")
case("convert-config-json", "convert",
     lambda c: ["--model", "llama2", "--input_path", os.path.dirname(c.file("hf/config.json", "{oops")),
                "--output_path", str(c.out / "x.ckpt")], 2, "config.json")
case("convert-output-suffix", "convert", lambda c: ["--model", "llama2", "--input_path", str(c.tmp),
                                                    "--output_path", str(c.out / "x.bin")], 2, "--output_path",
     ".ckpt or .safetensors")
case("convert-shard-size", "convert", lambda c: ["--model", "llama2", "--input_path", str(c.tmp), "--output_path",
                                                 str(c.out), "--reversed", "--max_shard_size", "huge"], 2,
     "--max_shard_size")
case("convert-flag", "convert", lambda c: ["--model", "llama2"], 2, "required", "--input_path")
case("convert-reversed-damaged", "convert",
     lambda c: ["--model", "llama2", "--input_path", c.checkpoint(damage=40), "--output_path", str(c.out),
                "--reversed", "--config", TINY], 2, "w.ckpt", "damaged checkpoint")
case("convert-reversed-no-yaml", "convert",
     lambda c: ["--model", "llama2", "--input_path", c.checkpoint(), "--output_path", str(c.out), "--reversed"],
     2, "--config", "w.yaml")
case("transform-mesh-word", "transform", lambda c: ["--src_checkpoint", c.checkpoint(), "--dst_checkpoint",
                                                    str(c.out), "--dst_mesh", "two,four", "--config", c.config()],
     2, "--dst_mesh", "'two,four'")
case("transform-more-stages-than-layers", "transform",
     lambda c: ["--src_checkpoint", c.checkpoint(), "--dst_checkpoint", str(c.out), "--dst_mesh", "1,1,8",
                "--config", c.config()], 2, "--dst_mesh", "pipeline_stage 8", "more than the model's")
case("transform-both-targets", "transform", lambda c: ["--src_checkpoint", c.checkpoint(), "--dst_checkpoint",
                                                       str(c.out), "--dst_mesh", "1,2", "--dst_strategy", str(c.tmp)],
     2, "--dst_mesh / --dst_strategy")
case("transform-src-missing", "transform", lambda c: ["--src_checkpoint", str(c.tmp / "none"), "--dst_checkpoint",
                                                      str(c.out / "m.ckpt")], 2, "--src_checkpoint", "none")
case("transform-damaged", "transform", lambda c: ["--src_checkpoint", c.checkpoint(damage=40), "--dst_checkpoint",
                                                  str(c.out / "m.ckpt")], 2, "w.ckpt", "damaged checkpoint")
case("merge-no-alpha", "merge", lambda c: ["--load_checkpoint", c.checkpoint(), "--output_path",
                                           str(c.out / "m.ckpt")], 2, "--config or --lora_alpha")
case("merge-damaged", "merge", lambda c: ["--load_checkpoint", c.checkpoint(damage=40), "--lora_alpha", "16",
                                          "--output_path", str(c.out / "m.ckpt")], 2, "w.ckpt", "damaged checkpoint")
case("merge-missing", "merge", lambda c: ["--load_checkpoint", str(c.tmp / "g.ckpt"), "--lora_alpha", "16",
                                          "--output_path", str(c.out / "m.ckpt")], 2, "g.ckpt")

# The launcher (a shell script: it checks its arguments before msrun starts anything).
for case_id, args, fragments in (("no-command", [], ("missing COMMAND",)),
                                 ("workers-word", ["run_mindformer.py", "eight"], ("WORKER_NUM", "'eight'")),
                                 ("local-over-total", ["run_mindformer.py", "2", "4"], ("LOCAL_WORKER (4)",)),
                                 ("port-word", ["run_mindformer.py", "2", "2", "127.0.0.1", "port"],
                                  ("MASTER_PORT",)),
                                 ("join", ["run_mindformer.py", "1", "1", "127.0.0.1", "8118", "0", "LOGDIR",
                                           "maybe"], ("JOIN",)),
                                 ("script-missing", ["no_such_script.py --config x", "1"], ("script not found",))):
    case(f"launcher-{case_id}", "launcher", lambda c, a=args: [x.replace("LOGDIR", str(c.out)) for x in a], 2,
         "msrun_launcher.sh", *fragments)


# ---------------------------------------------------------------- running them
def run_launcher(argv):
    # msrun is looked for on PATH: the one beside this Python, as an activated environment would have it
    env = dict(os.environ, PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    result = subprocess.run(["bash", LAUNCHER, *argv], capture_output=True, text=True, timeout=60, check=False,
                            env=env)
    return result.returncode, result.stderr


ENTRIES = {"run": run_main, "preprocess": llama_preprocess.main, "convert": convert_weight.main,
           "transform": transform_ckpt.main, "merge": merge_cli.main}


def files_under(folder):
    return {os.path.join(root, name) for root, _, names in os.walk(folder) for name in names}


@pytest.fixture
def ctx(tmp_path, sp_model_file, wiki_mindrecord):
    return Ctx(tmp_path, str(sp_model_file), wiki_mindrecord)


@pytest.mark.parametrize("entry, argv, code, fragments, early", CASES)
def test_bad_input_is_one_line_and_leaves_nothing(entry, argv, code, fragments, early, ctx, capsys):
    args = [str(arg) for arg in argv(ctx)]
    before = files_under(ctx.tmp)
    if entry == "launcher":
        exit_code, stderr = run_launcher(args)
    else:
        capsys.readouterr()
        with pytest.raises(SystemExit) as caught:
            ENTRIES[entry](args)
        exit_code, stderr = caught.value.code, capsys.readouterr().err
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    assert exit_code == code, (exit_code, lines[0])
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    written = files_under(ctx.tmp) - before
    if early:
        assert not ctx.out.exists() and not written, sorted(written)
    else:  # the run had started: only its log may be there
        assert all(os.sep + "log" + os.sep in path for path in written), sorted(written)


def test_there_are_at_least_a_hundred_cases_over_every_door():
    entries = {param.values[0] for param in CASES}
    assert len(CASES) >= 100 and entries == set(ENTRIES) | {"launcher"}


