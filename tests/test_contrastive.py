"""Contrastive stage: the loss against a hand computation, retrieval and ridge, the head and encoder round-trips."""
import math

import numpy as np
import pytest
import torch

from mindvideo.contrastive import ContrastiveModel, FMRIToCLIP, contrastive_loss, embed_fmri, info_nce, same_target, train_contrastive_model
from mindvideo.augment import augment_windows
from mindvideo.retrieval import category_top1, identification_nway, retrieval_topk
from mindvideo.core import InputError
from mindvideo.testing import tiny_fmri_encoder


def _np_info_nce(z, t, scale):
    "CLIP's symmetric InfoNCE written out with numpy, one row at a time."
    logits = scale * z @ t.T
    n = len(z)
    row = [np.log(np.exp(logits[i]).sum()) - logits[i, i] for i in range(n)]
    col = [np.log(np.exp(logits[:, j]).sum()) - logits[j, j] for j in range(n)]
    return 0.5 * (np.mean(row) + np.mean(col))


def test_info_nce_two_pairs_by_hand():
    # z0=(1,0), z1=(0.6,0.8); t0=(0.8,0.6), t1=(0,1); scale 2 -> logits [[1.6, 0], [1.92, 1.6]]
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8]], dtype=torch.float64)
    t = torch.tensor([[0.8, 0.6], [0.0, 1.0]], dtype=torch.float64)
    r0 = math.log(math.exp(1.6) + 1) - 1.6  # row 0: picks t0 among (1.6, 0)
    r1 = math.log(math.exp(1.92) + math.exp(1.6)) - 1.6  # row 1: picks t1 among (1.92, 1.6)
    c0 = math.log(math.exp(1.6) + math.exp(1.92)) - 1.6  # column 0: picks z0 among (1.6, 1.92)
    c1 = math.log(1 + math.exp(1.6)) - 1.6  # column 1: picks z1 among (0, 1.6)
    want = 0.5 * ((r0 + r1) / 2 + (c0 + c1) / 2)
    assert info_nce(z, t, math.log(2.0)).item() == pytest.approx(want, abs=1e-12)


def test_info_nce_matches_numpy_random_batch():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 4)); z /= np.linalg.norm(z, axis=1, keepdims=True)
    t = rng.normal(size=(5, 4)); t /= np.linalg.norm(t, axis=1, keepdims=True)
    got = info_nce(torch.tensor(z), torch.tensor(t), math.log(1 / 0.07)).item()
    assert got == pytest.approx(_np_info_nce(z, t, 1 / 0.07), abs=1e-9)


def test_contrastive_loss_weights_and_duplicate_positives():
    rng = np.random.default_rng(1)
    z, im, tx = (torch.nn.functional.normalize(torch.tensor(rng.normal(size=(4, 3))), dim=-1) for _ in range(3))
    s = math.log(10.0)
    li, lt = _np_info_nce(z.numpy(), im.numpy(), 10.0), _np_info_nce(z.numpy(), tx.numpy(), 10.0)
    assert contrastive_loss(z, im, tx, s, image_weight=0.3).item() == pytest.approx(0.3 * li + 0.7 * lt, abs=1e-9)
    # a repeated target: each of the two rows has two equally good positives -> uniform soft target
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    pos = same_target(t)
    assert pos.all()
    assert info_nce(t, t, math.log(50.0), pos).item() == pytest.approx(math.log(2), abs=1e-9)
    with pytest.raises(InputError, match="same shape"):
        info_nce(torch.zeros(2, 3), torch.zeros(3, 3), 0.0)


def test_retrieval_topk_and_category():
    sim = np.array([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.0, 0.2, 0.3]])
    assert retrieval_topk(sim, 1) == pytest.approx(2 / 3)
    assert retrieval_topk(sim, 2) == 1.0
    assert retrieval_topk(np.ones((3, 3)), 2) == 0.0  # ties count against the query
    assert category_top1(sim, [0, 0, 1]) == 1.0
    with pytest.raises(InputError, match="k: expected >= 1"):
        retrieval_topk(sim, 0)



