"""Reads PyTorch checkpoint files (`torch.save`) without PyTorch, safely.

Both serializations are read:

- legacy (PyTorch <= 1.5, or `_use_new_zipfile_serialization=False`): five
  pickles in a row (magic number, protocol version, system info, the object,
  the list of storage keys), then each listed storage as an int64 element
  count and its raw little-endian bytes;
- zip (PyTorch >= 1.6): an archive with one top-level folder holding data.pkl
  (the object) and data/<key> (each storage's raw bytes).

In both, a tensor is pickled as a call of `torch._utils._rebuild_tensor_v2` on
a storage reference (a pickle "persistent id": storage class, key, element
count) with an offset, size and stride in elements. Pickles can call any
importable function, so the unpickler here resolves only an allowlist of
globals (containers, the tensor rebuild functions, storage classes, dtypes),
each mapped to a harmless stand-in; any other global is refused by name.
Tensors come back as numpy arrays; everything else as plain Python values.
"""

import collections
import dataclasses
import io
import pickle
import struct
import zipfile
from typing import Any, BinaryIO, Callable, Optional

import ml_dtypes
import numpy as np

from deblur_jax.core.errors import InputError

LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL_VERSION = 1001
ZIP_MAGIC = b'PK\x03\x04'

# torch.<Name>Storage -> element type. Each storage class stands for its dtype.
_STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64, 'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_, 'ComplexFloatStorage': np.complex64,
    'ComplexDoubleStorage': np.complex128, 'UntypedStorage': np.uint8,
}
# torch.<dtype> names (as pickled) -> numpy dtype.
_TORCH_DTYPES = {
    'float32': np.float32, 'float64': np.float64, 'float16': np.float16,
    'bfloat16': ml_dtypes.bfloat16, 'int64': np.int64, 'int32': np.int32, 'int16': np.int16,
    'int8': np.int8, 'uint8': np.uint8, 'bool': np.bool_, 'complex64': np.complex64,
    'complex128': np.complex128,
}


class _RefusedGlobal(Exception):
  """The pickle names a global outside the allowlist."""


class _BadStructure(Exception):
  """The pickle decodes but does not describe tensors the way torch.save does."""


def _refuse_build(self, state):
  del state
  raise _BadStructure(f'the pickle tries to change a {type(self).__name__.lstrip("_")} object')


def _stand_in(cls):
  """A frozen, slotted dataclass whose instances pickle cannot change.

  The objects a pickle reaches are these stand-ins, and its BUILD opcode calls
  `__setstate__` (which frozen slotted dataclasses define to bypass `frozen`)
  or sets attributes: the allowlisted ones are shared by every load.
  """
  cls = dataclasses.dataclass(frozen=True, slots=True)(cls)
  cls.__setstate__ = _refuse_build
  return cls


@_stand_in
class _Allowed:
  """Stand-in for an allowed callable global: calls `fn`, exposes nothing else."""
  fn: Callable[..., Any]

  def __call__(self, *args):
    return self.fn(*args)


@_stand_in
class _StorageClass:
  """Stand-in for a `torch.*Storage` class: only its element type matters."""
  dtype: np.dtype


@_stand_in
class _TorchDtype:
  """Stand-in for a `torch.<dtype>` value."""
  dtype: np.dtype


@dataclasses.dataclass
class _Storage:
  """A storage's bytes, filled in once read (legacy files store them after the object)."""
  key: str
  nbytes: int
  itemsize: int  # of the element type it was first referenced with
  data: Optional[bytes] = None


@_stand_in
class _StorageView:
  """`numel` elements of `dtype` from element `offset` of a storage's bytes."""
  storage: _Storage
  dtype: np.dtype
  offset: int
  numel: int


@_stand_in
class _TensorRef:
  """A tensor to cut from a storage once its bytes are known: PyTorch's
  (storage, storage_offset, size, stride), all in elements."""
  view: _StorageView
  offset: int
  size: tuple
  stride: tuple


def _is_index_tuple(value) -> bool:
  return isinstance(value, tuple) and all(type(v) is int and v >= 0 for v in value)


