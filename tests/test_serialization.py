"""Checkpoints: bit-identical round trips without pickle, atomic writes, clear errors on bad
files, and a training run resumed from a checkpoint that matches the uninterrupted one."""
import errno
import io
import json
import math
import os
import re
import stat
import subprocess
import sys
import time
import tracemalloc
import zipfile
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
    if isinstance(original, tg.Tensor):  # a Tensor comes back a Tensor, where it was, as it was
        assert isinstance(loaded, tg.Tensor), f"{where}: {type(loaded).__name__}, not a Tensor"
        assert loaded.device == original.device and loaded.requires_grad == original.requires_grad, where
        loaded, original = loaded.numpy(), original.numpy()
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
        "trainable": tg.tensor(np.arange(4.0).reshape(2, 2), device=device, requires_grad=True),
        "int tensor": tg.tensor(np.arange(3), device=device),
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
    _assert_identical(loaded, obj)
    assert loaded["trainable"].requires_grad and loaded["trainable"].is_leaf
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


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_save_through_a_symlink_writes_its_target(tmp_path):
    target = tmp_path / "runs" / "ckpt.npz"
    target.parent.mkdir()
    link = tmp_path / "latest.npz"
    link.symlink_to(os.path.join("runs", "ckpt.npz"))  # relative, as `ln -s` makes them
    tg.save({"epoch": 1}, target)
    tg.save({"epoch": 2}, link)  # as torch.save (open(link, "wb")) does: the link stays, the target changes
    assert link.is_symlink() and os.readlink(link) == os.path.join("runs", "ckpt.npz")
    assert tg.load(target) == {"epoch": 2}
    assert sorted(os.listdir(tmp_path)) == ["latest.npz", "runs"] and os.listdir(target.parent) == ["ckpt.npz"]


def test_save_through_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "latest.npz"
    link.symlink_to(tmp_path / "first.npz")
    tg.save({"epoch": 1}, link)
    assert link.is_symlink() and tg.load(tmp_path / "first.npz") == {"epoch": 1}


def test_resave_keeps_the_file_mode(tmp_path):
    path = tmp_path / "ckpt.npz"
    tg.save({"epoch": 1}, path)
    os.chmod(path, 0o600)  # a private checkpoint must not turn world-readable when training saves again
    tg.save({"epoch": 2}, path)
    assert _mode(path) == 0o600 and tg.load(path) == {"epoch": 2}
    os.chmod(path, 0o640)
    tg.save({"epoch": 3}, path)
    assert _mode(path) == 0o640


def test_new_file_mode_follows_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        tg.save({"epoch": 1}, tmp_path / "private.npz")
    finally:
        os.umask(old)
    os.umask(0o022)
    try:
        tg.save({"epoch": 1}, tmp_path / "shared.npz")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "private.npz") == 0o600 and _mode(tmp_path / "shared.npz") == 0o644


# A writer in another process, stopped in the rename at the end of its save: "die" ends it there as a
# kill would (its temporary file written, never renamed), "pause" keeps it alive until told to finish.
_WRITER = """
import os, sys
sys.path.insert(0, sys.argv[3])
import numpy as np
import tinygrad_rnn as tg

def replace(source, target):
    if sys.argv[2] == "die":
        os._exit(3)
    print("paused", flush=True)
    sys.stdin.read()

os.replace = replace
tg.save({"w": np.ones(1000)}, sys.argv[1])
"""


def _writer(path, how):
    package_root = os.path.dirname(os.path.dirname(tg.__file__))  # the tinygrad_rnn this test imported
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(path), how, package_root],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _temporaries(directory):
    return sorted(name for name in os.listdir(directory) if name.startswith("."))


def test_temporary_file_of_a_killed_save_is_recognisable_and_removed_by_the_next(tmp_path):
    path = tmp_path / "ckpt.npz"
    tg.save({"epoch": 1}, path)
    writer = _writer(path, "die")
    writer.communicate(timeout=60)
    assert writer.returncode == 3
    leftover, = _temporaries(tmp_path)
    assert leftover.startswith(f".ckpt.npz.tmp-{writer.pid}-")  # says whose it is, and what for
    assert tg.load(path) == {"epoch": 1}
    tg.save({"epoch": 2}, path)
    assert os.listdir(tmp_path) == ["ckpt.npz"] and tg.load(path) == {"epoch": 2}


