from mindformers.core.optim.adamw import AdamW, AdamWeightDecay, FP32StateAdamWeightDecay, weight_decay_groups
