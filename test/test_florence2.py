"""Florence-2 as the runner builds it, without ROS: every backend against transformers' own pipeline (the
processor, Florence2ForConditionalGeneration.generate(num_beams=1), batch_decode, post_process_generation)
end to end on real images, token for token and parsed answer for parsed answer, for every task, on random
weights of the real architecture (a small config and Florence-2-base's config, on every backend); the
task parsing against the processor's on many generated texts; greedy decoding's logits processors; a cached
export run without torch."""
from __future__ import annotations

import logging
import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import IMAGES, asset, cached_model_without_torch

pytest.importorskip("transformers", reason="Florence-2 loads transformers checkpoints")
pytest.importorskip("torch")

from vision_factory.errors import ConfigError  # noqa: E402
from vision_factory.generated_text import GeneratedText  # noqa: E402
from vision_factory.generation import GenerationSettings  # noqa: E402
from vision_factory.loaded_model import load_default_model  # noqa: E402
from vision_factory.models.florence2_tasks import TASKS, parse  # noqa: E402
from vision_factory.tools.stand_in_models import FLORENCE2_TOKENS, florence2_checkpoint  # noqa: E402

LOG = logging.getLogger("test")
BACKENDS = ("onnx", "openvino", "cuda")
GROUNDING_TEXT = "a person next to a bus"
NEW_TOKENS = 40


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return florence2_checkpoint(tmp_path_factory.mktemp("florence2") / "small")


