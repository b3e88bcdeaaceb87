"""The lab's tokenizer: byte-level BPE trained on the synthetic corpus, with a chat template.

Byte-level so that any text (Python indentation included) round-trips exactly; digits are split
one by one so arithmetic sees every digit. Saved in Hugging Face format (tokenizer.json +
tokenizer_config.json) so `AutoTokenizer` and vLLM load it and apply the chat template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

EOS = "<|endoftext|>"
PAD = "<|pad|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
SYSTEM = "<|system|>"
SPECIAL_TOKENS = (EOS, PAD, USER, ASSISTANT, SYSTEM)

# One user turn renders as "<|user|>\n{prompt}\n<|assistant|>\n"; the reply ends with EOS.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}" + SYSTEM + "\n{{ message['content'] }}\n"
    "{% elif message['role'] == 'user' %}" + USER + "\n{{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}" + ASSISTANT + "\n{{ message['content'] }}" + EOS + "\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + "\n{% endif %}"
)


def render_prompt(user_message: str) -> str:
    """What the chat template makes of one user message with the generation prompt."""
    return f"{USER}\n{user_message}\n{ASSISTANT}\n"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    """A byte-level BPE `tokenizers.Tokenizer` trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def to_hf(tok, model_max_length: int = 512):
    """Wrap a trained `tokenizers.Tokenizer` as a transformers fast tokenizer with the template."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=PAD, bos_token=EOS, unk_token=None,
        additional_special_tokens=[USER, ASSISTANT, SYSTEM], model_max_length=model_max_length,
        padding_side="left", clean_up_tokenization_spaces=False)
    hf.chat_template = CHAT_TEMPLATE
    return hf


def save(tok, out_dir: str | Path) -> None:
    """Write tokenizer.json and tokenizer_config.json (chat template inside) to `out_dir`."""
    to_hf(tok).save_pretrained(str(out_dir), save_jinja_files=False)


def load(path: str | Path):
    """The saved tokenizer as a transformers tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))
