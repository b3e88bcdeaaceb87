"""YAML for user files (recipes, experiments): bounded in time and memory, no surprises.

`yaml.safe_load` is safe from code execution but not from hostile input: aliases expand a
600-byte file into gigabytes ("billion laughs"), deep nesting recurses until RecursionError,
and YAML 1.1 reads `1_0` as 10, `1:30` as 90 and `010` as 8. Here:

- aliases (`*name`, and so `<<:` merge keys) are refused when composed, before anything expands;
- nesting deeper than MAX_DEPTH and texts over MAX_BYTES are refused;
- a plain scalar that YAML 1.1 would read as a number but YAML 1.2 (and a human) would not --
  digit separators `_`, sexagesimal `a:b`, a leading-zero octal -- is an error, not a guess;
- bytes must be UTF-8; every problem is one `error_cls` message naming the source, truncated.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any, Type

import yaml

from ptm_core.errors import PTMError

MAX_BYTES = 4 * 1024 * 1024  # recipes and experiment files are a few KiB
MAX_DEPTH = 64
MAX_MESSAGE = 300
_PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*|0x[0-9a-fA-F]+)")


def shorten(text: object, limit: int = MAX_MESSAGE) -> str:
    """`str(text)` cut to `limit` characters: error messages never echo a huge value."""
    s = str(text)
    return s if len(s) <= limit else s[:limit] + f"... ({len(s) - limit} more characters)"


class _Loader(yaml.SafeLoader):
    """SafeLoader without aliases, with bounded depth, refusing ambiguous numbers."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()
            raise yaml.composer.ComposerError(
                None, None, f"found alias *{shorten(event.anchor, 40)}: YAML aliases are not "
                "allowed here (write the value out)", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node):  # noqa: ANN001
        if not _PLAIN_INT.fullmatch(node.value):
            raise yaml.constructor.ConstructorError(
                None, None, f"ambiguous number {shorten(node.value, 40)!r}: YAML 1.1 reads digit "
                "separators '_', 'a:b' (base 60) and leading zeros (octal) differently from YAML "
                "1.2; write a plain decimal", node.start_mark)
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node):  # noqa: ANN001
        if "_" in node.value or ":" in node.value:
            raise yaml.constructor.ConstructorError(
                None, None, f"ambiguous number {shorten(node.value, 40)!r}: digit separators '_' "
                "and 'a:b' (base 60) are read differently by YAML 1.1 and 1.2; write a plain "
                "decimal", node.start_mark)
        return super().construct_yaml_float(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)


def decode(data: bytes, source: str, error_cls: Type[PTMError] = PTMError) -> str:
    """UTF-8 text of a user file (a BOM is allowed), or one error naming the byte offset."""
    if len(data) > MAX_BYTES:
        raise error_cls(f"{source}: {len(data)} bytes is too large (at most {MAX_BYTES})")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise error_cls(f"{source}: not UTF-8 text (invalid byte at offset {e.start})") from None


def read_file(path: str | os.PathLike, error_cls: Type[PTMError] = PTMError) -> str:
    """The UTF-8 text of a user file, reading at most MAX_BYTES + 1 bytes. OSError (missing,
    unreadable) is left to the caller; a FIFO or device is refused instead of blocking."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error_cls(f"{path}: not a regular file")
        return decode(f.read(MAX_BYTES + 1), str(path), error_cls)


def load(text: str | bytes, source: str, error_cls: Type[PTMError] = PTMError) -> Any:
    """Parse one YAML document with the rules above; any failure is `error_cls(message)`."""
    if isinstance(text, bytes):
        text = decode(text, source, error_cls)
    elif len(text) > MAX_BYTES:
        raise error_cls(f"{source}: {len(text)} characters is too large (at most {MAX_BYTES})")
    loader = None
    try:
        loader = _Loader(text)  # the reader already refuses control characters here
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise error_cls(f"{source} is not valid YAML: {shorten(' '.join(str(e).split()))}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        # PyYAML's constructors raise these for e.g. an impossible date (2020-13-45)
        raise error_cls(f"{source} is not valid YAML: {shorten(e)}") from None
    finally:
        if loader is not None:
            loader.dispose()
