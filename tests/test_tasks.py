"""Detection and segmentation tasks: YOLOX decoding, letterbox geometry, the COCO -> VOC mapping,
the scores, and both tasks on two original COCO images from ../shared."""

import importlib.util

import numpy as np
import pytest

from ugicm_codec.evaluation import detection, segmentation
from ugicm_codec.evaluation.tasks import TaskError, make
from ugicm_codec.shared import shared_dir

SHARED = shared_dir()
COCO = SHARED / "data" / "machine" / "coco-val"
MODELS = SHARED / "models"


# ------------------------------------------------------------------------------ detection
def test_grid_cells_run_row_by_row_per_stride():
    side, strides = 64, (8, 16, 32)
    cells, cell_strides = detection.grid_cells(side, strides)
    counts = [(side // s) ** 2 for s in strides]
    assert len(cells) == sum(counts)
    assert cells[:3].tolist() == [[0, 0], [1, 0], [2, 0]]  # x runs fastest
    assert cells[side // 8].tolist() == [0, 1]  # the next row of the stride-8 map
    assert cells[counts[0]].tolist() == [0, 0] and cell_strides[counts[0], 0] == 16
    assert cell_strides[-1, 0] == 32 and cells[-1].tolist() == [side // 32 - 1] * 2


def test_decode_puts_a_box_at_its_cell():
    side, n_classes = detection.INPUT_SIDE, 80
    cells, _ = detection.grid_cells(side)
    raw = np.zeros((len(cells), 5 + n_classes), dtype=np.float32)
    # One box in cell (x=3, y=5) of the stride-16 map, offset (0.5, 0.25), 2 cells wide, 1 high.
    row = (side // 8) ** 2 + 5 * (side // 16) + 3
    raw[row, :5] = [0.5, 0.25, np.log(2.0), 0.0, 0.9]
    raw[row, 5 + 17] = 0.8
    decoded = detection.decode_outputs(raw, side)
    assert decoded[row, :4] == pytest.approx([3.5 * 16, 5.25 * 16, 32, 16])

    found = detection.select_detections(decoded, ratio=0.5, width=1000, height=1000)
    assert len(found) == 1  # every other cell scores 0, under the confidence threshold
    x1, y1, x2, y2, score, cls = found[0]
    # Input pixels / 0.5 = original pixels.
    assert [x1, y1, x2, y2] == pytest.approx([(56 - 16) * 2, (84 - 8) * 2, (56 + 16) * 2, (84 + 8) * 2])
    assert score == pytest.approx(0.72) and cls == 17


def test_decode_rejects_a_model_of_another_size():
    with pytest.raises(TaskError, match="expected"):
        detection.decode_outputs(np.zeros((10, 85), np.float32), detection.INPUT_SIDE)


def test_nms_is_class_wise():
    decoded = np.zeros((3, 7), dtype=np.float32)
    decoded[:, :4] = [[50, 50, 20, 20], [51, 50, 20, 20], [50, 50, 20, 20]]
    decoded[:, 4] = 1.0
    decoded[0, 5], decoded[1, 5], decoded[2, 6] = 0.9, 0.8, 0.7  # two of class 0 overlap, one of class 1
    found = detection.select_detections(decoded, ratio=1.0, width=100, height=100)
    assert sorted(found[:, 5].tolist()) == [0, 1]
    assert found[:, 4].tolist() == pytest.approx([0.9, 0.7])  # best first


def test_letterbox_maps_back_to_the_original():
    height, width = 300, 600
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[100:200, 400:500] = (255, 0, 0)  # a red square
    canvas, ratio = detection.letterbox(rgb, detection.INPUT_SIDE)
    assert canvas.shape == (1, 3, detection.INPUT_SIDE, detection.INPUT_SIDE)
    assert ratio == pytest.approx(min(detection.INPUT_SIDE / height, detection.INPUT_SIDE / width))
    filled = int(height * ratio)
    assert (canvas[0, :, filled + 1 :, :] == detection.PAD_VALUE).all()  # padded below, image top left
    red = canvas[0, 2] > 200  # BGR: red is channel 2
    ys, xs = np.nonzero(red)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) / ratio
    assert box == pytest.approx([400, 100, 500, 200], abs=2 / ratio)


def test_coco_map_of_the_ground_truth_is_one():
    pytest.importorskip("pycocotools")
    truth = {"a.jpg": [[0, 0.5, 0.5, 0.2, 0.4], [3, 0.2, 0.3, 0.1, 0.1]], "b.jpg": [[0, 0.7, 0.7, 0.3, 0.3]]}
    outcomes = []
    for name, rows in truth.items():
        width, height = 200, 100
        boxes = [
            [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height, 0.9, c]
            for c, cx, cy, w, h in rows
        ]
        outcomes.append({"image": name, "width": width, "height": height, "detections": boxes})
    assert detection.coco_map(outcomes, truth) == pytest.approx({"map50": 1.0, "map50_95": 1.0})
    outcomes[0]["detections"][0][5] = 1  # wrong class: person now found once in two
    assert detection.coco_map(outcomes, truth)["map50"] < 1.0
    assert detection.coco_map([{**o, "detections": []} for o in outcomes], truth) == {
        "map50": 0.0,
        "map50_95": 0.0,
    }


def test_yolo_labels(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("3 0.5 0.5 0.25 0.125\n\n0 0.1 0.2 0.3 0.4\n")
    assert detection.read_yolo_labels(path) == [[3, 0.5, 0.5, 0.25, 0.125], [0, 0.1, 0.2, 0.3, 0.4]]
    assert detection.read_yolo_labels(tmp_path / "absent.txt") == []
    path.write_text("3 0.5 0.5\n")
    with pytest.raises(TaskError, match="x.txt:1"):
        detection.read_yolo_labels(path)


# --------------------------------------------------------------------------- segmentation
VOC = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


def test_voc_lookup():
    coco = {
        0: "unlabeled",
        1: "person",
        4: "motorcycle",
        5: "airplane",
        44: "bottle",
        47: "cup",
        63: "couch",
        64: "potted plant",
        67: "dining table",
        72: "tv",
        189: "table-merged",
        199: "wall-other-merged",
    }
    table = segmentation.voc_lookup(coco, VOC)
    expected = {
        0: segmentation.IGNORE,
        1: VOC.index("person"),
        4: VOC.index("motorbike"),
        5: VOC.index("aeroplane"),
        44: VOC.index("bottle"),
        47: 0,
        63: VOC.index("sofa"),
        64: VOC.index("pottedplant"),
        67: VOC.index("diningtable"),
        72: VOC.index("tvmonitor"),
        189: 0,
        199: 0,
    }
    assert {k: int(table[k]) for k in expected} == expected
    assert table[3] == segmentation.IGNORE  # an id no class names


def test_voc_labels_stop_at_the_notes(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("background\naeroplane\nbicycle\n\nand 255 is the ignore label\n")
    assert segmentation.read_voc_labels(path) == ["background", "aeroplane", "bicycle"]


def test_mean_iou_by_hand():
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255]], dtype=np.uint8)
    predicted = np.array([[0, 0, 1, 0], [0, 0, 1, 1], [2, 1, 2, 1]], dtype=np.uint8)
    # class 0: TP 4, FP 1, FN 0 -> 4/5; class 1: TP 3, FP 1, FN 1 -> 3/5; class 2: TP 1, FN 1 -> 1/2
    matrix = segmentation.dense_confusion([segmentation.sparse_confusion(truth, predicted)])
    assert segmentation.mean_iou(matrix) == pytest.approx((4 / 5 + 3 / 5 + 1 / 2) / 3)
    # Summed over images, not averaged per image.
    both = segmentation.dense_confusion([segmentation.sparse_confusion(truth, predicted)] * 2)
    assert segmentation.mean_iou(both) == pytest.approx(segmentation.mean_iou(matrix))


def test_fit_and_pad_keeps_the_aspect():
    canvas, (h, w) = segmentation.fit_and_pad(np.zeros((100, 300, 3), np.uint8), 513)
    assert canvas.shape == (513, 513, 3) and (h, w) == (171, 513)
    assert (canvas[h:] == segmentation.PAD_VALUE).all() and (canvas[:h] == 0).all()
    labels = np.zeros((h, w), np.uint8)
    labels[:, w // 2 :] = 7
    back = segmentation.labels_to_size(labels, (100, 300))
    assert back.shape == (100, 300) and set(np.unique(back)) == {0, 7}


# ------------------------------------------------------------------------------- registry
def test_unknown_task():
    with pytest.raises(TaskError, match="unknown task"):
        make("captioning")


def test_tasks_need_their_models(tmp_path):
    for name in ("detection", "segmentation"):
        with pytest.raises(TaskError, match="missing"):
            make(name, tmp_path).prepare([tmp_path / "x.jpg"])


# ------------------------------------------------------------------------------ smoke run
def test_both_tasks_on_two_original_images():
    if not COCO.is_dir() or not MODELS.is_dir():
        pytest.skip(f"needs {COCO} and {MODELS} (the project's shared data), which are absent here")
    for module, package in (
        ("onnxruntime", "onnxruntime"),
        ("ai_edge_litert", "ai-edge-litert"),
        ("pycocotools", "pycocotools"),
    ):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module} (pip install {package})")
    import torch

    from ugicm_codec.evaluation.images import load_rgb

    torch.set_num_threads(1)
    images = sorted((COCO / "images").glob("*.jpg"))[:2]
    figures = {}
    for name in ("detection", "segmentation"):
        task = make(name, MODELS)
        task.prepare(images)
        outcomes = [task.measure(path, load_rgb(path)) for path in images]
        figures[name] = task.summarise(outcomes)
    assert figures["detection"]["n"] == 2 and 0.0 < figures["detection"]["map50"] <= 1.0
    assert 0.0 <= figures["detection"]["map50_95"] <= figures["detection"]["map50"]
    assert figures["segmentation"]["agreement_miou"] == pytest.approx(1.0)  # originals against themselves
    assert 0.0 < figures["segmentation"]["miou"] < 1.0


# --------------------------------------------------------------------- paired bootstrap
def _random_detections(seed=0, images=12, classes=4):
    """Ground truth and jittered, partly wrong detections with distinct scores."""
    rng = np.random.default_rng(seed)
    truth, outcomes = {}, []
    for i in range(images):
        name, width, height = f"{i}.jpg", 320, 240
        rows = [
            [int(rng.integers(classes)), *rng.uniform(0.2, 0.8, 2), *rng.uniform(0.05, 0.3, 2)]
            for _ in range(rng.integers(0, 5))
        ]
        truth[name] = rows
        found = []
        for c, cx, cy, w, h in rows:
            if rng.random() < 0.8:
                jitter = rng.normal(0, 0.02, 2)
                found.append(
                    [
                        (cx - w / 2 + jitter[0]) * width,
                        (cy - h / 2 + jitter[1]) * height,
                        (cx + w / 2) * width,
                        (cy + h / 2) * height,
                        float(rng.uniform(0.2, 1.0)),
                        c if rng.random() < 0.9 else (c + 1) % classes,
                    ]
                )
        for _ in range(rng.integers(0, 6)):  # false alarms
            x, y = rng.uniform(0, 0.7, 2)
            found.append(
                [
                    x * width,
                    y * height,
                    (x + 0.2) * width,
                    (y + 0.2) * height,
                    float(rng.uniform(0.0, 0.6)),
                    int(rng.integers(classes)),
                ]
            )
        outcomes.append({"image": name, "width": width, "height": height, "detections": found})
    return truth, outcomes


def _drawn(outcomes, counts):
    """The outcomes list of a resample: each image as many times as it was drawn, renamed apart."""
    return [{**o, "image": f"{k}-{o['image']}"} for o, n in zip(outcomes, counts) for k in range(int(n))]


def test_resampled_map_is_cocoeval_of_the_drawn_images():
    pytest.importorskip("pycocotools")
    truth, outcomes = _random_detections()
    weights = np.vstack(
        [np.ones(len(outcomes)), np.random.default_rng(1).multinomial(len(outcomes), [1 / 12] * 12, 3)]
    )
    resampled = detection.resampled_map(outcomes, truth, weights)
    assert resampled["map50"][0] == pytest.approx(detection.coco_map(outcomes, truth)["map50"], abs=1e-12)
    for row, counts in enumerate(weights):
        drawn = _drawn(outcomes, counts)
        renamed_truth = {o["image"]: truth[o["image"].split("-", 1)[1]] for o in drawn}
        expected = detection.coco_map(drawn, renamed_truth)
        assert resampled["map50"][row] == pytest.approx(expected["map50"], abs=1e-12)
        assert resampled["map50_95"][row] == pytest.approx(expected["map50_95"], abs=1e-12)
    none_found = detection.resampled_map([{**o, "detections": []} for o in outcomes], truth, weights)
    assert (none_found["map50"] == 0).all()


def test_resampled_top1_and_miou_are_summarise_of_the_drawn_images():
    rng = np.random.default_rng(2)
    classification = make("classification")
    labelled = [{"label": int(rng.integers(3)), "top5": list(rng.permutation(5))} for _ in range(9)]
    labelled.append({"label": None, "top5": [0, 1, 2, 3, 4]})  # unknown class: left out, as in summarise
    segmentation_task = make("segmentation")
    confusions = [
        {
            "agreement": [
                [int(rng.integers(3)), int(rng.integers(3)), int(rng.integers(1, 50))] for _ in range(4)
            ],
            "truth": None if i % 3 == 0 else [[int(rng.integers(4)), int(rng.integers(4)), 7]],
        }
        for i in range(10)
    ]
    weights = np.vstack([np.ones(10), rng.multinomial(10, [0.1] * 10, 4)])
    for task, outcomes in ((classification, labelled), (segmentation_task, confusions)):
        resampled = task.resampled(outcomes, weights)
        for row, counts in enumerate(weights):
            expected = task.summarise([o for o, n in zip(outcomes, counts) for _ in range(int(n))])
            assert {k: resampled[k][row] for k in resampled} == pytest.approx(
                {k: v for k, v in expected.items() if k != "n"}, abs=1e-12
            )


def test_paired_intervals():
    from ugicm_codec.evaluation.paired import draw_weights, paired_differences
    from ugicm_codec.evaluation.summary import _matched_table

    task = make("classification")
    rng = np.random.default_rng(3)
    human = [{"label": 0, "top5": [int(rng.random() < 0.5), 2, 3, 4, 5]} for _ in range(200)]
    same = paired_differences(task, {"q0": (human, human)}, draw_weights(200))
    assert {(r["metric"], r["low"], r["high"], r["not_above"]) for r in same} == {
        ("top1", 0, 0, 1),
        ("top5", 0, 0, 1),
    }
    # Right wherever the human decode is wrong among the first 60 images, and never worse: the
    # interval is clear of 0.
    better = [
        o if o["top5"][0] == 0 or i >= 60 else {"label": 0, "top5": [0, 2, 3, 4, 5]}
        for i, o in enumerate(human)
    ]
    gain = np.mean([b["top5"][0] == 0 for b in better]) - np.mean([h["top5"][0] == 0 for h in human])
    rows = paired_differences(task, {"q0": (human, better), "q50": (human, human)}, draw_weights(200))
    q0 = next(r for r in rows if r["setting"] == "q0" and r["metric"] == "top1")
    assert 0 < q0["low"] < gain < q0["high"] and q0["not_above"] == 0
    mean = next(r for r in rows if r["setting"] == "mean" and r["metric"] == "top1")
    assert mean["low"] == pytest.approx(q0["low"] / 2) and mean["high"] == pytest.approx(q0["high"] / 2)
    # results.md shows the interval beside each difference and the mean.
    matched = [
        {
            "setting": s,
            "bpp": 0.1,
            "task": "classification",
            "metric": "top1",
            "human": 0.5,
            "machine": m,
            "baselines": {},
        }
        for s, m in (("q0", 0.5 + gain), ("q50", 0.5))
    ]
    table = "\n".join(_matched_table({"matched": matched, "paired": rows}))
    assert f"{q0['low']:+.4f} … {q0['high']:+.4f}" in table and "95 % interval" in table
    assert f"{mean['low']:+.4f} … {mean['high']:+.4f}" in table
