from mindformers.models.yi.yi import YI, YiConfig, YiForCausalLM
