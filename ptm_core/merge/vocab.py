"""The output vocabulary of a recipe with `tokenizer_source:` or `tokenizer:` (MergeKit 0.1.5's
tokenizer/build.py and tokenizer/embed.py).

With either option MergeKit builds the output tokenizer (the base model's, a named model's, or
the union of all inputs' vocabularies), maps every input's token-indexed tensors (embed_tokens,
lm_head) onto it row by row before the merge, fills tokens an input lacks (from the one model
that has it, the base, the inputs' mean, or as `tokens:` says), and writes the tokenizer and a
config whose vocab_size is the new vocabulary's. This module does the same, once per recipe:

- `build_vocabulary(recipe, paths)` -> `Vocabulary` (the tokenizer and, per input, out id ->
  input id or -1);
- `Vocabulary.permute(name, tensors)` -> every input's tensor in the output vocabulary;
- `VocabularySources` wraps the merge's `TensorSource`s so the planner and merge loop see
  inputs that already share the output vocabulary.

Tensors are token-indexed by name (`is_vocab_tensor`): a Llama-style checkpoint's
`embed_tokens.weight` and `lm_head.weight` (vocabulary along rows).
"""

from __future__ import annotations

import json
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from ptm_core.errors import MergeError
from ptm_core.merge import chat_templates

VOCAB_SUFFIXES = ("embed_tokens.weight", "lm_head.weight", "wte.weight", "embed_out.weight")


def is_vocab_tensor(name: str) -> bool:
    return any(name == s or name.endswith("." + s) for s in VOCAB_SUFFIXES)


def _config_vocab_size(path: Path) -> Optional[int]:
    try:
        v = json.loads((path / "config.json").read_text()).get("vocab_size")
    except (OSError, ValueError):
        return None
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _load_tokenizer(path: Path, ref: str):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(str(path), use_fast=True)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds
        raise MergeError(f"model {ref!r}: cannot load its tokenizer ({type(e).__name__}: "
                         f"{str(e)[:200]})") from None


def _stripped(tok, vocab_size: Optional[int], ref: str):
    """The tokenizer without tokens at ids >= the model's vocab_size (MergeKit's
    get_stripped_tokenizer)."""
    vocab_size = vocab_size or len(tok.get_vocab())
    unused = [t for t, i in tok.get_vocab().items() if i >= vocab_size]
    if not unused:
        return tok
    import tokenizers
    data = json.loads(tok._tokenizer.to_str())
    if not tok.is_fast or data["model"]["type"] != "BPE":
        raise MergeError(f"model {ref!r}: its tokenizer has tokens beyond vocab_size and is not "
                         "a fast BPE tokenizer; it cannot be stripped for a vocabulary merge")
    data["added_tokens"] = [e for e in data["added_tokens"] if e["id"] < vocab_size]
    gone = set(unused)
    for t in unused:
        data["model"]["vocab"].pop(t, None)
    data["model"]["merges"] = [m for m in data["model"]["merges"]
                               if not set(m.split(" ") if isinstance(m, str) else m) & gone]
    tok._tokenizer = tokenizers.Tokenizer.from_str(json.dumps(data))
    return tok


def _union(base_tok, toks: Mapping[str, Any], sizes: Mapping[str, Optional[int]]):
    """The base tokenizer plus every other input's tokens (MergeKit's build_union_tokenizer;
    its models beyond the base come in a set's order, ours in the recipe's)."""
    from transformers import AutoTokenizer
    out_vocab: dict[str, int] = {}
    out_added: dict[str, Any] = {}
    for ref, tok in toks.items():
        size = sizes[ref] or tok.vocab_size
        added = tok.added_tokens_decoder
        added_names = {info.content for info in added.values()}
        for t, i in tok.get_vocab().items():
            if i >= size or t in added_names or t in out_vocab:
                continue
            out_vocab[t] = len(out_vocab)
        for i, info in added.items():
            if i < size and info.content not in out_added:
                out_added[info.content] = info
    with tempfile.TemporaryDirectory() as d:  # a copy: the base's tokenizer stays as it was
        base_tok.save_pretrained(d)
        res = AutoTokenizer.from_pretrained(d, use_fast=True)
    base_vocab = base_tok.get_vocab()
    for t in out_vocab:
        if t not in out_added and t not in base_vocab:
            res.add_tokens(t)
    for info in out_added.values():
        res.add_tokens(info)
    return res


