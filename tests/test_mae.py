"Tests of mindvideo.mae: masking, masked loss, MAE <-> encoder weights, positional resizing, resuming, caching."
import json

import numpy as np
import pytest
import torch

import mindvideo.heldout as mh
import mindvideo.mae as mm
from mindvideo.blocks import patchify, random_masking, resize_pos_embed, sincos_pos_embed_1d
from mindvideo.core import InputError, load_preset
from mindvideo.mae import FMRIEncoder, MAEforFMRI, SubjectBatchSampler, masked_mse, subject_loader, train_mae

TINY = dict(patch_size=16, embed_dim=16, depth=2, num_heads=2, mlp_ratio=1.0, decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2)


def _mae(num_voxels=128, seed=0, **kw):
    torch.manual_seed(seed)
    return MAEforFMRI(num_voxels=num_voxels, **(TINY | kw))


def _fake_subjects(n=3, seed=0):
    "Low-rank, spatially smooth stand-in for load_pretrain_fmri: (N_i, V_i) with different V_i."
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        V = 64 + 16 * i
        load = np.cumsum(rng.standard_normal((4, V)), axis=1) / 4
        x = rng.standard_normal((24, 4)) @ load + 0.1 * rng.standard_normal((24, V))
        out.append(((x - x.mean()) / x.std()).astype(np.float32))
    return out


# ---------------------------------------------------------------- masking
@pytest.mark.parametrize("L,ratio", [(20, 0.75), (7, 0.5), (234, 0.75), (16, 0.0)])
def test_masking_exact_ratio(L, ratio):
    torch.manual_seed(0)
    kept, mask, ids = random_masking(torch.randn(8, L, 3), ratio)
    keep = max(1, int(L * (1 - ratio)))
    assert kept.shape == (8, keep, 3)
    assert torch.equal(mask.sum(1), torch.full((8,), float(L - keep)))
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_masking_differs_per_sample_and_keeps_visible_tokens():
    torch.manual_seed(0)
    x = torch.randn(16, 20, 3)
    kept, mask, ids = random_masking(x, 0.75)
    assert len({tuple(m.tolist()) for m in mask}) == 16  # a different mask for every sample
    for b in range(16):  # the kept tokens are exactly the visible ones
        vis = x[b][mask[b] == 0]
        assert torch.equal(torch.sort(kept[b], dim=0).values, torch.sort(vis, dim=0).values)


def test_masking_reproducible_with_noise():
    noise = torch.rand(4, 10)
    _, m1, _ = random_masking(torch.randn(4, 10, 2), 0.6, noise)
    _, m2, _ = random_masking(torch.randn(4, 10, 2), 0.6, noise)
    assert torch.equal(m1, m2)


def test_model_mask_ratio():
    mae = _mae(160)
    out = mae(torch.randn(5, 160))
    assert torch.equal(out.mask.sum(1), torch.full((5,), 10.0 - int(10 * 0.25)))


# ---------------------------------------------------------------- loss on masked patches only
def test_loss_counts_masked_patches_only():
    torch.manual_seed(0)
    pred, tgt = torch.randn(3, 8, 16), torch.randn(3, 8, 16)
    mask = (torch.rand(3, 8) > 0.5).float(); mask[:, 0] = 1
    ref = masked_mse(pred, tgt, mask)
    p2 = pred.clone(); p2[mask == 0] = 1e3  # visible patches: anything goes
    assert torch.allclose(masked_mse(p2, tgt, mask), ref)
    manual = torch.stack([((pred[b, l] - tgt[b, l]) ** 2).mean() for b in range(3) for l in range(8) if mask[b, l]]).mean()
    assert torch.allclose(ref, manual)


