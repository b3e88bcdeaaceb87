"""Write a merged model to disk as a Hugging Face checkpoint, streaming tensor by tensor.

Memory stays at a few tensors: inputs are read one tensor at a time and each merged tensor is
written straight into its shard (the shard's header is computed up front from the shapes).
The output is assembled in a temporary directory beside OUT_DIR and renamed into place only
when complete, so an error, Ctrl-C or SIGTERM never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import shutil
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Iterator, Mapping, Optional

import torch
from tqdm import tqdm

from ptm_core import __version__
from ptm_core.atomic import staging_dir
from ptm_core.errors import PTMError
from ptm_core.merge.card import model_card
from ptm_core.merge.checkpoint import (INDEX_NAME, Checkpoint, is_within, model_fingerprint,
                                      resolve_model_dir)
from ptm_core.merge.parallel import ordered_parallel, torch_threads
from ptm_core.merge.plan import chunk_rows, merge_rows, plan_groups
from ptm_core.merge.recipe import Recipe
from ptm_core.merge.safetensors_io import OutTensor, write_safetensors
from ptm_core.merge.vocab import (TOKENIZER_FILES, VocabularySources, build_vocabulary,
                                  save_tokenizer, writes_tokenizer)

DEFAULT_SHARD_BYTES = 2 * 1024**3
DEFAULT_WORKERS = 2  # merge threads, one per core of the machines this was tuned on
RECIPE_NAME = "mergekit_config.yml"  # the name mergekit-yaml gives the recipe it writes
_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16,
                 "bfloat16": torch.bfloat16, "float64": torch.float64}


def plan_shards(entries: list[OutTensor], max_bytes: int) -> list[list[OutTensor]]:
    """Greedy contiguous sharding; a tensor larger than max_bytes gets a shard of its own."""
    shards: list[list[OutTensor]] = [[]]
    size = 0
    for e in entries:
        if shards[-1] and size + e.nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(e)
        size += e.nbytes
    return shards


def export(recipe: Recipe, out_dir: str | Path, *, force: bool = False, seed: int = 0,
           shard_bytes: int = DEFAULT_SHARD_BYTES, scores: Optional[Mapping[str, float]] = None,
           progress: bool = False, workers: int = DEFAULT_WORKERS) -> Path:
    """Merge `recipe` into `out_dir` (created atomically) and return its resolved path."""
    out = output_path(out_dir)
    with ExitStack() as stack:
        ckpts = {}
        for ref in recipe.model_refs():
            ckpts[ref] = stack.enter_context(Checkpoint.open(ref))
        for ref, c in ckpts.items():
            if is_within(out, c.path) or is_within(c.path, out):
                raise PTMError(f"output {out} overlaps input model {ref!r} ({c.path}); "
                               "choose a directory outside every input")
        if out.exists() and not force:
            raise PTMError(f"output {out} already exists; pass --force to replace it")
        if out.exists() and not out.is_dir():
            raise PTMError(f"output {out} exists and is not a directory; --force replaces only "
                           "a directory")
        template = ckpts[recipe.template_model()]
        paths = {ref: c.path for ref, c in ckpts.items()}
        for ref in recipe.all_refs():  # and a model read for its tokenizer only
            if ref not in paths:
                paths[ref] = resolve_model_dir(ref)
        vocab = build_vocabulary(recipe, paths) if recipe.vocabulary_source() else None
        sources = VocabularySources(vocab, ckpts) if vocab is not None else ckpts
        groups = plan_groups(recipe, sources, template.num_layers)
        dtype_name = recipe.out_dtype or recipe.dtype
        out_dtype = _TORCH_DTYPES[dtype_name] if dtype_name else template.main_dtype
        entries = [OutTensor(g.name, out_dtype, sources[g.refs[0]].shape(g.names[0])) for g in groups]
        shards = plan_shards(entries, shard_bytes)

        with staging_dir(out, force=force) as tmp:
            bar = tqdm(total=sum(e.nbytes for e in entries), desc="merging", unit="B",
                       unit_scale=True, disable=not progress, file=sys.stderr)

            merged = merged_chunks(recipe, sources, groups, [e.shape for e in entries], seed, workers)

            def produce(entry: OutTensor):
                for _ in chunk_rows(recipe, entry.shape):
                    yield next(merged)
                bar.update(entry.nbytes)

            files = _shard_files(len(shards))
            with torch_threads(1):
                for fname, shard in zip(files, shards):
                    write_safetensors(tmp / fname, shard, produce)
            bar.close()
            if len(shards) > 1:
                index = {"metadata": {"total_size": sum(e.nbytes for e in entries)},
                         "weight_map": {e.name: f for f, s in zip(files, shards) for e in s}}
                (tmp / INDEX_NAME).write_text(json.dumps(index, indent=2))
            own_tokenizer = writes_tokenizer(recipe)
            _copy_support(template, tmp, dtype_name or _dtype_name(out_dtype), recipe.out_layers(),
                          vocab_size=vocab.size if vocab is not None else None,
                          skip=TOKENIZER_FILES if own_tokenizer else frozenset())
            if own_tokenizer:
                save_tokenizer(recipe, vocab, template.path, paths, tmp)
            (tmp / RECIPE_NAME).write_text(recipe.to_yaml())
            # every model the result depends on, with the fingerprints the cache key has
            inputs = {ref: ckpts[ref].fingerprint() if ref in ckpts else model_fingerprint(ref)
                      for ref in recipe.all_refs()}
            (tmp / "README.md").write_text(model_card(
                recipe, inputs, template=recipe.template_model(), seed=seed, scores=scores,
                version=__version__))
    return out


def merged_chunks(recipe: Recipe, sources, groups: list, shapes: list[tuple[int, ...]],
                  seed: int, workers: int) -> Iterator[torch.Tensor]:
    """The exporter's stream: every group's merged float32 row chunks (chunk_rows of its
    shape), in order, merged on `workers` threads ahead of the consumer."""
    tasks = [(g, rows) for g, shape in zip(groups, shapes) for rows in chunk_rows(recipe, shape)]
    return ordered_parallel(lambda task: merge_rows(recipe, sources, task[0], seed, task[1]),
                            tasks, workers)


def output_path(out_dir: str | Path) -> Path:
    """OUT_DIR made absolute with its parent resolved but not OUT_DIR itself: a symlink there
    is refused, since resolving it would make --force replace the link's target."""
    p = Path(out_dir).expanduser().absolute()
    if p.is_symlink():
        raise PTMError(f"output {p} is a symbolic link; refusing to write through it (name a "
                       "directory that is not a link)")
    if p.name in ("", ".", ".."):
        return p.resolve()
    return p.parent.resolve() / p.name


