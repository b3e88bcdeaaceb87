"""Cache keys of results (pure).

A result is identified by everything that can change a score and nothing else:

    sha256(canonical JSON of {recipe key, input fingerprints (in recipe order),
                              suite name, suite version, suite options,
                              sampling parameters, engine kind})

The experiment a result was produced for, its label, the wall time and the package versions
are *not* part of the key: the same merge evaluated the same way is the same measurement.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping, Sequence

KEY_SCHEMA = 1  # bump when the composition of the key changes (invalidates every cached result)


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, tuples as lists, -0.0 as 0.0.

    Floats are written with repr (shortest round-trip form), so 0.1 and 0.1000000001 differ
    but 0.1 computed twice is the same text. NaN and infinities are refused: they cannot be
    part of an identity.
    """
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite number {value!r} cannot be part of a cache key")
        return 0.0 if value == 0 else value
    if hasattr(value, "as_dict"):  # Sampling
        return _plain(value.as_dict())
    raise TypeError(f"cannot put a {type(value).__name__} into a cache key: {value!r}")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def key_components(
    *,
    recipe_key: str,
    fingerprints: Sequence[str],
    suite: str,
    suite_version: str,
    sampling: Mapping[str, Any] | Any,
    engine: str,
    suite_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The plain dictionary that is hashed; also stored beside each job for diagnostics."""
    if not recipe_key:
        raise ValueError("recipe_key is empty")
    if not suite or not suite_version:
        raise ValueError("suite name and version are required")
    if not engine:
        raise ValueError("engine kind is required")
    return {
        "schema": KEY_SCHEMA,
        "recipe": str(recipe_key),
        "fingerprints": [str(f) for f in fingerprints],
        "suite": str(suite),
        "suite_version": str(suite_version),
        "suite_options": _plain(dict(suite_options or {})),
        "sampling": _plain(sampling),
        "engine": str(engine),
    }


# Engine options that change what a model outputs, and so belong in the cache key.
OUTPUT_AFFECTING_ENGINE_OPTIONS = ("dtype",)


def engine_key(kind: str, options: Mapping[str, Any] | None = None) -> str:
    """The engine part of a cache key: the kind, plus any option that changes outputs
    ("vllm" runs a float32 checkpoint in bfloat16 on CPU; "vllm:dtype=float32" does not)."""
    extra = [f"{name}={options[name]}" for name in OUTPUT_AFFECTING_ENGINE_OPTIONS
             if options and options.get(name) not in (None, "auto")]
    return ":".join([kind, *extra])


def result_key(**components: Any) -> str:
    """sha256 hex of the canonical key components (see `key_components` for the arguments)."""
    return sha256_hex(canonical_json(key_components(**components)))


def key_from_components(components: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_json(components))


def diff_components(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two component dicts (why a job's key is stale)."""
    out = []
    for name in sorted(set(expected) | set(actual)):
        a, b = expected.get(name), actual.get(name)
        if canonical_json(a) != canonical_json(b):
            out.append(f"{name}: queued with {canonical_json(a)}, now {canonical_json(b)}")
    return out
