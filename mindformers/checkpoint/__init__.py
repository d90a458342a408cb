from mindformers.checkpoint.checkpoint_io import (checkpoint_name, list_checkpoints, load_weights, rank_dir,
                                                  read_checkpoint, resolve_checkpoint, save_checkpoint_atomic)
