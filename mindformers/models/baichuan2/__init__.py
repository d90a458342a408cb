from mindformers.models.baichuan2.baichuan2 import BAICHUAN2, Baichuan2Config, Baichuan2ForCausalLM
