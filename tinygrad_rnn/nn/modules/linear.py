"""torch.nn.modules.linear's names."""
from ..layers import Identity, Linear
