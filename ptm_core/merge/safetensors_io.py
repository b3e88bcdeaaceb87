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
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch

# safetensors dtype codes <-> torch dtypes. Only floating types can be merged.
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
}
CODES = {v: k for k, v in DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


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
        self._fd = os.open(self.path, os.O_RDONLY)
        try:
            self.infos, self.metadata = _parse_header(self._fd, os.fstat(self._fd).st_size)
        except BaseException:
            os.close(self._fd)
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

    def header_bytes(self) -> bytes:
        """The raw header, cheap to hash: it pins names, dtypes, shapes and offsets."""
        (n,) = struct.unpack("<Q", os.pread(self._fd, 8, 0))
        return os.pread(self._fd, n, 8)

    def data_region(self) -> tuple[int, int]:
        (n,) = struct.unpack("<Q", os.pread(self._fd, 8, 0))
        return 8 + n, os.fstat(self._fd).st_size

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self._fd, size, offset)

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
    if size < 8:
        raise SafetensorsFormatError("file is shorter than a safetensors header (truncated?)")
    (n,) = struct.unpack("<Q", os.pread(fd, 8, 0))
    if n > _MAX_HEADER or 8 + n > size:
        raise SafetensorsFormatError("header length exceeds the file size (truncated or not safetensors)")
    try:
        header = json.loads(os.pread(fd, n, 8))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsFormatError(f"header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsFormatError("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + n
    infos: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        try:
            code, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsFormatError(f"tensor {name!r}: malformed header entry") from None
        if code not in DTYPES:
            raise SafetensorsFormatError(
                f"tensor {name!r}: unsupported dtype {code} (mergeable: {', '.join(DTYPES)})"
            )
        dtype = DTYPES[code]
        numel = math.prod(shape)
        if end - begin != numel * dtype.itemsize or begin < 0:
            raise SafetensorsFormatError(f"tensor {name!r}: byte range does not match its shape/dtype")
        if data_start + end > size:
            raise SafetensorsFormatError(f"tensor {name!r}: data lies past the end of the file (truncated)")
        infos[name] = TensorInfo(dtype, tuple(shape), data_start + begin, end - begin)
    return infos, metadata


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
