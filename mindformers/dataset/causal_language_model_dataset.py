"""CausalLanguageModelDataset: packed pretraining rows, batched, shuffled per epoch, sharded by rank, resumable."""
import logging

from mindformers.dataset.epoch_order import rank_rows, rows_per_rank, steps_in_epoch
from mindformers.tools.errors import ConfigError
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister, build_from_config
from mindformers.tools.register.value_spec import INT, SEED, Value

logger = logging.getLogger("mindformers")

SECTION = "train_dataset"


def positive_int(value, key):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: expected a positive integer, got {value!r}")
    return value


@MindFormerRegister.register(MindFormerModuleType.DATASET, value_specs={
    "batch_size": Value(INT, min=1), "num_parallel_workers": Value(INT, min=1), "repeat": Value(INT, min=1),
    "seed": SEED, "rank_id": Value(INT, min=0), "rank_size": Value(INT, min=1)})
class CausalLanguageModelDataset:
    """Batches of {'input_ids': int32 (batch, seq_length)} (+ 'labels' when the rows have them).

    Built by the trainer from `train_dataset_task`: `dataset_config` is the `train_dataset` section; the
    other arguments (from the task section or the trainer) override its keys; `section` is the section named
    in error messages (`eval_dataset` when the evaluation builds it from `eval_dataset_task`). Keys MindFormers
    YAMLs carry for its MindSpore pipeline (prefetch_size, numa_enable, python_multiprocessing, ...) are
    accepted and have no effect here, because batches are assembled in order by this class.
    """

    def __init__(self, dataset_config=None, data_loader=None, input_columns=None, output_columns=None,
                 batch_size=None, drop_remainder=None, num_parallel_workers=None, python_multiprocessing=None,
                 repeat=None, seed=0, prefetch_size=None, numa_enable=None, eod_reset=None, eod_token_id=None,
                 pad_token_id=None, tokenizer=None, do_eval=None, construct_args_key=None, column_order=None,
                 rank_id=0, rank_size=1, section=SECTION):
        config = dict(dataset_config or {})
        overrides = {"data_loader": data_loader, "input_columns": input_columns, "batch_size": batch_size,
                     "drop_remainder": drop_remainder, "num_parallel_workers": num_parallel_workers,
                     "repeat": repeat, "eod_reset": eod_reset}
        config.update({key: value for key, value in overrides.items() if value is not None})
        batch_size = config.get("batch_size")
        self.batch_size = positive_int(1 if batch_size is None else batch_size, f"{section}.batch_size")
        self.drop_remainder = bool(config.get("drop_remainder", True))
        self.seed = int(seed or 0)
        self.rank_size = positive_int(int(rank_size or 1), "rank_size")
        self.rank_id = int(rank_id or 0)
        if not 0 <= self.rank_id < self.rank_size:
            raise ConfigError(f"rank_id: expected 0..{self.rank_size - 1}, got {self.rank_id}")
        if config.get("eod_reset"):
            raise ConfigError(f"{section}.eod_reset: resetting attention at end-of-document tokens is not "
                              "available yet; set it to False")
        if int(config.get("repeat") or 1) != 1:
            raise ConfigError(f"{section}.repeat: expected 1 (use runner_config.epochs to see the data again)")
        loader_config = config.get("data_loader")
        if not isinstance(loader_config, dict):
            raise ConfigError(f"{section}.data_loader: expected a mapping with 'type' and 'dataset_dir', "
                              f"got {loader_config!r}")
        loader_config = dict(loader_config)
        if config.get("shuffle") is not None:  # train_dataset.shuffle, when data_loader does not say
            loader_config.setdefault("shuffle", config["shuffle"])
        self.loader = build_from_config(
            loader_config, MindFormerModuleType.DATASET_LOADER,
            default_args={"columns": list(config["input_columns"]) if config.get("input_columns") else None,
                          "num_parallel_workers": config.get("num_parallel_workers"),
                          "where": f"{section}.data_loader.dataset_dir"},
            where=f"{section}.data_loader")

    @property
    def num_rows(self):
        """Rows this rank reads per epoch."""
        return rows_per_rank(self.loader.num_rows, self.rank_size)

    @property
    def steps_per_epoch(self):
        return steps_in_epoch(self.num_rows, self.batch_size, self.drop_remainder)

    @property
    def seq_length(self):
        """Tokens per row: the model's seq_length + 1 (inputs and next-token targets come from one row)."""
        return self.loader.row_length

    @property
    def columns(self):
        return list(self.loader.columns)

    def epoch_indices(self, epoch):
        """The row indices this rank reads in `epoch`, in order, already cut to whole batches if asked."""
        rows = rank_rows(self.loader.num_rows, self.seed, epoch, self.loader.shuffle, self.rank_id, self.rank_size)
        return rows[:self.steps_per_epoch * self.batch_size]

    def epoch_iterator(self, epoch, skip_batches=0):
        """Yield the batches of `epoch` from batch `skip_batches` on (what a resumed run has not trained on)."""
        if skip_batches < 0:
            raise ValueError(f"skip_batches must be >= 0, got {skip_batches}")
        indices = self.epoch_indices(epoch)[skip_batches * self.batch_size:]
        yield from self.loader.read_batches(indices, self.batch_size)

    def __iter__(self):
        return self.epoch_iterator(0)

    def __len__(self):
        return self.steps_per_epoch
