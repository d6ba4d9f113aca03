"""torch.nn.modules.sparse's names."""
from ..layers import Embedding