def test_temporary_file_of_a_live_writer_is_kept(tmp_path):
    path = tmp_path / "ckpt.npz"
    writer = _writer(path, "pause")
    try:
        assert writer.stdout.readline() == "paused\n"
        temporary, = _temporaries(tmp_path)
        tg.save({"epoch": 1}, path)  # a concurrent save of the same checkpoint
        assert _temporaries(tmp_path) == [temporary] and tg.load(path) == {"epoch": 1}
        tg.save({"epoch": 1}, tmp_path / "other.npz")  # another checkpoint's save leaves it alone too
        assert _temporaries(tmp_path) == [temporary]
        hours_ago = time.time() - 2 * 3600  # ... until it has not been written to for hours: a hung writer
        os.utime(tmp_path / temporary, (hours_ago, hours_ago))
        tg.save({"epoch": 2}, path)
        assert _temporaries(tmp_path) == []
    finally:
        writer.communicate(timeout=60)


@pytest.fixture
def read_only_directory(tmp_path, monkeypatch):
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # root ignores the mode: refuse to create files in it as the kernel would for anyone else
        real_open = os.open

        def open_as_a_user(file, flags, *args, **kwargs):
            if flags & os.O_CREAT and os.path.dirname(os.fspath(file)) == str(directory):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(file))
            return real_open(file, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", open_as_a_user)
    yield directory
    directory.chmod(0o755)


def test_save_into_a_read_only_directory_names_the_target(read_only_directory):
    path = read_only_directory / "ckpt.npz"
    with pytest.raises(PermissionError) as info:
        tg.save({"epoch": 1}, path)
    assert info.value.filename == str(path) and ".tmp" not in str(info.value), str(info.value)
    assert os.listdir(read_only_directory) == []


def test_save_over_a_directory_names_the_target(tmp_path):
    path = tmp_path / "ckpt.npz"
    path.mkdir()
    with pytest.raises(IsADirectoryError) as info:
        tg.save({"epoch": 1}, path)
    assert info.value.filename == str(path) and ".tmp" not in str(info.value), str(info.value)
    assert os.listdir(tmp_path) == ["ckpt.npz"]


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


def _meta(root, format="tinygrad_rnn.checkpoint", version=1):
    return _meta_text(json.dumps({"format": format, "version": version, "root": root}))


def _meta_text(text):
    return np.frombuffer(text.encode(), dtype=np.uint8)


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


def _add_entry(path, name, header_shape, data_bytes, compression=zipfile.ZIP_DEFLATED):
    """Append an .npy entry of uint8 zeros to an archive, declaring header_shape in its header."""
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "a", compression=compression) as archive:
        with archive.open(name + ".npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False,
                                                    "shape": header_shape})
            for start in range(0, data_bytes, len(chunk)):
                f.write(chunk[:data_bytes - start])


def _peak_bytes(function):
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_entries_the_structure_does_not_name_are_never_read(tmp_path):
    path = tmp_path / "ckpt.npz"
    tg.save({"w": np.arange(10.0)}, path)
    _add_entry(path, "bomb", (64 << 20,), 64 << 20)  # 64 MiB of zeros in ~64 KiB
    assert path.stat().st_size < 1 << 20
    loaded = {}
    peak = _peak_bytes(lambda: loaded.update(tg.load(path)))
    assert np.array_equal(loaded["w"], np.arange(10.0))
    assert peak < 4 << 20, f"load allocated {peak} bytes"


def test_an_entry_out_of_proportion_to_the_file_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    _npz(path, __tinygrad_rnn__=_meta({"array": "a0"}))
    _add_entry(path, "a0", (64 << 20,), 64 << 20)
    with pytest.raises(CheckpointError, match="bomb.npz: entry 'a0' declares .* out of proportion"):
        _peak_bytes(lambda: tg.load(path))


