"""Datasets the trainer builds from `train_dataset_task` / `train_dataset` (registered as DATASET)."""
from mindformers.dataset.causal_language_model_dataset import CausalLanguageModelDataset
from mindformers.dataset.dataloader import MindDataset
from mindformers.dataset.epoch_order import epoch_permutation, rank_rows

__all__ = ["CausalLanguageModelDataset", "MindDataset", "epoch_permutation", "rank_rows"]
