"""Florence-2's tasks without torch or transformers: which task token and prompt each runs, and its generated
text parsed as Florence2Processor.post_process_generation parses it (<loc_N> bins of 1/1000 of the image,
boxes of four, OCR quadrilaterals of eight; labels as the processor cuts them from the text).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from vision_factory.detections import Detections
from vision_factory.errors import ConfigError
from vision_factory.generated_text import GeneratedText

# The processor's post-processing types (Florence2Processor.tasks_answer_post_processing_type)
PURE_TEXT, DESCRIBED_BOXES, BOXES, PHRASE_GROUNDING, OCR = (
    "pure_text", "description_with_bboxes", "bboxes", "phrase_grounding", "ocr")
BINS = 1000  # each coordinate is one of 1000 bins across the image
_LOC = r"<loc_(\d+)>"
_BOX = _LOC * 4
_LABEL_END = r"^\s*(.*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_)"  # a label runs up to its first box
_OCR_PATTERN = r"(.+?)" + _LOC * 8


@dataclass(frozen=True)
class Task:
    """A task's token (the processor's prompt key), how its answer is parsed, and whether it takes text."""

    token: str
    answer: str
    takes_text: bool = False


TASKS = {  # by the node's `task` parameter
    "caption": Task("<CAPTION>", PURE_TEXT),
    "detailed_caption": Task("<DETAILED_CAPTION>", PURE_TEXT),
    "more_detailed_caption": Task("<MORE_DETAILED_CAPTION>", PURE_TEXT),
    "od": Task("<OD>", DESCRIBED_BOXES),
    "dense_region_caption": Task("<DENSE_REGION_CAPTION>", DESCRIBED_BOXES),
    "region_proposal": Task("<REGION_PROPOSAL>", BOXES),
    "phrase_grounding": Task("<CAPTION_TO_PHRASE_GROUNDING>", PHRASE_GROUNDING, takes_text=True),
    "ocr": Task("<OCR>", PURE_TEXT),
    "ocr_with_region": Task("<OCR_WITH_REGION>", OCR),
}


def task_problem(name: str, text_input: str = "") -> str:
    """'' if `name` is a task (and, for one that takes text, text_input is not empty), else why not."""
    task = TASKS.get(name)
    if task is None:
        return f"'{name}' is not a Florence-2 task (one of: {', '.join(TASKS)})"
    if task.takes_text and not text_input.strip():
        return f"task {name} needs text_input (the caption whose phrases to locate)"
    return ""


def prompt_text(name: str, text_input: str, templates: Mapping[str, str]) -> str:
    """The question the processor asks for the task (its task prompt, text_input filled in where the task
    takes one), between the tokenizer's `<s>` and `</s>` as the processor wraps it."""
    problem = task_problem(name, text_input)
    if problem:
        raise ConfigError(problem)
    task = TASKS[name]
    template = templates[task.token]
    return template.format(input=text_input.strip()) if task.takes_text else template


def dequantized(bins: list[int], image_wh: tuple[int, int]) -> np.ndarray:
    """Bins (x, y pairs) -> integer pixels at the bins' centres, truncated, as the processor computes them
    (in float32)."""
    pairs = np.asarray(bins, np.float32).reshape(-1, 2)
    per_bin = np.array([image_wh[0] / BINS, image_wh[1] / BINS], np.float32)
    return ((pairs + np.float32(0.5)) * per_bin).astype(np.int32).reshape(len(bins))


def _without_markers(text: str) -> str:
    return text.replace("<s>", "").replace("</s>", "").replace("<pad>", "")


def _labelled_boxes(text: str, image_wh: tuple[int, int], allow_empty_label: bool,
                    banned: frozenset[str] = frozenset()) -> list[tuple[str, np.ndarray]]:
    """(label, x1 y1 x2 y2) of every box, in order: a label is the text before its boxes."""
    pattern = r"(?:(?:<loc_\d+>){4,})" if allow_empty_label else r"([^<]+(?:<loc_\d+>){4,})"
    found = []
    for part in re.findall(pattern, _without_markers(text)):
        part = part.replace("<ground>", "", 1).replace("<obj>", "", 1)
        label = re.search(_LABEL_END, part)
        if (not part and not allow_empty_label) or label is None:
            continue
        name = label.group().strip()
        if name in banned:
            continue
        name = name.encode("ascii", "ignore").decode("ascii")
        for box in re.finditer(_BOX, part):
            found.append((name, dequantized([int(v) for v in box.groups()], image_wh)))
    return found


def _quadrilaterals(text: str, image_wh: tuple[int, int], config: Mapping[str, Any]) -> list[tuple[str, np.ndarray]]:
    """(text, 8 corner coordinates) of each text region, in order (skipping those under the area threshold)."""
    threshold = float(config.get("AREA_THRESHOLD", 0.0))  # the keys the processor reads (upper case)
    found = []
    for content, *bins in re.findall(config.get("PATTERN") or _OCR_PATTERN, _without_markers(text)):
        quad = dequantized([int(v) for v in bins], image_wh)
        if threshold > 0:
            x, y = quad[0::2].astype(np.float64), quad[1::2].astype(np.float64)
            # the processor's shoelace sum: three of the four edges
            area = 0.5 * abs(sum(x[i] * y[i + 1] - x[i + 1] * y[i] for i in range(3)))
            if area < image_wh[0] * image_wh[1] * threshold:
                continue
        found.append((content.strip(), quad))
    return found


def parse(name: str, text: str, image_wh: tuple[int, int], config: Mapping[str, Mapping[str, Any]]) -> GeneratedText:
    """The task's answer from the decoded text (special tokens kept), for an image of image_wh (width,
    height): what post_process_generation returns, as a GeneratedText. `config`: the processor's
    post_processor_config."""
    task = TASKS[name]
    answer = text.replace("<s>", "").replace("</s>", "").strip()
    if task.answer == PURE_TEXT:
        return GeneratedText.text_only(name, answer)
    polygons: tuple[np.ndarray, ...] = ()
    if task.answer == OCR:
        quads = _quadrilaterals(text, image_wh, config.get(OCR, {}))
        found = [(label, quad.reshape(4, 2)) for label, quad in quads]
        polygons = tuple(quad.astype(np.float32) for _, quad in found)
        found = [(label, np.concatenate([quad.min(0), quad.max(0)])) for label, quad in found]
    else:
        banned = frozenset(config.get(PHRASE_GROUNDING, {}).get("banned_grounding_tokens", ())) \
            if task.answer == PHRASE_GROUNDING else frozenset()
        found = _labelled_boxes(text, image_wh, task.answer == BOXES, banned)
    labels = tuple(dict.fromkeys(label for label, _ in found))
    regions = Detections(np.array([box for _, box in found], np.float32).reshape(-1, 4),
                         np.ones(len(found), np.float32),
                         np.array([labels.index(label) for label, _ in found], np.int64), labels)
    return GeneratedText(name, answer, regions, polygons)
