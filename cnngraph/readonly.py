"""Read-only containers for the IR: what a node holds cannot change behind its graph's back.

A node's attributes and parameters are ``ReadOnlyDict``s and its parameter arrays are read-only float32
arrays, so two graphs (a copy, an optimized graph) can share them without copying, and a compiled plan keyed on
``Graph.version`` is never fed numbers that changed in place. Reading works as on a dict (``attrs["stride"]``,
``dict(attrs, bias=True)``, ``attrs | {...}``); a change is made through Graph methods, which bump the version.
"""
from __future__ import annotations

import numpy as np

READ_ONLY = ("node attributes and parameters are read-only: change them through the graph "
             "(Graph.replace, Graph.set_params), which keeps it consistent")


class ReadOnlyDict(dict):
    """A dict that refuses every change; nested dicts, lists and arrays are frozen too."""
    __slots__ = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for key, value in dict.items(self):
            dict.__setitem__(self, key, freeze(value))

    def _refuse(self, *args, **kwargs):
        raise TypeError(READ_ONLY)

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def copy(self) -> dict:
        """A plain, writable dict with the same items (the arrays stay shared and read-only)."""
        return dict(self)

    def __reduce__(self):
        return ReadOnlyDict, (dict(self),)


def freeze(value):
    """The value with every dict, list and array in it made read-only (an immutable value is returned as is)."""
    if isinstance(value, ReadOnlyDict):
        return value
    if isinstance(value, dict):
        return ReadOnlyDict(value)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, np.ndarray):
        return readonly_array(value, value.dtype)
    return value


def readonly_array(value, dtype=np.float32) -> np.ndarray:
    """``value`` as a read-only C-contiguous array of ``dtype``. An array that already is one (and is not a view
    of writable memory) is returned as is, without a copy: the ONNX importer hands big weights this way. Anything
    else is copied once, so the caller's array keeps its flags and later writes to it do not reach the graph."""
    if isinstance(value, np.ndarray) and not value.flags.writeable and not _writable_base(value):
        array = np.asarray(value, dtype=dtype, order="C")      # the same object when dtype and order fit
        if array is value:
            return array
    else:
        array = np.array(value, dtype=dtype, order="C")        # always a copy: the caller's array stays theirs
    array.flags.writeable = False
    return array


def freeze_in_place(value) -> np.ndarray:
    """An array only the caller holds (with any array it views), made read-only without a copy: how a front end
    that computed its own weights (the ONNX importer's folded constants) hands them over without doubling them."""
    array = np.asarray(value)
    owner = array
    while isinstance(owner, np.ndarray):
        owner.flags.writeable = False
        owner = owner.base
    return array


def _writable_base(array: np.ndarray) -> bool:
    """Whether the array views memory that someone can still write through another array."""
    base = array.base
    while isinstance(base, np.ndarray):
        if base.flags.writeable:
            return True
        base = base.base
    return False
