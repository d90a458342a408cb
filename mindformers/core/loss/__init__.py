from mindformers.core.loss.cross_entropy import CrossEntropyLoss
