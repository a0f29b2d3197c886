"""Grounding DINO's text side without torch or transformers: a prompt's phrases, their tokens (the
checkpoint's own fast tokenizer, through the `tokenizers` library) and which phrase each token belongs to.

A prompt is phrases separated by dots, "person . forklift . pallet": the text the model reads is the
phrases lower-cased and joined as transformers' processor joins a list of candidate labels ("person.
forklift. pallet."), so a node and `processor(text=[phrases])` feed the network the same tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vision_factory.errors import ConfigError


def phrases(prompt: str) -> tuple[str, ...]:
    """The prompt's phrases, lower-cased, in order; ConfigError when it has none."""
    found = tuple(part.strip().lower() for part in prompt.split(".") if part.strip())
    if not found:
        raise ConfigError(f"prompt '{prompt}' names nothing to detect: give phrases separated by dots, "
                          f"e.g. 'person . forklift'")
    return found


@dataclass(frozen=True)
class Prompt:
    """A tokenised prompt: the network's text inputs and, per token, the index of its phrase (-1 for the
    special tokens and the dots between phrases)."""

    phrases: tuple[str, ...]
    input_ids: np.ndarray  # (1, tokens) int64, as are the two below
    token_type_ids: np.ndarray
    attention_mask: np.ndarray
    phrase_of_token: np.ndarray  # (tokens,) int64


class PromptTokenizer:
    """Tokenises prompts with a checkpoint's tokenizer (its tokenizer.json text), for at most
    `max_tokens` tokens (the model's max_text_len)."""

    def __init__(self, tokenizer_json: str, max_tokens: int):
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        self.max_tokens = max_tokens

    def __call__(self, prompt: str) -> Prompt:
        """The prompt tokenised; ConfigError when it has no phrase or too many tokens for the model."""
        names = phrases(prompt)
        text = ". ".join(names) + "."
        encoding = self._tokenizer.encode(text)
        if len(encoding.ids) > self.max_tokens:
            raise ConfigError(f"prompt '{prompt}' is {len(encoding.ids)} tokens; the model reads at most "
                              f"{self.max_tokens}")
        # Character span of each phrase in the text; a token belongs to the phrase its characters lie in.
        starts = np.cumsum([0] + [len(name) + 2 for name in names[:-1]])
        ends = starts + np.array([len(name) for name in names])
        phrase_of_token = np.full(len(encoding.ids), -1, np.int64)
        for token, ((begin, end), special) in enumerate(zip(encoding.offsets, encoding.special_tokens_mask)):
            inside = np.flatnonzero((starts <= begin) & (end <= ends))
            if not special and end > begin and len(inside):
                phrase_of_token[token] = inside[0]

        def row(values: list[int]) -> np.ndarray:
            return np.array([values], np.int64)

        return Prompt(names, row(encoding.ids), row(encoding.type_ids), row(encoding.attention_mask),
                      phrase_of_token)