@pytest.mark.parametrize("header_shape,data_bytes", [((10 ** 12,), 100), ((10,), 100), ((2 ** 40, 2 ** 40), 0)])
def test_an_entry_whose_header_disagrees_with_its_size_is_refused(tmp_path, header_shape, data_bytes):
    path = tmp_path / "lying.npz"
    _npz(path, __tinygrad_rnn__=_meta({"array": "a0"}))
    _add_entry(path, "a0", header_shape, data_bytes, compression=zipfile.ZIP_STORED)
    with pytest.raises(CheckpointError, match=r"lying.npz: entry 'a0' declares shape"):
        tg.load(path)


def test_an_entry_referenced_twice_is_refused(tmp_path):
    path = tmp_path / "twice.npz"  # one stored entry named a thousand times would load a thousand copies
    _npz(path, __tinygrad_rnn__=_meta([{"array": "a0"}, {"array": "a0"}]), a0=np.ones(3))
    with pytest.raises(CheckpointError, match="twice.npz: entry 'a0' is referenced twice"):
        tg.load(path)


def test_deeply_nested_metadata_raises_checkpoint_error(tmp_path):
    path = tmp_path / "deep.npz"
    root = "[" * 5000 + "]" * 5000
    _npz(path, __tinygrad_rnn__=_meta_text(f'{{"format": "tinygrad_rnn.checkpoint", "version": 1, "root": {root}}}'))
    with pytest.raises(CheckpointError, match="deep.npz.*nested too deeply"):
        tg.load(path)


def test_saving_a_structure_too_deep_to_load_is_refused(tmp_path):
    nested = []
    for _ in range(5000):
        nested = [nested]
    cyclic = []
    cyclic.append(cyclic)
    for obj in (nested, cyclic):
        with pytest.raises(ValueError, match="nested more deeply .* or contains itself"):
            tg.save(obj, tmp_path / "deep.npz")
    assert os.listdir(tmp_path) == []


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


# ---- Tensors, devices and file objects --------------------------------------------------------

def test_tensors_load_onto_map_location(tmp_path, device):
    path = tmp_path / "ckpt.npz"
    weight = tg.tensor(np.arange(6.0, dtype=np.float32).reshape(2, 3), device=device, requires_grad=True)
    tg.save({"weight": weight, "plain": np.ones(2)}, path)
    for map_location in ("cpu", {device: "cpu"}):
        loaded = tg.load(path, map_location=map_location)
        assert isinstance(loaded["weight"], tg.Tensor) and loaded["weight"].device == "cpu"
        assert loaded["weight"].requires_grad and np.array_equal(loaded["weight"].numpy(), weight.numpy())
        assert type(loaded["plain"]) is np.ndarray  # arrays stay arrays, wherever tensors go
    assert tg.load(path, map_location={"cuda:3": "cpu"})["weight"].device == device  # not named: stays


def test_tensor_saved_on_an_unavailable_device_says_to_use_map_location(tmp_path):
    path = tmp_path / "from-elsewhere.npz"
    tensor = {"tensor": {"entry": "a0", "device": "tpu:0", "requires_grad": False}}
    _npz(path, __tinygrad_rnn__=_meta({"dict": [["w", tensor]]}, version=2), a0=np.ones(3))
    with pytest.raises(tg.DeviceError, match=r"from-elsewhere.npz.*'tpu:0'.*map_location='cpu'"):
        tg.load(path)
    assert tg.load(path, map_location="cpu")["w"].device == "cpu"


def test_version_1_checkpoints_still_load(tmp_path):
    path = tmp_path / "old.npz"  # version 1 stored Tensors as arrays: they come back as arrays
    _npz(path, __tinygrad_rnn__=_meta({"dict": [["w", {"array": "a0"}], ["epoch", 3]]}), a0=np.arange(3.0))
    loaded = tg.load(path)
    assert type(loaded["w"]) is np.ndarray and np.array_equal(loaded["w"], np.arange(3.0)) and loaded["epoch"] == 3