def test_model_loss_is_masked_mse_and_ignores_visible_targets():
    mae = _mae(128).eval()
    x = torch.randn(4, 128); noise = torch.rand(4, 8)
    out = mae(x, noise=noise)
    assert torch.allclose(out.loss, masked_mse(out.pred, patchify(x), out.mask))
    # the gradient of the loss w.r.t. the prediction is zero on visible patches
    pred = out.pred.detach().requires_grad_(True)
    masked_mse(pred, patchify(x), out.mask).backward()
    assert pred.grad[out.mask == 0].abs().max() == 0 and pred.grad[out.mask == 1].abs().max() > 0


def test_mae_rejects_bad_voxel_counts():
    mae = _mae(128)
    with pytest.raises(InputError, match="fmri"): mae(torch.randn(2, 100))
    with pytest.raises(InputError, match="num_voxels=128"): mae(torch.randn(2, 144))


# ---------------------------------------------------------------- positional embedding
def test_sincos_and_resize():
    pe = torch.from_numpy(sincos_pos_embed_1d(16, 10, cls_token=True))[None]
    assert pe.shape == (1, 11, 16) and torch.all(pe[0, 0] == 0)
    r = resize_pos_embed(pe, 5)
    assert r.shape == (1, 6, 16) and torch.equal(r[0, 0], pe[0, 0])
    ref = torch.nn.functional.interpolate(pe[:, 1:].transpose(1, 2), size=5, mode="nearest").transpose(1, 2)
    assert torch.equal(r[:, 1:], ref)
    assert torch.equal(resize_pos_embed(pe, 10), pe)
    assert resize_pos_embed(pe, 17).shape == (1, 18, 16)


@pytest.mark.parametrize("enc_voxels", [64, 128, 240])
def test_encoder_from_mae_resizes_positions(enc_voxels):
    mae = _mae(128)
    enc = FMRIEncoder.from_mae(mae, enc_voxels, window_size=2, temporal_attention=True, out_tokens=3, out_dim=8)
    L = enc_voxels // 16
    assert enc.pos_embed.shape == (1, L + 1, 16)
    assert torch.equal(enc.pos_embed, resize_pos_embed(mae.pos_embed.data, L))
    assert enc(torch.randn(2, 2, enc_voxels)).shape == (2, 3, 8)


# ---------------------------------------------------------------- weights: MAE <-> encoder, save/load
def test_weight_round_trip_mae_encoder(tmp_path):
    mae = _mae(128)
    mae.save_pretrained(tmp_path / "mae", safe_serialization=True)
    assert (tmp_path / "mae" / "diffusion_pytorch_model.safetensors").exists()
    mae2 = MAEforFMRI.from_pretrained(tmp_path / "mae")
    for k, v in mae.state_dict().items(): assert torch.equal(v, mae2.state_dict()[k]), k
    enc = FMRIEncoder.from_mae(mae2, 128, window_size=2, temporal_attention=True, out_tokens=4, out_dim=8)
    esd, msd = enc.state_dict(), mae.state_dict()
    shared = [k for k in esd if k in msd]
    assert len(shared) == len([k for k in msd if not k.startswith(("decoder", "mask_token", "cls_token"))])
    for k in shared: assert torch.equal(esd[k], msd[k]), k
    # the encoder's features equal the MAE encoder's per-frame features when nothing is masked
    mae.eval(); enc.eval()
    x = torch.randn(3, 2, 128)
    feats = enc.encode_features(x)  # (3, 2*8, 16)
    with torch.no_grad():
        tok = mae.patch_embed(x.reshape(6, 128)) + mae.pos_embed[:, 1:]
        for blk in mae.blocks: tok, _ = blk(tok)
        ref = mae.norm(tok).reshape(3, 16, 16)
    assert torch.allclose(feats, ref, atol=1e-5)
    # and back: the encoder's backbone loads into a fresh MAE
    enc.save_pretrained(tmp_path / "enc", safe_serialization=True)
    enc2 = FMRIEncoder.from_pretrained(tmp_path / "enc").eval()
    assert torch.allclose(enc2(x), enc(x), atol=1e-6)
    fresh = _mae(128, seed=1)
    missing, unexpected = fresh.load_state_dict({k: v for k, v in enc.state_dict().items() if k in fresh.state_dict()}, strict=False)
    assert not unexpected and all(k.startswith(("decoder", "mask_token", "cls_token")) for k in missing)
    assert torch.equal(fresh.blocks[1].attn.qkv.weight, mae.blocks[1].attn.qkv.weight)


