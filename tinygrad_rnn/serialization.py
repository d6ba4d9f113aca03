"""Checkpoints without pickle: `save(obj, f)` / `load(f, map_location=None)`, f a path or a binary file.

A checkpoint is one .npz archive: the arrays as entries "a0", "a1", ... and one entry
"__tinygrad_rnn__" holding the nested structure as UTF-8 JSON in which arrays are
references to their entries. In that JSON every object is a tagged node ({"dict": [[key,
value], ...]}, {"tuple": [...]}, {"array": "a3"}, {"tensor": {"entry": "a4", "device": "cpu",
"requires_grad": true}}, ...), so int keys (torch's optimizer state), tuples, OrderedDicts and
Tensors (with their device and requires_grad) come back as they went in. Loading never unpickles,
reads only the entries the structure names, and refuses entries that would expand out of
proportion to the file (a zip bomb).

Writes to a path are atomic: the archive goes to a hidden temporary file beside the target
(".<name>.tmp-<pid>-<host>-<random>"), is flushed to disk and renamed over it, so an
interrupted save leaves the previous checkpoint intact. A symlink is written through, as
open(path, "wb") would, and a re-saved file keeps its permissions.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import socket
import time
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from . import backend
from .errors import DeviceError, TinyGradRNNError
from .tensor import Tensor

_META = "__tinygrad_rnn__"
_FORMAT = "tinygrad_rnn.checkpoint"
_VERSION = 2
_READABLE_VERSIONS = (1, 2)  # version 1 stored Tensors as plain arrays; they load as numpy arrays
_KEY_TYPES = (str, int, float, bool, type(None))


class CheckpointError(TinyGradRNNError, ValueError):
    """A file that is not a readable tinygrad_rnn checkpoint (truncated, corrupt or foreign)."""


# ---- save ---------------------------------------------------------------------------------

def save(obj, f):
    """Save nested dicts, lists and tuples of Tensors, arrays, numbers, strings, bools and None.

    The checkpoint is one .npz archive with no pickle in it. Writes to a path are atomic (a
    temporary file beside it, flushed, then renamed over it), so an interrupted save leaves the
    previous checkpoint intact.

    Args:
        obj: what to save: typically `{"model": model.state_dict(), "optim": opt.state_dict()}`.
        f: a path (exactly that name, no suffix added) or a binary file object open for writing.

    Raises:
        TypeError: a value of a type it does not store (a function, a custom object).

    Examples:
        >>> import io
        >>> buffer = io.BytesIO()
        >>> save({"step": 3, "model": nn.Linear(2, 1).state_dict()}, buffer)
        >>> _ = buffer.seek(0)
        >>> sorted(load(buffer))
        ['model', 'step']
    """
    arrays = {}
    try:
        root = _encode(obj, arrays, "obj")
        meta = json.dumps({"format": _FORMAT, "version": _VERSION, "root": root})
    except RecursionError:
        raise ValueError("save: obj is nested more deeply than Python's recursion limit allows, "
                         "or contains itself") from None
    arrays[_META] = np.frombuffer(meta.encode("utf-8"), dtype=np.uint8)

    def write(file):
        np.savez(file, **arrays)

    if _is_file_object(f, "write"):
        _check_binary(f, "save", "wb")
        write(f)
    else:
        _write_atomically(os.fspath(f), write)


def _encode(obj, arrays, where):
    """obj -> a JSON-able node; arrays found on the way are added to `arrays`."""
    if isinstance(obj, np.generic):  # before the Python types: np.float64 is a float
        return {"scalar": _store(np.asarray(obj), arrays, where)}
    if obj is None or isinstance(obj, (str, int, float)):
        return obj
    if isinstance(obj, Tensor):
        return {"tensor": {"entry": _store(obj.numpy(), arrays, where), "device": obj.device,
                           "requires_grad": bool(obj.requires_grad)}}
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
    if callable(getattr(obj, "state_dict", None)):  # a Module, Optimizer or scheduler
        raise TypeError(f"save: cannot store the {type(obj).__name__} object at {where} itself: checkpoints "
                        f"hold no pickled objects. Save its state instead, tg.save({where}.state_dict(), path), "
                        "and restore it with load_state_dict()")
    raise TypeError(f"save: cannot store a {type(obj).__name__!r} at {where}; checkpoints hold dicts, lists, "
                    "tuples, arrays, Tensors, numbers, strings, bools and None")


def _store(array, arrays, where):
    if array.dtype.hasobject:
        raise TypeError(f"save: the array at {where} has dtype object, which cannot be stored without pickle")
    name = f"a{len(arrays)}"
    arrays[name] = array
    return name


def _is_file_object(f, method):
    return not isinstance(f, (str, bytes, os.PathLike)) and hasattr(f, method)


def _check_binary(f, function, mode):
    if isinstance(f, io.TextIOBase):
        raise TypeError(f"{function}: {f!r} is open in text mode; checkpoints are binary, open it with {mode!r}")


# ---- atomic writes ------------------------------------------------------------------------

# Temporary files name their writer, so that the next save can tell a crashed writer's leftover
# from a live one's work in progress. The host is part of the name because a pid means nothing
# on another machine sharing the directory (NFS): those files are judged by age alone.
_HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]
_STALE_AFTER_S = 60 * 60  # no save takes an hour between two writes to its file


def _write_atomically(path, write):
    """Run write(file) on a temporary file beside `path`'s real target, fsync it, and rename it
    over the target. Errors name `path`, never the temporary file the caller has not heard of."""
    target = os.path.realpath(path)  # through symlinks: the link stays a link to the new data
    directory, name = os.path.split(target)
    _remove_stale_temporaries(directory, name)
    temporary = os.path.join(directory, f".{name}.tmp-{os.getpid()}-{_HOST}-{secrets.token_hex(4)}")
    try:
        # 0o666: the umask decides a new file's mode, as for any file open() creates.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as f:
            _copy_permissions(f.fileno(), target)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
    except BaseException as e:
        _remove_quietly(temporary)
        if isinstance(e, OSError) and temporary in (e.filename, e.filename2):
            raise OSError(e.errno, e.strerror, path) from None  # the errno picks the subclass
        raise
    _fsync_directory(directory)


def _copy_permissions(fd, target):
    """Give the new file the mode (and, where allowed, the owner) of the file it replaces, as
    rewriting it in place would: a 0600 checkpoint must not become world-readable."""
    try:
        existing = os.stat(target)
    except OSError:
        return  # a new file: the umask has already decided
    if not hasattr(os, "fchmod"):  # Windows: no POSIX modes to keep
        return
    if hasattr(os, "fchown") and (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.fchown(fd, existing.st_uid, existing.st_gid)
        except OSError:
            pass  # only root may give a file away; the mode is what matters
    os.fchmod(fd, existing.st_mode & 0o7777)


def _remove_stale_temporaries(directory, name):
    """Delete temporary files of `name` left by writers that died mid-save. A live writer's file
    (its pid still running here) stays, unless it has not been written to for an hour."""
    pattern = re.compile(re.escape(f".{name}.tmp-") + r"(\d+)-([0-9a-f]{6})-[0-9a-f]{8}")
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        try:
            age = time.time() - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue  # gone already
        writer_gone = match.group(2) == _HOST and not _pid_alive(int(match.group(1)))
        if writer_gone or age > _STALE_AFTER_S:
            _remove_quietly(entry.path)


def _pid_alive(pid):
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, but another user's
        return True
    return True


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


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

_UNREADABLE = (OSError, ValueError, EOFError, KeyError, UnicodeDecodeError, zipfile.BadZipFile, zlib.error,
               NotImplementedError)
# A checkpoint's entries are stored uncompressed, so together they are never larger than the file.
# A foreign tool may have deflated them; beyond this the "checkpoint" is a zip bomb.
_MAX_EXPANSION = 32
_EXPANSION_SLACK_BYTES = 1 << 20
_READ_CHUNK_BYTES = 1 << 20


def load(f, map_location=None):
    """Read a checkpoint written by `save`.

    Tensors come back as Tensors (requires_grad as saved), numpy arrays as numpy arrays, bit
    for bit; int dict keys, tuples and OrderedDicts as they went in. Loading never unpickles.

    Args:
        f: a path or a binary file object open for reading.
        map_location: as torch's: None puts each Tensor back on the device it was saved from;
            a device ("cpu", "cuda:0") puts them all there; a dict {saved device: device} maps some.

    Returns:
        The saved object.

    Raises:
        CheckpointError: the file is not a readable tinygrad_rnn checkpoint (truncated,
            corrupt, foreign, or a zip bomb).

    Examples:
        >>> import io
        >>> buffer = io.BytesIO()
        >>> save({"w": tg.ones(2, requires_grad=True)}, buffer)
        >>> _ = buffer.seek(0)
        >>> w = load(buffer, map_location="cpu")["w"]
        >>> w.requires_grad, w.shape
        (True, (2,))
    """
    place = _device_map(map_location)
    if _is_file_object(f, "read"):
        _check_binary(f, "load", "rb")
        name = str(getattr(f, "name", type(f).__name__))
        seekable = getattr(f, "seekable", lambda: False)()
        return _load_from(f if seekable else io.BytesIO(f.read()), name, place)  # zip reads from the end
    path = os.fspath(f)
    with open(path, "rb") as file:  # our own handle, closed on every path
        return _load_from(file, path, place)


def _device_map(map_location):
    """map_location -> a function from a saved device name to the device to load onto."""
    if callable(map_location):
        raise TypeError("load: map_location must be a device or a {saved device: device} dict; "
                        "functions are not supported")
    if map_location is None:
        return lambda saved: saved
    if isinstance(map_location, dict):
        mapping = {backend.canonical_device(k): backend.canonical_device(v) for k, v in map_location.items()}
        return lambda saved: mapping.get(saved, saved)
    device = backend.canonical_device(map_location)
    return lambda saved: device


def _load_from(file, name, place):
    start = file.tell()
    _check_is_zip(name, file.read(6))
    archive_bytes = file.seek(0, os.SEEK_END) - start
    file.seek(start)
    try:
        archive = zipfile.ZipFile(file)
    except _UNREADABLE as e:
        raise CheckpointError(f"{name}: truncated or corrupt .npz archive, not a readable checkpoint "
                              f"({type(e).__name__}: {e})") from None
    with archive:
        reader = _Reader(archive, name, archive_bytes, place)
        root = reader.root()
        try:
            return _decode(root, reader)
        except RecursionError:
            raise CheckpointError(f"{name}: checkpoint structure nested too deeply to read") from None
        except (TypeError, ValueError, KeyError) as e:  # hand-edited or damaged JSON of the wrong shape
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"{name}: malformed checkpoint structure ({type(e).__name__}: {e})") from None


def _check_is_zip(name, head):
    """Name what the file is when it is not an .npz (zip) archive at all."""
    if head.startswith(b"PK\x03\x04"):
        return
    if not head:
        raise CheckpointError(f"{name}: empty file, not a checkpoint (truncated?)")
    if head == b"\x93NUMPY":
        raise CheckpointError(f"{name}: a single .npy array, not a tinygrad_rnn checkpoint")
    raise CheckpointError(f"{name}: not a tinygrad_rnn checkpoint (not an .npz archive; it starts with {head!r})")


class _Reader:
    """The archive's entries, each read only when the structure names it, at most once, and
    only while the bytes read stay in proportion to the file's size."""

    def __init__(self, archive, name, archive_bytes, place):
        self.archive, self.name, self.place = archive, name, place
        self.archive_bytes = archive_bytes
        self.budget = _MAX_EXPANSION * archive_bytes + _EXPANSION_SLACK_BYTES
        self.seen = set()

    def root(self):
        """The structure from the metadata entry, checked to be ours and of a version we read."""
        if f"{_META}.npy" not in self.archive.namelist():
            raise CheckpointError(f"{self.name}: an .npz archive without the '{_META}' entry, so not a checkpoint "
                                  "written by tinygrad_rnn.save")
        text = self.array(_META)
        try:
            meta = json.loads(text.tobytes().decode("utf-8"))
        except RecursionError:
            raise CheckpointError(f"{self.name}: the '{_META}' entry is nested too deeply to read") from None
        except _UNREADABLE as e:
            raise CheckpointError(f"{self.name}: corrupt tinygrad_rnn checkpoint ({type(e).__name__}: {e})") from None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT or "root" not in meta:
            raise CheckpointError(f"{self.name}: the '{_META}' entry does not describe a tinygrad_rnn checkpoint")
        if meta.get("version") not in _READABLE_VERSIONS:
            raise CheckpointError(f"{self.name}: checkpoint format version {meta.get('version')!r}; this "
                                  f"tinygrad_rnn reads versions {', '.join(map(str, _READABLE_VERSIONS))}")
        return meta["root"]

    def array(self, entry):
        if not isinstance(entry, str):
            raise CheckpointError(f"{self.name}: malformed checkpoint structure (entry name {entry!r})")
        if entry in self.seen:  # our files never share an entry; a crafted one could, to multiply it
            raise CheckpointError(f"{self.name}: entry {entry!r} is referenced twice")
        self.seen.add(entry)
        try:
            info = self.archive.getinfo(f"{entry}.npy")
        except KeyError:
            raise CheckpointError(f"{self.name}: the structure refers to entry {entry!r}, which the archive "
                                  "lacks") from None
        self._spend(entry, info)
        try:
            with self.archive.open(info) as fp:
                return self._read_npy(entry, info, fp)
        except CheckpointError:
            raise
        except _UNREADABLE as e:
            raise CheckpointError(f"{self.name}: corrupt entry {entry!r} ({type(e).__name__}: {e})") from None

    def _spend(self, entry, info):
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(f"{self.name}: entry {entry!r} uses zip compression method "
                                  f"{info.compress_type}; checkpoints are stored or deflated")
        if info.file_size > self.budget:
            raise CheckpointError(f"{self.name}: entry {entry!r} declares {info.file_size} bytes, out of "
                                  f"proportion to the {self.archive_bytes}-byte file (a zip bomb?)")
        self.budget -= info.file_size

    def _read_npy(self, entry, info, fp):
        """The array of one .npy entry, once its header agrees with the entry's declared size."""
        version = np.lib.format.read_magic(fp)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise CheckpointError(f"{self.name}: entry {entry!r} is .npy format {version}, which this reader "
                                  "does not take")
        shape, fortran_order, dtype = read_header(fp)
        if dtype.hasobject:
            raise CheckpointError(f"{self.name}: entry {entry!r} holds Python objects (dtype object), which "
                                  "only pickle could read")
        count = int(np.prod(shape, dtype=object))  # Python ints: a crafted shape must not overflow
        data_bytes = count * dtype.itemsize
        if fp.tell() + data_bytes != info.file_size:
            raise CheckpointError(f"{self.name}: entry {entry!r} declares shape {shape} of {dtype} "
                                  f"({data_bytes} bytes) but holds {info.file_size - fp.tell()} bytes")
        flat = np.empty(count, dtype=dtype)
        if data_bytes:
            _read_exactly(fp, flat.view(np.uint8))
        return flat.reshape(shape, order="F" if fortran_order else "C")


