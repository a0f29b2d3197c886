"""Greedy decoding in numpy, as transformers' `generate(num_beams=1, do_sample=False)` does it: the token
with the highest score after the logits processors the checkpoint's generation config turns on.

A model runs one step per token (its decoder with a key/value cache) and hands the step's logits here; the
settings are read from the checkpoint's GenerationConfig at export and travel in the export's metadata, so a
cached node needs no transformers to decode.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import numpy as np

# Generation settings that change which token greedy decoding picks but are not repeated here: a checkpoint
# that sets one is refused at export rather than decoded differently from transformers.
UNSUPPORTED = ("bad_words_ids", "sequence_bias", "suppress_tokens", "begin_suppress_tokens",
               "encoder_no_repeat_ngram_size", "exponential_decay_length_penalty", "forced_decoder_ids")


@dataclass(frozen=True)
class GenerationSettings:
    """What greedy decoding takes from a GenerationConfig (transformers' names and defaults)."""

    decoder_start_token_id: int
    eos_token_id: tuple[int, ...]
    forced_bos_token_id: int | None = None
    forced_eos_token_id: int | None = None
    no_repeat_ngram_size: int = 0
    min_length: int = 0
    min_new_tokens: int = 0
    repetition_penalty: float = 1.0

    @classmethod
    def from_config(cls, config: Any) -> "GenerationSettings":
        """From a transformers GenerationConfig; ValueError naming a setting greedy decoding here lacks."""
        for name in UNSUPPORTED:
            if getattr(config, name, None):
                raise ValueError(f"the checkpoint's generation config sets {name}, which the nodes' decoding "
                                 f"does not repeat")
        eos = config.eos_token_id
        return cls(
            decoder_start_token_id=int(config.decoder_start_token_id),
            eos_token_id=tuple(int(t) for t in (eos if isinstance(eos, (list, tuple)) else [eos])),
            forced_bos_token_id=config.forced_bos_token_id, forced_eos_token_id=config.forced_eos_token_id,
            no_repeat_ngram_size=int(config.no_repeat_ngram_size or 0), min_length=int(config.min_length or 0),
            min_new_tokens=int(config.min_new_tokens or 0),
            repetition_penalty=float(config.repetition_penalty or 1.0))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "GenerationSettings":
        values = json.loads(text)
        values["eos_token_id"] = tuple(values["eos_token_id"])
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    def scores(self, logits: np.ndarray, tokens: list[int], max_length: int) -> np.ndarray:
        """The step's (vocab,) logits after the processors, given the tokens so far (the start token first)
        and the longest sequence allowed (start token included)."""
        scores = logits.astype(np.float32, copy=True)
        length = len(tokens)
        if self.repetition_penalty != 1.0:
            seen = np.unique(tokens)
            values = scores[seen]
            scores[seen] = np.where(values < 0, values * self.repetition_penalty, values / self.repetition_penalty)
        if length < max(self.min_length, 1 + self.min_new_tokens):
            scores[list(self.eos_token_id)] = -np.inf
        n = self.no_repeat_ngram_size
        if n and length + 1 >= n:
            prefix = tokens[length - n + 1:]
            banned = [tokens[i + n - 1] for i in range(length - n + 1) if tokens[i:i + n - 1] == prefix]
            scores[banned] = -np.inf
        if length == 1 and self.forced_bos_token_id is not None:
            scores = _only(scores, self.forced_bos_token_id)
        if length == max_length - 1 and self.forced_eos_token_id is not None:
            scores = _only(scores, self.forced_eos_token_id)
        return scores

    def greedy(self, step: Callable[[int], np.ndarray], max_new_tokens: int) -> list[int]:
        """The generated sequence (start token first; the end token last unless max_new_tokens ran out):
        `step(token)` feeds the model the newest token and returns the next token's (vocab,) logits."""
        tokens = [self.decoder_start_token_id]
        max_length = 1 + max_new_tokens
        while len(tokens) < max_length:
            tokens.append(int(np.argmax(self.scores(step(tokens[-1]), tokens, max_length))))
            if tokens[-1] in self.eos_token_id:
                break
        return tokens


def _only(scores: np.ndarray, token: int) -> np.ndarray:
    forced = np.full_like(scores, -np.inf)
    forced[token] = 0.0
    return forced
