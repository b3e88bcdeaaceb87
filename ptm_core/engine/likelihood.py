"""The log-likelihood of reference answers: a continuous signal of a skill that exact match
and pass@k hide (a merge can move a reference answer from improbable to likely long before it
becomes the greedy reply).

Each (prompt, reference) pair is scored as the engines see a prompt and the lab trains on an
example: the prompt in the chat format (`chat_token_ids`), the reference tokenized on its own,
then EOS; only the reference's tokens (EOS included) are scored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ptm_core.engine.chat import chat_token_ids


@dataclass(frozen=True)
class NLL:
    mean: float  # mean negative log-likelihood per reference token (nats)
    tokens: int  # reference tokens scored
    items: int  # pairs scored
    too_long: int = 0  # pairs left out: longer than the model's context


def encode_pair(tokenizer, prompt: str, reference: str) -> tuple[list[int], int]:
    """Token ids of prompt + reference (+ EOS), and how many of them are the prompt's."""
    head = chat_token_ids(tokenizer, prompt)
    tail = list(tokenizer(reference, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        tail.append(int(tokenizer.eos_token_id))
    return head + tail, len(head)


@torch.no_grad()
def reference_nll(model, tokenizer, pairs: Sequence[tuple[str, str]], *,
                  batch_size: int = 16) -> NLL:
    """Mean per-token NLL of the references given their prompts under `model`, over all pairs
    (a token-weighted mean). Batches are right-padded, so every real token keeps its position
    and, attention being causal, never sees a pad."""
    limit = getattr(model.config, "max_position_embeddings", None)
    encoded = [encode_pair(tokenizer, p, r) for p, r in pairs]
    fits = [e for e in encoded if limit is None or len(e[0]) <= limit]
    fits.sort(key=lambda e: len(e[0]))  # similar lengths together: little padding
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, tokens = 0.0, 0
    for start in range(0, len(fits), batch_size):
        batch = fits[start:start + batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for row, (seq, n_prompt) in enumerate(batch):
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
            labels[row, n_prompt:len(seq)] = torch.tensor(seq[n_prompt:])
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        targets = labels[:, 1:].to(device)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.size(-1)), targets.reshape(-1),
            ignore_index=-100, reduction="sum")
        total += float(nll)
        tokens += int((targets != -100).sum())
    return NLL(total / tokens if tokens else float("nan"), tokens, len(fits),
               len(encoded) - len(fits))
