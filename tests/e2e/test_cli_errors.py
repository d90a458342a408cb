"""Bad configs, bad paths and bad data: one line naming the file/key, exit code 2, no traceback."""
import os
import textwrap

import pytest

from tests.e2e.helpers import REPO, assert_one_line_error, run_cli

TINY = os.path.join(REPO, "configs", "llama2", "pretrain_llama2_tiny.yaml")


def user_yaml(tmp_path, body, name="run.yaml"):
    path = tmp_path / name
    path.write_text(f"base_config: ['{TINY}']\n" + textwrap.dedent(body))
    return str(path)


def train(config, *flags, output=None):
    args = ["run_mindformer.py", "--config", config, "--run_mode", "train"]
    if output:
        args += ["--output_dir", output]
    return run_cli(args + list(flags), timeout=300)


def test_missing_config_file(tmp_path):
    assert_one_line_error(train(str(tmp_path / "nope.yaml")), "--config", "config file not found", "nope.yaml")


def test_wrong_type(tmp_path):
    config = user_yaml(tmp_path, "runner_config:\n  batch_size: 'four'\n")
    assert_one_line_error(train(config), config, "runner_config.batch_size", "expected an integer")


def test_unknown_key_in_known_section(tmp_path):
    config = user_yaml(tmp_path, "context:\n  modes: 0\n")
    assert_one_line_error(train(config), config, "context.modes", "did you mean 'mode'")


def test_unknown_optimizer_type(tmp_path):
    config = user_yaml(tmp_path, "optimizer:\n  type: AdamWW\n")
    assert_one_line_error(train(config), "optimizer.type", "AdamWW", "did you mean 'AdamW'")


def test_unknown_model_config_key(tmp_path):
    config = user_yaml(tmp_path, "model:\n  model_config:\n    hiden_size: 64\n")
    assert_one_line_error(train(config), "model.model_config.hiden_size", "did you mean 'hidden_size'")


def test_bad_model_shape(tmp_path):
    config = user_yaml(tmp_path, "model:\n  model_config:\n    num_heads: 3\n")
    assert_one_line_error(train(config), "model.model_config.num_heads", "divisor of hidden_size")


def test_bad_flag_value(tmp_path):
    assert_one_line_error(run_cli(["run_mindformer.py", "--config", TINY, "--epochs", "many"]), "--epochs")


def test_missing_dataset_dir(tmp_path):
    result = train(TINY, "--train_dataset_dir", str(tmp_path / "absent.mindrecord"), output=str(tmp_path / "o"))
    assert_one_line_error(result, "dataset_dir", "absent.mindrecord")


def test_data_rows_that_do_not_fit_the_model(tmp_path, wiki_mindrecord):
    # wiki_mindrecord holds rows of 33 tokens; the tiny config expects seq_length 128 -> rows of 129.
    result = train(TINY, "--train_dataset_dir", wiki_mindrecord, output=str(tmp_path / "o"))
    assert_one_line_error(result, "model.model_config.seq_length is 128", "--seq_length 128")


def test_tokenizer_larger_than_model_vocab(tmp_path, sp_model_file, wiki_mindrecord):
    config = user_yaml(tmp_path, "model:\n  model_config:\n    vocab_size: 100\n    seq_length: 32\n")
    result = train(config, "--train_dataset_dir", wiki_mindrecord, "--vocab_file", sp_model_file,
                   output=str(tmp_path / "o"))
    assert_one_line_error(result, "vocab", "100")


def test_missing_checkpoint_for_resume(tmp_path, wiki_mindrecord):
    config = user_yaml(tmp_path, "model:\n  model_config:\n    vocab_size: 600\n    seq_length: 32\n")
    result = train(config, "--train_dataset_dir", wiki_mindrecord, "--resume_training", "True",
                   "--load_checkpoint", str(tmp_path / "no_ckpt_here"), output=str(tmp_path / "o"))
    assert_one_line_error(result, "load_checkpoint", "no_ckpt_here")


def test_checkpoint_of_another_shape(tmp_path, wiki_mindrecord):
    import mindspore as ms
    from mindspore import Parameter, Tensor
    import numpy as np
    ckpt = str(tmp_path / "other.ckpt")
    ms.save_checkpoint([{"name": "model.tok_embeddings.embedding_weight",
                         "data": Parameter(Tensor(np.zeros((10, 4), np.float32)))}], ckpt)
    config = user_yaml(tmp_path, "model:\n  model_config:\n    vocab_size: 600\n    seq_length: 32\n")
    result = train(config, "--train_dataset_dir", wiki_mindrecord, "--load_checkpoint", ckpt,
                   output=str(tmp_path / "o"))
    assert_one_line_error(result, "other.ckpt", "model.tok_embeddings.embedding_weight", "(10, 4)", "(600, 128)")
