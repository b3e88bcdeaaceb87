"""A Hugging Face model directory as a merge input: config, safetensors shards, fingerprint.

Inputs are local directories, or hub ids resolved through the Hugging Face cache when the
machine is online. Pickle checkpoints (`*.bin`, `*.pt`) are refused: loading a pickle runs
arbitrary code, and every model we merge can be converted to safetensors once.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path

import torch

from ptm_core.errors import CheckpointError
from ptm_core.merge.fingerprint import (  # noqa: F401 - INDEX_NAME, FINGERPRINT_SCHEME: re-exported
    FINGERPRINT_SCHEME, INDEX_NAME, fingerprint_of, read_model_json, shard_names, support_files,
)
from ptm_core.merge.safetensors_io import SafetensorsFile, SafetensorsFormatError, TensorInfo

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CONFIG_INTS = ("num_hidden_layers", "n_layer")


def resolve_model_dir(ref: str) -> Path:
    """A local directory, or a hub id fetched into the HF cache; clear error when offline."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise CheckpointError(ref, "is a file, not a model directory")
    if not _HUB_ID.match(ref) or ref.startswith((".", "/")):
        raise CheckpointError(ref, "no such directory")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            ref, allow_patterns=["*.safetensors", "*.json", "*.model", "*.txt", "tokenizer*"]
        )
    except Exception as e:  # offline, unknown repo, gated...
        raise CheckpointError(
            ref, f"is not a local directory and could not be fetched from the Hugging Face hub "
                 f"(offline or unknown id): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    return Path(local)


class Checkpoint:
    """Read-only view of one model: its config and its tensors, one at a time."""

    def __init__(self, ref: str, path: Path):
        self.name = ref  # how the recipe names it; used in every error message
        self.path = path
        self.config = self._read_config()
        self._files: dict[str, SafetensorsFile] = {}
        self._where: dict[str, str] = {}  # tensor name -> shard filename
        self._fingerprint: str | None = None
        for shard in self._shard_names():
            try:
                f = SafetensorsFile(path / shard)
            except SafetensorsFormatError as e:
                self.close()
                raise CheckpointError(ref, f"{shard}: {e}") from None
            except FileNotFoundError:
                self.close()
                raise CheckpointError(ref, f"shard {shard} listed in the index is missing") from None
            self._files[shard] = f
            for tname in f.infos:
                if tname in self._where:
                    self.close()
                    raise CheckpointError(ref, "tensor appears in two shards", tname)
                self._where[tname] = shard

    @classmethod
    def open(cls, ref: str) -> "Checkpoint":
        return cls(ref, resolve_model_dir(ref))

    def _read_json(self, name: str) -> object:
        """A small JSON file of the model: strict (UTF-8, no duplicate keys), bounded."""
        return read_model_json(self.name, self.path, name)

    def _read_config(self) -> dict:
        if not (self.path / "config.json").is_file():
            raise CheckpointError(self.name, "has no config.json (not a Hugging Face model directory)")
        cfg = self._read_json("config.json")
        if not isinstance(cfg, dict):
            raise CheckpointError(self.name, "config.json must be a JSON object")
        for key in _CONFIG_INTS:  # what the merge reads (layer count for gradients)
            v = cfg.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise CheckpointError(self.name, f"config.json: {key} must be a non-negative "
                                      f"integer, got {str(v)[:40]!r}")
        for key in ("dtype", "torch_dtype"):
            if cfg.get(key) is not None and not isinstance(cfg[key], str):
                raise CheckpointError(self.name, f"config.json: {key} must be a string")
        return cfg

    def _shard_names(self) -> list[str]:
        return shard_names(self.name, self.path)

    # --- TensorSource protocol -------------------------------------------------------------
    def tensor_names(self) -> list[str]:
        return list(self._where)

    def info(self, name: str) -> TensorInfo:
        return self._files[self._where[name]].infos[name]

    def shape(self, name: str) -> tuple[int, ...]:
        return self.info(name).shape

    def dtype(self, name: str) -> torch.dtype:
        return self.info(name).dtype

    def get(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """The tensor (or rows [r0, r1) of it) in float32: merge math is always float32."""
        try:
            t = self._files[self._where[name]].read(name, rows)
        except KeyError:
            raise CheckpointError(self.name, "tensor is missing", name) from None
        except (OSError, SafetensorsFormatError) as e:
            raise CheckpointError(self.name, f"cannot read: {e}", name) from None
        return t.to(torch.float32)

    def load_all(self) -> dict[str, torch.Tensor]:
        return {n: self.get(n) for n in self.tensor_names()}

    @property
    def num_layers(self) -> int | None:
        n = self.config.get("num_hidden_layers") or self.config.get("n_layer")
        return int(n) if n else None

    @cached_property
    def main_dtype(self) -> torch.dtype:
        """The dtype most bytes are stored in: the default output dtype of a merge."""
        bytes_by_dtype: dict[torch.dtype, int] = {}
        for n in self._where:
            i = self.info(n)
            bytes_by_dtype[i.dtype] = bytes_by_dtype.get(i.dtype, 0) + i.nbytes
        return max(bytes_by_dtype, key=bytes_by_dtype.get) if bytes_by_dtype else torch.float32

    def total_bytes(self) -> int:
        return sum(self.info(n).nbytes for n in self._where)

    def fingerprint(self) -> str:
        """Identifies the model by the full content of every file that can change its outputs:
        each weight shard and each support file (config, tokenizer, generation config). Each
        file is hashed once and remembered while unchanged (merge/file_hash.py)."""
        if self._fingerprint is None:
            self._fingerprint = self._compute_fingerprint()
        return self._fingerprint

    def _compute_fingerprint(self) -> str:
        return fingerprint_of(self.name, self.path, list(self._files))  # merge/fingerprint.py

    def support_files(self) -> list[Path]:
        """Files a merged checkpoint copies from its template model (config, tokenizer...)."""
        return support_files(self.path)

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Checkpoint({self.name!r})"


def model_fingerprint(ref: str) -> str:
    """The fingerprint of the model `ref` names (Checkpoint.fingerprint). A directory without
    weights (a tokenizer a recipe's `tokenizer_source` names: MergeKit reads only its tokenizer
    there) is fingerprinted by the same rule over the files it has."""
    path = resolve_model_dir(ref)
    if not (path / INDEX_NAME).is_file() and not any(path.glob("*.safetensors")):
        return fingerprint_of(ref, path, [])
    with Checkpoint(ref, path) as ck:
        return ck.fingerprint()


def is_within(child: str | os.PathLike, parent: str | os.PathLike) -> bool:
    c, p = Path(child).resolve(), Path(parent).resolve()
    return c == p or p in c.parents
