"""CausalLanguageModelDataset over real MindRecord files: batching, shuffle, resume, rank sharding, errors."""
import numpy as np
import pytest
from mindspore.mindrecord import FileWriter

from mindformers.dataset import CausalLanguageModelDataset, MindDataset
from mindformers.tools.errors import ConfigError, DataError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister, build_from_config

ROWS, LENGTH = 103, 9
DIR_KEY = "train_dataset.data_loader.dataset_dir"


def write_rows(path, rows, shard_num=1, labels=False, column="input_ids"):
    """Row i holds i*100 + (0..LENGTH-1), so every token says which row it came from."""
    schema = {column: {"type": "int32", "shape": [-1]}}
    if labels:
        schema["labels"] = {"type": "int32", "shape": [-1]}
    writer = FileWriter(str(path), shard_num=shard_num, overwrite=True)
    writer.add_schema(schema, "test rows")
    records = []
    for i in range(rows):
        record = {column: (i * 100 + np.arange(LENGTH)).astype(np.int32)}
        if labels:
            record["labels"] = -record[column]
        records.append(record)
    writer.write_raw_data(records)
    writer.commit()
    return str(path)


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory):
    return write_rows(tmp_path_factory.mktemp("rows") / "rows.mindrecord", ROWS)


def dataset_config(dataset_dir, shuffle=True, **extra):
    config = {"data_loader": {"type": "MindDataset", "dataset_dir": dataset_dir, "shuffle": shuffle},
              "input_columns": ["input_ids"], "num_parallel_workers": 8, "python_multiprocessing": False,
              "drop_remainder": True, "batch_size": 1, "repeat": 1, "numa_enable": False, "prefetch_size": 1}
    config.update(extra)
    return config


def make(dataset_dir, batch_size=4, seed=0, rank_id=0, rank_size=1, shuffle=True, **extra):
    """Built exactly as the trainer builds it: the task section through the registry with default_args."""
    return build_from_config({"type": "CausalLanguageModelDataset"}, MindFormerModuleType.DATASET,
                             default_args={"dataset_config": dataset_config(dataset_dir, shuffle, **extra),
                                           "batch_size": batch_size, "seed": seed, "rank_id": rank_id,
                                           "rank_size": rank_size},
                             where="train_dataset_task")


