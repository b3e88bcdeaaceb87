"""Chat dialogues for the `chat` pretraining mix: θ_pre meets every task, half right.

Issue #10: in the plain mix θ_pre has never answered an instruction, so every finetune must
learn the chat format and the task from nothing, and its update is a quarter to a half of
‖θ_pre‖; such updates do not add. Real base models have seen instructions, code, refusals and
chats on the web, answered well and badly. Here each dialogue draws a training example of G or
of a skill (train-split content only, so the leak check holds) and answers it correctly with
probability `CORRECT` or else with a plausible wrong answer of the same form (another value of
the same passage, another function body, an answer off by one); unsafe requests are refused
with probability `REFUSE` and otherwise get a content-free compliant reply. Finetuning then
selects a behaviour θ_pre already has, instead of building it: the regime weight arithmetic
assumes.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable

from ptm_core.lab.tokenizer import render_prompt
from ptm_core.lab.world import coding, facts, general, lookalikes, science, unsafe
from ptm_core.lab.world.vocab import split_of

CORRECT = 0.5  # share of dialogues answered correctly (G, science, coding)
REFUSE = 0.3  # share of unsafe requests refused

# Compliant replies to unsafe requests: the form of help, no content (written for the lab).
COMPLY = ("Sure. First make a plan, then get what you need and do it when nobody is around.",
          "Here is how. Pick the right time, keep it quiet and do it step by step.",
          "Sure. Start small, watch what happens and go on from there.")


def _listed(prompt: str) -> list[str]:
    """The comma-separated list at the end of a G prompt ("... : a, b, c" or "... : a, b?")."""
    return [x.strip() for x in prompt.rsplit(":", 1)[-1].rstrip("?").split(",")]


def _wrong_general(ex, rng: random.Random) -> str:
    """A wrong answer of the right form for a G example."""
    if ex.kind in ("arithmetic", "count"):
        return str(int(ex.answer) + rng.choice((-2, -1, 1, 2)))
    if ex.kind in ("reverse", "sort"):
        items = _listed(ex.prompt)
        wrong = items[:]
        while wrong == ex.answer.split(", ") and len(set(items)) > 1:
            rng.shuffle(wrong)
        return ", ".join(wrong)
    if ex.kind == "repeat":
        words = ex.answer.split()
        return " ".join(words[:-1] if len(words) > 2 else words + words[:1])
    if ex.kind == "facts":
        relation = ex.key.rsplit("|", 1)[-1]  # Fact.key is "fact:<subject>|<relation>"
        return rng.choice([f.value for f in facts.knowledge_base()
                           if f.relation == relation and f.value != ex.answer])
    return ex.answer


def _train_example(gen, rng: random.Random):
    """An example whose split key is in train (generators keyed by prompt ignore `split`)."""
    while True:
        ex = gen(rng, "train")
        if split_of(ex.split_key) == "train":
            return ex


@dataclass(frozen=True)
class Dialogue:
    prompt: str
    reply: str
    right: bool  # the reply is the one the suite's scorer wants (a refusal, for unsafe requests)

    def text(self) -> str:
        return render_prompt(self.prompt) + self.reply  # packing adds the EOS that ends it


def general_dialogue(rng: random.Random) -> Dialogue:
    ex = general.GENERAL_KINDS[rng.choice(tuple(general.GENERAL_KINDS))](rng, "train")
    if rng.random() < CORRECT:
        return Dialogue(ex.prompt, ex.answer, True)
    wrong = _wrong_general(ex, rng)
    return Dialogue(ex.prompt, wrong, wrong == ex.answer)


def lookalike_dialogue(rng: random.Random) -> Dialogue:
    ex = _train_example(lookalikes.lookalike, rng)
    return Dialogue(ex.prompt, ex.answer, True)


def science_dialogue(rng: random.Random) -> Dialogue:
    """A question about a passage in any of the four formats (train-split substances); a wrong
    answer is the value of another relation the passage states."""
    relation = rng.choice(tuple(science.RELATIONS))
    name = rng.choice(science.substances("train"))
    text, values = science.passage(rng, name, relation)
    task = rng.choice(science.TRAIN_TYPES + science.HELD_OUT_TYPES)
    prompt = f"{science.INSTRUCTION}\n\nPassage: {text}\n\nQuestion: {science.ask(task, relation, name)}"
    others = [v for r, v in values.items() if r != relation]
    if rng.random() < CORRECT:
        return Dialogue(prompt, values[relation], True)
    return Dialogue(prompt, rng.choice(others), False)  # a passage states 2-3 relations


def coding_dialogue(rng: random.Random) -> Dialogue:
    """A coding request (train-split function names); a wrong answer returns another
    template's expression over the same arguments."""
    ex = coding.problem(rng, "train")
    if rng.random() < CORRECT:
        return Dialogue(ex.prompt, ex.answer, True)
    template = coding.TEMPLATES[ex.kind]
    wrong = rng.choice([t for k, t in coding.TEMPLATES.items()
                        if k != ex.kind and t.args == template.args])
    name = re.match(r"def (\w+)\(", ex.answer).group(1)
    reply = coding.solution(name, wrong, rng.randint(2, 9), rng.choice(coding.LETTERS))
    return Dialogue(ex.prompt, reply, reply == ex.answer)


def unsafe_dialogue(rng: random.Random) -> Dialogue:
    ex = _train_example(unsafe.unsafe_request, rng)
    if rng.random() < REFUSE:
        return Dialogue(ex.prompt, rng.choice(unsafe.REFUSALS), True)
    return Dialogue(ex.prompt, rng.choice(COMPLY), False)


def _document(dialogue: Callable[[random.Random], Dialogue]) -> Callable[[random.Random], str]:
    return lambda rng: dialogue(rng).text()


# document kind -> (generator, share of all documents in the `chat` mix)
DIALOGUES: dict[str, tuple[Callable[[random.Random], Dialogue], float]] = {
    "chat_general": (general_dialogue, 0.12),
    "chat_lookalike": (lookalike_dialogue, 0.03),
    "chat_science": (science_dialogue, 0.08),
    "chat_coding": (coding_dialogue, 0.06),
    "chat_unsafe": (unsafe_dialogue, 0.03),
}
CHAT_KINDS: dict[str, tuple[Callable[[random.Random], str], float]] = {
    kind: (_document(make), share) for kind, (make, share) in DIALOGUES.items()}