@pytest.fixture(scope="module")
def reference(checkpoint):
    """transformers' processor and model of the checkpoint."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return (AutoProcessor.from_pretrained(str(checkpoint)),
            AutoModelForImageTextToText.from_pretrained(str(checkpoint)).eval())


def image(name: str) -> np.ndarray:
    return cv2.imread(str(asset(IMAGES / name)))


def runner(backend: str, weights: Path, cache: Path):
    """What a generated florence2_<backend> node builds (cuda: PyTorch on the CPU here; openvino forced to f32)."""
    device = {"cuda": {"device": "cpu"}, "openvino": {"openvino_precision": "f32"}}.get(backend, {})
    return load_default_model("florence2", backend, weights, cache, LOG, (480, 640), **device).model


def transformers_answer(reference, frame: np.ndarray, task: str, max_new_tokens: int = NEW_TOKENS):
    """(generated ids, decoded text, post_process_generation's answer) of transformers' pipeline."""
    import torch

    processor, model = reference
    token = TASKS[task].token
    inputs = processor(text=token + (GROUNDING_TEXT if TASKS[task].takes_text else ""),
                       images=frame[:, :, ::-1].copy(), return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**inputs, num_beams=1, do_sample=False, max_new_tokens=max_new_tokens)[0].tolist()
    text = processor.batch_decode([ids], skip_special_tokens=False)[0]
    size = (frame.shape[1], frame.shape[0])
    return ids, text, processor.post_process_generation(text, task=token, image_size=size)[token]


def assert_same_answer(ours: GeneratedText, theirs, task: str) -> None:
    """Our GeneratedText against post_process_generation's answer for the task."""
    labels = [ours.regions.class_name(int(c)) for c in ours.regions.class_ids]
    if isinstance(theirs, str):
        assert (ours.text, len(ours.regions)) == (theirs, 0), task
    elif "quad_boxes" in theirs:
        assert [p.reshape(-1).astype(int).tolist() for p in ours.polygons] == theirs["quad_boxes"], task
        assert labels == theirs["labels"], task
        quads = np.array(theirs["quad_boxes"], np.float32).reshape(-1, 4, 2)
        extents = np.concatenate([quads.min(1), quads.max(1)], 1) if len(quads) else np.zeros((0, 4))
        np.testing.assert_array_equal(ours.regions.boxes_xyxy, extents)
    else:
        assert ours.regions.boxes_xyxy.astype(int).tolist() == theirs["bboxes"], task
        assert labels == theirs["labels"], task


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_task_matches_transformers_token_for_token(backend, checkpoint, reference, tmp_path):
    """Each task on both images: the same tokens as generate(num_beams=1), the same text as batch_decode and
    the same answer as post_process_generation (boxes in the image's pixels)."""
    model = runner(backend, checkpoint, tmp_path)
    for name in ("bus.jpg", "zidane.jpg"):
        frame = image(name)
        for task in TASKS:
            text_input = GROUNDING_TEXT if TASKS[task].takes_text else ""
            ids, text, answer = transformers_answer(reference, frame, task)
            ours = model.generate(frame, task, text_input, NEW_TOKENS)
            assert ours == ids, (backend, name, task)
            assert model.decode(ours) == text
            assert_same_answer(model(frame, task, text_input, NEW_TOKENS), answer, task)


def test_prompt_tokens_are_the_processors(checkpoint, reference, tmp_path):
    """The encoder's prompt: the processor's input_ids after its image tokens, for every task."""
    processor, _ = reference
    model = runner("onnx", checkpoint, tmp_path)
    frame = image("bus.jpg")
    for task, spec in TASKS.items():
        text_input = GROUNDING_TEXT if spec.takes_text else ""
        inputs = processor(text=spec.token + text_input, images=frame[:, :, ::-1].copy(), return_tensors="np")
        np.testing.assert_array_equal(model.prompt_ids(task, text_input),
                                      inputs["input_ids"][:, processor.num_image_tokens:])
        # and the image as the processor gives it, within a grey level (PIL's bicubic against torchvision's)
        pixels = model.processing.preprocess(frame, model.processing.size_hw)
        assert np.abs(pixels - inputs["pixel_values"]).max() < 2 / 255 / 0.224


def test_generation_stops_at_max_new_tokens_and_the_end_token(checkpoint, reference, tmp_path):
    """A short budget ends with the forced end token, as generate does; longer ones match too."""
    model = runner("onnx", checkpoint, tmp_path)
    frame = image("zidane.jpg")
    for budget in (1, 2, 5, 13):
        ids, _, _ = transformers_answer(reference, frame, "od", budget)
        assert model.generate(frame, "od", "", budget) == ids
        assert len(ids) <= budget + 1 and ids[-1] == 2


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A Florence-2-base checkpoint and transformers' answers on bus.jpg for every task (24 tokens at most)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    weights = florence2_checkpoint(tmp_path_factory.mktemp("florence2") / "base", "base")
    reference = (AutoProcessor.from_pretrained(str(weights)),
                 AutoModelForImageTextToText.from_pretrained(str(weights)).eval())
    return weights, {task: transformers_answer(reference, image("bus.jpg"), task, 24) for task in TASKS}


@pytest.mark.parametrize("backend", BACKENDS)
def test_base_config_matches_transformers(backend, base, tmp_path):
    """Florence-2-base's architecture (768 x 768 images, 577 image tokens, BART-base): token for token against
    generate on a real image, for every task, and the same parsed answers."""
    weights, answers = base
    model = runner(backend, weights, tmp_path)
    frame = image("bus.jpg")
    for task, spec in TASKS.items():
        ids, text, answer = answers[task]
        ours = model.generate(frame, task, GROUNDING_TEXT if spec.takes_text else "", 24)
        assert ours == ids, (backend, task)
        assert model.decode(ours) == text
        assert_same_answer(parse(task, text, (frame.shape[1], frame.shape[0]), model.post_processing), answer, task)


def random_answer(rng: random.Random) -> str:
    """A generated-looking text: words, label-like phrases, special and marker tokens, runs of <loc_N>."""
    words = ["car", "a person", " bus", "the image", "door handle", "<s>", "</s>", "<pad>", "Hello world", " ",
             "é", "<od>", "</od>", "<ground>", "<obj>", "<sep>", "<poly>", "</poly>", "sky."]
    parts = []
    for _ in range(rng.randint(0, 12)):
        if rng.random() < 0.45:
            parts.append("".join(f"<loc_{rng.randint(0, 999)}>" for _ in range(rng.choice([1, 2, 4, 4, 8, 8, 12]))))
        else:
            parts.append(rng.choice(words))
    return "".join(parts)


def test_parsing_matches_post_process_generation_on_many_texts(reference):
    """Every task's parse of 400 generated-looking texts on several image sizes equals the processor's."""
    processor, _ = reference
    rng = random.Random(0)
    config = processor.post_processor_config
    for _ in range(400):
        text, size = random_answer(rng), (rng.randint(1, 2000), rng.randint(1, 2000))
        for task, spec in TASKS.items():
            theirs = processor.post_process_generation(text, task=spec.token, image_size=size)[spec.token]
            assert_same_answer(parse(task, text, size, config), theirs, (task, text, size))


def test_ocr_area_threshold_and_pattern_as_the_processor_reads_them(reference):
    """The processor reads its OCR settings under upper-case keys: the same keys filter here."""
    processor, _ = reference
    text = "Small<loc_1><loc_1><loc_2><loc_1><loc_2><loc_2><loc_1><loc_2>Big" + "".join(
        f"<loc_{v}>" for v in (100, 100, 600, 100, 600, 600, 100, 600))
    for config in ({"AREA_THRESHOLD": 0.01}, {"area_threshold": 0.01}, {}):
        processor.post_processor.parse_task_config["ocr"] = config
        theirs = processor.post_process_generation(text, task="<OCR_WITH_REGION>", image_size=(1000, 1000))
        assert_same_answer(parse("ocr_with_region", text, (1000, 1000), {"ocr": config}),
                           theirs["<OCR_WITH_REGION>"], config)
    assert len(parse("ocr_with_region", text, (1000, 1000), {"ocr": {"AREA_THRESHOLD": 0.01}}).regions) == 1


def test_greedy_processors_follow_transformers():
    """no_repeat_ngram_size bans the token that would repeat an n-gram; min length holds the end token off;
    the forced first and last tokens; repetition penalty scales seen tokens' scores."""
    settings = GenerationSettings(decoder_start_token_id=2, eos_token_id=(2,), forced_bos_token_id=0,
                                  forced_eos_token_id=2, no_repeat_ngram_size=3, min_length=4)
    logits = np.zeros(10, np.float32)
    scores = settings.scores(logits, [2, 5, 6, 7, 5, 6], 20)  # (5, 6) was followed by 7
    assert scores[7] == -np.inf and np.isfinite(scores[[0, 1, 3, 4, 5, 6, 8, 9]]).all()
    assert settings.scores(logits, [2, 5], 20)[2] == -np.inf  # shorter than min_length
    assert np.argmax(settings.scores(logits + np.arange(10), [2], 20)) == 0  # forced BOS
    assert np.argmax(settings.scores(logits + np.arange(10), [2, 0, 5, 6, 7], 6)) == 2  # forced EOS at the end
    penalised = GenerationSettings(2, (2,), repetition_penalty=2.0).scores(np.array([1.0, -1.0, 1.0]), [2, 0, 1], 9)
    np.testing.assert_array_equal(penalised, [0.5, -2.0, 0.5])
    calls = []
    stopped = settings.greedy(lambda token: calls.append(token) or np.eye(10)[2] * 5 + np.eye(10)[4], 30)
    assert stopped[:2] == [2, 0] and stopped[-1] == 2 and calls[0] == 2


def test_unsupported_generation_settings_are_refused():
    from transformers import GenerationConfig

    with pytest.raises(ValueError, match="bad_words_ids"):
        GenerationSettings.from_config(GenerationConfig(decoder_start_token_id=2, eos_token_id=2,
                                                        bad_words_ids=[[5]]))


def test_the_exports_give_tensorrt_their_axis_ranges(checkpoint, tmp_path) -> None:
    """TensorRT's optimization profiles: prompts of 1 to what fits beside the image's tokens in the encoder's
    positions, a cache of 0 to max positions - 1 tokens, the encoder's output as long as image + prompt."""
    from vision_factory.backends.tensorrt_session import profile_shapes

    loaded = load_default_model("florence2", "onnx", checkpoint, tmp_path, LOG, (480, 640))
    image_tokens, positions = 17, 1024  # the small config: 4 x 4 + 1 image tokens
    encoded = tuple((1, 2, image_tokens + length, 16) for length in (1, 16, positions - image_tokens))
    assert profile_shapes(loaded.artifacts["model.encoder"].path) == {
        "input_ids": ((1, 1), (1, 16), (1, positions - image_tokens))}
    decoder = profile_shapes(loaded.artifacts["model.decoder"].path)
    assert decoder["past_key_0"] == ((1, 2, 0, 16), (1, 2, 64, 16), (1, 2, positions - 1, 16))
    assert decoder["cross_value_1"] == encoded
    with pytest.raises(ConfigError, match="the model reads at most"):
        loaded.model(image("bus.jpg"), "phrase_grounding", "a bus " * 1000, 5)


def test_bad_task_and_options_are_explained(checkpoint, tmp_path):
    model = runner("onnx", checkpoint, tmp_path)
    assert "not a Florence-2 task" in model.option_problem("task", "detect")
    assert "positions" in model.option_problem("max_new_tokens", 5000)
    assert model.option_problem("task", "od") == ""
    with pytest.raises(ConfigError, match="needs text_input"):
        model(image("bus.jpg"), "phrase_grounding", "", 5)


def test_tokenizer_has_florence_tokens(reference):
    processor, _ = reference
    assert processor.tokenizer.convert_tokens_to_ids(FLORENCE2_TOKENS[:3]) == [
        processor.tokenizer.convert_tokens_to_ids("<loc_0>") + i for i in range(3)]


def test_cached_export_runs_without_torch(checkpoint, reference, tmp_path):
    """An onnx node whose exports are cached needs neither torch nor transformers (tokenizers does the text)."""
    runner("onnx", checkpoint, tmp_path)
    path = asset(IMAGES / "bus.jpg")
    stdout = cached_model_without_torch(
        "florence2", checkpoint, tmp_path,
        f"import cv2; print(m.generate(cv2.imread({str(path)!r}), 'od', '', {NEW_TOKENS}))")
    ids, _, _ = transformers_answer(reference, image("bus.jpg"), "od")
    assert stdout.strip() == str(ids)
