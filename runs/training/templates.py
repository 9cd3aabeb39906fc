"""Chat templates: the one place where a prompt and a response become a model's turn text.

Used for training examples (the child), evaluation prompts (the generator) and the
dataset exports (`tunix_sft`, `chat`). Imports neither Django nor JAX, so the web
process, the worker and the training child all read the same strings.

Each family's template is the turn format its instruction-tuned checkpoints were
trained with: Gemma turns, ChatML for Qwen (`<|im_start|>`), Llama 3's header
blocks. The beginning-of-sequence token is not part of the text: the trainer adds
the tokenizer's own BOS id. `stop` lists the strings that end a model turn (the
sampler stops on their token ids when the tokenizer has them).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    label: str
    user: str  # "{prompt}" is replaced; ends where the model's answer starts
    answer: str  # "{response}" is replaced; ends with the end-of-turn marker
    stop: tuple[str, ...] = ()

    def head(self, prompt: str) -> str:
        """The prompt part: everything before the model's first answer token."""
        return self.user.replace("{prompt}", prompt)

    def tail(self, response: str) -> str:
        """The completion part: the answer and the end-of-turn marker."""
        return self.answer.replace("{response}", response)

    def text(self, prompt: str, response: str) -> str:
        return self.head(prompt) + self.tail(response)


GEMMA = ChatTemplate(
    "gemma",
    "Gemma turns (<start_of_turn>…)",
    "<start_of_turn>user\n{prompt}<end_of_turn>\n<start_of_turn>model\n",
    "{response}<end_of_turn>",
    stop=("<end_of_turn>",),
)
CHATML = ChatTemplate(
    "chatml",
    "ChatML, Qwen (<|im_start|>…)",
    "<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n",
    "{response}<|im_end|>",
    stop=("<|im_end|>", "<|endoftext|>"),
)
LLAMA3 = ChatTemplate(
    "llama3",
    "Llama 3 headers (<|start_header_id|>…)",
    "<|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "{response}<|eot_id|>",
    stop=("<|eot_id|>", "<|end_of_text|>"),
)
PLAIN = ChatTemplate("plain", "Plain (prompt, newline, response)", "{prompt}\n", "{response}")

TEMPLATES: dict[str, ChatTemplate] = {t.name: t for t in (GEMMA, CHATML, LLAMA3, PLAIN)}
DEFAULT = GEMMA.name
# A launch choice, never stored: resolved to the base model's family template (presets: Gemma turns).
AUTO = "auto"
AUTO_LABEL = "Auto: the base model's own (Gemma turns for presets)"

# The template each Hugging Face `model_type` was instruction-tuned with.
FAMILY_TEMPLATES: dict[str, str] = {
    "gemma3": GEMMA.name,
    "gemma3_text": GEMMA.name,
    "qwen3": CHATML.name,
    "qwen2": CHATML.name,
    "llama": LLAMA3.name,
}


def get(name: str) -> ChatTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"Unknown chat template {name!r}; use one of {', '.join(TEMPLATES)}.") from None


def for_family(model_type: str | None) -> str:
    """The template a family's checkpoints expect (Gemma turns when unknown)."""
    return FAMILY_TEMPLATES.get(model_type or "", DEFAULT)


def _around(pattern: str, slot: str) -> tuple[str, str]:
    before, _, after = pattern.partition(slot)
    return before, after


def as_head(template: str, prompt: str) -> tuple[str, str]:
    """(prompt part, bare prompt) of a prompt given either rendered in `template` or bare.

    A preference dataset's export carries its prompts already rendered; an already
    rendered one is kept as it is, a bare one is rendered.
    """
    t = get(template)
    before, after = _around(t.user, "{prompt}")
    if prompt.startswith(before) and prompt.endswith(after) and len(prompt) >= len(before) + len(after):
        return prompt, prompt[len(before) : len(prompt) - len(after)]
    return t.head(prompt), prompt


def as_tail(template: str, response: str) -> str:
    """The completion part of a response given either rendered (ending in the turn's end marker) or bare."""
    t = get(template)
    before, after = _around(t.answer, "{response}")
    if after and response.endswith(after) and response.startswith(before):
        return response
    return t.tail(response)


def render(template: str, prompt: str, response: str | None = None) -> tuple[str, str]:
    """(prompt part, completion part) of one example; the loss covers the completion only."""
    t = get(template)
    return t.head(prompt), "" if response is None else t.tail(response)
