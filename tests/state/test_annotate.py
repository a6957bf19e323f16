"""densecore.annotate: the encodings against naive references written from the formats'
descriptions, and the round trip state -> Label Studio / COCO -> answers -> label state."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import densecore
from densecore import annotate as A
from densecore.annotate.shapes import point_mask, polygon_mask, rectangle_polygon

NAMES = ["road", "car", "person"]


# ---------------------------------------------------------------- naive references
def naive_brush_decode(rle):
    """rle-pack's decoder, one bit at a time."""
    bits = "".join(format(b, "08b") for b in rle)
    pos = 0

    def read(n):
        nonlocal pos
        v = int(bits[pos:pos + n], 2)
        pos += n
        return v

    num = read(32)
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out, i = [0] * num, 0
    while i < num:
        x = read(1)
        j = i + 1 + read(sizes[read(2)])
        if x:
            v = read(word)
            for t in range(i, j):
                out[t] = v
            i = j
        else:
            while i < j:
                out[i] = read(word)
                i += 1
    return out


def literal_brush_encode(values, word=12, sizes=(2, 5, 6, 9)):
    """A stream of literal blocks only (flag 0), another word size and field widths."""
    s = format(len(values), "032b") + format(word - 1, "05b")
    s += "".join(format(z - 1, "04b") for z in sizes)
    i = 0
    while i < len(values):
        n = min(len(values) - i, 1 << sizes[1])
        s += "0" + "01" + format(n - 1, f"0{sizes[1]}b")
        s += "".join(format(v, f"0{word}b") for v in values[i:i + n])
        i += n
    s += "0" * (-len(s) % 8)
    return [int(s[k:k + 8], 2) for k in range(0, len(s), 8)]


def naive_coco_counts(mask):
    flat = mask.T.ravel().tolist()
    counts, cur, n = [], False, 0
    for v in flat:
        if v == cur:
            n += 1
        else:
            counts.append(n)
            cur, n = v, 1
    counts.append(n)
    return counts


def naive_coco_string(counts):
    """pycocotools' rleToString, from its description."""
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


# ---------------------------------------------------------------- encodings
def test_brush_rle_of_one_pixel_is_the_hand_written_stream():
    bits = (format(4, "032b") + "00111" + "0010" + "0011" + "0111" + "1111"
            + "1" + "00" + "011" + "11111111")
    bits += "0" * (-len(bits) % 8)
    want = [int(bits[k:k + 8], 2) for k in range(0, len(bits), 8)]
    assert A.brush_rle_encode(np.ones((1, 1), bool)) == want


@pytest.mark.parametrize("seed", range(4))
def test_brush_rle_round_trips_and_matches_the_naive_decoder(seed):
    g = np.random.default_rng(seed)
    h, w = g.integers(1, 40, 2)
    mask = g.random((h, w)) < [0.02, 0.5, 0.98, 0.3][seed]
    if seed == 3:
        mask = np.zeros((300, 300), bool)  # runs longer than 65536 values
        mask[150, 3] = True
        h, w = mask.shape
    rle = A.brush_rle_encode(mask)
    naive = np.array(naive_brush_decode(rle)).reshape(h, w, 4)
    assert (naive == 255 * mask[..., None]).all()
    assert np.array_equal(A.brush_rle_decode(rle, (h, w)), 255 * mask.astype(np.uint8))