def _shard_files(n: int) -> list[str]:
    if n == 1:
        return ["model.safetensors"]
    return [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]


def _dtype_name(dtype: torch.dtype) -> str:
    return next(k for k, v in _TORCH_DTYPES.items() if v == dtype)


def _copy_support(template: Checkpoint, dest: Path, dtype_name: str,
                  num_layers: Optional[int] = None, vocab_size: Optional[int] = None,
                  skip: frozenset[str] = frozenset()) -> None:
    """Config, generation config and tokenizer files (but those in `skip`) from the template
    model; the config's dtype is set to what was written, its layer count to the output's
    (slices:) and its vocab_size to the output vocabulary's (tokenizer options)."""
    for src in template.support_files():
        if src.name in skip:
            continue
        if src.name == "config.json":
            cfg = dict(template.config)
            keys = [k for k in ("dtype", "torch_dtype") if k in cfg] or ["dtype"]
            cfg.update({k: dtype_name for k in keys})
            if num_layers is not None:
                key = next((k for k in ("num_hidden_layers", "n_layer") if k in cfg), "num_hidden_layers")
                cfg[key] = num_layers
            if vocab_size is not None:
                cfg["vocab_size"] = vocab_size
            (dest / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        else:
            shutil.copy2(src, dest / src.name)
