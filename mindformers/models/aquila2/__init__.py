from mindformers.models.aquila2.aquila2 import AQUILA2, Aquila2Config, Aquila2ForCausalLM
