"""Layers shared by every model: models compose these rather than copying them."""
from mindformers.models.modules.attention import Attention, causal_mask
from mindformers.models.modules.dtypes import to_ms_dtype
from mindformers.models.modules.embedding import Embedding
from mindformers.models.modules.layout import parameter_layouts
from mindformers.models.modules.linear import Linear
from mindformers.models.modules.mlp import GatedFeedForward, SwiGLUFeedForward
from mindformers.models.modules.norm import RMSNorm
from mindformers.models.modules.rotary import RotaryEmbedding
