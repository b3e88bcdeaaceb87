"""Input models held in memory for the in-engine merge: loaded once, merged many times."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Iterable, Iterator, Mapping

import torch

from ptm_core.merge.checkpoint import Checkpoint


class ResidentSource:
    """A `TensorSource` over one model's tensors held in memory (on `device`, in `dtype`).

    Storing bf16 inputs on the GPU halves their footprint; `get` upcasts to float32 for the
    merge math, which is what the merge engine expects."""

    def __init__(self, name: str, tensors: Mapping[str, torch.Tensor]):
        self.name = name
        self._tensors = dict(tensors)

    @classmethod
    def load(cls, ref: str, device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32) -> "ResidentSource":
        with Checkpoint.open(ref) as ckpt:
            tensors = {name: ckpt.get(name).to(device=device, dtype=dtype)
                       for name in ckpt.tensor_names()}
        return cls(ref, tensors)

    def tensor_names(self) -> list[str]:
        return list(self._tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._tensors[name].shape)

    def get(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """Float32 tensor, or rows [r0, r1) of its first dimension (the merge engine's
        `TensorSource` protocol)."""
        t = self._tensors[name]
        return (t if rows is None else t[rows[0]:rows[1]]).to(torch.float32)

    def stored(self, name: str) -> torch.Tensor:
        """The tensor as held (the resident dtype, not a copy): never to be written to."""
        return self._tensors[name]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tensors.values())


class ResidentInputs:
    """The input models of one experiment, keyed by the reference a recipe names them by."""

    # Elements per input chunk of the swap's merge: larger than the exporter's (plan.
    # CHUNK_ELEMENTS), because resident float32 inputs are read as views, not upcast copies,
    # so a chunk costs no memory and each one costs ~10 Python-level torch calls. SmolLM2-135M,
    # interleaved in one engine: 256k 0.31 s per swap, 1M-4M and whole tensors 0.27-0.29 s,
    # 64k 0.52 s. Bounds the float32 copies of bf16 inputs at 16 MB per input and thread.
    chunk_elements = 4 * 1024 * 1024

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.device, self.dtype = device, dtype
        self.sources: dict[str, ResidentSource] = {}
        # merge outputs reused from swap to swap on the CPU, where fresh memory is paid in page
        # faults (SmolLM2-135M: ~80k per swap, a third of the merge); CUDA's allocator caches
        self._kept: dict[str, torch.Tensor] | None = {} if torch.device(device).type == "cpu" else None
        self._equal: dict[tuple, bool] = {}  # (refs, names) -> inputs bit-identical and finite
        self._ids: set[int] = set()  # id() of every resident tensor (holds)

    def ensure(self, refs: Iterable[str]) -> list[str]:
        """Load the models not yet resident; return the references that were loaded now."""
        loaded = []
        for ref in refs:
            if ref not in self.sources:
                self.sources[ref] = ResidentSource.load(ref, self.device, self.dtype)
                loaded.append(ref)
        if loaded:
            self._reindex()
        return loaded

    def drop(self, refs: Iterable[str]) -> None:
        refs = set(refs)
        for ref in refs:
            self.sources.pop(ref, None)
        self._equal = {k: v for k, v in self._equal.items() if not set(k[0]) & refs}
        self._reindex()

    def inputs_equal(self, group) -> bool:
        """Whether every input tensor of a merge group is bit for bit its base's, and finite
        (computed once per group: resident inputs never change). Finetunes that leave tensors
        untouched (LoRA: the embeddings and norms) make those tensors the same in every input."""
        from ptm_core.merge.methods import all_equal_to
        from ptm_core.merge.plan import all_finite

        key = (group.refs, group.names)
        if key not in self._equal:
            base, *rest = (self.sources[r].stored(n) for r, n in zip(group.refs, group.names))
            self._equal[key] = all_equal_to(base, rest) and all_finite(base)
        return self._equal[key]

    def holds(self, tensor: torch.Tensor) -> bool:
        """Whether `tensor` is one of the resident tensors themselves (never written to; a
        live object's id is unique, and resident tensors live while they are resident)."""
        return id(tensor) in self._ids

    def _reindex(self) -> None:
        self._ids = {id(src.stored(n)) for src in self.sources.values() for n in src.tensor_names()}

    def merged(self, recipe, num_layers: int | None, seed: int = 0, workers: int = 1,
               into: Mapping[str, torch.Tensor] | None = None
               ) -> Iterator[tuple[str, torch.Tensor]]:
        """The recipe's merged tensors, one at a time (HF checkpoint names, float32); merged in
        chunks of `chunk_elements` (for bf16 inputs: bounded float32 copies). On
        the CPU a chunked tensor lives in a buffer the next merge overwrites: consume (copy)
        each before merging again. `into`: tensors of these names (of their shape and device)
        are written there instead and yielded as that very tensor (views of a live model's
        parameters: the loader then has nothing to copy). `workers` > 1: tensors are merged
        on that many threads of one intra-op thread each, ahead of the consumer (which then
        overlaps with the merge), and torch's thread count is put back afterwards: no OpenMP
        barrier per chunk, which costs most when threads sleep soon (GOMP_SPINCOUNT) or cores
        are busy."""
        from ptm_core.errors import MergeError
        from ptm_core.merge.parallel import ordered_parallel, set_torch_threads, torch_threads
        from ptm_core.merge.plan import Outputs, merge_group, plan_groups

        out_layers = recipe.out_layers()
        if out_layers is not None and num_layers is not None and out_layers != num_layers:
            raise MergeError(f"the recipe's slices give {out_layers} layers; the engine serves "
                             f"{num_layers}: export it and load it as a new model instead")
        self.ensure(recipe.model_refs())
        sources = {ref: self.sources[ref] for ref in recipe.model_refs()}
        _check_tokenizer_options(recipe, sources)
        groups = plan_groups(recipe, sources, num_layers)
        outputs = Outputs(kept=self._kept, destinations=into)

        def merge(g):
            with torch.no_grad():
                return merge_group(recipe, sources, g, seed=seed, chunk_elements=self.chunk_elements,
                                   outputs=outputs, inputs_equal=self.inputs_equal)

        # with merge threads, the consumer too runs one thread: its copies go beside them
        with torch_threads(1) if workers > 1 else nullcontext():
            merged = ordered_parallel(merge, groups, workers, window=2 * workers,
                                      initializer=lambda: set_torch_threads(1))
            for g, tensor in zip(groups, merged):
                yield g.name, tensor


def _check_tokenizer_options(recipe, sources) -> None:
    """The swap replaces weights in a model that keeps its tokenizer and shapes: a recipe's
    chat template cannot be served, and a tokenizer option only when the output vocabulary is
    every input's own, token for token (then the merge is the same as without it)."""
    from ptm_core.errors import MergeError
    from ptm_core.merge.checkpoint import resolve_model_dir
    from ptm_core.merge.vocab import build_vocabulary, is_vocab_tensor

    if getattr(recipe, "chat_template", None) is not None:
        raise MergeError("chat_template: the in-place swap serves the engine's own tokenizer and "
                         "chat template; export the merge to write another template")
    vs = recipe.vocabulary_source() if hasattr(recipe, "vocabulary_source") else None
    if vs is None:
        return
    option = "tokenizer_source" if recipe.tokenizer_source is not None else "tokenizer"
    # the models the export reads for the vocabulary, the cache key's (recipe.all_refs())
    vocab = build_vocabulary(recipe, {r: resolve_model_dir(r) for r in recipe.all_refs()})
    rows = {}
    for ref, src in sources.items():
        name = next((n for n in src.tensor_names() if is_vocab_tensor(n)), None)
        rows[ref] = src.shape(name)[0] if name else None
    if not vocab.is_identity(rows):
        raise MergeError(f"{option} {vs[0]!r}: the merged vocabulary ({vocab.size} tokens) is not "
                         f"the inputs' own ({', '.join(sorted({str(r) for r in rows.values()}))} "
                         "rows, token for token); the in-place swap cannot resize or reorder "
                         "embed_tokens / lm_head: export the merge and load it as a new model")