@dataclass
class Vocabulary:
    tokenizer: Any  # transformers tokenizer of the output
    size: int  # rows of the output's token-indexed tensors (padded to pad_to_multiple_of)
    permutations: dict[str, dict[int, int]]  # input ref -> {out id: input id, or -1}
    base: Optional[str]
    tokens: dict[str, Any] = field(default_factory=dict)  # recipe `tokenizer.tokens`
    original: dict[str, dict[str, int]] = field(default_factory=dict)  # input ref -> vocab

    def is_identity(self, rows: Mapping[str, int]) -> bool:
        """True when every input's rows are already the output's, in order (a merge with this
        vocabulary gives the same tensors as one without)."""
        if self.tokens:
            return False
        return all(rows.get(ref) == self.size and len(p) == self.size
                   and all(p.get(i) == i for i in range(self.size))
                   for ref, p in self.permutations.items())

    def permute(self, name: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each input's token-indexed tensor in the output vocabulary (MergeKit's
        PermutedVocabulary on axis 0)."""
        vocab = self.tokenizer.get_vocab()
        models = list(tensors)
        perms = {m: self.permutations[m] for m in models}
        first = tensors[models[0]]
        shape = first.shape[1:]
        if any(t.shape[1:] != shape for t in tensors.values()):
            raise MergeError(f"tensor {name!r}: the models' non-vocabulary dimensions differ")
        configs = dict(self.tokens)
        average = self._assign_sources(perms, models, vocab, configs)
        defaults: dict[str, torch.Tensor] = {}
        for tok, tid in vocab.items():
            cfg = configs.get(tok)
            if not (cfg is not None and cfg.force) and all(perms[m][tid] >= 0 for m in models):
                continue
            if tok in average:
                emb = torch.zeros(shape, dtype=first.dtype)
                count = 0
                for m in models:
                    if perms[m][tid] >= 0:
                        emb = emb + tensors[m][perms[m][tid]]
                        count += 1
                emb /= count
            elif cfg is not None:
                emb = self._default(name, tensors, perms, tok, tid, cfg)
            else:
                continue
            defaults[tok] = emb
        out = {}
        for m in models:
            p, old = perms[m], tensors[m]
            new = torch.zeros((self.size, *shape), dtype=first.dtype)
            for tok, tid in vocab.items():
                force = tok in configs and configs[tok].force
                if p[tid] >= 0 and not force:
                    new[tid] = old[p[tid]]
                elif tok in defaults:
                    new[tid] = defaults[tok]
            if self.size > len(vocab):  # padding rows: the mean embedding
                new[len(vocab):] = torch.mean(new[:len(vocab)], dim=0)
            out[m] = new
        return out

    def _assign_sources(self, perms, models, vocab, configs) -> set[str]:
        from ptm_core.merge.recipe import TokenSetting
        average = set()
        for tok, tid in vocab.items():
            if tok in configs:
                continue
            has = [perms[m][tid] >= 0 for m in models]
            n = sum(has)
            if n == 1:
                configs[tok] = TokenSetting(source=models[has.index(True)])
            elif n == 0:
                configs[tok] = TokenSetting(source={"kind": "zero"})
            elif self.base in models and perms[self.base][tid] >= 0:
                configs[tok] = TokenSetting(source=self.base)
            else:
                average.add(tok)
        return average

    def _default(self, name, tensors, perms, tok, tid, cfg) -> torch.Tensor:
        src = cfg.source
        if src is None:
            raise MergeError(f"tokenizer.tokens[{tok!r}]: force without a source")
        if not isinstance(src, str) and src.kind == "zero":
            t = next(iter(tensors.values()))
            return t.new_zeros(t.shape[1:])
        model = src if isinstance(src, str) else src.model
        if model not in tensors:
            raise MergeError(f"tokenizer.tokens[{tok!r}]: model {model!r} is not an input of "
                             f"tensor {name!r}")
        if isinstance(src, str):
            if perms[model][tid] < 0:
                raise MergeError(f"tokenizer.tokens[{tok!r}]: model {model!r} has no token {tok!r}")
            return tensors[model][perms[model][tid]]
        sid = src.token_id
        if sid is None:
            sid = self.original.get(model, {}).get(src.token)
            if sid is None:
                raise MergeError(f"tokenizer.tokens[{tok!r}]: model {model!r} has no token "
                                 f"{src.token!r}")
        if not 0 <= sid < tensors[model].shape[0]:
            raise MergeError(f"tokenizer.tokens[{tok!r}]: token_id {sid} is out of range for "
                             f"model {model!r}")
        return tensors[model][sid]


def build_vocabulary(recipe, paths: Mapping[str, Path]) -> Vocabulary:
    """The output tokenizer and each input's permutation for a recipe with a tokenizer
    option; `paths` maps every model reference of the recipe (and a named tokenizer source)
    to its directory."""
    source, tokens, pad = recipe.vocabulary_source()
    refs = recipe.model_refs()
    base = recipe.base_model or refs[0]
    sizes = {r: _config_vocab_size(paths[r]) for r in refs}
    base_tok = _stripped(_load_tokenizer(paths[base], base), sizes[base], base)
    toks = {base: base_tok}
    for r in refs:
        if r != base:
            toks[r] = _load_tokenizer(paths[r], r)
    if source == "base":
        out = base_tok
    elif source == "union":
        out = _union(base_tok, toks, sizes)
    else:
        out = _load_tokenizer(paths[source], source)
    have = set(out.get_vocab())
    for t in tokens:
        if t not in have:
            out.add_tokens(t)
            have.add(t)
    vocab = out.get_vocab()
    perms = {}
    for r in refs:
        mv = toks[r].get_vocab()
        size = sizes[r] or len(mv)
        p = {}
        for t, new in vocab.items():
            old = mv.get(t, -1)
            if old < size:
                p[new] = old
        perms[r] = p
    n = len(vocab)
    if pad and n % pad:
        n = (n // pad + 1) * pad
    for r, p in perms.items():  # MergeKit skips out-of-range ids, then fails on the lookup
        if len(p) != len(vocab):
            raise MergeError(f"model {r!r}: its tokenizer has ids beyond its vocab_size for "
                             "tokens of the output vocabulary")
    return Vocabulary(out, n, perms, recipe.base_model, dict(tokens),
                      {r: t.get_vocab() for r, t in toks.items()})


class VocabularySources:
    """The merge's inputs as seen in the output vocabulary: token-indexed tensors are
    permuted, everything else passes through. Tokens an input lacks are filled from the
    models that feed the same output tensor (MergeKit's gather: in a slices: recipe, the
    first slice's sources for the embeddings and the last's for the head), so `for_refs`
    gives the view for one output tensor's inputs; permutations are cached per tensor."""

    def __init__(self, vocab: Vocabulary, sources: Mapping[str, Any],
                 refs: Optional[tuple[str, ...]] = None, _shared: Optional[dict] = None):
        self.vocab = vocab
        self.inner = dict(sources)
        self.refs = refs
        self._shared = _shared if _shared is not None else {"cache": {}, "lock": threading.Lock()}

    def for_refs(self, refs) -> "VocabularySources":
        return VocabularySources(self.vocab, self.inner, tuple(dict.fromkeys(refs)), self._shared)

    def __getitem__(self, ref: str) -> "_Permuted":
        return _Permuted(self, ref)

    def __contains__(self, ref: object) -> bool:
        return ref in self.inner

    def keys(self):
        return self.inner.keys()

    def permuted(self, name: str) -> dict[str, torch.Tensor]:
        refs = self.refs if self.refs is not None else tuple(self.inner)
        key = (name, refs)
        cache = self._shared["cache"]
        with self._shared["lock"]:
            if key not in cache:
                have = [r for r in refs if name in self.inner[r].tensor_names()]
                if len(cache) >= 2:  # embed_tokens and lm_head: a few tensors at most
                    cache.pop(next(iter(cache)))
                cache[key] = self.vocab.permute(name, {r: self.inner[r].get(name) for r in have})
            return cache[key]


