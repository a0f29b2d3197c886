"""What the models built on rtmlib's processing share: weights given as a file or as a URL of rtmlib's model
zoo (a zip holding end2end.onnx), downloaded with rtmlib's downloader."""
from __future__ import annotations

from pathlib import Path

from vision_factory.errors import ConfigError, file_problem
from vision_factory.models import OnnxOnlyWeights

URL_SCHEMES = ("http://", "https://")


class RtmlibZooWeights(OnnxOnlyWeights):
    """ONNX weights as a file, or as an http(s) URL of rtmlib's model zoo (a zip holding end2end.onnx)
    downloaded once with rtmlib's downloader."""

    def weights_problem(self, model: str) -> str:
        """'' if `model` is a non-empty file or an http(s) URL, else why not."""
        if model.startswith(URL_SCHEMES):
            return ""
        problem = file_problem(model)
        return f"{problem} (give a file path or an http(s) URL of an .onnx or .zip)" if problem else ""

    def resolve_weights(self, model: str, download_dir: Path) -> Path:
        """A file path as it is; a URL downloaded once into download_dir/rtmlib (a zip is unpacked to its
        end2end.onnx, as rtmlib does for its model zoo)."""
        if not model.startswith(URL_SCHEMES):
            return super().resolve_weights(model, download_dir)
        from rtmlib.tools.file import download_checkpoint

        try:
            return Path(download_checkpoint(model, str(download_dir / "rtmlib"), progress=False))
        except Exception as e:  # urllib raises URLError, HTTPError, timeouts; rtmlib re-raises them
            raise ConfigError(f"model '{model}' could not be downloaded: {type(e).__name__}: {e}") from e


ZOO_WEIGHTS = RtmlibZooWeights()
