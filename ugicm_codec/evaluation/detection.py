"""COCO object detection on decoded images: YOLOX-Nano (ONNX), scored by COCO mAP.

Pre- and post-processing follow YOLOX's own code, so that the model sees what it was trained on:

* ``preproc`` (yolox/data/data_augment.py): resize by r = min(side/h, side/w), keep the aspect,
  put the image at the top left of a side x side canvas filled with 114, BGR, 0-255, CHW float.
* ``demo_postprocess`` (yolox/utils/demo_utils.py): the exported model emits, per grid cell of the
  stride-8, 16 and 32 maps in that order (row by row), raw x, y, log w, log h and already
  sigmoid-ed objectness and class scores; xy = (xy + cell) * stride, wh = exp(wh) * stride.
* ``postprocess`` (yolox/utils/boxes.py) as YOLOX's COCO evaluator runs it: each box keeps its
  best class, score = objectness x class score, boxes under 0.001 dropped, then class-wise NMS at
  IoU 0.65; boxes are divided by r to return to the original image.

mAP is pycocotools' COCOeval over the images of one curve point, against the YOLO-format labels
(``labels/<stem>.txt``: class cx cy w h, normalised). Those labels carry neither crowd regions nor
mask areas, so the figures are close to, not identical with, official COCO val numbers.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from .shared import MODELS_DIR
from .tasks import Task, TaskError, find_beside, require_files, require_module

INPUT_SIDE = 416
PAD_VALUE = 114
STRIDES = (8, 16, 32)
CONFIDENCE_THRESHOLD = 0.001  # YOLOX's test_conf for COCO evaluation: low, so mAP sees the whole PR curve
NMS_IOU = 0.65  # YOLOX's nmsthre for COCO evaluation (its demo uses 0.45 for display)
MAX_DETECTIONS = 100  # COCOeval's largest maxDets: boxes past it never count, so records need not keep them


class CocoDetection(Task):
    name = "detection"

    def __init__(self, models_dir: Path = MODELS_DIR):
        self.model_path = Path(models_dir) / "yolox_nano.onnx"
        self.truth: dict[str, list[list[float]]] = {}  # image name -> [class, cx, cy, w, h] rows, normalised
        self._session = None

    def __getstate__(self):  # workers open their own session
        return {**self.__dict__, "_session": None}

    def prepare(self, images: list[Path]) -> None:
        require_files(self.name, self.model_path)
        require_module(self.name, "pycocotools", "pycocotools")
        n_classes = self._session_for_run().get_outputs()[0].shape[-1] - 5
        labels = find_beside(images, "labels")
        if labels is None:
            raise TaskError(
                "detection needs YOLO-format boxes in a labels/ folder beside the images or their folder"
            )
        # An image without a label file has no objects (YOLO convention): its detections are false positives.
        self.truth = {p.name: read_yolo_labels(labels / f"{p.stem}.txt") for p in images}
        used = {int(row[0]) for rows in self.truth.values() for row in rows}
        if used and not 0 <= min(used) <= max(used) < n_classes:
            raise TaskError(
                f"detection: labels in {labels} use class ids outside the model's 0-{n_classes - 1}"
            )

    def measure(self, image: Path, rgb: np.ndarray) -> dict:
        canvas, ratio = letterbox(rgb, INPUT_SIDE)
        session = self._session_for_run()
        raw = session.run(None, {session.get_inputs()[0].name: canvas})[0][0]
        height, width = rgb.shape[:2]
        found = select_detections(decode_outputs(raw, INPUT_SIDE, STRIDES), ratio, width, height)
        return {
            "image": image.name,
            "width": width,
            "height": height,
            "detections": [
                [round(float(v), 2) for v in d[:4]] + [round(float(d[4]), 5), int(d[5])] for d in found
            ],
        }

    def summarise(self, outcomes: list[dict]) -> dict[str, float]:
        known = [o for o in outcomes if o.get("image") in self.truth]
        if not known:
            return {}
        figures = coco_map(known, self.truth)
        return {**figures, "n": len(known)} if figures else {}

    def resampled(self, outcomes: list[dict], weights: np.ndarray) -> dict[str, np.ndarray]:
        known = [i for i, o in enumerate(outcomes) if o.get("image") in self.truth]
        if not known:
            return {}
        return resampled_map([outcomes[i] for i in known], self.truth, np.asarray(weights)[:, known])

    def _session_for_run(self):
        if self._session is None:
            ort = require_module(self.name, "onnxruntime", "onnxruntime")
            options = ort.SessionOptions()
            # One thread per worker, as for the other tasks: --jobs is how an evaluation goes wide.
            options.intra_op_num_threads = options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(
                str(self.model_path), options, providers=["CPUExecutionProvider"]
            )
        return self._session


# ------------------------------------------------------------------------- pre/post-processing
def letterbox(rgb: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """YOLOX input [1, 3, side, side] (BGR, 0-255 float) and the scale r from image to input."""
    from PIL import Image

    height, width = rgb.shape[:2]
    ratio = min(side / height, side / width)
    size = (int(width * ratio), int(height * ratio))  # YOLOX truncates, as here
    resized = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
    canvas = np.full((side, side, 3), PAD_VALUE, dtype=np.float32)
    canvas[: size[1], : size[0]] = resized[:, :, ::-1]  # RGB -> BGR
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None]), ratio


def grid_cells(side: int, strides=STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """Cell (x, y) of every output row and its stride: each stride's map row by row, strides in order."""
    cells, cell_strides = [], []
    for stride in strides:
        n = side // stride
        ys, xs = np.mgrid[0:n, 0:n]
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        cell_strides.append(np.full((n * n, 1), stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(cell_strides).astype(np.float32)


def decode_outputs(raw: np.ndarray, side: int, strides=STRIDES) -> np.ndarray:
    """Raw [N, 5 + classes] rows -> the same rows with cx, cy, w, h in input pixels."""
    cells, cell_strides = grid_cells(side, strides)
    if raw.shape[0] != len(cells):
        raise TaskError(
            f"detection: model gives {raw.shape[0]} boxes, expected {len(cells)} for a {side}-pixel input"
        )
    decoded = raw.astype(np.float32, copy=True)
    decoded[:, :2] = (decoded[:, :2] + cells) * cell_strides
    decoded[:, 2:4] = np.exp(decoded[:, 2:4]) * cell_strides
    return decoded


def select_detections(
    decoded: np.ndarray,
    ratio: float,
    width: int,
    height: int,
    confidence: float = CONFIDENCE_THRESHOLD,
    iou: float = NMS_IOU,
    keep: int = MAX_DETECTIONS,
) -> np.ndarray:
    """Decoded rows -> [x1, y1, x2, y2, score, class] in original-image pixels, best first."""
    import torch
    from torchvision.ops import batched_nms

    class_scores = decoded[:, 5:]
    classes = class_scores.argmax(axis=1)
    scores = decoded[:, 4] * class_scores[np.arange(len(decoded)), classes]
    chosen = scores >= confidence
    boxes = cxcywh_to_xyxy(decoded[chosen, :4]) / ratio
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    scores, classes = scores[chosen], classes[chosen]
    kept = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), iou)
    kept = kept.numpy()[:keep]  # batched_nms returns indices by falling score
    return np.concatenate([boxes[kept], scores[kept, None], classes[kept, None].astype(np.float32)], axis=1)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


