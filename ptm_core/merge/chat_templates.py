"""A recipe's `chat_template:` as MergeKit 0.1.5 reads it (merge.py, `_set_chat_template`).

The value is `auto` (the inputs' most common template, merge/vocab.py), one of the names of the
Jinja files MergeKit ships as package data (`mergekit/_data/chat_templates/NAME.jinja`: chatml,
llama3, ...), or a template's own text. The named templates are read from the installed
mergekit package (a pinned requirement), not copied here, so a name means exactly what it means
to `mergekit-yaml`. Unlike MergeKit, which fails only when it saves the tokenizer after the
merge, a value that is none of these is refused when the recipe is read.
"""

from __future__ import annotations

from importlib import resources
from typing import Optional

AUTO = "auto"
_PACKAGE = "mergekit._data.chat_templates"
_SUFFIX = ".jinja"


def _folder():
    try:
        return resources.files(_PACKAGE)
    except ModuleNotFoundError:  # mergekit not installed: no names
        return None


def names() -> tuple[str, ...]:
    """The template names the installed mergekit ships, sorted (empty without mergekit)."""
    folder = _folder()
    if folder is None:
        return ()
    return tuple(sorted(p.name[:-len(_SUFFIX)] for p in folder.iterdir()
                        if p.name.endswith(_SUFFIX) and p.is_file()))


def looks_like_name(value: str) -> bool:
    """MergeKit's test for a value that names a template rather than being one."""
    return len(value) < 256 and "\n" not in value and "{" not in value


def is_text(value: str) -> bool:
    """MergeKit's test for a template's text: at least 20 characters with a '{'."""
    return len(value) >= 20 and "{" in value


def check(value: str) -> None:
    """Raise ValueError (listing the names) unless `value` is auto, a name or a template."""
    if value == AUTO or (looks_like_name(value) and value in names()) \
            or (not looks_like_name(value) and is_text(value)):
        return
    known = names()
    listed = (f"one of MergeKit's template names ({', '.join(known)})" if known else
              "a MergeKit template name (none available: the mergekit package is not installed)")
    shown = value if len(value) <= 60 else value[:60] + "..."
    raise ValueError(f"chat_template {shown!r} is neither {AUTO!r}, {listed}, nor a Jinja "
                     "template's text (20 characters or more, with '{')")


def text(value: str) -> Optional[str]:
    """The template a name stands for (the file's text, as MergeKit reads it), the value itself
    when it is a template's text; None for auto (resolved against the inputs in vocab.py)."""
    if value == AUTO:
        return None
    if looks_like_name(value):
        folder = _folder()
        if folder is None or value not in names():
            check(value)  # raises, naming the templates there are
        return folder.joinpath(value + _SUFFIX).read_text(encoding="utf-8")
    return value
