"""Machine tasks scored on decoded images: the "machine" half of the evaluation.

A task plugs into the runner with these methods:

* ``prepare(images)`` in the main process, before any work: finds its model, runtime and ground
  truth, and raises ``TaskError`` (a one-line reason) when it cannot run on these images.
* ``measure(image, rgb)`` in a worker, once per decoded image (and once on the original): returns a
  small JSON-able outcome for that image, stored in its record (so runs resume).
* ``summarise(outcomes)`` over all images of one curve point: returns the task's figures, e.g.
  ``{"top1": 0.71}``. Dataset-level metrics such as mAP are computed here, not averaged per image.
* ``resampled(outcomes, weights)``: the same figures for many resamples of those images at once
  (``weights``: resamples × outcomes, how often each image is drawn), for the paired bootstrap
  (``paired.py``); unit weights give ``summarise``'s figures.

Implemented: ImageNet classification top-1/top-5 with MobileNetV2 (TFLite, uint8) here; COCO
detection mAP with YOLOX-Nano (ONNX) in ``detection.py``; PASCAL VOC segmentation mIoU with
DeepLabV3 (TFLite) in ``segmentation.py``. Those two load lazily, so importing this module (and
the CLI) pulls in neither their runtimes nor torch.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .shared import MODELS_DIR


class TaskError(Exception):
    """A task cannot run here (missing runtime, model or ground truth); the message is one line."""


class Task:
    name: str = ""

    def prepare(self, images: list[Path]) -> None:
        raise NotImplementedError

    def measure(self, image: Path, rgb: np.ndarray) -> dict:
        raise NotImplementedError

    def summarise(self, outcomes: list[dict]) -> dict[str, float]:
        raise NotImplementedError

    def resampled(self, outcomes: list[dict], weights: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError


# ---------------------------------------------------------------------------- classification
class ImageNetClassification(Task):
    """Top-1 / top-5 accuracy of MobileNetV2 1.0 224 (uint8 TFLite) on images named
    ``nXXXXXXXX_label.EXT``. The model has 1001 outputs, output 0 being "background", and its label
    file lists the 1001 names in output order; each image's class is found by matching the label
    in its file name against that list (see ``imagenet_label_indices``)."""

    name = "classification"
    input_side = 224
    # Inception/MobileNet evaluation preprocessing: keep the central 87.5 % of each side, resize.
    central_fraction = 0.875

    def __init__(self, models_dir: Path = MODELS_DIR):
        self.model_path = Path(models_dir) / "mobilenet_v2_1.0_224_quant.tflite"
        self.labels_path = Path(models_dir) / "imagenet_labels.txt"
        self.truth: dict[str, int] = {}
        self._interpreter = None

    def __getstate__(self):  # workers build their own interpreter
        return {**self.__dict__, "_interpreter": None}

    def prepare(self, images: list[Path]) -> None:
        require_files(self.name, self.model_path, self.labels_path)
        tflite_interpreter_class(self.name)  # fails early when the runtime is not installed
        labels = self.labels_path.read_text().splitlines()
        self.truth = imagenet_label_indices([p.name for p in images], labels)
        if not self.truth:
            raise TaskError("classification: no image is named nXXXXXXXX_label with a known label")

    def measure(self, image: Path, rgb: np.ndarray) -> dict:
        label = self.truth.get(image.name)
        scores = self._scores(rgb)
        top5 = np.argsort(-scores.astype(np.int64), kind="stable")[:5]
        return {"label": label, "top5": [int(i) for i in top5]}

    def summarise(self, outcomes: list[dict]) -> dict[str, float]:
        known = [o for o in outcomes if o.get("label") is not None]
        if not known:
            return {}
        top1 = np.mean([o["top5"][0] == o["label"] for o in known])
        top5 = np.mean([o["label"] in o["top5"] for o in known])
        return {"top1": float(top1), "top5": float(top5), "n": len(known)}

    def resampled(self, outcomes: list[dict], weights: np.ndarray) -> dict[str, np.ndarray]:
        known = [i for i, o in enumerate(outcomes) if o.get("label") is not None]
        if not known:
            return {}
        w = np.asarray(weights, dtype=np.float64)[:, known]
        hits = lambda rule: w @ np.array([rule(outcomes[i]) for i in known], dtype=np.float64) / w.sum(axis=1)  # noqa: E731
        return {
            "top1": hits(lambda o: o["top5"][0] == o["label"]),
            "top5": hits(lambda o: o["label"] in o["top5"]),
        }

    def _scores(self, rgb: np.ndarray) -> np.ndarray:
        from PIL import Image

        if self._interpreter is None:
            self._interpreter = tflite_interpreter_class(self.name)(
                model_path=str(self.model_path), num_threads=1
            )
            self._interpreter.allocate_tensors()
        h, w = rgb.shape[:2]
        ch, cw = round(h * self.central_fraction), round(w * self.central_fraction)
        top, left = (h - ch) // 2, (w - cw) // 2
        crop = Image.fromarray(rgb[top : top + ch, left : left + cw])
        x = np.asarray(crop.resize((self.input_side, self.input_side), Image.BILINEAR), dtype=np.uint8)
        it = self._interpreter
        it.set_tensor(it.get_input_details()[0]["index"], x[None])
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"])[0]


def tflite_interpreter_class(task: str):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise TaskError(f"{task} needs a TFLite runtime: pip install ai-edge-litert") from None
    return Interpreter


def find_beside(images: list[Path], folder_name: str) -> Path | None:
    """A dataset folder (``labels``, ``masks``) that belongs to these images: next to them, or next
    to their folder, as in the YOLO layout ``root/images/x.jpg`` + ``root/labels/x.txt``."""
    if not images:
        return None
    image_folder = images[0].parent
    for candidate in (image_folder / folder_name, image_folder.parent / folder_name):
        if candidate.is_dir():
            return candidate
    return None


def require_module(task: str, module: str, package: str):
    """The imported module, or a TaskError that says what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise TaskError(f"{task} needs {module}: pip install {package}") from None