def _read_exactly(fp, buffer):
    """Fill a uint8 array from fp in chunks (never a second copy of the whole entry in memory)."""
    view, done = memoryview(buffer), 0
    while done < len(view):
        n = fp.readinto(view[done:done + _READ_CHUNK_BYTES])
        if not n:
            raise EOFError(f"the entry ends after {done} of {len(view)} bytes")
        done += n


def _decode(node, reader):
    if node is None or isinstance(node, (str, int, float)):
        return node
    if isinstance(node, list):
        return [_decode(v, reader) for v in node]
    if isinstance(node, dict) and len(node) == 1:
        (tag, body), = node.items()
        if tag == "tuple" and isinstance(body, list):
            return tuple(_decode(v, reader) for v in body)
        if tag in ("dict", "odict") and isinstance(body, list):
            mapping = OrderedDict() if tag == "odict" else {}
            for key, value in body:
                mapping[key] = _decode(value, reader)
            return mapping
        if tag == "array":
            return reader.array(body)
        if tag == "scalar":
            return reader.array(body)[()]
        if tag == "tensor" and isinstance(body, dict):
            return _decode_tensor(body, reader)
    raise CheckpointError(f"{reader.name}: malformed checkpoint structure near {json.dumps(node)[:80]}")


def _decode_tensor(body, reader):
    saved, requires_grad = body["device"], body["requires_grad"]
    if not isinstance(saved, str) or not isinstance(requires_grad, bool):
        raise CheckpointError(f"{reader.name}: malformed tensor node {json.dumps(body)[:80]}")
    array = reader.array(body["entry"])
    device = reader.place(saved)
    if not backend.is_available(device):
        raise DeviceError(f"{reader.name}: a tensor was saved on {saved!r}, which is not available here; "
                          "load it elsewhere with map_location, e.g. tg.load(path, map_location='cpu')")
    return Tensor(array, device=device, requires_grad=requires_grad)