def test_encoder_attentions_and_ablation():
    enc = FMRIEncoder(num_voxels=96, patch_size=16, embed_dim=16, depth=3, num_heads=2, mlp_ratio=1.0,
                      window_size=3, temporal_attention=True, out_tokens=5, out_dim=8).eval()
    x = torch.randn(2, 3, 96)
    tok, attns = enc(x, output_attentions=True)
    assert tok.shape == (2, 5, 8) and len(attns) == 3
    assert attns[2]["spatial"].shape == (2, 3, 2, 6, 6) and attns[2]["temporal"].shape == (2, 6, 2, 3, 3)
    assert torch.allclose(attns[0]["temporal"].sum(-1), torch.ones(2, 6, 2, 3), atol=1e-5)
    assert torch.allclose(enc(x), tok, atol=1e-5)
    noT = FMRIEncoder(num_voxels=96, patch_size=16, embed_dim=16, depth=3, num_heads=2, mlp_ratio=1.0,
                      window_size=3, temporal_attention=False, out_tokens=5, out_dim=8).eval()
    assert not any("attn_temp" in k for k in noT.state_dict())
    assert all(a["temporal"] is None for a in noT(x, output_attentions=True)[1])
    # without temporal attention, frame 0's features do not depend on frame 1
    x2 = x.clone(); x2[:, 1] += 1
    assert torch.allclose(noT.encode_features(x)[:, :6], noT.encode_features(x2)[:, :6], atol=1e-5)
    with pytest.raises(InputError, match="window_size=3"): enc(torch.randn(2, 2, 96))


def test_encoder_trains_temporal_attention():
    enc = FMRIEncoder(num_voxels=64, patch_size=16, embed_dim=16, depth=1, num_heads=2, mlp_ratio=1.0,
                      window_size=2, temporal_attention=True, out_tokens=2, out_dim=4)
    enc(torch.randn(2, 2, 64)).pow(2).mean().backward()
    assert enc.blocks[0].attn_temp.proj.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- data order and resuming
def test_subject_batches():
    s = SubjectBatchSampler([10, 7, 3], batch_size=4, epochs=2, seed=0)
    batches = list(s)
    assert len(batches) == len(s) == 2 * (3 + 2 + 1)
    for b in batches:  # each batch from one subject
        assert len({int(np.searchsorted([0, 10, 17, 20], i, side="right")) for i in b}) == 1
    assert sorted(sum(batches[:6], [])) == list(range(20)) and batches[:6] != batches[6:]
    assert list(SubjectBatchSampler([10, 7, 3], 4, 2, seed=0)) == batches


def test_resume_matches_uninterrupted(tmp_path):
    cfg = load_preset("smoke", {"mae.epochs": 4, "mae.checkpoint_every": 1, "mae.warmup_epochs": 1, "mae.batch_size": 8,
                                "mae.embed_dim": 16, "mae.num_heads": 2, "mae.depth": 1, "mae.decoder_embed_dim": 8, "mae.decoder_depth": 1})
    data = _fake_subjects(2)
    torch.manual_seed(0); m1 = mm.build_mae(cfg, 80); h1 = train_mae(m1, data, cfg, seed=0)
    torch.manual_seed(0); m2 = mm.build_mae(cfg, 80)
    calls = []
    orig = mm.mae_loss
    def crashing(model, batch):
        calls.append(1)
        if len(calls) == 9: raise KeyboardInterrupt  # during epoch 2 (6 batches per epoch) after the checkpoint at 6
        return orig(model, batch)
    mm.mae_loss = crashing
    try:
        with pytest.raises(KeyboardInterrupt): train_mae(m2, data, cfg, seed=0, ckpt_dir=tmp_path)
    finally:
        mm.mae_loss = orig
    assert json.loads((tmp_path / "last" / "trainer_state.json").read_text())["step"] == 6
    torch.manual_seed(1); m3 = mm.build_mae(cfg, 80)  # a fresh process: other init, restored from the checkpoint
    h3 = train_mae(m3, data, cfg, seed=0, ckpt_dir=tmp_path)
    for k, v in m1.state_dict().items(): assert torch.allclose(v, m3.state_dict()[k], atol=1e-5), k
    assert np.allclose(h1["loss"], h3["loss"], atol=1e-5)