def row_ids(batches):
    """The row index of every row in a list of batches, in order."""
    return [int(row[0]) // 100 for batch in batches for row in batch["input_ids"]]


def test_registered():
    assert MindFormerRegister.get_cls(MindFormerModuleType.DATASET, "CausalLanguageModelDataset") \
        is CausalLanguageModelDataset
    assert MindFormerRegister.get_cls(MindFormerModuleType.DATASET_LOADER, "MindDataset") is MindDataset


def test_properties_and_batches(rows_file):
    dataset = make(rows_file, batch_size=4)
    assert (dataset.num_rows, dataset.steps_per_epoch, dataset.seq_length) == (ROWS, ROWS // 4, LENGTH)
    batches = list(dataset.epoch_iterator(0))
    assert len(batches) == ROWS // 4
    for batch in batches:
        assert set(batch) == {"input_ids"}
        assert batch["input_ids"].dtype == np.int32 and batch["input_ids"].shape == (4, LENGTH)
        first = batch["input_ids"][:, :1]
        assert (batch["input_ids"] == first + np.arange(LENGTH)).all()  # rows arrive whole
    assert len(set(row_ids(batches))) == ROWS // 4 * 4


def test_last_partial_batch_without_drop_remainder(rows_file):
    dataset = make(rows_file, batch_size=4, drop_remainder=False, shuffle=False)
    assert dataset.steps_per_epoch == ROWS // 4 + 1
    batches = list(dataset.epoch_iterator(0))
    assert [len(b["input_ids"]) for b in batches] == [4] * (ROWS // 4) + [ROWS % 4]
    assert row_ids(batches) == list(range(ROWS))  # shuffle False: file order


def test_shuffle_is_deterministic_per_seed_and_epoch(rows_file):
    first, again, other_seed = make(rows_file, seed=1), make(rows_file, seed=1), make(rows_file, seed=2)
    epoch0 = row_ids(first.epoch_iterator(0))
    assert epoch0 == row_ids(again.epoch_iterator(0))
    assert epoch0 != row_ids(other_seed.epoch_iterator(0))
    epoch1 = row_ids(first.epoch_iterator(1))
    assert epoch0 != epoch1
    assert epoch0 != sorted(epoch0)


def test_resume_skips_exactly_the_trained_batches(rows_file):
    dataset = make(rows_file, batch_size=5, seed=3)
    full = list(dataset.epoch_iterator(2))
    for skip in (0, 1, 7, len(full) - 1, len(full)):
        resumed = list(dataset.epoch_iterator(2, skip_batches=skip))
        assert len(resumed) == len(full) - skip
        for got, want in zip(resumed, full[skip:]):
            np.testing.assert_array_equal(got["input_ids"], want["input_ids"])


@pytest.mark.parametrize("rank_size", [2, 3])
def test_ranks_see_disjoint_shares_that_cover_the_epoch(rows_file, rank_size):
    shares = []
    for rank in range(rank_size):
        dataset = make(rows_file, batch_size=1, seed=5, rank_id=rank, rank_size=rank_size)
        assert dataset.num_rows == ROWS // rank_size
        shares.append(row_ids(dataset.epoch_iterator(4)))
    seen = [row for share in shares for row in share]
    assert len(seen) == len(set(seen)) == ROWS // rank_size * rank_size  # disjoint
    assert len(set(range(ROWS)) - set(seen)) == ROWS % rank_size  # covering, but the remainder


def test_labels_column_is_read_when_the_rows_have_it(tmp_path):
    path = write_rows(tmp_path / "sft.mindrecord", 10, labels=True)
    dataset = CausalLanguageModelDataset(dataset_config=dataset_config(path, input_columns=None), batch_size=2)
    batch = next(dataset.epoch_iterator(0))
    assert set(batch) == {"input_ids", "labels"} and batch["labels"].dtype == np.int32
    np.testing.assert_array_equal(batch["labels"], -batch["input_ids"])
    only_ids = CausalLanguageModelDataset(dataset_config=dataset_config(path), batch_size=2)
    assert set(next(only_ids.epoch_iterator(0))) == {"input_ids"}  # input_columns decides


def test_folder_of_shards_and_one_shard_file(tmp_path):
    write_rows(tmp_path / "part.mindrecord", 20, shard_num=3)
    (tmp_path / "README.txt").write_text("not data")
    for source in (tmp_path, tmp_path / "part.mindrecord1"):  # a shard file brings its siblings
        dataset = make(str(source), batch_size=1, drop_remainder=False)
        assert sorted(row_ids(dataset.epoch_iterator(0))) == list(range(20))


def test_task_arguments_override_the_dataset_section(rows_file):
    dataset = CausalLanguageModelDataset(dataset_config=dataset_config(rows_file), batch_size=10,
                                         drop_remainder=False, seed=0)
    assert (dataset.batch_size, dataset.steps_per_epoch) == (10, 11)


def test_wiki_rows_from_the_preprocessor(wiki_mindrecord):
    dataset = make(wiki_mindrecord, batch_size=2)
    assert dataset.seq_length == 33
    batch = next(dataset.epoch_iterator(0))
    assert batch["input_ids"].shape == (2, 33) and batch["input_ids"].dtype == np.int32


def one_line(error):
    text = str(error.value)
    assert "\n" not in text, text
    return text


def test_missing_path(tmp_path):
    with pytest.raises(DataError) as error:
        make(str(tmp_path / "absent.mindrecord"))
    assert DIR_KEY in one_line(error) and "absent.mindrecord" in one_line(error) and "not found" in one_line(error)


def test_empty_or_unset_dataset_dir(tmp_path):
    (tmp_path / "notes.txt").write_text("no data here")
    with pytest.raises(DataError) as error:
        make(str(tmp_path))
    assert DIR_KEY in one_line(error) and "no MindRecord files" in one_line(error)
    with pytest.raises(ConfigError) as error:
        make("")
    assert DIR_KEY in one_line(error)


def test_not_a_mindrecord(tmp_path):
    text = tmp_path / "data.mindrecord"
    text.write_text("hello\n" * 50)
    with pytest.raises(DataError) as error:  # no index file next to it
        make(str(text))
    assert DIR_KEY in one_line(error) and "not a MindRecord file" in one_line(error)
    (tmp_path / "data.mindrecord.db").write_text("garbage")
    with pytest.raises(DataError) as error:
        make(str(text))
    assert DIR_KEY in one_line(error) and "not a readable MindRecord" in one_line(error)


def test_rows_without_input_ids(tmp_path):
    path = write_rows(tmp_path / "other.mindrecord", 4, column="tokens")
    with pytest.raises(DataError) as error:
        make(path)
    assert DIR_KEY in one_line(error) and "no 'input_ids' column" in one_line(error) and "tokens" in one_line(error)


def test_config_mistakes_name_the_key(rows_file):
    with pytest.raises(ConfigError) as error:
        make(rows_file, input_columns=["input_ids", "labels"])
    assert "train_dataset.input_columns" in one_line(error) and "labels" in one_line(error)
    config = dataset_config(rows_file)
    config["data_loader"]["dataset_dri"] = "x"
    with pytest.raises(ConfigError) as error:
        CausalLanguageModelDataset(dataset_config=config, batch_size=2)
    assert "train_dataset.data_loader.dataset_dri" in one_line(error)
    with pytest.raises(ConfigError) as error:
        build_from_config({"type": "CausalLanguageModelDataset", "batch_sise": 2}, MindFormerModuleType.DATASET,
                          default_args={"dataset_config": dataset_config(rows_file)}, where="train_dataset_task")
    assert "train_dataset_task.batch_sise" in one_line(error)
