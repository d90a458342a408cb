from mindformers.core.optim.adamw import AdamW, weight_decay_groups