def require_files(task: str, *paths: Path) -> None:
    for path in paths:
        if not path.is_file():
            raise TaskError(f"{task} needs {path}, which is missing (see --models)")


def _normalise(text: str) -> str:
    return re.sub(r"[\s_]+", " ", text).strip()


def imagenet_label_indices(file_names: list[str], labels: list[str]) -> dict[str, int]:
    """Model output index of each ``nXXXXXXXX_label.EXT`` file, from the label text.

    The label list has no synset ids, so the class is found by name: first an exact,
    case-sensitive match of the file's label against the first name on each line ("Cardigan"
    the corgi vs "cardigan" the sweater), then against any of a line's comma-separated names,
    then case-insensitively. A name that still fits several lines is settled by order: the
    standard class index is the sorted order of the synset ids, so the index must rise with the
    synset between the neighbouring files' indices. Files that stay ambiguous or unmatched are
    left out (their accuracy is not counted) rather than guessed.
    """
    lines = [[_normalise(n) for n in line.split(",")] for line in labels]
    parsed = []
    for name in file_names:
        m = re.match(r"^(n\d{8})_(.+)\.[A-Za-z]+$", name)
        if m:
            parsed.append((m.group(1), name, _normalise(m.group(2))))
    parsed.sort()

    candidates: list[list[int]] = []
    for _, _, label in parsed:
        for match in (
            lambda ns, label=label: ns[0] == label,
            lambda ns, label=label: label in ns,
            lambda ns, label=label: label.lower() in [n.lower() for n in ns],
        ):
            found = [i for i, ns in enumerate(lines) if ns and match(ns)]
            if found:
                break
        candidates.append(found)

    # An index must exceed the smallest possible index of every earlier file and stay below the
    # largest possible index of every later one.
    n = len(parsed)
    lower, upper = [-1] * n, [len(lines)] * n
    for k in range(1, n):
        lower[k] = max(lower[k - 1], min(candidates[k - 1], default=-1))
    for k in range(n - 2, -1, -1):
        upper[k] = min(upper[k + 1], max(candidates[k + 1], default=len(lines)))
    result = {}
    for k, (_, file_name, _) in enumerate(parsed):
        fitting = [i for i in candidates[k] if lower[k] < i < upper[k]]
        if len(fitting) == 1:
            result[file_name] = fitting[0]
    return result


# Task name -> (module, class); detection and segmentation are imported only when asked for.
TASKS = {
    "classification": (__name__, "ImageNetClassification"),
    "detection": (f"{__package__}.detection", "CocoDetection"),
    "segmentation": (f"{__package__}.segmentation", "VocSegmentation"),
}


def make(name: str, models_dir: Path = MODELS_DIR) -> Task:
    import importlib

    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    module, class_name = TASKS[name]
    return getattr(importlib.import_module(module), class_name)(models_dir)
