"""ONNX export is out of scope; the module exists so that `import torch.onnx` lines port as they are."""


def export(*args, **kwargs):
    raise NotImplementedError("onnx.export is not implemented in tinygrad_rnn; save weights with "
                              "tinygrad_rnn.save(model.state_dict(), path)")
