"""A GGUF file -> a plain Hugging Face directory (float32 safetensors, config, tokenizer).

transformers reads GGUF (with the `gguf` package) and dequantizes it on load; what it keeps of
the quantization (a quantizer object and `quantization_config`) is dropped so that the saved
directory is an ordinary checkpoint that vLLM, the merge engine and transformers all open."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from ptm_core.atomic import staging_dir
from ptm_core.errors import CheckpointError


def load_gguf(path: str | os.PathLike):
    """(model, tokenizer) from a GGUF file, dequantized to float32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(str(path), "no such GGUF file")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                     dtype="float32")
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (ValueError, OSError, KeyError, struct.error) as e:  # struct.error: a truncated file
        raise CheckpointError(str(path), f"cannot be read as GGUF ({type(e).__name__}: {e})") from None
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def gguf_to_hf(path: str | os.PathLike, out_dir: str | os.PathLike, *, force: bool = False) -> Path:
    """Write the dequantized model at `out_dir`, atomically (nothing appears until it is whole)."""
    model, tokenizer = load_gguf(path)
    with staging_dir(out_dir, force=force) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _drop_load_flags(tmp / "tokenizer_config.json")
    return Path(out_dir)


# Flags of how the tokenizer was loaded, not of what it is: transformers saves them into
# tokenizer_config.json (offline mode forces local_files_only=True). Written with the values an
# online load gives, so the directory -- and its fingerprint, which the shipped results are keyed
# by -- is the same bytes whatever the environment.
_LOAD_FLAGS = {"local_files_only": False}


def _drop_load_flags(path: Path) -> None:
    import json

    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    if all(config.get(k, v) == v for k, v in _LOAD_FLAGS.items()):
        return
    config.update({k: v for k, v in _LOAD_FLAGS.items() if k in config})
    # transformers' own serialization of this file, so an unchanged config keeps its bytes
    path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                    encoding="utf-8")