def test_identification_nway_by_hand_and_at_chance():
    # query 0: its truth scores highest; query 1: one of the two others beats it; query 2: both do
    sim = np.array([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.5, 0.4, 0.3]])
    exact_2way = np.array([1.0, 0.5, 0.0])  # 2-way: P(the one drawn distractor does not beat the truth)
    np.testing.assert_allclose(identification_nway(sim, 2, n_trials=40000, seed=1), exact_2way, atol=0.01)
    np.testing.assert_array_equal(identification_nway(sim, 3), [1.0, 0.0, 0.0])  # 3-way: every other candidate is drawn
    np.testing.assert_array_equal(identification_nway(sim, 3, top_k=2), [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(identification_nway(np.ones((4, 4)), 2), np.zeros(4))  # ties count against the query
    # an explicit target column (e.g. caption candidates) and seeded draws
    np.testing.assert_array_equal(identification_nway(sim[:, ::-1], 3, target=[2, 1, 0]), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(identification_nway(sim, 2, seed=3), identification_nway(sim, 2, seed=3))
    # random similarities sit at chance 1/n; perfect ones at 1
    rand = np.random.default_rng(0).normal(size=(400, 400))
    for n in (2, 10, 50):
        assert identification_nway(rand, n).mean() == pytest.approx(1 / n, abs=0.015)
    assert identification_nway(np.eye(50), 50).mean() == 1.0


def test_identification_nway_rejects_bad_input():
    with pytest.raises(InputError, match=r"n_way: expected 2\.\.3"):
        identification_nway(np.eye(3), 4)
    with pytest.raises(InputError, match="target: expected 3 integer column indices"):
        identification_nway(np.eye(3), 2, target=[0, 1, 3])
    with pytest.raises(InputError, match="target: expected 3 integer column indices"):
        identification_nway(np.eye(3), 2, target=[0.0, 1.0, 2.0])
    with pytest.raises(InputError, match="sim"):
        identification_nway(np.array([[0.1, np.nan], [0.2, 0.3]]), 2)

def test_head_round_trip(tmp_path):
    torch.manual_seed(0)
    head = FMRIToCLIP(in_dim=8, proj_dim=6, temperature_init=0.05)
    head.save_pretrained(tmp_path / "clip_head", safe_serialization=True)
    assert (tmp_path / "clip_head" / "diffusion_pytorch_model.safetensors").exists()
    h2 = FMRIToCLIP.from_pretrained(tmp_path / "clip_head")
    x = torch.randn(3, 4, 8)
    torch.testing.assert_close(h2(x), head(x))
    assert h2.scale().exp().item() == pytest.approx(20.0, rel=1e-5)
    with pytest.raises(InputError, match="tokens: expected"):
        head(torch.randn(3, 8))


def _tiny_encoder(seed=0):
    return tiny_fmri_encoder(seed, out_dim=8)  # (B, 2, 32) -> (B, 3, 8)


def _toy_data(n=48, v=32, p=4, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, p)); z /= np.linalg.norm(z, axis=1, keepdims=True)
    fmri = rng.normal(size=(n, 2, v)).astype(np.float32)
    fmri[:, :, :p] += 3 * z[:, None].astype(np.float32)
    return fmri, z.astype(np.float32)


def test_trained_encoder_round_trips(tmp_path):
    from mindvideo.mae import FMRIEncoder
    fmri, z = _toy_data()
    model = ContrastiveModel(_tiny_encoder(), FMRIToCLIP(in_dim=8, proj_dim=4))
    backbone = {n: p.detach().clone() for n, p in model.encoder.named_parameters() if not n.startswith("proj_head")}
    hist = train_contrastive_model(model, fmri, z, z, epochs=0, head_epochs=2, batch_size=16, lr=1e-3)
    assert hist["phase"] == ["heads"] * 6
    for n, p in model.encoder.named_parameters():  # the heads phase leaves the backbone untouched
        if n in backbone: torch.testing.assert_close(p, backbone[n])
    hist = train_contrastive_model(model, fmri, z, z, epochs=3, batch_size=16, lr=1e-3)
    assert len(hist["loss"]) == 9 and np.isfinite(hist["loss"]).all()
    model.cpu()  # fit leaves the model on the accelerator's device (a GPU where there is one)
    model.encoder.save_pretrained(tmp_path / "fmri_encoder", safe_serialization=True)
    model.head.save_pretrained(tmp_path / "clip_head", safe_serialization=True)
    enc = FMRIEncoder.from_pretrained(tmp_path / "fmri_encoder").eval()
    head = FMRIToCLIP.from_pretrained(tmp_path / "clip_head").eval()
    x = torch.as_tensor(fmri[:5])
    torch.testing.assert_close(enc(x), model.encoder.eval()(x))
    np.testing.assert_allclose(embed_fmri(ContrastiveModel(enc, head), fmri[:5]), embed_fmri(model, fmri[:5]), atol=1e-6)


def _linear_encoder(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(1), torch.nn.Linear(64, 24), torch.nn.Unflatten(1, (3, 8)))


@pytest.mark.parametrize("aug,make", [({}, _linear_encoder), (dict(noise_std=0.5, voxel_dropout=0.2, mixco=0.5), _linear_encoder),
                                      (dict(token_dropout=0.5), _tiny_encoder)], ids=["plain", "augmented", "token_dropout"])
def test_training_resumes_exactly(tmp_path, monkeypatch, aug, make):
    import mindvideo.contrastive as mc
    fmri, z = _toy_data(n=32)
    def run(ckpt, init_seed=0):
        m = ContrastiveModel(make(init_seed), FMRIToCLIP(in_dim=8, proj_dim=4))
        h = train_contrastive_model(m, fmri, z, z, epochs=4, batch_size=8, lr=1e-2, ckpt_dir=ckpt, checkpoint_every=1, **aug)
        return m, h
    full, h_full = run(None)
    calls, real = [], mc.info_nce
    def crashing(*a, **k):  # two calls per step: crash during step 11, after the checkpoint of step 8
        calls.append(1)
        if len(calls) == 21: raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(mc, "info_nce", crashing)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path)
    monkeypatch.setattr(mc, "info_nce", real)
    resumed, h = run(tmp_path, init_seed=1)  # a fresh process: other init, restored from the checkpoint
    assert len(h["loss"]) == 16 and h["loss"][-1] < h["loss"][0]
    for a, b in zip(full.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_mixco_soft_positives_by_hand():
    "A window mixed 0.7/0.3 from clips 0 and 1 has target distribution (0.7, 0.3) in its row of the fMRI->target term."
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]]); z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mix = torch.tensor([[0.7, 0.3], [0.0, 1.0]])
    s = math.log(2.0)  # inverse temperature 2
    logits = 2.0 * (z @ t.T).numpy()
    ls = lambda v: v - np.log(np.exp(v).sum())
    row = -(0.7 * ls(logits[0])[0] + 0.3 * ls(logits[0])[1]) - ls(logits[1])[1]
    pos_t = mix.T.numpy() / mix.T.numpy().sum(1, keepdims=True)  # target -> fMRI: column weights, normalised
    col = -sum((pos_t[j] * ls(logits[:, j])).sum() for j in range(2))
    want = 0.5 * (row / 2 + col / 2)
    assert info_nce(z, t, s, mix @ same_target(t).float()).item() == pytest.approx(want, rel=1e-5)


