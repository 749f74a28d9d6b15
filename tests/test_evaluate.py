"""`mindvideo evaluate` on release-format GIFs and on two folders: each metric against a hand computation."""
import json

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from mindvideo.core import InputError
from mindvideo.classifiers import Classifier
from mindvideo.evaluate import evaluate_folder, read_clips, read_frames, write_release_gif
from mindvideo.reproduce import main

F, H, W = 6, 16, 20


def _mean_colour_classifier():
    "A frame classifier with 6 classes whose logits are fixed linear functions of the frame's mean colour."
    M = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0], [0, -1, 0], [0, 0, -1]], float)
    fn = lambda x: np.asarray(x, float).mean((1, 2)) @ M.T / 255.0
    return Classifier("frame-colour", "frame", 6, fn, 64, "mean colour (test)"), M


def _clips(n=5, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 1, H, W, 3))
    gt = np.clip(base + rng.integers(-20, 20, (n, F, H, W, 3)), 0, 255).astype(np.uint8)
    pred = np.clip(gt.astype(int) + rng.integers(-60, 60, gt.shape), 0, 255).astype(np.uint8)
    return gt, pred


@pytest.fixture
def gif_folder(tmp_path):
    gt, pred = _clips()
    for k in range(len(gt)): write_release_gif(gt[k], pred[k], tmp_path / "gifs" / f"test{k + 1}.gif")
    return tmp_path / "gifs"


def test_release_gif_geometry_and_ssim_by_hand(gif_folder, tmp_path):
    clf, M = _mean_colour_classifier()
    rep = evaluate_folder(gif_folder, out=tmp_path / "out", classifiers=[clf], n_ways=(2,), n_trials=50)
    # SSIM by hand: the release's np.split halves, scikit-image per frame, mean over frames and clips
    gifs = [read_frames(gif_folder / f"test{k}.gif") for k in range(1, 6)]
    assert gifs[0].shape == (F, H + 4, 2 * W + 6, 3)
    halves = [np.split(g, 2, axis=2) for g in gifs]
    ssim_release = np.mean([[structural_similarity(p[f], g[f], data_range=255, channel_axis=-1) for f in range(F)] for g, p in halves])
    assert abs(rep["scores"]["ssim_release"]["mean"] - ssim_release) < 1e-9
    aligned = np.mean([[structural_similarity(g[f, 2:2 + H, W + 4:2 * W + 4], g[f, 2:2 + H, 2:2 + W], data_range=255, channel_axis=-1)
                        for f in range(F)] for g in gifs])
    assert abs(rep["scores"]["ssim"]["mean"] - aligned) < 1e-9
    # 2-way strict by hand: a hit when the GT's top class beats the one distractor on the prediction's logits
    hits = []
    for g in gifs:
        gl = g[:, 2:2 + H, 2:2 + W].astype(float).mean((1, 2)) @ M.T / 255; pl = g[:, 2:2 + H, W + 4:2 * W + 4].astype(float).mean((1, 2)) @ M.T / 255
        t = gl.argmax(1)  # per frame
        # P(hit) over the uniform choice of one distractor among the other 5 classes: the share of classes the target beats
        hits.append(np.mean([np.mean([pl[f, t[f]] > pl[f, j] for j in range(6) if j != t[f]]) for f in range(F)]))
    assert abs(rep["scores"]["frame-colour/strict/2-way"]["mean"] - np.mean(hits)) < 0.08  # 50 random trials per clip
    assert abs(rep["chance"]["frame-colour/strict/2-way"]["mean"] - 0.5) < 0.1
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["per_clip.csv", "scores.json", "scores.png", "table.md"]
    lines = (tmp_path / "out" / "per_clip.csv").read_text().splitlines()
    assert lines[0].startswith("clip,") and [l.split(",")[0] for l in lines[1:]] == [f"test{k}" for k in range(1, 6)]
    assert json.loads((tmp_path / "out" / "scores.json").read_text())["classifiers"]["frame-colour"]["n_classes"] == 6


