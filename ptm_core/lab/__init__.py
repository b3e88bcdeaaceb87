"""The lab: a miniature of the Merge-to-Learn experiment that runs on a CPU.

A seeded synthetic world (general tasks G and three skills D), a byte-level BPE tokenizer,
a tiny Llama model, a nanoGPT-style training loop and the build that trains θ_pre, θ_G,
the skill models θ_D and the CFT/RT baselines. See docs/lab.md.
"""