def _rebuild_tensor(storage, storage_offset, size, stride):
  """Stand-in for `torch._utils._rebuild_tensor`."""
  if not isinstance(storage, _StorageView):
    raise _BadStructure(f'a tensor is rebuilt from {type(storage).__name__}, not a storage')
  if type(storage_offset) is not int or storage_offset < 0:
    raise _BadStructure(f'a tensor has storage offset {storage_offset!r}')
  if not (_is_index_tuple(size) and _is_index_tuple(stride) and len(size) == len(stride)):
    raise _BadStructure(f'a tensor has size {size!r} and stride {stride!r}')
  return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  """Stand-in for `torch._utils._rebuild_tensor_v2`; autograd fields are dropped."""
  del requires_grad, backward_hooks, metadata
  return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
  """Stand-in for `torch._utils._rebuild_parameter(_with_state)`: the tensor itself."""
  del requires_grad, backward_hooks, state
  return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ('collections', 'OrderedDict'): _Allowed(collections.OrderedDict),
    # lr_scheduler.MultiStepLR keeps its milestones in a Counter.
    ('collections', 'Counter'): _Allowed(collections.Counter),
    ('torch._utils', '_rebuild_tensor'): _Allowed(_rebuild_tensor),
    ('torch._utils', '_rebuild_tensor_v2'): _Allowed(_rebuild_tensor_v2),
    ('torch._utils', '_rebuild_parameter'): _Allowed(_rebuild_parameter),
    ('torch._utils', '_rebuild_parameter_with_state'): _Allowed(_rebuild_parameter),
    **{('torch', name): _StorageClass(np.dtype(dtype)) for name, dtype in _STORAGE_DTYPES.items()},
    **{('torch', name): _TorchDtype(np.dtype(dtype)) for name, dtype in _TORCH_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
  """An unpickler that resolves only `_ALLOWED_GLOBALS` and hands persistent
  ids (storage references) to `persistent_load_fn`."""

  def __init__(self, file: BinaryIO, persistent_load_fn: Optional[Callable[[Any], Any]]):
    super().__init__(file)
    self._persistent_load_fn = persistent_load_fn

  def find_class(self, module, name):
    try:
      return _ALLOWED_GLOBALS[(module, name)]
    except KeyError:
      raise _RefusedGlobal(f'{module}.{name}') from None

  def persistent_load(self, pid):
    if self._persistent_load_fn is None:
      raise _BadStructure(f'unexpected storage reference {pid!r}')
    return self._persistent_load_fn(pid)


def _unpickle(file: BinaryIO, persistent_load_fn=None):
  return _RestrictedUnpickler(file, persistent_load_fn).load()


def _storage_view(storages: dict, storage_class, key, numel) -> _StorageView:
  """The view a storage reference stands for; one `_Storage` per key."""
  if not isinstance(storage_class, _StorageClass):
    raise _BadStructure(f'storage {key!r} has type {storage_class!r}')
  if not isinstance(key, str) or type(numel) is not int or numel < 0:
    raise _BadStructure(f'bad storage reference (key {key!r}, {numel!r} elements)')
  itemsize = storage_class.dtype.itemsize
  storage = storages.setdefault(key, _Storage(key, numel * itemsize, itemsize))
  if storage.nbytes != numel * itemsize:
    raise _BadStructure(f'storage {key!r} is referenced with two sizes')
  return _StorageView(storage, storage_class.dtype, 0, numel)


def _to_numpy(ref: _TensorRef) -> np.ndarray:
  """The tensor's values, copied out of its storage, after a bounds check."""
  view = ref.view
  if view.storage.data is None:
    raise _BadStructure(f'storage {view.storage.key!r} has no data')
  if 0 in ref.size:
    return np.zeros(ref.size, view.dtype)
  last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
  if last >= view.numel:
    raise _BadStructure(f'a tensor of size {ref.size}, stride {ref.stride} at offset '
                        f'{ref.offset} reaches past the {view.numel} elements of storage '
                        f'{view.storage.key!r}')
  elements = np.frombuffer(view.storage.data, view.dtype.newbyteorder('<'), count=view.numel,
                           offset=view.offset * view.dtype.itemsize)
  itemsize = elements.dtype.itemsize
  strided = np.lib.stride_tricks.as_strided(
      elements[ref.offset:], shape=ref.size, strides=[s * itemsize for s in ref.stride],
      writeable=False)
  return strided.astype(view.dtype)  # a native-order copy


def _materialize(obj, memo: dict):
  """`obj` with every `_TensorRef` replaced by its numpy array (shared stays shared)."""
  if id(obj) in memo:
    return memo[id(obj)]
  if isinstance(obj, _TensorRef):
    out = _to_numpy(obj)
  elif isinstance(obj, dict):
    out = memo[id(obj)] = type(obj)()
    for key, value in obj.items():
      out[key] = _materialize(value, memo)
  elif isinstance(obj, list):
    out = memo[id(obj)] = []
    out.extend(_materialize(value, memo) for value in obj)
  elif isinstance(obj, tuple):
    out = tuple(_materialize(value, memo) for value in obj)
  elif isinstance(obj, _Allowed):
    raise _BadStructure(f'it holds the function {obj.fn.__name__} itself')
  elif isinstance(obj, _StorageView):
    raise _BadStructure(f'it holds storage {obj.storage.key!r} outside a tensor')
  elif isinstance(obj, (_StorageClass, _TorchDtype)):
    out = obj.dtype
  else:
    out = obj
  memo[id(obj)] = out
  return out


def _read_legacy(file: BinaryIO):
  """The object of a legacy-serialization file, with `_TensorRef`s for tensors."""
  try:
    magic = _unpickle(file)
  except _RefusedGlobal:
    raise
  except Exception:  # pylint: disable=broad-except
    magic = None  # not a pickle at all
  if magic != LEGACY_MAGIC_NUMBER:
    raise _BadStructure('it is neither a zip archive nor a pickle stream starting with '
                        "PyTorch's magic number")
  protocol = _unpickle(file)
  if protocol != LEGACY_PROTOCOL_VERSION:
    raise _BadStructure(f'unsupported legacy protocol version {protocol!r}')
  sys_info = _unpickle(file)
  if not isinstance(sys_info, dict) or not sys_info.get('little_endian', False):
    raise _BadStructure(f'written by a big-endian or unknown system ({sys_info!r})')

  storages: dict[str, _Storage] = {}

  def persistent_load(pid):
    # ('storage', class, root key, location, root numel, view_metadata), where
    # view_metadata is None or (view key, offset, numel) of a view of the root.
    if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == 'storage'):
      raise _BadStructure(f'unexpected storage reference {pid!r}')
    _, storage_class, key, _, numel, view_metadata = pid
    root = _storage_view(storages, storage_class, key, numel)
    if view_metadata is None:
      return root
    _, offset, view_numel = view_metadata
    if type(offset) is not int or type(view_numel) is not int or offset < 0 or \
        view_numel < 0 or offset + view_numel > numel:
      raise _BadStructure(f'bad storage view {view_metadata!r} of storage {key!r}')
    return _StorageView(root.storage, root.dtype, offset, view_numel)

  obj = _unpickle(file, persistent_load)
  keys = _unpickle(file)
  if not isinstance(keys, list) or len(set(keys)) != len(keys) or set(keys) != set(storages):
    raise _BadStructure('the list of storage keys does not match the tensors')
  for key in keys:
    storage = storages[key]
    header = file.read(8)
    numel = struct.unpack('<q', header)[0] if len(header) == 8 else None
    if numel is None or numel * storage.itemsize != storage.nbytes:
      raise _BadStructure(f'storage {key!r} is truncated or has a bad size')
    storage.data = file.read(storage.nbytes)
    if len(storage.data) != storage.nbytes:
      raise _BadStructure(f'storage {key!r} is truncated')
  return obj