# ---------------------------------------------------------------- stage functions
def test_pretrain_mae_cached_and_make_encoder(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDVIDEO_CACHE", str(tmp_path))
    calls = []
    def fake(cfg, seed):
        calls.append(seed); return _fake_subjects(3, seed)
    monkeypatch.setattr(mm, "load_pretrain_fmri", fake)
    cfg = load_preset("smoke", {"mae.epochs": 1})
    p = mm.pretrain_mae(cfg, seed=0)
    assert (p / "config.json").exists() and (p / "diffusion_pytorch_model.safetensors").exists()
    assert mm.pretrain_mae(cfg, seed=0) == p and len(calls) == 1  # cached
    info = mm.mae_history(cfg, 0)
    assert info["heldout_subjects"] == [2] and info["train_subjects"] == [0, 1]
    mae = mm.load_mae(cfg, 0)
    assert mae.config.num_voxels == 96  # the longest subject
    enc = mm.make_encoder(cfg, 112, seed=0)
    assert enc.config.window_size == cfg.data.window_size and enc.config.out_tokens == cfg.encoder.out_tokens
    assert torch.equal(enc.blocks[0].attn.qkv.weight, mae.blocks[0].attn.qkv.weight)
    out = enc(torch.randn(2, cfg.data.window_size, 112))
    assert out.shape == (2, cfg.encoder.out_tokens, cfg.encoder.out_dim)
    rnd = mm.make_encoder(load_preset("smoke+no_mae", {"mae.epochs": 1}), 112, seed=0)
    assert not torch.equal(rnd.blocks[0].attn.qkv.weight, mae.blocks[0].attn.qkv.weight)
    noT = mm.make_encoder(load_preset("smoke+no_temporal", {"mae.epochs": 1}), 112, seed=0)
    assert noT.config.temporal_attention is False


def test_baselines_and_scores():
    a = np.cumsum(np.random.default_rng(0).standard_normal((4, 64)), axis=1).astype(np.float32)
    m = np.zeros_like(a); m[:, 16:48] = 1
    assert np.array_equal(mh.fill_mean(a, m)[:, :16], a[:, :16])
    fi = mh.fill_interp(a, m)
    assert np.allclose(fi[:, 31], a[:, 15] + (a[:, 48] - a[:, 15]) * 16 / 33, atol=1e-4)
    s = mh.masked_scores(a, a, m)
    assert s["r"] == pytest.approx(1.0) and s["mse"] == 0


def test_pretrain_mae_resumes_after_interruption(tmp_path, monkeypatch):
    monkeypatch.setattr(mm, "load_pretrain_fmri", lambda cfg, seed: _fake_subjects(3, seed))
    cfg = load_preset("smoke", {"mae.epochs": 3, "mae.checkpoint_every": 1, "mae.batch_size": 8})
    monkeypatch.setenv("MINDVIDEO_CACHE", str(tmp_path / "a"))
    ref = MAEforFMRI.from_pretrained(mm.pretrain_mae(cfg, seed=0)).state_dict()
    monkeypatch.setenv("MINDVIDEO_CACHE", str(tmp_path / "b"))
    orig, calls = mm.mae_loss, []
    def crashing(model, batch):
        calls.append(1)
        if len(calls) == 8: raise KeyboardInterrupt  # in epoch 2 (6 batches per epoch)
        return orig(model, batch)
    monkeypatch.setattr(mm, "mae_loss", crashing)
    with pytest.raises(KeyboardInterrupt): mm.pretrain_mae(cfg, seed=0)
    root = mm.stage_dir(cfg, "mae", "data", "mae", seed=0)
    assert not (root / "model").exists() and (root / "ckpt" / "last" / "trainer_state.json").exists()
    monkeypatch.setattr(mm, "mae_loss", orig)
    out = MAEforFMRI.from_pretrained(mm.pretrain_mae(cfg, seed=0)).state_dict()
    for k, v in ref.items(): assert torch.allclose(v, out[k], atol=1e-5), k
    assert len(mm.mae_history(cfg, 0)["history"]["loss"]) == len(json.loads((tmp_path / "a").glob("mae/*/history.json").__next__().read_text())["history"]["loss"])


def test_mae_position_modes():
    x = torch.randn(2, 64); noise = torch.rand(2, 4)
    rel, ab = _mae(128, positions="relative").eval(), _mae(128, positions="absolute").eval()
    assert torch.equal(rel._pos(rel.pos_embed, 4), resize_pos_embed(rel.pos_embed, 4))
    assert torch.equal(ab._pos(ab.pos_embed, 4), ab.pos_embed[:, :5])
    assert torch.equal(rel._pos(rel.pos_embed, 8), ab._pos(ab.pos_embed, 8))  # full length: the same table
    assert torch.allclose(rel(torch.randn(2, 128), noise=torch.rand(2, 8)).loss * 0, torch.zeros(()))
    assert not torch.allclose(rel(x, noise=noise).pred, ab(x, noise=noise).pred)
    with pytest.raises(Exception, match="positions"): _mae(128, positions="sliced")


def test_positions_are_fixed_buffers():
    enc = FMRIEncoder(num_voxels=64, patch_size=16, embed_dim=16, depth=1, num_heads=2, mlp_ratio=1.0,
                      window_size=2, temporal_attention=True, out_tokens=2, out_dim=4).requires_grad_(True)
    assert "pos_embed" not in dict(enc.named_parameters()) and "pos_embed" in enc.state_dict()
    mae = _mae(64).requires_grad_(True)
    assert not any("pos_embed" in k for k, _ in mae.named_parameters())


# ---------------------------------------------------------------- the shipped MAE of quick
def _shipped_quick_mae():
    d = mm.shipped_mae(load_preset("quick"))  # raises if a file no longer has its recorded hash
    assert d is not None and d.name == "quick_mae", "mindvideo/standins/quick_mae: expected the shipped MAE of quick"
    return d


def test_shipped_mae_matches_its_provenance():
    from mindvideo.core import ABLATIONS
    from mindvideo.paths import shipped_root
    d = _shipped_quick_mae()
    prov = json.loads((d / "provenance.json").read_text())
    assert prov["preset"] == "quick" and prov["seed"] == 0 and prov["key"] == mm.mae_key(load_preset("quick"))
    assert "mindvideo ship-standins --stage mae --preset quick --seed 0" in prov["command"] and prov["commit"] not in ("", "unknown")
    assert not prov["commit"].endswith("-dirty"), "the shipped MAE must come from committed code"
    assert sorted(prov["files"]) == ["history.json", "model/config.json", "model/diffusion_pytorch_model.safetensors"]  # no pickles
    assert mm.pretrain_mae(load_preset("quick")) == d / "model" and mm.mae_dir("quick") == d
    for abl in ABLATIONS: assert mm.shipped_mae(load_preset(f"quick+{abl}")) == d  # the ablations read the same MAE (or none)
    assert mm.shipped_mae(load_preset("quick"), seed=1) is None  # another seed pretrains its own
    assert mm.shipped_mae(load_preset("quick", {"mae.retrain": True})) is None
    assert mm.shipped_mae(load_preset("quick", {"mae.epochs": 5})) is None
    shipped = [f for p in shipped_root().glob("*/provenance.json") for f in (p.parent / n for n in json.loads(p.read_text())["files"])]
    assert sum(f.stat().st_size for f in shipped) < 20e6, "everything mindvideo ships: at most 20 MB"


def test_shipped_weights_are_part_of_the_cache_key(tmp_path, monkeypatch):
    "Stages that may read shipped weights are keyed on their hashes: re-shipped weights re-run them."
    import shutil
    import mindvideo.paths as mp
    monkeypatch.setattr(mp, "_package_dir", lambda: tmp_path / "mindvideo")
    shutil.copytree(mp.Path(mm.__file__).parent, tmp_path / "mindvideo", ignore=shutil.ignore_patterns("standins", "__pycache__"))
    (tmp_path / "mindvideo" / "standins" / "x").mkdir(parents=True)
    prov = tmp_path / "mindvideo" / "standins" / "x" / "provenance.json"
    prov.write_text(json.dumps({"files": {"model.safetensors": "a"}, "commit": "1"}))
    mp.code_version.cache_clear()
    before = {m: mp.code_version(f"mindvideo.{m}") for m in ("data", "mae", "contrastive")}
    prov.write_text(json.dumps({"files": {"model.safetensors": "a"}, "commit": "2"}))  # the same weights from another commit
    mp.code_version.cache_clear()
    assert {m: mp.code_version(f"mindvideo.{m}") for m in before} == before
    prov.write_text(json.dumps({"files": {"model.safetensors": "b"}, "commit": "2"}))  # other weights
    mp.code_version.cache_clear()
    after = {m: mp.code_version(f"mindvideo.{m}") for m in before}
    mp.code_version.cache_clear()
    assert after["data"] == before["data"] and after["mae"] != before["mae"] and after["contrastive"] != before["contrastive"]


@pytest.mark.skipif(not __import__("os").environ.get("MINDVIDEO_SLOW_TESTS"),
                    reason="pretrains quick's MAE, about 2 minutes on two cores; set MINDVIDEO_SLOW_TESTS=1")
def test_shipped_mae_is_what_its_command_makes(tmp_path):
    "The recorded command, run again, writes the shipped files byte for byte."
    import os, subprocess, sys
    d = _shipped_quick_mae()
    prov = json.loads((d / "provenance.json").read_text())
    env = dict(os.environ, MINDVIDEO_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS=str(prov["environment"]["torch_threads"]))
    subprocess.run([sys.executable, "-m", "mindvideo", "ship-standins", "--stage", "mae", "--preset", "quick", "--seed", "0",
                    "--out", str(tmp_path / "out")], env=env, check=True)
    new = json.loads((tmp_path / "out" / "provenance.json").read_text())["files"]
    assert new == prov["files"], f"files that the command no longer makes byte for byte: {[f for f in prov['files'] if new.get(f) != prov['files'][f]]}"


def test_ship_standins_cli_ships_an_mae(tmp_path, monkeypatch):
    "`mindvideo ship-standins --stage mae` pretrains the preset's MAE and ships it with the command that made it (smoke: seconds)."
    from mindvideo.reproduce import main
    monkeypatch.setenv("MINDVIDEO_CACHE", str(tmp_path / "cache"))
    assert main(["ship-standins", "--stage", "mae", "--preset", "smoke", "--out", str(tmp_path / "smoke_mae")]) == 0
    prov = json.loads((tmp_path / "smoke_mae" / "provenance.json").read_text())
    assert prov["command"].endswith("mindvideo ship-standins --stage mae --preset smoke --seed 0")
    assert prov["key"] == mm.mae_key(load_preset("smoke")) and mm.shipped_mae(load_preset("smoke"), root=tmp_path) == tmp_path / "smoke_mae"
