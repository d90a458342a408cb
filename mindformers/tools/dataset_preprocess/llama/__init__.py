"""Llama data preparation scripts (llama_preprocess.py), named as in MindFormers."""