def test_brush_rle_decoder_reads_literal_blocks_and_other_word_sizes():
    g = np.random.default_rng(0)
    alpha = g.integers(0, 256, (5, 7))
    values = np.stack([g.integers(0, 4096, (5, 7))] * 3 + [alpha], -1).ravel().tolist()
    rle = literal_brush_encode(values)
    assert naive_brush_decode(rle) == values
    assert np.array_equal(A.brush_rle_decode(rle, (5, 7)), alpha)
    with pytest.raises(ValueError, match="values"):
        A.brush_rle_decode(rle, (5, 8))
    with pytest.raises(ValueError, match="truncated"):
        A.brush_rle_decode(rle[:len(rle) // 2], (5, 7))


@pytest.mark.parametrize("seed", range(3))
def test_coco_rle_matches_naive_runs_and_decodes_compressed_strings(seed):
    g = np.random.default_rng(seed)
    mask = g.random((g.integers(1, 30), g.integers(1, 30))) < 0.4
    mask[0, 0] = bool(seed % 2)  # both first-run cases
    rle = A.coco_rle_encode(mask)
    assert rle == {"size": list(mask.shape), "counts": naive_coco_counts(mask)}
    assert np.array_equal(A.coco_rle_decode(rle), mask)
    compressed = {"size": rle["size"], "counts": naive_coco_string(rle["counts"])}
    assert np.array_equal(A.coco_rle_decode(compressed), mask)
    with pytest.raises(ValueError, match="cover"):
        A.coco_rle_decode({"size": [mask.shape[0] + 1, mask.shape[1]], "counts": rle["counts"]})


def test_shapes_cover_the_pixels_whose_centres_are_inside():
    tri = polygon_mask([[0, 0], [4, 0], [0, 4]], (4, 4))
    assert tri.astype(int).tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0],
                                        [0, 0, 0, 0]]
    # a 2x2 square turned 90 degrees clockwise about its top-left corner (2, 0)
    turned = polygon_mask(rectangle_polygon(2, 0, 2, 2, 90), (3, 4))
    assert np.argwhere(turned).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert np.argwhere(point_mask(3.99, 1.0, (3, 4))).tolist() == [[1, 3]]
    assert not point_mask(4.0, 1.0, (3, 4)).any()


