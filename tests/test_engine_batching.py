from ptm_core.engine.vllm_engine import prefill_groups

import pytest


def test_groups_fit_the_token_and_sequence_budgets():
    lengths = [30, 30, 30, 30, 30]
    groups = prefill_groups(lengths, n=10, max_tokens=700, max_seqs=1000)
    assert groups == [range(0, 2), range(2, 4), range(4, 5)]
    assert prefill_groups(lengths, n=1, max_tokens=10_000, max_seqs=2) == [
        range(0, 2), range(2, 4), range(4, 5)]
    assert prefill_groups(lengths, n=1, max_tokens=10_000, max_seqs=100) == [range(0, 5)]
    assert prefill_groups([], n=3, max_tokens=10, max_seqs=10) == []


def test_a_prompt_that_cannot_fit_is_an_error():
    with pytest.raises(ValueError, match="max_num_batched_tokens"):
        prefill_groups([500], n=10, max_tokens=4096, max_seqs=256)
