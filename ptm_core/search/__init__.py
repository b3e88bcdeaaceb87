"""Search for good ω without the full grid: objective, surrogates, acquisition, predicted front
(pure math), the `search` command and the replay benchmark (docs/search.md)."""