def _read_zip(archive: zipfile.ZipFile):
  """The object of a zip-serialization archive, with `_TensorRef`s for tensors."""
  pickles = [n for n in archive.namelist() if n.endswith('/data.pkl') and n.count('/') == 1]
  if len(pickles) != 1:
    raise _BadStructure('the zip archive has no single <folder>/data.pkl')
  folder = pickles[0][:-len('data.pkl')]
  names = set(archive.namelist())
  if folder + 'byteorder' in names and archive.read(folder + 'byteorder') != b'little':
    raise _BadStructure('written by a big-endian system')

  storages: dict[str, _Storage] = {}

  def persistent_load(pid):
    # ('storage', class, key, location, numel); the bytes are in data/<key>.
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == 'storage'):
      raise _BadStructure(f'unexpected storage reference {pid!r}')
    _, storage_class, key, _, numel = pid
    view = _storage_view(storages, storage_class, key, numel)
    storage = view.storage
    if storage.data is None:
      member = f'{folder}data/{key}'
      if member not in names:
        raise _BadStructure(f'storage {member} is missing')
      storage.data = archive.read(member)
      if len(storage.data) != storage.nbytes:
        raise _BadStructure(f'storage {member} has {len(storage.data)} bytes, expected '
                            f'{storage.nbytes}')
    return view

  return _unpickle(io.BytesIO(archive.read(pickles[0])), persistent_load)


def load(path: str) -> Any:
  """What `torch.load(path, map_location='cpu')` returns, with numpy arrays for tensors.

  Containers come back as dicts (OrderedDicts stay OrderedDicts), lists,
  tuples and scalars. Raises InputError naming `path` for a file that is not
  a PyTorch checkpoint of tensors and containers, or that references any
  other global (a pickle can run code; this one is not unpickled further).
  """
  try:
    with open(path, 'rb') as file:
      # As torch.load decides: a zip archive starts with a local file header.
      is_zip = file.read(4) == ZIP_MAGIC
      file.seek(0)
      if is_zip:
        with zipfile.ZipFile(file) as archive:
          obj = _read_zip(archive)
      else:
        obj = _read_legacy(file)
    return _materialize(obj, {})
  except OSError as e:
    raise InputError(f'Cannot read the PyTorch checkpoint {path}: {e}') from e
  except _RefusedGlobal as e:
    raise InputError(f'{path} references {e}, which a checkpoint of tensors and containers '
                     'does not need; refusing to load it (a pickle can run code).') from None
  except _BadStructure as e:
    raise InputError(f'{path} is not a readable PyTorch checkpoint: {e}.') from e
  except Exception as e:  # pylint: disable=broad-except
    # A damaged pickle or archive fails in many ways (EOFError, KeyError, ...).
    raise InputError(f'{path} is not a readable PyTorch checkpoint: {type(e).__name__}: '
                     f'{e}.') from e
