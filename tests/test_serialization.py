"""Checkpoints: bit-identical round trips without pickle, atomic writes, clear errors on bad
files, and a training run resumed from a checkpoint that matches the uninterrupted one."""
import json
import math
import os
from collections import OrderedDict

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn, optim
from tinygrad_rnn.nn import Parameter
from tinygrad_rnn.serialization import CheckpointError


def _arrays():
    """Arrays whose bytes and dtypes a lossy round trip would change."""
    rng = np.random.default_rng(3)
    return {
        "float32": rng.standard_normal((3, 4)).astype(np.float32),
        "float64": np.array([np.pi, -0.0, np.nan, np.inf, 5e-324]),
        "float16": np.arange(6, dtype=np.float16).reshape(2, 3) / 7,
        "big-endian": np.arange(4, dtype=">f4") / 3,
        "int64": np.array([-(2 ** 62), 0, 7], dtype=np.int64),
        "uint8": np.arange(250, 256, dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "0-d": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "fortran": np.asfortranarray(rng.standard_normal((3, 2))),
    }


def _assert_identical(loaded, original, where="obj"):
    """Same structure, same types (tuple vs list, int vs str keys), arrays equal byte for byte."""
    if isinstance(original, tg.Tensor):
        original = original.numpy()
    if isinstance(original, np.ndarray):
        assert isinstance(loaded, np.ndarray), where
        assert loaded.dtype == original.dtype and loaded.shape == original.shape, where
        assert loaded.tobytes() == original.tobytes(), where
        return
    assert type(loaded) is type(original), f"{where}: {type(loaded).__name__} vs {type(original).__name__}"
    if isinstance(original, dict):
        assert list(loaded) == list(original), where
        assert [type(k) for k in loaded] == [type(k) for k in original], where
        for key in original:
            _assert_identical(loaded[key], original[key], f"{where}[{key!r}]")
    elif isinstance(original, (list, tuple)):
        assert len(loaded) == len(original), where
        for i, (a, b) in enumerate(zip(loaded, original)):
            _assert_identical(a, b, f"{where}[{i}]")
    elif isinstance(original, float) and math.isnan(original):
        assert math.isnan(loaded), where
    else:
        assert loaded == original and repr(loaded) == repr(original), where


def test_round_trip_is_bit_identical(tmp_path, device):
    arrays = _arrays()
    obj = {
        "model": OrderedDict((k, v) for k, v in arrays.items()),
        "tensor": tg.tensor(np.arange(5, dtype=np.float32) / 3, device=device),
        "optim": {"state": {0: {"step": 3.0, "exp_avg": arrays["float32"]}, 2: {}},
                  "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1, 2]}]},
        "numbers": [0, -1, 2 ** 70, 1.5, -0.0, math.inf, -math.inf, math.nan, True, False, None],
        "strings": ["", "ü ✓ \"quoted\" \\ {\"dict\": 1}", "a0"],
        "scalars": (np.float32(0.1), np.int64(-3), np.bool_(True)),
        "keys": {1: "int", "1": "str", 2.5: "float", False: "bool", None: "none"},
        "nested": [[[], {}], ((),)],
        "epoch": 3,
    }
    path = tmp_path / "ckpt.npz"
    tg.save(obj, path)
    loaded = tg.load(path)
    expected = dict(obj, tensor=obj["tensor"].numpy())
    _assert_identical(loaded, expected)
    assert type(loaded["scalars"][0]) is np.float32 and type(loaded["scalars"][2]) is np.bool_


def test_saves_exactly_the_given_path_and_overwrites(tmp_path):
    path = tmp_path / "model.ckpt"
    tg.save({"a": 1}, str(path))
    tg.save({"a": 2}, path)
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt"]
    assert tg.load(str(path)) == {"a": 2}


def test_files_hold_no_pickle(tmp_path):
    path = tmp_path / "ckpt.npz"
    tg.save({"w": np.ones(3), "name": "x"}, path)
    with np.load(path, allow_pickle=False) as archive:  # raises if any entry needs pickle
        meta = json.loads(archive["__tinygrad_rnn__"].tobytes())
        assert meta["format"] == "tinygrad_rnn.checkpoint"
        assert all(archive[name].dtype != object for name in archive.files)


@pytest.mark.parametrize("obj,message", [
    ({"model": object()}, r"'object' at obj\['model'\]"),
    ({"s": {1, 2}}, r"'set' at obj\['s'\]"),
    ([np.array([{}], dtype=object)], r"obj\[0\] has dtype object"),
    ({(1, 2): 3}, r"dict key \(1, 2\)"),
])
def test_unsupported_objects_are_refused_before_writing(tmp_path, obj, message):
    path = tmp_path / "ckpt.npz"
    with pytest.raises(TypeError, match=message):
        tg.save(obj, path)
    assert os.listdir(tmp_path) == []


# ---- atomic writes -----------------------------------------------------------------------------

def test_failed_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    tg.save({"epoch": 1, "w": np.arange(3.0)}, path)
    before = path.read_bytes()

    def savez_that_dies(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise OSError("No space left on device")

    monkeypatch.setattr(np, "savez", savez_that_dies)
    with pytest.raises(OSError, match="No space left"):
        tg.save({"epoch": 2, "w": np.zeros(3)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # no temporary file left behind
    assert tg.load(path)["epoch"] == 1


def test_failed_fsync_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    tg.save({"epoch": 1}, path)

    def fsync_that_dies(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(os, "fsync", fsync_that_dies)
    with pytest.raises(OSError, match="I/O error"):
        tg.save({"epoch": 2}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ckpt.npz"] and tg.load(path) == {"epoch": 1}


# ---- bad files -------------------------------------------------------------------------------

@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.5, 0.99])
def test_truncated_file_raises_checkpoint_error(tmp_path, fraction):
    path = tmp_path / "ckpt.npz"
    tg.save({"w": np.arange(100.0), "epoch": 4}, path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match="ckpt.npz"):
        tg.load(path)


def test_corrupt_entry_raises_checkpoint_error(tmp_path):
    path = tmp_path / "ckpt.npz"
    tg.save({"w": np.arange(100.0)}, path)
    data = bytearray(path.read_bytes())
    data[200] ^= 0xFF  # inside the first array's bytes: the zip CRC check catches it
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="ckpt.npz"):
        tg.load(path)


def _npz(path, **arrays):
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a name
        np.savez(f, **arrays)


def _meta(root, format="tinygrad_rnn.checkpoint"):
    return np.frombuffer(json.dumps({"format": format, "version": 1, "root": root}).encode(), dtype=np.uint8)


def _write_foreign(path, kind):
    if kind == "text":
        path.write_text("epoch: 3\nweights: [1, 2, 3]\n")
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.ones(3))
    elif kind == "npz-without-metadata":
        _npz(path, w=np.ones(3))
    elif kind == "metadata-not-json":
        _npz(path, __tinygrad_rnn__=np.frombuffer(b"{not json", dtype=np.uint8))
    elif kind == "other-format":
        _npz(path, __tinygrad_rnn__=_meta(3, format="something-else"))
    elif kind == "dangling-reference":
        _npz(path, __tinygrad_rnn__=_meta({"array": "a9"}))
    elif kind == "malformed-structure":
        _npz(path, __tinygrad_rnn__=_meta({"dict": [[1, 2, 3]]}))
    elif kind == "pickled-entry":
        _npz(path, __tinygrad_rnn__=_meta({"array": "a0"}), a0=np.array([{}], dtype=object))


@pytest.mark.parametrize("kind", ["text", "npy", "npz-without-metadata", "metadata-not-json", "other-format",
                                  "dangling-reference", "malformed-structure", "pickled-entry"])
def test_foreign_file_raises_checkpoint_error(tmp_path, kind):
    path = tmp_path / "foreign.bin"
    _write_foreign(path, kind)
    with pytest.raises(CheckpointError, match="foreign.bin") as info:
        tg.load(path)
    assert isinstance(info.value, tg.TinyGradRNNError)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        tg.load(tmp_path / "nothing.npz")


# ---- resuming training -----------------------------------------------------------------------

class Tiny(nn.Module):
    def __init__(self, seed):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.weight = Parameter(tg.tensor(rng.standard_normal((4, 3)).astype(np.float32)))
        self.bias = Parameter(tg.tensor(rng.standard_normal(4).astype(np.float32)))

    def forward(self, x):
        return (x @ self.weight.T + self.bias).tanh()


def _setup(seed, device):
    model = Tiny(seed).to(device)
    opt = optim.Adam(model.parameters(), lr=0.05, amsgrad=True, weight_decay=0.01)
    return model, opt, optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)


def _run(model, opt, scheduler, x, y, steps):
    history = []
    for _ in range(steps):
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
        scheduler.step()
        history.append([p.numpy().copy() for p in model.parameters()])
    return history


def test_resume_from_checkpoint_matches_uninterrupted_training(tmp_path, device):
    rng = np.random.default_rng(4)
    x = tg.tensor(rng.standard_normal((6, 3)).astype(np.float32), device=device)
    y = tg.tensor(rng.standard_normal((6, 4)).astype(np.float32), device=device)
    uninterrupted = _run(*_setup(0, device), x, y, 10)

    model, opt, scheduler = _setup(0, device)
    _run(model, opt, scheduler, x, y, 5)
    path = tmp_path / "step5.npz"
    tg.save({"model": model.state_dict(), "optim": opt.state_dict(), "sched": scheduler.state_dict(),
             "epoch": 5}, path)
    del model, opt, scheduler

    model, opt, scheduler = _setup(1, device)  # different initial weights, overwritten by the load
    checkpoint = tg.load(path)
    assert checkpoint["epoch"] == 5 and sorted(checkpoint["optim"]["state"]) == [0, 1]
    model.load_state_dict(checkpoint["model"])
    opt.load_state_dict(checkpoint["optim"])
    scheduler.load_state_dict(checkpoint["sched"])
    assert opt.state[model.weight]["exp_avg"].dtype == np.float32 and model.weight.device == device
    resumed = _run(model, opt, scheduler, x, y, 5)
    for step, (got, want) in enumerate(zip(resumed, uninterrupted[5:]), 6):
        for a, b in zip(got, want):
            assert a.dtype == np.float32
            assert np.array_equal(a, b), f"step {step}: resumed training differs"
    assert not np.array_equal(uninterrupted[4][0], uninterrupted[9][0])
