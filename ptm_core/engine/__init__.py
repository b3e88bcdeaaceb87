"""Inference engines: a warm vLLM engine whose weights are swapped in place, and a transformers fallback."""
