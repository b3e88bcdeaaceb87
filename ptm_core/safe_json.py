"""Strict, bounded JSON for files a user hands us (safetensors headers, config.json, indexes).

`json.loads` accepts duplicate keys (the last silently wins), recurses once per nesting level
(a header of 100k '[' ends in RecursionError) and takes NaN. `loads` here refuses all three
and raises one ValueError subclass whose message names the problem; callers add the file.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

# A string runs to its closing quote, or to the end (unterminated: json fails there anyway).
# Possessive, and always matching from a quote, so the scan is linear even on hostile input.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = np.zeros(256, dtype=np.int8)
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1


class JSONFormatError(ValueError):
    """Not strict JSON (or too deep / too large); the message names the problem."""


def nesting_depth(data: bytes) -> int:
    """An upper bound on how deep `json.loads(data)` would recurse, in linear time without
    recursing: brackets outside strings, counted by a running sum."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    deepest = level = 0
    for i in range(0, len(brackets), 1 << 20):  # chunks: bounded memory on a 100 MB header
        run = level + np.cumsum(_STEP[np.frombuffer(brackets[i:i + (1 << 20)], dtype=np.uint8)],
                                dtype=np.int64)
        deepest, level = max(deepest, int(run.max())), int(run[-1])
    return deepest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise JSONFormatError(f"key {k[:80]!r} appears twice")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise JSONFormatError(f"{name} is not a JSON number")


def loads(data: bytes, *, max_depth: int = 32, max_bytes: int | None = None) -> Any:
    """Parse UTF-8 JSON bytes: no duplicate keys, no NaN/Infinity, nesting <= max_depth."""
    if max_bytes is not None and len(data) > max_bytes:
        raise JSONFormatError(f"{len(data)} bytes is more than the {max_bytes} allowed")
    depth = nesting_depth(data)
    if depth > max_depth:
        raise JSONFormatError(f"nested {depth} levels deep (at most {max_depth})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise JSONFormatError(f"JSON text is not UTF-8 (invalid byte at offset {e.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise JSONFormatError(f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:  # unreachable after the depth check; kept as a last bound
        raise JSONFormatError("nested too deeply") from None
