"""One way to pick a thing by name from a config field or flag: the registry's
entry, or an InputError that names the field, the bad value and the choices."""

from typing import Mapping, Sequence, TypeVar, Union

from deblur_jax.core.errors import InputError

T = TypeVar('T')


def lookup(table: Union[Mapping[str, T], Sequence[str]], name: str, field: str):
  """`table[name]` for a mapping, `name` for a sequence of names; otherwise an
  InputError such as "Unknown config.loss.name 'l3'; choose one of ['l1', 'mse']."
  (for a flag: "Unknown --model='x'; ...")."""
  if name in table:
    return table[name] if isinstance(table, Mapping) else name
  value = f'={name!r}' if field.startswith('--') else f' {name!r}'
  raise InputError(f'Unknown {field}{value}; choose one of {sorted(table)}.')
