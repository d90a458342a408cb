from mindformers.core.lr.lr_schedule import ConstantWarmUpLR, CosineWithWarmUpLR, LinearWithWarmUpLR, WarmUpSchedule