def test_two_folders_and_remove_overlap(tmp_path):
    gt, pred = _clips(4, seed=1); clf, _ = _mean_colour_classifier()
    for d, v in (("gt", gt), ("pred", pred)):
        (tmp_path / d).mkdir()
        for k in range(4): np.save(tmp_path / d / f"c{k}.npy", v[k])
    seg = np.array(["a_1", "a_2-b_1", "b_2", "c_1"])
    rep = evaluate_folder(tmp_path / "gt", tmp_path / "pred", classifiers=[clf], n_ways=(2,), n_trials=10,
                          seg_id=seg, remove_overlap=True)
    assert rep["clips"] == ["c0", "c2", "c3"]
    by_hand = np.mean([[structural_similarity(pred[k, f], gt[k, f], data_range=255, channel_axis=-1) for f in range(F)] for k in (0, 2, 3)])
    assert abs(rep["scores"]["ssim"]["mean"] - by_hand) < 1e-9 and "ssim_release" not in rep["scores"]


def test_bad_inputs_name_the_file(tmp_path, gif_folder):
    clf, _ = _mean_colour_classifier()
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: expected clips"):
        read_clips(tmp_path / "empty")
    odd = read_frames(gif_folder / "test1.gif")[:, :, 1:]
    import imageio.v3 as iio
    (tmp_path / "odd").mkdir(); iio.imwrite(tmp_path / "odd" / "test1.gif", odd, extension=".gif")
    with pytest.raises(InputError, match=r"test1.gif: expected an even width"):
        read_clips(tmp_path / "odd")
    (tmp_path / "junk").mkdir(); (tmp_path / "junk" / "test1.gif").write_bytes(b"not a gif")
    with pytest.raises(InputError, match=r"test1.gif: expected a readable GIF"):
        read_clips(tmp_path / "junk")
    (tmp_path / "a").mkdir(); (tmp_path / "b").mkdir()
    np.save(tmp_path / "a" / "x.npy", np.zeros((6, 16, 20, 3), np.uint8)); np.save(tmp_path / "b" / "x.npy", np.zeros((5, 16, 20, 3), np.uint8))
    with pytest.raises(InputError, match=r"b/x.npy: expected the shape of its ground truth"):
        read_clips(tmp_path / "a", tmp_path / "b")
    np.save(tmp_path / "a" / "y.npy", np.zeros((6, 16, 20, 3), np.uint8)); np.save(tmp_path / "b" / "y.npy", np.zeros((6, 16, 20, 3), np.uint8))
    np.save(tmp_path / "b" / "x.npy", np.zeros((6, 16, 20, 3), np.uint8)); np.save(tmp_path / "a" / "x.npy", np.zeros((6, 8, 20, 3), np.uint8))
    with pytest.raises(InputError, match="expected the shape of its ground truth"):
        read_clips(tmp_path / "a", tmp_path / "b")
    with pytest.raises(InputError, match="labels: expected one entry per clip"):
        evaluate_folder(gif_folder, classifiers=[clf], labels=np.zeros(2), n_ways=(2,))
    assert main(["evaluate", str(tmp_path / "empty"), "--out", str(tmp_path / "never")]) == 1
    assert not (tmp_path / "never").exists()


def test_clip_column_when_a_clip_folder_is_found(gif_folder, tmp_path, monkeypatch):
    "With a CLIP folder under $MINDVIDEO_DATA the report gains the 'clip' column, and names the model that made it."
    from mindvideo.wen2018 import make_tiny_models
    make_tiny_models(tmp_path / "data")
    monkeypatch.setenv("MINDVIDEO_DATA", str(tmp_path / "data"))
    clf, _ = _mean_colour_classifier()
    rep = evaluate_folder(gif_folder, classifiers=[clf], n_ways=(2,), n_trials=10)
    assert "clip" in rep["scores"] and -1 <= rep["scores"]["clip"]["mean"] <= 1 and "clip-vit-large-patch14" in rep["clip"]
    assert evaluate_folder(gif_folder, classifiers=[clf], n_ways=(2,), n_trials=10, clip=False)["clip"] is None
