"""Integer arithmetic on shapes that hold a symbolic dim, for the constant folding at import (fold.py).

Exporters compute reshape targets from ``x.size(0)``: TorchScript writes Shape -> Gather -> (Mul, Div, Add, Sub
with constants) -> Unsqueeze -> Concat -> Reshape, the dynamo exporter Shape(start, end) or Shape -> Slice.
A symbolic dim is a monomial, a number times a product of names (``"N"``, ``"2*N"``, ``"N*N"``: the strings
cnngraph.shapes.product writes). The operations below keep such a dim exact or refuse:

    a · b          always a monomial
    a // b         exact only: b's number divides a's and b's names are among a's ("2*N" // 2 = "N")
    a ± b          only like terms (N + N = 2*N, N − N = 0) or adding 0; "N + 1" has no monomial
    a == c         False when c <= 0 (a dim is at least 1), True for the same monomial; else unknown

An unknown result raises FoldError, so a shape the importer cannot know stays an error naming the node.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..shapes import product


class SymbolicError(Exception):
    """The result depends on the value of a symbolic dim; the message says how."""


def monomial(dim) -> tuple[int, Counter]:
    """``dim`` as (number, names counted): 6 -> (6, {}), "2*N" -> (2, {N: 1})."""
    if isinstance(dim, (int, np.integer)):
        return int(dim), Counter()
    text = str(dim)
    if "+" in text:
        raise SymbolicError(f"the dim {text!r} is a sum")
    number, names = 1, Counter()
    for factor in text.split("*"):
        if factor.lstrip("-").isdigit():
            number *= int(factor)
        else:
            names[factor] += 1
    return number, names


def dim_of(number: int, names: Counter):
    """The dim of a monomial: an int when no name is left, else the string product() writes."""
    if number == 0 or not names:
        return int(number)
    return product([number, *sorted(names.elements())])


def multiply(a, b):
    (x, xs), (y, ys) = monomial(a), monomial(b)
    return dim_of(x * y, xs + ys)


def floor_divide(a, b):
    (x, xs), (y, ys) = monomial(a), monomial(b)
    if y == 0:
        raise SymbolicError("a division by 0")
    if x % y or any(xs[name] < count for name, count in ys.items()):
        raise SymbolicError(f"{a} / {b} is not exact for every value of the symbolic dim")
    return dim_of(x // y, xs - ys)


def _add(a, b, sign: int):
    (x, xs), (y, ys) = monomial(a), monomial(b)
    if y == 0 or not ys and not xs:
        return dim_of(x + sign * y, xs)
    if x == 0:
        return dim_of(sign * y, ys)
    if xs != ys:
        raise SymbolicError(f"{a} {'+' if sign > 0 else '-'} {b} is not a product of dims")
    return dim_of(x + sign * y, xs)


def add(a, b):
    return _add(a, b, 1)


def subtract(a, b):
    return _add(a, b, -1)


def equal(a, b) -> bool:
    (x, xs), (y, ys) = monomial(a), monomial(b)
    if xs == ys:
        return x == y
    if (not xs and x <= 0) or (not ys and y <= 0):        # a symbolic dim (times a positive number) is >= 1
        return False
    raise SymbolicError(f"whether {a} equals {b} depends on the symbolic dim")


def elementwise(function, a: np.ndarray, b: np.ndarray, dtype=object) -> np.ndarray:
    """``function`` over broadcast object arrays (NumPy's frompyfunc), as an array of ``dtype``."""
    result = np.frompyfunc(function, 2, 1)(np.asarray(a, dtype=object), np.asarray(b, dtype=object))
    result = np.asarray(result, dtype=object)
    return result.astype(dtype) if dtype is not object else result


def settle(array: np.ndarray) -> np.ndarray:
    """A shape array back to int64 once no symbolic dim is left in it (N − N = 0), so later folds read numbers."""
    array = np.asarray(array, dtype=object)
    if all(isinstance(v, (int, np.integer)) for v in array.reshape(-1)):
        return array.astype(np.int64)
    return array


__all__ = ["SymbolicError", "monomial", "dim_of", "multiply", "floor_divide", "add", "subtract", "equal",
           "elementwise", "settle"]
