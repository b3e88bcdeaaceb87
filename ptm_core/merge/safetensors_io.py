"""Streaming safetensors: parse headers, read one tensor at a time, write tensor by tensor.

The format is tiny (8-byte little-endian header length, a JSON header, then raw bytes), so we
read it directly: each tensor is read with one positioned read into a fresh buffer, which keeps
peak memory to the tensors in flight (no whole-file mmap that grows the resident set), and lets
us validate offsets against the file size up front, so a truncated file is an error before any
output is written.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch

from ptm_core import safe_json

# safetensors dtype codes <-> torch dtypes. Only floating types can be merged.
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
}
CODES = {v: k for k, v in DTYPES.items()}
# Every dtype the format defines (safetensors 0.8): known but not mergeable is its own error.
KNOWN_DTYPES = frozenset({
    "BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F16", "BF16", "F32", "F64",
    "F8_E5M2", "F8_E4M3", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "E8M0", "C64",
})
_MAX_HEADER = 100 * 1024 * 1024  # the reference reader's limit
_MAX_RANK = 16


class SafetensorsFormatError(ValueError):
    """The file is not a valid safetensors file; the message names the problem."""


@dataclass(frozen=True)
class TensorInfo:
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute file offset of the first byte
    nbytes: int


class SafetensorsFile:
    """One safetensors file, opened for positioned reads of single tensors."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        # O_NONBLOCK: a FIFO in place of a shard must not block the open; it is refused below
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            st = os.fstat(self._fd)
            if not stat.S_ISREG(st.st_mode):
                raise SafetensorsFormatError("is not a regular file")
            self.infos, self.metadata = _parse_header(self._fd, st.st_size)
        except BaseException:
            os.close(self._fd)
            self._fd = -1  # else __del__ closes the number again, by then another file's
            raise

    def read(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """The tensor, or only rows [r0, r1) of its first dimension (one contiguous range)."""
        info = self.infos[name]
        shape, start, nbytes = info.shape, info.start, info.nbytes
        if rows is not None:
            r0, r1 = rows
            row_bytes = nbytes // shape[0]
            shape, start, nbytes = (r1 - r0, *shape[1:]), start + r0 * row_bytes, (r1 - r0) * row_bytes
        buf = bytearray(nbytes)
        view = memoryview(buf)
        got = 0
        while got < nbytes:  # pread may return short counts on some filesystems
            n = os.preadv(self._fd, [view[got:]], start + got)
            if n == 0:
                raise SafetensorsFormatError(f"{self.path}: unexpected end of file reading {name!r}")
            got += n
        if nbytes == 0:
            return torch.empty(shape, dtype=info.dtype)
        return torch.frombuffer(buf, dtype=info.dtype).reshape(shape)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


def _parse_header(fd: int, size: int) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Names, dtypes, shapes and byte ranges, checked as strictly as the reference reader
    (safetensors' Rust crate): every field of the right JSON type, no duplicate names, and the
    tensors tiling the data region exactly -- in order, no overlap, no hole, nothing after."""
    if size < 8:
        raise SafetensorsFormatError("file is shorter than a safetensors header (truncated?)")
    (n,) = struct.unpack("<Q", os.pread(fd, 8, 0))
    if n > _MAX_HEADER or 8 + n > size:
        raise SafetensorsFormatError(f"header length {n} exceeds the file size {size} or the "
                                     f"{_MAX_HEADER}-byte limit (truncated or not safetensors)")
    raw = os.pread(fd, n, 8)
    if len(raw) != n:
        raise SafetensorsFormatError("file ended inside the header (truncated)")
    try:
        # depth 3 is {name: {shape: [..]}}; the bound is checked before json.loads recurses
        header = safe_json.loads(raw, max_depth=3)
    except safe_json.JSONFormatError as e:
        raise SafetensorsFormatError(f"header: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsFormatError("header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsFormatError("header: __metadata__ must be an object of strings")
    data_start, data_len = 8 + n, size - 8 - n
    infos: dict[str, TensorInfo] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        infos[name] = info = _tensor_info(name, entry, data_start)
        spans.append((info.start - data_start, info.start - data_start + info.nbytes, name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            what = "overlaps the previous tensor" if begin < end else "leaves a gap before it"
            raise SafetensorsFormatError(f"tensor {_short(name)}: byte range [{begin}, {stop}) {what}")
        end = stop
    if end != data_len:
        problem = "data lies past the end of the file (truncated)" if end > data_len else \
            f"{data_len - end} bytes after the last tensor belong to no tensor"
        raise SafetensorsFormatError(f"byte ranges end at {end} but the data region holds "
                                     f"{data_len} bytes: {problem}")
    return infos, metadata


def _short(name: str) -> str:
    r = repr(name)
    return r if len(r) <= 80 else r[:80] + "..."


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _tensor_info(name: str, entry: object, data_start: int) -> TensorInfo:
    where = f"tensor {_short(name)}"
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        keys = sorted(entry)[:5] if isinstance(entry, dict) else type(entry).__name__
        raise SafetensorsFormatError(f"{where}: header entry must be an object with exactly "
                                     f"dtype, shape and data_offsets (got {_short(str(keys))})")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(code, str) or code not in KNOWN_DTYPES:
        raise SafetensorsFormatError(f"{where}: dtype {_short(str(code))} is not a safetensors dtype")
    if code not in DTYPES:
        raise SafetensorsFormatError(
            f"{where}: unsupported dtype {code} (mergeable: {', '.join(DTYPES)})")
    if not isinstance(shape, list) or len(shape) > _MAX_RANK or \
            not all(_is_int(d) and d >= 0 for d in shape):
        raise SafetensorsFormatError(f"{where}: shape must be a list of at most {_MAX_RANK} "
                                     "non-negative integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_int, offsets)) \
            or not 0 <= offsets[0] <= offsets[1]:
        raise SafetensorsFormatError(f"{where}: data_offsets must be two integers "
                                     "0 <= begin <= end")
    dtype = DTYPES[code]
    begin, end = offsets
    if end - begin != math.prod(shape) * dtype.itemsize:
        raise SafetensorsFormatError(f"{where}: byte range does not match its shape/dtype")
    return TensorInfo(dtype, tuple(shape), data_start + begin, end - begin)


@dataclass(frozen=True)
class OutTensor:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def write_safetensors(
    path: str | os.PathLike,
    entries: list[OutTensor],
    produce: Callable[[OutTensor], Iterable[torch.Tensor]],
    metadata: dict[str, str] | None = None,
) -> None:
    """Write `entries` to `path`, pulling each tensor just before its bytes are written.

    The header is computed from the declared shapes first, so tensors stream straight to the
    file: no shard buffer. `produce(entry)` yields the tensor whole or as consecutive chunks
    along its first dimension.
    """
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for e in entries:
        header[e.name] = {"dtype": CODES[e.dtype], "shape": list(e.shape),
                          "data_offsets": [offset, offset + e.nbytes]}
        offset += e.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # pad so tensor data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for e in entries:
            written = 0
            for t in produce(e):
                t = t.to(e.dtype).contiguous()
                if t.numel():
                    f.write(t.reshape(-1).view(torch.uint8).numpy().data)
                written += t.numel() * e.dtype.itemsize
            if written != e.nbytes:
                raise ValueError(f"tensor {e.name!r}: produced {written} bytes, declared {e.nbytes}")
        f.flush()
        os.fsync(f.fileno())