# ------------------------------------------------------------------------------ ground truth
def read_yolo_labels(path: Path) -> list[list[float]]:
    """``class cx cy w h`` rows (normalised to the image size); no file means no objects."""
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise TaskError(f"detection: {path}:{number} is not 'class cx cy w h'")
        rows.append([float(v) for v in fields])
    return rows


def coco_map(outcomes: list[dict], truth: dict[str, list[list[float]]]) -> dict[str, float]:
    """mAP@0.5 and mAP@[.5:.95] (COCOeval, 100 detections per image) of the outcomes' detections."""
    evaluation = _evaluated(outcomes, truth)
    if evaluation is None:
        return {}  # no objects to find: COCOeval's figures would be undefined (-1)
    if evaluation is NO_DETECTIONS:
        return {"map50": 0.0, "map50_95": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.accumulate()
        evaluation.summarize()
    return {"map50": float(evaluation.stats[1]), "map50_95": float(evaluation.stats[0])}


def resampled_map(
    outcomes: list[dict], truth: dict[str, list[list[float]]], weights: np.ndarray
) -> dict[str, np.ndarray]:
    """``coco_map`` of resampled image sets: ``weights`` (resamples × images) says how many
    times each outcome's image is drawn. Each image's matches are COCOeval's own (its
    ``evaluate()``, once); only the accumulation is redone, vectorised over resamples, with an
    image drawn k times counting k times. Unit weights give ``coco_map``'s figures exactly."""
    weights = np.asarray(weights, dtype=np.float64)
    evaluation = _evaluated(outcomes, truth)
    if evaluation is None:
        return {}
    if evaluation is NO_DETECTIONS:
        return {"map50": np.zeros(len(weights)), "map50_95": np.zeros(len(weights))}
    params = evaluation.params
    images, areas = len(params.imgIds), len(params.areaRng)
    ap_sum = np.zeros((len(weights), len(params.iouThrs)))  # over the categories with objects
    present = np.zeros((len(weights), 1))
    for k in range(len(params.catIds)):
        # Area range "all" (index 0) and maxDets 100, the figures coco_map reports.
        found = [
            (i, e) for i in range(images) if (e := evaluation.evalImgs[k * areas * images + i]) is not None
        ]
        if not found:
            continue
        positives = np.zeros(images)
        for i, e in found:
            positives[i] = np.count_nonzero(e["gtIgnore"] == 0)
        scores = np.concatenate([e["dtScores"] for _, e in found])
        order = np.argsort(-scores, kind="mergesort")  # as COCOeval sorts
        image_index = np.concatenate([np.full(len(e["dtScores"]), i) for i, e in found])[order]
        matched = np.concatenate([e["dtMatches"] for _, e in found], axis=1)[:, order] > 0
        ignored = np.concatenate([e["dtIgnore"] for _, e in found], axis=1)[:, order] > 0
        objects = weights @ positives
        ap = _weighted_average_precision(
            weights[:, image_index], matched & ~ignored, ~ignored, objects, params.recThrs
        )
        has_objects = (objects > 0)[:, None]
        ap_sum += np.where(has_objects, ap, 0.0)
        present += has_objects
    with np.errstate(invalid="ignore"):
        mean_ap = ap_sum / present
    return {"map50": mean_ap[:, 0], "map50_95": mean_ap.mean(axis=1)}


def _weighted_average_precision(
    weights, true_positive, counted, objects, recall_thresholds, chunk: int = 256
) -> np.ndarray:
    """COCOeval.accumulate's interpolated AP of one category, per resample (rows of ``weights``,
    one column per detection, sorted by falling score) and IoU threshold (rows of the match
    tables; ``counted``: the detections not ignored): precision made monotone from the right,
    read at the first detection whose recall reaches each threshold, 0 past the last. Returns
    resamples × thresholds.

    Only the true positives are visited: recall rises only there, so every threshold is first
    reached at one, and the precision after a true positive only falls until the next, so the
    monotone envelope at a true positive is the largest precision among those from it on."""
    rows = weights.shape[0]
    thresholds = np.asarray(recall_thresholds)
    out = np.zeros((rows, true_positive.shape[0]))
    for start in range(0, rows, chunk):
        w = weights[start : start + chunk]
        n = np.maximum(objects[start : start + chunk, None], np.finfo(float).tiny)
        shared = np.cumsum(w * counted[0], axis=1)
        for t, hits in enumerate(true_positive):
            if not hits.any():
                continue
            counts = shared if np.array_equal(counted[t], counted[0]) else np.cumsum(w * counted[t], axis=1)
            tp = np.cumsum(w[:, hits], axis=1)
            recall = tp / n
            precision = tp / (counts[:, hits] + np.spacing(1))
            envelope = np.flip(np.maximum.accumulate(np.flip(precision, 1), axis=1), 1)
            out[start : start + chunk, t] = _read_at_recalls(recall, envelope, thresholds).mean(axis=1)
    return out


def _read_at_recalls(recall: np.ndarray, values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per row, ``values`` at the first column whose ``recall`` reaches each threshold, 0 where
    none does (COCOeval's searchsorted, side="left", for every row at once). That column is
    the number of columns below the threshold, that is with fewer than r + 1 thresholds at or
    under their recall: one exact searchsorted, then a cumulative count per row."""
    rows = recall.shape[0]
    slots = len(thresholds) + 1
    under = np.searchsorted(thresholds, recall, side="right")
    counts = np.bincount((under + slots * np.arange(rows)[:, None]).ravel(), minlength=rows * slots)
    first = np.cumsum(counts.reshape(rows, slots), axis=1)[:, :-1]
    padded = np.concatenate([values, np.zeros((rows, 1))], axis=1)
    return np.take_along_axis(padded, first, axis=1)


NO_DETECTIONS = object()  # _evaluated's answer when there are objects but nothing was detected


def _evaluated(outcomes: list[dict], truth: dict[str, list[list[float]]]):
    """COCOeval with ``evaluate()`` run on the outcomes (image ids 1.. in their order); None
    without objects, NO_DETECTIONS without detections."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    # COCOeval takes an id of 0 for "unmatched", so every id here starts at 1.
    images, annotations, results = [], [], []
    for image_id, outcome in enumerate(outcomes, 1):
        width, height = outcome["width"], outcome["height"]
        images.append({"id": image_id, "width": width, "height": height})
        for cls, cx, cy, w, h in truth[outcome["image"]]:
            box = [(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(cls) + 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
        for x1, y1, x2, y2, score, cls in outcome["detections"]:
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(cls) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    if not annotations:
        return None
    if not results:
        return NO_DETECTIONS
    n_classes = max(a["category_id"] for a in annotations + results)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        ground = COCO()
        ground.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": k} for k in range(1, n_classes + 1)],
        }
        ground.createIndex()
        evaluation = COCOeval(ground, ground.loadRes(results), "bbox")
        evaluation.evaluate()
    return evaluation
