"""torch.nn.modules.normalization's names."""
from ..layers import LayerNorm
