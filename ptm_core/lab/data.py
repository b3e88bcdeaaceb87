"""Token batches for training: packed corpus blocks for pretraining, padded chat examples
(loss on the assistant's tokens only) for instruction tuning. Pure functions of their inputs
and seed, so a run's batches are the same every time."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from ptm_core.lab.tokenizer import render_prompt
from ptm_core.lab.world.example import Example

IGNORE = -100  # label of tokens that carry no loss (prompt, padding)


@dataclass(frozen=True)
class Encoded:
    ids: tuple[int, ...]
    labels: tuple[int, ...]


def encode_examples(tokenizer, examples: Sequence[Example], eos_id: int) -> list[Encoded]:
    """Prompt rendered with the chat template, answer + EOS; the loss sees the answer only.

    Prompt and answer are tokenized separately, exactly as at inference, where the engine
    tokenizes the rendered prompt and the model generates the answer after it."""
    prompts = tokenizer([render_prompt(ex.prompt) for ex in examples], add_special_tokens=False).input_ids
    answers = tokenizer([ex.answer for ex in examples], add_special_tokens=False).input_ids
    out = []
    for p, a in zip(prompts, answers):
        a = list(a) + [eos_id]
        out.append(Encoded(tuple(p) + tuple(a), (IGNORE,) * len(p) + tuple(a)))
    return out


def pack_documents(tokenizer, documents: Iterable[str], eos_id: int, block: int,
                   n_blocks: int) -> tuple[list[list[int]], int]:
    """Concatenate documents, each followed by EOS, and cut into `n_blocks` blocks of `block`+1
    tokens (inputs and shifted targets overlap by one, as in nanoGPT). Also returns how many
    documents were read, so the corpus can be regenerated exactly (for the leak check)."""
    blocks: list[list[int]] = []
    buffer: list[int] = []
    docs = iter(documents)
    read = 0
    while len(blocks) < n_blocks:
        chunk = [next(docs) for _ in range(256)]
        read += len(chunk)
        for ids in tokenizer(chunk, add_special_tokens=False).input_ids:
            buffer += list(ids) + [eos_id]
        while len(buffer) >= block + 1 and len(blocks) < n_blocks:
            blocks.append(buffer[: block + 1])
            buffer = buffer[block:]
    return blocks, read


def sft_batches(examples: Sequence[Encoded], batch_size: int, epochs: int, seed: int,
                group: int = 16) -> list[list[Encoded]]:
    """All batches of a run in order: per epoch, shuffle, then group examples of similar
    length (within windows of `group` batches) to spend little compute on padding."""
    rng = random.Random(seed)
    batches: list[list[Encoded]] = []
    for _ in range(epochs):
        order = list(examples)
        rng.shuffle(order)
        window = batch_size * group
        epoch_batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start:start + window], key=lambda e: len(e.ids))
            epoch_batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
        rng.shuffle(epoch_batches)
        batches += epoch_batches
    return batches


def collate(batch: Sequence[Encoded], pad_id: int):
    """Right-padded input ids and labels aligned with them (the loop shifts labels by one).

    No attention mask is needed: with right padding and causal attention no real token ever
    attends to a pad."""
    import torch

    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.ids)
        ids[row, :n] = torch.tensor(e.ids)
        labels[row, :n] = torch.tensor(e.labels)
    return ids, labels


def block_batches(blocks: Sequence[list[int]], batch_size: int, seed: int) -> Iterator:
    """Pretraining batches: (inputs, targets) of shuffled packed blocks."""
    import torch

    order = list(range(len(blocks)))
    random.Random(seed).shuffle(order)
    for start in range(0, len(order) - batch_size + 1, batch_size):
        t = torch.tensor([blocks[i] for i in order[start:start + batch_size]], dtype=torch.long)
        yield t[:, :-1], t[:, 1:]
