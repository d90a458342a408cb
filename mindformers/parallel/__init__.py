"""Distributed runs: the parallel mesh from the YAML, its checks, communication, layout files and the dry run."""
from mindformers.parallel.parallel_check import ParallelSettings, check_parallel_config, parallel_settings
