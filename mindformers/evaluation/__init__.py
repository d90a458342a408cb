"""Benchmark tasks as ModelLink evaluates them (MMLU, C-Eval, BoolQ, GSM8K, BBH, AGIEval, HumanEval), each read
from its public file layout in a local folder."""
from mindformers.evaluation.benchmark import BENCHMARK_TASKS, default_max_new_tokens, load_benchmark, run_benchmark_task

__all__ = ["BENCHMARK_TASKS", "default_max_new_tokens", "load_benchmark", "run_benchmark_task"]