def test_state_dicts_of_tensors_load_into_modules_and_optimizers(tmp_path, device):
    model, opt, _ = _setup(0, device)
    x = tg.tensor(np.ones((2, 3), dtype=np.float32), device=device)
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()

    def as_tensors(state):
        return {k: tg.tensor(v, device=device) if isinstance(v, np.ndarray) else v for k, v in state.items()}

    optim_state = opt.state_dict()
    optim_state["state"] = {i: as_tensors(s) for i, s in optim_state["state"].items()}
    path = tmp_path / "ckpt.npz"
    tg.save({"model": model.state_dict(keep_vars=True), "optim": optim_state}, path)
    checkpoint = tg.load(path)
    assert all(isinstance(v, tg.Tensor) and v.requires_grad for v in checkpoint["model"].values())

    fresh, fresh_opt, _ = _setup(1, device)
    fresh.load_state_dict(checkpoint["model"])
    fresh_opt.load_state_dict(checkpoint["optim"])
    for a, b in zip(fresh.parameters(), model.parameters()):
        assert np.array_equal(a.numpy(), b.numpy())
    for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        got, want = fresh_opt.state[fresh.weight][name], opt.state[model.weight][name]
        assert np.array_equal(tg.backend.to_numpy(got), tg.backend.to_numpy(want)), name


def test_save_and_load_binary_file_objects(tmp_path):
    obj = {"w": tg.tensor(np.arange(3.0)), "epoch": 2}
    buffer = io.BytesIO()
    tg.save(obj, buffer)
    buffer.seek(0)
    _assert_identical(tg.load(buffer), obj)
    with open(tmp_path / "ckpt.npz", "wb") as f:
        tg.save(obj, f)
    with open(tmp_path / "ckpt.npz", "rb") as f:
        _assert_identical(tg.load(f), obj)

    class Stream(io.RawIOBase):  # a pipe or socket: no seeking back
        def __init__(self, data):
            self.source = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            return self.source.readinto(b)

    _assert_identical(tg.load(Stream(buffer.getvalue())), obj)


def test_text_mode_files_are_refused(tmp_path):
    with open(tmp_path / "ckpt.npz", "w") as f, pytest.raises(TypeError, match="text mode.*'wb'"):
        tg.save({"epoch": 1}, f)
    tg.save({"epoch": 1}, tmp_path / "ckpt.npz")
    with open(tmp_path / "ckpt.npz", errors="replace") as f, pytest.raises(TypeError, match="text mode.*'rb'"):
        tg.load(f)


def test_file_object_errors_name_the_file(tmp_path):
    with open(tmp_path / "notes.txt", "wb") as f:
        f.write(b"epoch: 3\n")
    with open(tmp_path / "notes.txt", "rb") as f, pytest.raises(CheckpointError, match="notes.txt"):
        tg.load(f)
    with pytest.raises(CheckpointError, match="BytesIO: empty file"):
        tg.load(io.BytesIO())


@pytest.mark.parametrize("what", ["model", "optimizer", "nested model"])
def test_saving_a_module_or_optimizer_says_to_save_its_state_dict(tmp_path, what):
    model, opt, _ = _setup(0, "cpu")
    obj, where = {"model": (model, "obj"), "optimizer": (opt, "obj"),
                  "nested model": ({"model": model}, "obj['model']")}[what]
    advice = re.escape(f"tg.save({where}.state_dict(), path)")
    with pytest.raises(TypeError, match="checkpoints hold no pickled objects.*" + advice):
        tg.save(obj, tmp_path / "ckpt.npz")
    assert os.listdir(tmp_path) == []


# ---- load_state_dict is all or nothing ----------------------------------------------------

@pytest.mark.parametrize("bad", ["strings", "objects", "ragged", "shape"])
def test_failed_load_state_dict_changes_nothing(bad, device):
    model = Tiny(0).to(device)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    versions = [p._version for p in model.parameters()]
    state = {"weight": np.zeros((4, 3), dtype=np.float32),  # written first, if anything is
             "bias": {"strings": np.array(["a", "b", "c", "d"]), "objects": np.array([{}, 1, 2, 3], dtype=object),
                      "ragged": [[1.0], [1.0, 2.0]], "shape": np.zeros(5, dtype=np.float32)}[bad]}
    error = tg.ShapeError if bad == "shape" else tg.DTypeError
    with pytest.raises(error, match="bias"):
        model.load_state_dict(state)
    for key, value in model.state_dict().items():
        assert np.array_equal(value, before[key]), f"{key} was overwritten by a load that failed"
    assert [p._version for p in model.parameters()] == versions
