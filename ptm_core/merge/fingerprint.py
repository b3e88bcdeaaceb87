"""A model directory's fingerprint, without torch: what result keys are made of, and what the
results frame compares to tell a stored result of a rebuilt model (docs/store.md, "Current
results"). `Checkpoint.fingerprint()` (merge/checkpoint.py) is this same computation over the
shards it opened, so the two always agree.

Scheme `ptm-fingerprint/2` hashes the full content of every weight shard and support file
(config, tokenizer, generation config; not the model card or the recipe a merge was made from).
Scheme 1, used for results stored before it, hashed each shard's header, its data size and 64
evenly spaced 4 KiB blocks of its data: `legacy_fingerprint` recomputes it, so a record
measured under scheme 1 on the same weights is still recognised as current.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from ptm_core import safe_json
from ptm_core.errors import CheckpointError
from ptm_core.merge.file_hash import file_sha256

INDEX_NAME = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_JSON = 16 * 1024 * 1024  # config.json and the shard index are KiBs; tokenizers are separate
# Fingerprints hash every byte (version 1 sampled 64 blocks and could miss an edit between them).
FINGERPRINT_SCHEME = "ptm-fingerprint/2"
# Descriptions, not inputs: a model card or the recipe a merge was made from do not change outputs.
NOT_IDENTITY = frozenset({"README.md", "mergekit_config.yml", "merge_recipe.yml"})
_LEGACY_SAMPLES, _LEGACY_BLOCK = 64, 4096


def is_plain_shard_name(shard: object) -> bool:
    """A relative path below the model directory, judged by name: `..`, absolute paths and
    backslashes are refused. (Symlinks are not resolved: the Hugging Face cache links every
    file of a snapshot to ../../blobs.)"""
    if not isinstance(shard, str) or not shard.endswith(".safetensors") or "\\" in shard \
            or "\0" in shard:
        return False
    p = PurePosixPath(shard)
    return not p.is_absolute() and all(part not in ("", ".", "..") for part in shard.split("/"))


def read_model_json(name: str, path: Path, file: str) -> object:
    """A small JSON file of the model `name` at `path`: strict (UTF-8, no duplicate keys), bounded."""
    try:
        with open(path / file, "rb") as f:
            return safe_json.loads(f.read(MAX_JSON + 1), max_bytes=MAX_JSON)
    except safe_json.JSONFormatError as e:
        raise CheckpointError(name, f"{file}: {e}") from None
    except OSError as e:
        raise CheckpointError(name, f"{file}: cannot read: {e.strerror or e}") from None


def shard_names(name: str, path: Path) -> list[str]:
    """The model's safetensors shards: those its index names, else every *.safetensors file."""
    index = path / INDEX_NAME
    if index.is_file():
        data = read_model_json(name, path, INDEX_NAME)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(name, f"{INDEX_NAME}: weight_map must be a non-empty "
                                  "object of tensor name -> shard file")
        for tensor, shard in weight_map.items():
            if not is_plain_shard_name(shard):
                raise CheckpointError(
                    name, f"{INDEX_NAME}: shard {str(shard)[:80]!r} is not a "
                    ".safetensors file inside the model directory (no '..', no absolute "
                    "path)", tensor[:80])
        return sorted(set(weight_map.values()))
    shards = sorted(p.name for p in path.glob("*.safetensors"))
    if shards:
        return shards
    pickles = sorted(p.name for p in path.iterdir() if p.name.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise CheckpointError(
            name, f"holds only pickle weights ({', '.join(pickles)}); pickles can run code "
            "when loaded and are refused. Convert to safetensors first "
            "(e.g. model.save_pretrained(dir, safe_serialization=True))."
        )
    raise CheckpointError(name, "has no *.safetensors weights")


def support_files(path: Path) -> list[Path]:
    """Files a merged checkpoint copies from its template model (config, tokenizer...)."""
    keep = []
    for p in sorted(path.iterdir()):
        if not p.is_file() or p.name.endswith(".safetensors") or p.name == INDEX_NAME:
            continue
        if p.name.endswith(PICKLE_SUFFIXES) or p.name in ("README.md", "merge_recipe.yml"):
            continue
        keep.append(p)
    return keep


def fingerprint_of(name: str, path: Path, shards: list[str]) -> str:
    """Scheme 2 over the given shards and the directory's support files."""
    h = hashlib.sha256(FINGERPRINT_SCHEME.encode() + b"\0")
    files = {shard: path / shard for shard in shards}
    files.update({p.name: p for p in support_files(path) if p.name not in NOT_IDENTITY})
    for fname in sorted(files):
        try:
            digest = file_sha256(files[fname])
        except OSError as e:
            raise CheckpointError(name, f"{fname}: cannot read: {e.strerror or e}") from None
        h.update(fname.encode() + b"\0" + digest.encode() + b"\0")
    return h.hexdigest()[:16]


def model_dir_fingerprint(ref: str) -> str:
    """`Checkpoint.open(ref).fingerprint()` for a local model directory, without opening the
    tensors (no torch). CheckpointError when `ref` is no model directory."""
    path = Path(ref).expanduser()
    if not path.is_dir():
        raise CheckpointError(ref, "no such directory")
    if not (path / "config.json").is_file():
        raise CheckpointError(ref, "has no config.json (not a Hugging Face model directory)")
    return fingerprint_of(ref, path.resolve(), shard_names(ref, path))


def legacy_fingerprint(ref: str) -> str:
    """The model's fingerprint under scheme 1 (see the module doc); CheckpointError when a shard
    cannot be read as safetensors."""
    path = Path(ref).expanduser()
    h = hashlib.sha256()
    for shard in shard_names(ref, path):
        try:
            fd = os.open(path / shard, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            raise CheckpointError(ref, f"{shard}: cannot read: {e.strerror or e}") from None
        try:
            size = os.fstat(fd).st_size
            head = os.pread(fd, 8, 0)
            if len(head) < 8:
                raise CheckpointError(ref, f"{shard}: too short for a safetensors file")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 100 << 20):
                raise CheckpointError(ref, f"{shard}: header length {n} does not fit the file")
            h.update(shard.encode() + b"\0" + os.pread(fd, n, 8))
            start, end = 8 + n, size
            h.update(str(end - start).encode())
            span = max(end - start - _LEGACY_BLOCK, 0)
            for i in range(_LEGACY_SAMPLES):
                h.update(os.pread(fd, _LEGACY_BLOCK, start + span * i // (_LEGACY_SAMPLES - 1)))
        except OSError as e:
            raise CheckpointError(ref, f"{shard}: cannot read: {e.strerror or e}") from None
        finally:
            os.close(fd)
    return h.hexdigest()[:16]


# --- the experiment's models as they are now ------------------------------------------------

def dir_stamp(path: str | os.PathLike) -> tuple:
    """(relative name, size, mtime_ns, ctime_ns, inode) of every file under a model directory
    (symlinks followed, as the fingerprint reads them): any rewrite of a file changes it, and
    ctime cannot be set from user space. () for what is not a directory."""
    p = Path(path).expanduser()
    if not p.is_dir():
        return ()
    out = []
    for f in sorted(p.rglob("*")):
        try:
            st = f.stat()
        except OSError:
            continue
        if f.is_file():
            out.append((f.relative_to(p).as_posix(), st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                        st.st_ino))
    return tuple(out)


def _model_refs(models: Any) -> list[str]:
    refs = models.model_refs() if hasattr(models, "model_refs") else models
    return list(dict.fromkeys(str(r) for r in refs))


def models_stamp(models: Any) -> str:
    """A short digest of `dir_stamp` over the models (an experiment, or model paths): changes
    when any local model file changes, so a cache of what was read about them knows to refresh."""
    h = hashlib.sha256()
    for ref in _model_refs(models):
        h.update(repr((ref, dir_stamp(ref))).encode())
    return h.hexdigest()[:16]


_CACHE: dict[tuple, tuple[str, ...]] = {}
_CACHE_MAX = 512


def _prints(ref: str, stamp: tuple) -> tuple[str, ...]:
    key = (ref, stamp)
    hit = _CACHE.get(key)
    if hit is None:
        prints = [model_dir_fingerprint(ref)]  # CheckpointError: not a model: cannot be checked
        try:
            prints.append(legacy_fingerprint(ref))
        except CheckpointError:
            pass
        hit = tuple(dict.fromkeys(prints))
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[key] = hit
    return hit


def current_fingerprints(models: Any,
                         fingerprinter: Callable[[str], str] | None = None) -> dict[str, tuple[str, ...]]:
    """The experiment's models as they are now: {model path: its fingerprints} for every model
    of `models` (an experiment, i.e. anything with `model_refs()`, or model paths). A model that
    is materialized here (a local model directory) has its current-scheme fingerprint first,
    then its scheme-1 one (the same weights as results stored before scheme 2 name them); a
    model that is absent, or no model directory, maps to () -- known, but it cannot be checked,
    so what was measured on it stands (store/current.py).

    Each model is fingerprinted once per call, and remembered in this process while no file
    under it changes (`dir_stamp`); scheme 2 also remembers each file's hash on disk
    (file_hash.py). `fingerprinter` (ref -> fingerprint; the stand-ins tests wire in) replaces
    both schemes: then (fingerprinter(path),) for the paths that exist."""
    out: dict[str, tuple[str, ...]] = {}
    for ref in _model_refs(models):
        out[ref] = ()
        if not Path(ref).expanduser().exists():
            continue
        try:
            out[ref] = ((fingerprinter(ref),) if fingerprinter is not None
                        else _prints(ref, dir_stamp(ref)))
        except (CheckpointError, OSError):
            continue
    return out
