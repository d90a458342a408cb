"""Loaders: where dataset rows come from (registered as DATASET_LOADER)."""
from mindformers.dataset.dataloader.mind_dataset import MindDataset, find_mindrecord_files

__all__ = ["MindDataset", "find_mindrecord_files"]
