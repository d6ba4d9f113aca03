"""Checkpoints without pickle: `save(obj, path)` / `load(path)`.

A checkpoint is one .npz archive: the arrays as entries "a0", "a1", ... and one entry
"__tinygrad_rnn__" holding the nested structure as UTF-8 JSON in which arrays are
references to their entries. In that JSON every object is a tagged node ({"dict": [[key,
value], ...]}, {"tuple": [...]}, {"array": "a3"}, ...), so int keys (torch's optimizer
state), tuples and OrderedDicts come back as they went in. Loading never unpickles.

Writes are atomic: the archive goes to a temporary file beside the target, is flushed to
disk and renamed over it, so an interrupted save leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
import secrets
import zipfile
from collections import OrderedDict

import numpy as np

from . import backend
from .errors import TinyGradRNNError
from .tensor import Tensor

_META = "__tinygrad_rnn__"
_FORMAT = "tinygrad_rnn.checkpoint"
_VERSION = 1
_KEY_TYPES = (str, int, float, bool, type(None))


class CheckpointError(TinyGradRNNError, ValueError):
    """A file that is not a readable tinygrad_rnn checkpoint (truncated, corrupt or foreign)."""


# ---- save ---------------------------------------------------------------------------------

def save(obj, path):
    """Write nested dicts/lists/tuples of arrays, Tensors (stored as arrays), numbers, strings,
    bools and None to `path` (exactly that name; no suffix is added)."""
    path = os.fspath(path)
    arrays = {}
    root = _encode(obj, arrays, "obj")
    meta = json.dumps({"format": _FORMAT, "version": _VERSION, "root": root})
    arrays[_META] = np.frombuffer(meta.encode("utf-8"), dtype=np.uint8)
    _write_atomically(path, lambda f: np.savez(f, **arrays))


def _encode(obj, arrays, where):
    """obj -> a JSON-able node; arrays found on the way are added to `arrays`."""
    if isinstance(obj, np.generic):  # before the Python types: np.float64 is a float
        return {"scalar": _store(np.asarray(obj), arrays, where)}
    if obj is None or isinstance(obj, (str, int, float)):
        return obj
    if isinstance(obj, Tensor):
        obj = obj.data
    if backend.is_array(obj):
        return {"array": _store(backend.to_numpy(obj), arrays, where)}
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
        return {"tuple": items} if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        pairs = []
        for key, value in obj.items():
            if isinstance(key, np.generic) or not isinstance(key, _KEY_TYPES):
                raise TypeError(f"save: dict key {key!r} ({type(key).__name__}) at {where}; keys must be "
                                "str, int, float, bool or None")
            pairs.append([key, _encode(value, arrays, f"{where}[{key!r}]")])
        return {"odict" if isinstance(obj, OrderedDict) else "dict": pairs}
    raise TypeError(f"save: cannot store a {type(obj).__name__!r} at {where}; checkpoints hold dicts, lists, "
                    "tuples, arrays, Tensors, numbers, strings, bools and None")


def _store(array, arrays, where):
    if array.dtype.hasobject:
        raise TypeError(f"save: the array at {where} has dtype object, which cannot be stored without pickle")
    name = f"a{len(arrays)}"
    arrays[name] = array
    return name


def _write_atomically(path, write):
    """Run write(file) on a temporary file beside `path`, fsync it, and rename it over `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide the mode, as for any newly created file.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
    """Make the rename itself durable. Not possible everywhere (Windows cannot open directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- load ---------------------------------------------------------------------------------

_UNREADABLE = (OSError, ValueError, EOFError, KeyError, UnicodeDecodeError, zipfile.BadZipFile)


def load(path):
    """Read a checkpoint written by `save`; arrays come back as numpy arrays, bit for bit."""
    path = os.fspath(path)
    # Our own handle, closed on every path: np.load(path) leaks it when the archive is corrupt.
    with open(path, "rb") as file:
        _check_is_zip(path, file.read(6))
        file.seek(0)
        meta, arrays = _read_archive(path, file)
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT or "root" not in meta:
        raise CheckpointError(f"{path}: the '{_META}' entry does not describe a tinygrad_rnn checkpoint")
    if meta.get("version") != _VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {meta.get('version')!r}; this tinygrad_rnn "
                              f"reads version {_VERSION}")
    try:
        return _decode(meta["root"], arrays, path)
    except (TypeError, ValueError) as e:  # hand-edited or damaged JSON of the wrong shape
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path}: malformed checkpoint structure ({e})") from None


def _read_archive(path, file):
    """(the JSON structure, {entry name: array}) from an open .npz file."""
    try:
        archive = np.load(file, allow_pickle=False)
    except _UNREADABLE as e:
        raise CheckpointError(f"{path}: truncated or corrupt .npz archive, not a readable checkpoint "
                              f"({type(e).__name__}: {e})") from None
    with archive:
        if _META not in archive.files:
            raise CheckpointError(f"{path}: an .npz archive without the '{_META}' entry, so not a checkpoint "
                                  "written by tinygrad_rnn.save")
        try:
            meta = json.loads(archive[_META].tobytes().decode("utf-8"))
            arrays = {name: archive[name] for name in archive.files if name != _META}
        except _UNREADABLE as e:
            raise CheckpointError(f"{path}: corrupt tinygrad_rnn checkpoint ({type(e).__name__}: {e})") from None
    return meta, arrays


def _check_is_zip(path, head):
    """Name what the file is when it is not an .npz (zip) archive at all."""
    if head.startswith(b"PK\x03\x04"):
        return
    if not head:
        raise CheckpointError(f"{path}: empty file, not a checkpoint (truncated?)")
    if head == b"\x93NUMPY":
        raise CheckpointError(f"{path}: a single .npy array, not a tinygrad_rnn checkpoint")
    raise CheckpointError(f"{path}: not a tinygrad_rnn checkpoint (not an .npz archive; it starts with {head!r})")


def _decode(node, arrays, path):
    if node is None or isinstance(node, (str, int, float)):
        return node
    if isinstance(node, list):
        return [_decode(v, arrays, path) for v in node]
    if isinstance(node, dict) and len(node) == 1:
        (tag, body), = node.items()
        if tag == "tuple" and isinstance(body, list):
            return tuple(_decode(v, arrays, path) for v in body)
        if tag in ("dict", "odict") and isinstance(body, list):
            mapping = OrderedDict() if tag == "odict" else {}
            for key, value in body:
                mapping[key] = _decode(value, arrays, path)
            return mapping
        if tag in ("array", "scalar") and body in arrays:
            return arrays[body][()] if tag == "scalar" else arrays[body]
    raise CheckpointError(f"{path}: malformed checkpoint structure near {json.dumps(node)[:80]}")
