"""Offline data preparation: raw text -> tokenized, packed MindRecord rows the trainer reads."""
