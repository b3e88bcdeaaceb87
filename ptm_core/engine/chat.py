"""Prompt formatting shared by every engine, so that all engines see the same token ids."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from transformers import AutoTokenizer, PreTrainedTokenizerBase


def load_tokenizer(model_dir: str | Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(str(model_dir))


def chat_token_ids(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[int]:
    """Token ids of `prompt` as one user turn followed by the assistant's turn opener.

    Models without a chat template (pretrained bases) get the plain prompt with the tokenizer's
    usual special tokens, so θ_pre can be evaluated with the same suites."""
    if not tokenizer.chat_template:
        return list(tokenizer(prompt)["input_ids"])
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                        add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut `text` before the earliest stop string (vLLM's behaviour: the stop is not included)."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


def decode_completion(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int],
                      stop: Sequence[str] = ()) -> str:
    """The text of generated ids, cut at the first stop string. Every engine decodes with this
    one function, so equal ids give equal text (vLLM's incremental detokenizer, for one, drops
    a trailing incomplete UTF-8 character that a plain decode shows as U+FFFD)."""
    return truncate_at_stop(tokenizer.decode(list(ids), skip_special_tokens=True), stop)