# ---------------------------------------------------------------- the round trip
def round_setup(tmp_path, shape=(12, 16), n=3):
    ids = [f"img{i}" for i in range(n)]
    queries = densecore.ActiveLabelState(tmp_path / "queries", ids, shape)
    labels = densecore.ActiveLabelState(tmp_path / "labels", ids, shape)
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(n, 3, *shape, generator=g) * 3, 1)
    feats = torch.randn(n, 4, shape[0] // 2, shape[1] // 2, generator=g)
    dens = torch.rand(n, shape[0] // 2, shape[1] // 2, generator=g) + 0.5
    densecore.query_round(queries, 0, ids, probs, feats, dens, 4, alpha=4, region_size=3)
    pred = {i: probs[k].argmax(0).numpy() for k, i in enumerate(ids)}
    conf = {i: probs[k].max(0).values.numpy() for k, i in enumerate(ids)}
    gt = {i: np.random.default_rng(k).integers(0, 3, shape) for k, i in enumerate(ids)}
    return ids, queries, labels, pred, conf, gt


def annotate_task(task, answer_map, mask, names=NAMES):
    """What an annotator leaves: brush results painting answer_map at mask."""
    h, w = mask.shape
    results = [{"id": f"a{c}", "type": "brushlabels", "from_name": "label",
                "to_name": "image", "original_width": w, "original_height": h,
                "image_rotation": 0,
                "value": {"format": "rle", "rle": A.brush_rle_encode(mask & (answer_map == c)),
                          "brushlabels": [names[c]]}}
               for c in np.unique(answer_map[mask]).tolist()]
    return {**task, "id": 7, "annotations": [
        {"id": 1, "result": [], "was_cancelled": True, "updated_at": "2026-01-02T00:00:00Z"},
        {"id": 2, "result": results, "was_cancelled": False,
         "updated_at": "2026-01-01T00:00:00Z"}]}


def test_label_studio_round_trip_records_complete_tasks_and_keeps_partial_ones_pending(
        tmp_path):
    ids, queries, labels, pred, conf, gt = round_setup(tmp_path)
    tasks = A.label_studio_tasks(queries, 0, lambda i: f"/data/local-files/?d={i}.png", pred,
                                 class_names=NAMES, scores=conf)
    assert [t["data"]["image_id"] for t in tasks] == ids
    for t, i in zip(tasks, ids):  # the pre-annotation is the prediction at the queries
        q = queries.queried(i, 0)
        painted = np.full(q.shape, -1)
        for r in t["predictions"][0]["result"]:
            assert (r["original_height"], r["original_width"]) == q.shape
            m = A.brush_rle_decode(r["value"]["rle"], q.shape) > 0
            painted[m] = NAMES.index(r["value"]["brushlabels"][0])
        assert np.array_equal(painted >= 0, q)
        assert np.array_equal(painted[q], pred[i][q])
        assert t["predictions"][0]["score"] == pytest.approx(conf[i][q].mean())
    # the annotator: image 0 done, image 1 half done, image 2 untouched
    q0, q1 = queries.queried(ids[0], 0), queries.queried(ids[1], 0)
    half = q1.copy()
    half[tuple(np.argwhere(q1)[len(np.argwhere(q1)) // 2:].T)] = False
    assert 0 < half.sum() < q1.sum()
    exported = [annotate_task(tasks[0], gt[ids[0]], q0), annotate_task(tasks[1], gt[ids[1]], half),
                tasks[2]]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(exported))  # through JSON, as Label Studio hands it over
    report = A.import_label_studio(str(path), queries, labels, 0, class_names=NAMES)
    assert report.recorded == [ids[0]]
    assert report.pending == {ids[1]: int(q1.sum() - half.sum()), ids[2]: int(
        queries.queried(ids[2], 0).sum())}
    got = labels.labels(ids[0])
    assert np.array_equal(got[q0], gt[ids[0]][q0]) and (got[~q0] == 255).all()
    assert labels.rounds(ids[1]) == [] and labels.rounds(ids[2]) == []
    # the annotator finishes image 1; importing everything again records it
    exported[1] = annotate_task(tasks[1], gt[ids[1]], q1)
    report = A.import_label_studio(exported, queries, labels, 0, class_names=NAMES)
    assert report.recorded == ids[:2] and list(report.pending) == [ids[2]]
    assert np.array_equal(labels.labels(ids[1])[q1], gt[ids[1]][q1])


def test_pixels_outside_the_queries_are_refused_with_a_named_error(tmp_path):
    ids, queries, labels, pred, conf, gt = round_setup(tmp_path)
    tasks = A.label_studio_tasks(queries, 0, {i: i for i in ids}, pred, class_names=NAMES)
    q = queries.queried(ids[0], 0)
    h, w = q.shape
    rect = {"type": "rectanglelabels", "original_width": w, "original_height": h,
            "value": {"x": 0, "y": 0, "width": 100, "height": 100, "rotation": 0,
                      "rectanglelabels": ["car"]}}
    task = {**tasks[0], "annotations": [{"result": [rect]}]}
    with pytest.raises(A.OutsideQueryError, match=f"{ids[0]!r} labels {int((~q).sum())} "
                                                  "pixels outside the queries of round 0"):
        A.import_label_studio([task], queries, labels, 0, class_names=NAMES)
    assert labels.summary()["labeled"] == 0  # nothing recorded
    report = A.import_label_studio([task], queries, labels, 0, class_names=NAMES,
                                   outside="drop")
    assert report.recorded == [ids[0]] and report.dropped == {ids[0]: int((~q).sum())}
    assert (labels.labels(ids[0])[q] == 1).all()


def test_class_names_are_mapped_and_unknown_ones_refused(tmp_path):
    ids, queries, labels, pred, conf, gt = round_setup(tmp_path)
    tasks = A.label_studio_tasks(queries, 0, {i: i for i in ids}, pred, class_names=NAMES)
    q = queries.queried(ids[0], 0)
    void = np.zeros(q.shape, int)
    names = {"road": 0, "car": 1, "person": 2, "void": 255}
    task = annotate_task(tasks[0], void, q, names=["void"])
    with pytest.raises(A.UnknownClassError, match="'void' is not in class_names"):
        A.import_label_studio([task], queries, labels, 0, class_names=NAMES)
    A.import_label_studio([task], queries, labels, 0, class_names=names)
    assert (labels.labels(ids[0], ignore_index=254)[q] == 255).all()
    with pytest.raises(ValueError, match="another label state"):
        A.record_answers(queries, queries, 0, {})


def test_polygon_and_keypoint_answers_in_percent_coordinates(tmp_path):
    shape = (10, 20)
    queries = densecore.ActiveLabelState(tmp_path / "q", ["a"], shape)
    labels = densecore.ActiveLabelState(tmp_path / "l", ["a"], shape)
    q = np.zeros(shape, bool)
    q[2:4, 4:6] = True  # a 2x2 block
    q[7, 13] = True  # and a pixel
    queries.add("a", q, round=0)
    poly = {"type": "polygonlabels", "original_width": 20, "original_height": 10,
            "value": {"points": [[20, 20], [30, 20], [30, 40], [20, 40]],
                      "polygonlabels": ["person"]}}
    point = {"type": "keypointlabels", "original_width": 20, "original_height": 10,
             "value": {"x": 67.5, "y": 75, "keypointlabels": ["car"]}}
    task = {"data": {"image": "a.png", "image_id": "a", "round": 0},
            "annotations": [{"result": [poly, point]}]}
    assert A.import_label_studio([task], queries, labels, 0, class_names=NAMES).recorded == ["a"]
    lab = labels.labels("a")
    assert (lab[2:4, 4:6] == 2).all() and lab[7, 13] == 1 and (lab != 255).sum() == 5


def test_coco_round_trip_maps_categories_by_name(tmp_path):
    ids, queries, labels, pred, conf, gt = round_setup(tmp_path)
    coco = A.coco_queries(queries, 0, pred, class_names=NAMES, scores=conf)
    assert [im["densecore_id"] for im in coco["images"]] == ids
    for im in coco["images"]:  # the annotations cover exactly the queries, with the prediction
        i = im["densecore_id"]
        painted = np.full((im["height"], im["width"]), -1)
        for ann in coco["annotations"]:
            if ann["image_id"] == im["id"]:
                painted[A.coco_rle_decode(ann["segmentation"])] = ann["category_id"]
        q = queries.queried(i, 0)
        assert np.array_equal(painted >= 0, q) and np.array_equal(painted[q], pred[i][q])
    # an annotation tool renumbers the categories and writes the corrected masks
    answered = {"images": [{k: v for k, v in im.items() if k != "densecore_id"}
                           for im in coco["images"][:2]],
                "categories": [{"id": 10 + k, "name": n} for k, n in enumerate(NAMES)],
                "annotations": []}
    for im in answered["images"]:
        i = im["file_name"][:-4]
        q = queries.queried(i, 0)
        for c in range(3):
            m = q & (gt[i] == c)
            if m.any():
                seg = A.coco_rle_encode(m)
                seg["counts"] = naive_coco_string(seg["counts"])  # compressed, as tools write
                answered["annotations"].append({"id": len(answered["annotations"]) + 1,
                                                "image_id": im["id"], "category_id": 10 + c,
                                                "segmentation": seg})
    report = A.import_coco(json.loads(json.dumps(answered)), queries, labels, 0,
                           class_names=NAMES)
    assert report.recorded == ids[:2] and report.pending == {}
    for i in ids[:2]:
        q = queries.queried(i, 0)
        assert np.array_equal(labels.labels(i)[q], gt[i][q])


def test_rounds_are_imported_in_order_per_image(tmp_path):
    shape = (4, 4)
    queries = densecore.ActiveLabelState(tmp_path / "q", ["a"], shape)
    labels = densecore.ActiveLabelState(tmp_path / "l", ["a"], shape)
    m0, m1 = np.zeros(shape, bool), np.zeros(shape, bool)
    m0[0, 0] = m1[3, 3] = True
    queries.add("a", m0, round=0)
    queries.add("a", m1, round=1)
    assert A.record_answers(queries, labels, 1, {"a": np.where(m1, 2, -1)}).recorded == ["a"]
    with pytest.raises(ValueError, match="round 1 recorded.*round 0 must be imported before"):
        A.record_answers(queries, labels, 0, {"a": np.where(m0, 1, -1)})
    assert labels.rounds("a") == [1]