class _Permuted:
    def __init__(self, owner: VocabularySources, ref: str):
        self.owner, self.ref = owner, ref
        self.src = owner.inner[ref]
        self.name = self.src.name

    def tensor_names(self) -> list[str]:
        return self.src.tensor_names()

    def shape(self, name: str) -> tuple[int, ...]:
        s = self.src.shape(name)
        return (self.owner.vocab.size, *s[1:]) if is_vocab_tensor(name) else s

    def get(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        if not is_vocab_tensor(name):
            return self.src.get(name, rows)
        t = self.owner.permuted(name)[self.ref]
        return t if rows is None else t[rows[0]:rows[1]]


# Files a tokenizer is saved as; a merge that writes its own tokenizer copies none of these.
TOKENIZER_FILES = frozenset({
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json"})


def writes_tokenizer(recipe) -> bool:
    """Whether the export saves a tokenizer of its own (a tokenizer option or a chat
    template) instead of copying the template model's tokenizer files."""
    return recipe.vocabulary_source() is not None or recipe.chat_template is not None


def chat_template_of(recipe, paths: Mapping[str, Path]) -> Optional[str]:
    """The recipe's chat template: its text, the text of the MergeKit template it names, or
    with 'auto' the most common template among the inputs' tokenizers (None: no input has
    one, or the recipe sets none)."""
    if recipe.chat_template is None:
        return None
    if recipe.chat_template != chat_templates.AUTO:
        return chat_templates.text(recipe.chat_template)
    from collections import Counter
    found = []
    for ref in recipe.model_refs():
        try:
            t = _load_tokenizer(paths[ref], ref).chat_template
        except MergeError:
            continue
        if isinstance(t, dict):
            t = t.get("default")
        if t:
            found.append(t.strip())
    return Counter(found).most_common(1)[0][0] if found else None


def save_tokenizer(recipe, vocab: Optional[Vocabulary], template_dir: Path,
                   paths: Mapping[str, Path], dest: Path) -> None:
    """Write the output tokenizer into `dest`: the built vocabulary's, else the template
    model's re-serialized, with the recipe's chat template set."""
    tok = vocab.tokenizer if vocab is not None else _load_tokenizer(template_dir, str(template_dir))
    template = chat_template_of(recipe, paths)
    if template is not None:
        tok.chat_template = template
    tok.save_pretrained(str(dest))