def test_augment_windows_is_seeded_and_validated():
    x = torch.randn(16, 2, 40)
    a, ma = augment_windows(x, torch.Generator().manual_seed(3), noise_std=1.0, voxel_dropout=0.3, mixco=1.0)
    b, mb = augment_windows(x, torch.Generator().manual_seed(3), noise_std=1.0, voxel_dropout=0.3, mixco=1.0)
    torch.testing.assert_close(a, b); torch.testing.assert_close(ma, mb)
    torch.testing.assert_close(ma.sum(1), torch.ones(16))
    same, eye = augment_windows(x, torch.Generator())
    assert torch.equal(same, x) and torch.equal(eye, torch.eye(16))
    for bad in (dict(noise_std=-1.0), dict(voxel_dropout=1.0), dict(mixco=1.5)):
        with pytest.raises(InputError, match=next(iter(bad))):
            augment_windows(x, torch.Generator(), **bad)


def test_token_dropout_needs_patch_tokens_and_a_valid_fraction():
    fmri, z = _toy_data(n=16)
    with pytest.raises(InputError, match="token_dropout > 0 needs an FMRIEncoder"):
        train_contrastive_model(ContrastiveModel(_linear_encoder(), FMRIToCLIP(in_dim=8, proj_dim=4)), fmri, z, z, epochs=1, token_dropout=0.5)
    with pytest.raises(InputError, match=r"token_dropout: expected a value in \[0, 1\)"):
        train_contrastive_model(ContrastiveModel(_tiny_encoder(), FMRIToCLIP(in_dim=8, proj_dim=4)), fmri, z, z, epochs=1, token_dropout=1.0)
