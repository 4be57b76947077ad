"""Semantic segmentation on decoded images: DeepLabV3 MobileNetV2 (PASCAL VOC, uint8 TFLite), mIoU.

Two figures per curve point, both the mean over classes of intersection / union of a confusion
matrix summed over all its images (the PASCAL VOC way: not a mean of per-image scores):

* ``miou`` against ground-truth masks (``masks/<stem>.png``, COCO panoptic category ids, names in
  ``mask-classes.yaml``), on the images that have one. COCO categories that are VOC classes are
  mapped to them by name; every other COCO category counts as VOC background, because "none of
  the 20 classes" is what VOC's background means and what the model was trained to answer there
  (ignoring them instead would let any prediction on a wall or a cup go unpunished). Id 0,
  "unlabeled", is ignored. COCO's "table-merged" stuff is not VOC's dining table: only the
  "dining table" thing category maps to it.
* ``agreement_miou`` against the model's own prediction on the original image, on every image:
  how much of what the model saw survives the codec, with no ground truth needed.

Preprocessing follows DeepLab's own demo: resize so the longer side is 513, keep the aspect, pad
bottom and right with 128, which the input quantisation (scale 1/128, zero point 128) reads as
0.0, DeepLab's mean-pixel padding. The label map of the valid region is resized back (nearest).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from .shared import MODELS_DIR
from .tasks import Task, TaskError, find_beside, require_files, require_module, tflite_interpreter_class

PAD_VALUE = 128
IGNORE = 255  # label of pixels left out of the confusion matrix, as in VOC's own ground truth
UNLABELED = 0  # COCO panoptic id of pixels in no segment
# VOC label -> COCO category name, where they differ only in spelling.
VOC_TO_COCO_NAMES = {
    "aeroplane": "airplane",
    "motorbike": "motorcycle",
    "diningtable": "dining table",
    "pottedplant": "potted plant",
    "sofa": "couch",
    "tvmonitor": "tv",
}
REFERENCE_CACHE = 4  # originals' predictions kept per worker; the runner takes an image's units together


class VocSegmentation(Task):
    name = "segmentation"

    def __init__(self, models_dir: Path = MODELS_DIR):
        self.model_path = Path(models_dir) / "deeplabv3_mnv2_pascal_quant.tflite"
        self.labels_path = Path(models_dir) / "pascal_voc_segmentation_labels.txt"
        self.masks: dict[str, Path] = {}  # image name -> its ground-truth mask
        self.lookup: np.ndarray | None = None  # COCO panoptic id -> VOC class, or IGNORE
        self._interpreter = None
        self._references: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = (
            OrderedDict()
        )  # path -> (labels, image)

    def __getstate__(self):  # workers build their own interpreter and cache
        return {**self.__dict__, "_interpreter": None, "_references": OrderedDict()}

    def prepare(self, images: list[Path]) -> None:
        require_files(self.name, self.model_path, self.labels_path)
        tflite_interpreter_class(self.name)  # fails early when the runtime is not installed
        voc = read_voc_labels(self.labels_path)
        masks = find_beside(images, "masks")
        self.masks, self.lookup = {}, None
        if masks is None:
            return  # agreement with the original's prediction still works without ground truth
        classes_file = next(
            (f for f in (masks / "mask-classes.yaml", masks.parent / "mask-classes.yaml") if f.is_file()),
            None,
        )
        if classes_file is None:
            raise TaskError(f"segmentation: {masks} has no mask-classes.yaml beside it to name its ids")
        self.lookup = voc_lookup(read_mask_classes(classes_file), voc)
        self.masks = {p.name: masks / f"{p.stem}.png" for p in images if (masks / f"{p.stem}.png").is_file()}

    def measure(self, image: Path, rgb: np.ndarray) -> dict:
        reference, original = self._reference(image)
        same = original.shape == rgb.shape and np.array_equal(original, rgb)
        predicted = reference if same else self._predict(rgb, reference.shape)
        outcome = {"image": image.name, "agreement": sparse_confusion(reference, predicted), "truth": None}
        mask_path = self.masks.get(image.name)
        if mask_path is not None:
            truth = self.lookup[read_mask(mask_path)]
            if truth.shape != predicted.shape:
                predicted = self._predict(rgb, truth.shape)
            outcome["truth"] = sparse_confusion(truth, predicted)
        return outcome

    def summarise(self, outcomes: list[dict]) -> dict[str, float]:
        if not outcomes:
            return {}
        figures = {}
        with_masks = [o["truth"] for o in outcomes if o.get("truth") is not None]
        if with_masks:
            figures["miou"] = mean_iou(dense_confusion(with_masks))
        figures["agreement_miou"] = mean_iou(dense_confusion([o["agreement"] for o in outcomes]))
        return {**figures, "n": len(outcomes)}

    def resampled(self, outcomes: list[dict], weights: np.ndarray) -> dict[str, np.ndarray]:
        if not outcomes:
            return {}
        weights = np.asarray(weights, dtype=np.float64)
        figures = {}
        with_masks = [i for i, o in enumerate(outcomes) if o.get("truth") is not None]
        if with_masks:
            figures["miou"] = resampled_mean_iou(
                [outcomes[i]["truth"] for i in with_masks], weights[:, with_masks]
            )
        figures["agreement_miou"] = resampled_mean_iou([o["agreement"] for o in outcomes], weights)
        return figures

    def _reference(self, image: Path) -> tuple[np.ndarray, np.ndarray]:
        """The model's labels on the original image (and that image), computed once per image."""
        from .images import load_rgb

        key = str(image)
        if key not in self._references:
            original = load_rgb(image)
            self._references[key] = (self._predict(original, original.shape[:2]), original)
            while len(self._references) > REFERENCE_CACHE:
                self._references.popitem(last=False)
        return self._references[key]

    def _predict(self, rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        if self._interpreter is None:
            self._interpreter = tflite_interpreter_class(self.name)(
                model_path=str(self.model_path), num_threads=1
            )
            self._interpreter.allocate_tensors()
        it = self._interpreter
        side = int(it.get_input_details()[0]["shape"][1])
        canvas, valid = fit_and_pad(rgb, side)
        it.set_tensor(it.get_input_details()[0]["index"], canvas[None])
        it.invoke()
        labels = it.get_tensor(it.get_output_details()[0]["index"])[0]
        return labels_to_size(labels[: valid[0], : valid[1]], shape)


# ------------------------------------------------------------------------------- pixels
def fit_and_pad(rgb: np.ndarray, side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The image scaled so its longer side is ``side``, at the top left of a padded square, and
    the (height, width) it fills there."""
    from PIL import Image

    height, width = rgb.shape[:2]
    ratio = side / max(height, width)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    canvas = np.full((side, side, 3), PAD_VALUE, dtype=np.uint8)
    canvas[: size[1], : size[0]] = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
    return canvas, (size[1], size[0])


def labels_to_size(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A class-id map resized (nearest: ids must not blend) to ``shape`` = (height, width)."""
    from PIL import Image

    if labels.shape == tuple(shape):
        return labels.astype(np.uint8)
    resized = Image.fromarray(labels.astype(np.uint8)).resize((shape[1], shape[0]), Image.NEAREST)
    return np.asarray(resized)


def read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as mask:
        if mask.mode not in ("L", "P"):
            raise TaskError(f"segmentation: {path} is not a single-channel id mask (mode {mask.mode})")
        return np.asarray(mask)


# ------------------------------------------------------------------------------- classes
def read_voc_labels(path: Path) -> list[str]:
    """Class names in output order: the lines up to the first blank one (notes may follow)."""
    names = []
    for line in path.read_text().splitlines():
        if not line.strip():
            break
        names.append(line.strip())
    if not names:
        raise TaskError(f"segmentation: no class names in {path}")
    return names


def read_mask_classes(path: Path) -> dict[int, str]:
    yaml = require_module("segmentation", "yaml", "pyyaml")
    try:
        classes = yaml.safe_load(path.read_text())["classes"]
        return {int(k): str(v) for k, v in classes.items()}
    except (yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError):
        raise TaskError(f"segmentation: {path} has no 'classes: {{id: name}}' mapping") from None


def voc_lookup(mask_classes: dict[int, str], voc_labels: list[str]) -> np.ndarray:
    """A table from mask id (0-255) to VOC class: VOC classes by name, UNLABELED and ids that no
    class names to IGNORE, every other COCO category to background (VOC class 0)."""
    coco_to_voc = {VOC_TO_COCO_NAMES.get(name, name): k for k, name in enumerate(voc_labels) if k > 0}
    table = np.full(256, IGNORE, dtype=np.uint8)
    for mask_id, name in mask_classes.items():
        if mask_id != UNLABELED and 0 <= mask_id < len(table):
            table[mask_id] = coco_to_voc.get(name, 0)
    return table


# ------------------------------------------------------------------------------- scores
def sparse_confusion(truth: np.ndarray, predicted: np.ndarray) -> list[list[int]]:
    """[truth class, predicted class, pixels] for every non-empty cell; IGNORE pixels left out."""
    counted = truth != IGNORE
    pairs = np.stack([truth[counted], predicted[counted]], axis=1).astype(np.int64)
    cells, counts = np.unique(pairs, axis=0, return_counts=True)
    return [[int(t), int(p), int(c)] for (t, p), c in zip(cells, counts)]


def dense_confusion(sparse_matrices: list[list[list[int]]], size: int | None = None) -> np.ndarray:
    cells = [cell for matrix in sparse_matrices for cell in matrix]
    size = size or 1 + max((max(t, p) for t, p, _ in cells), default=0)
    matrix = np.zeros((size, size), dtype=np.int64)
    for t, p, count in cells:
        matrix[t, p] += count
    return matrix


def resampled_mean_iou(sparse_matrices: list[list[list[int]]], weights: np.ndarray) -> np.ndarray:
    """``mean_iou`` of the weighted sum of per-image confusion matrices, one per row of ``weights``."""
    size = dense_confusion(sparse_matrices).shape[0]
    per_image = np.stack([dense_confusion([m], size).ravel() for m in sparse_matrices])
    return mean_ious((weights @ per_image).reshape(-1, size, size))


def mean_iou(confusion: np.ndarray) -> float | None:
    """Mean over classes present in the truth or the prediction of TP / (TP + FP + FN)."""
    value = mean_ious(confusion[None])[0]
    return None if np.isnan(value) else float(value)


def mean_ious(confusions: np.ndarray) -> np.ndarray:
    """``mean_iou`` of each matrix of a (..., K, K) stack; NaN where no class is present."""
    true_positive = np.diagonal(confusions, axis1=-2, axis2=-1)
    union = confusions.sum(axis=-2) + confusions.sum(axis=-1) - true_positive
    present = union > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present, true_positive / np.where(present, union, 1), 0.0).sum(axis=-1) / present.sum(
            axis=-1
        )
