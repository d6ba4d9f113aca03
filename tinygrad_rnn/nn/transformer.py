"""Transformer layers are out of this project's scope (it is about recurrent networks). The names
exist so that ported programs which import or subclass them at module level still load; building
one raises a clear error."""
from __future__ import annotations

from .module import Module


class _OutOfScope(Module):
    def __init__(self, *args, **kwargs):
        name = next(c.__name__ for c in type(self).__mro__ if _OutOfScope in c.__bases__)  # even for a subclass
        raise NotImplementedError(f"nn.{name} is not implemented in tinygrad_rnn (recurrent networks only); "
                                  "the name exists so that imports and subclass definitions work")


class Transformer(_OutOfScope):
    pass


class TransformerEncoder(_OutOfScope):
    pass


class TransformerDecoder(_OutOfScope):
    pass


class TransformerEncoderLayer(_OutOfScope):
    pass


class TransformerDecoderLayer(_OutOfScope):
    pass


class MultiheadAttention(_OutOfScope):
    pass
