"""Load a ``torch.save`` zip archive of tensors and plain containers without trusting it.

``torch.load`` runs whatever a pickle names; ``weights_only=True`` does not, but on torch 1.13
(the k2 build) it also refuses floats and k2's ragged tensors, and torch 1.13 ignores a custom
``pickle_module``. So this module unpickles the archive's ``data.pkl`` itself:

- only plain containers, numbers and strings are built by the pickle machinery itself;
- the names a pickle may import are a short list, each resolved to *our* stand-in: the tensor
  rebuild function (a bounds-checked view of a storage read from the archive), storage types (a
  dtype), ``OrderedDict``, ``torch.Size`` and k2's ``RaggedTensor`` (a :class:`RaggedState`
  holding its row splits and values, checked and built by the caller);
- anything else, an out-of-bounds tensor view or a corrupt archive is a ``ValueError`` naming
  the file. Nothing from the file is ever called, and nothing reaches k2's native checks, which
  abort the process on bad input.
"""
import collections
import io
import pickle
import zipfile
from typing import Any, List

import torch

_DTYPES = {"DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
           "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
           "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
           "BoolStorage": torch.bool}


class RaggedState:
    """What a pickled ``k2.RaggedTensor`` holds: ``row_splits`` per axis and ``values`` (unchecked)."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 3 or len(state) % 2 != 1:
            raise pickle.UnpicklingError("a ragged tensor with an unexpected state")
        self.row_splits: List[torch.Tensor] = list(state[0:-1:2])
        self.values: torch.Tensor = state[-1]
        if not all(isinstance(t, torch.Tensor) for t in self.row_splits + [self.values]):
            raise pickle.UnpicklingError("a ragged tensor whose parts are not tensors")


class _Storage:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_unused: Any) -> torch.Tensor:
    """A bounds-checked copy of the view ``storage[offset + sum(i * stride)]`` of shape ``size``."""
    size, stride = tuple(size), tuple(stride)
    if (not isinstance(storage, torch.Tensor) or not all(isinstance(x, int) for x in size + stride + (offset,))
            or len(size) != len(stride) or min(size + stride + (offset,)) < 0):
        raise pickle.UnpicklingError("a malformed tensor")
    if all(size) and offset + sum((n - 1) * s for n, s in zip(size, stride)) >= storage.numel():
        raise pickle.UnpicklingError(f"a tensor view {size} (stride {stride}, offset {offset}) outside its "
                                     f"storage of {storage.numel()} elements")
    return storage.as_strided(size, stride, offset).clone()


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _DTYPES:
            return _Storage(_DTYPES[name])
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch", "Size"):
            return tuple
        if (module, name) == ("_k2.ragged", "RaggedTensor"):
            return RaggedState
        raise pickle.UnpicklingError(f"the file would call {module}.{name}")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:80]}")
        _, storage, key, _location, numel = pid
        try:
            raw = self.archive.read(f"{self.prefix}data/{key}")
        except KeyError:
            raise pickle.UnpicklingError(f"storage {key!r} is missing from the archive") from None
        itemsize = torch.empty(0, dtype=storage.dtype).element_size()
        if len(raw) % itemsize or not isinstance(numel, int) or len(raw) // itemsize != numel:
            raise pickle.UnpicklingError(f"storage {key!r} has {len(raw)} bytes for {numel} elements")
        return torch.frombuffer(bytearray(raw), dtype=storage.dtype) if raw else torch.empty(0, dtype=storage.dtype)


def load_tensor_dict(data: bytes, path: str) -> Any:
    """Unpickle a ``torch.save`` zip archive's content (see the module docstring).

    Args:
        data: the archive's bytes.
        path: the file, for messages.

    Raises:
        ValueError: naming ``path``: not a torch zip archive, a refused name, or corrupt content.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            pickles = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise ValueError(f"{path}: not a torch.save zip archive (no single data.pkl)")
            prefix = pickles[0][: -len("data.pkl")]
            return _Unpickler(archive.read(pickles[0]), archive, prefix).load()
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: refused: {e} (a lattice file holds only tensors and plain containers)") from None
    except ValueError as e:
        if str(e).startswith(path):
            raise
        raise ValueError(f"{path}: corrupt torch.save archive: {e}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError, TypeError,
            AttributeError, IndexError, KeyError, NotImplementedError, MemoryError, OverflowError) as e:
        raise ValueError(f"{path}: not a valid torch.save zip archive (old-style pre-1.6 files are not read): "
                         f"{type(e).__name__}: {e}") from None
