"Tests of mindvideo.release: parity with the MinD-Video release's own outputs (tests/fixtures/release_tiny), conversion, errors."
import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel

from mindvideo.core import ConfigError, InputError
from mindvideo.inflate import MindVideoUNet3DConditionModel, unet_from_2d
from mindvideo.release import (UNUSED_ENCODER_KEYS, check_state_dict, convert_release, load_release, load_release_encoder,
                               load_release_unet, load_weights)
from mindvideo.pipeline import MindVideoPipeline

FIXTURE = Path(__file__).parent/"fixtures"/"release_tiny"
CKPT = FIXTURE/"checkpoint"
TOL = 1e-4  # max abs difference allowed against the release's float32 CPU outputs


@pytest.fixture(scope="module")
def ref():
    with np.load(FIXTURE/"reference.npz") as z: return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def parts():
    return load_release(CKPT)


def _video(pipe, ref):
    "The fixture's guided sample through MindVideoPipeline, in the release's layout (B, 3, F, H, W)."
    pipe.set_progress_bar_config(disable=True)
    out = pipe(fmri=torch.from_numpy(ref["fmri"]), negative_fmri=torch.from_numpy(ref["uncon_fmri"]), num_frames=ref["video"].shape[2],
               height=int(ref["height"]), width=int(ref["width"]), num_inference_steps=int(ref["num_inference_steps"]),
               guidance_scale=float(ref["guidance_scale"]), latents=torch.from_numpy(ref["latents"]), output_type="np")
    return out.frames.transpose(0, 4, 1, 2, 3)


def _maxdiff(a, b): return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


# -- parity with the release's numbers --------------------------------------------------------------------------------
def test_embeddings_match_release(parts, ref):
    with torch.no_grad(): emb = parts["fmri_encoder"](torch.from_numpy(ref["fmri"])).numpy()
    assert emb.shape == ref["embeddings"].shape
    assert _maxdiff(emb, ref["embeddings"]) < TOL


def test_noise_pred_matches_release(parts, ref):
    with torch.no_grad():
        eps = parts["unet"](torch.from_numpy(ref["latents"]), int(ref["timestep"]), torch.from_numpy(ref["embeddings"])).sample.numpy()
    assert eps.shape == ref["noise_pred"].shape
    assert _maxdiff(eps, ref["noise_pred"]) < TOL


def test_noise_pred_accepts_condition_repeated_per_frame(parts, ref):
    "mindvideo.inflate.predict_noise passes the condition already repeated per frame; the result is the same."
    from mindvideo.inflate import predict_noise
    with torch.no_grad():
        eps = predict_noise(parts["unet"], torch.from_numpy(ref["latents"]), torch.tensor(int(ref["timestep"])),
                            torch.from_numpy(ref["embeddings"])).numpy()
    assert _maxdiff(eps, ref["noise_pred"]) < TOL


def test_guided_video_from_release_folder(ref):
    assert _maxdiff(_video(MindVideoPipeline.from_release(CKPT), ref), ref["video"]) < TOL


def test_guided_video_after_convert_release(ref, tmp_path):
    dst = convert_release(CKPT, tmp_path/"converted")
    index = json.loads((dst/"model_index.json").read_text())
    assert index["unet"] == ["mindvideo.inflate", "MindVideoUNet3DConditionModel"]  # the network lives in 04_inflate
    assert index["fmri_encoder"] == ["mindvideo.mae", "FMRIEncoder"] and index["vae_scale"] == 0.18215
    assert not list(dst.rglob("*.bin")) and len(list(dst.rglob("*.safetensors"))) == 3
    pipe = MindVideoPipeline.from_pretrained(dst)
    assert isinstance(pipe.unet, MindVideoUNet3DConditionModel)
    assert _maxdiff(_video(pipe, ref), ref["video"]) < TOL


# -- layout -------------------------------------------------------------------------------------------------------
def test_state_dict_keys_equal_release_files(parts):
    unet_file = load_weights(CKPT/"unet"/"diffusion_pytorch_model.bin")
    assert set(parts["unet"].state_dict()) == set(unet_file)
    assert all(parts["unet"].state_dict()[k].shape == v.shape for k, v in unet_file.items())
    assert any(k.endswith("transformer_blocks.0.attn_temp.to_out.0.bias") for k in unet_file)
    enc_file = load_weights(CKPT/"fmri_encoder"/"diffusion_pytorch_model.bin")
    assert set(parts["fmri_encoder"].state_dict()) == set(enc_file) - set(UNUSED_ENCODER_KEYS)


def test_2d_block_names_give_the_same_model():
    cfg = json.loads((CKPT/"unet"/"config.json").read_text())
    cfg2d = {**cfg, "down_block_types": [b.replace("3D", "2D") for b in cfg["down_block_types"]],
             "up_block_types": [b.replace("3D", "2D") for b in cfg["up_block_types"]], "mid_block_type": "UNetMidBlock2DCrossAttn"}
    a, b = MindVideoUNet3DConditionModel.from_config(cfg), MindVideoUNet3DConditionModel.from_config(cfg2d)
    assert a.config.down_block_types == b.config.down_block_types and set(a.state_dict()) == set(b.state_dict())
    with pytest.raises(ConfigError, match="frame_attention"): MindVideoUNet3DConditionModel.from_config({**cfg, "frame_attention": "causal"})


def test_identity_at_init():
    "Inflated from a 2-D UNet, the video UNet is the 2-D UNet on one frame and on clips of identical frames."
    torch.manual_seed(0)
    u2 = UNet2DConditionModel(sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, cross_attention_dim=12,
                              attention_head_dim=2, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                              up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")).eval()
    u3 = unet_from_2d(u2).eval()
    z, cond = torch.randn(3, 4, 8, 8), torch.randn(3, 5, 12)
    with torch.no_grad():
        ref2d = u2(z, 37, cond).sample
        torch.testing.assert_close(u3(z[:, :, None], 37, cond).sample[:, :, 0], ref2d, atol=1e-5, rtol=0)
        same = u3(z[:, :, None].expand(-1, -1, 5, -1, -1), 37, cond).sample
        torch.testing.assert_close(same, ref2d[:, :, None].expand_as(same), atol=1e-5, rtol=0)
        diff = u3(torch.randn(3, 4, 5, 8, 8), 37, cond).sample  # real clips: frames interact (not a per-frame 2-D UNet)
        assert diff.shape == (3, 4, 5, 8, 8)
    temporal = {k for k in u3.state_dict() if ".attn_temp." in k or ".norm_temp." in k}
    assert set(u3.state_dict()) - set(u2.state_dict()) == temporal
    assert all(float(v.abs().max()) == 0 for k, v in u3.state_dict().items() if "attn_temp.to_out" in k)


# -- bad inputs -----------------------------------------------------------------------------------------------------
@pytest.fixture()
def ckpt_copy(tmp_path):
    dst = tmp_path/"ckpt"
    shutil.copytree(CKPT, dst)
    for p in dst.rglob("*"): p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def test_missing_weights_file_is_named(ckpt_copy):
    (ckpt_copy/"unet"/"diffusion_pytorch_model.bin").unlink()
    with pytest.raises(InputError, match=r"unet: expected a weights file"): load_release(ckpt_copy)
    shutil.rmtree(ckpt_copy/"vae")
    with pytest.raises(InputError, match=r"missing \['vae'\]"): load_release(ckpt_copy)


def test_unexpected_key_is_named(ckpt_copy):
    path = ckpt_copy/"unet"/"diffusion_pytorch_model.bin"
    torch.save({**load_weights(path), "mid_block.extra.weight": torch.zeros(2)}, path)
    with pytest.raises(InputError, match=r"diffusion_pytorch_model.bin: .*unexpected keys \(1\): mid_block.extra.weight"):
        load_release_unet(ckpt_copy/"unet")


def test_missing_key_is_named(ckpt_copy):
    path = ckpt_copy/"fmri_encoder"/"diffusion_pytorch_model.bin"
    sd = load_weights(path); sd.pop("blocks.1.attn_temp.proj.weight"); torch.save(sd, path)
    with pytest.raises(InputError, match=r"fmri_encoder/diffusion_pytorch_model.bin: .*missing keys \(1\): blocks.1.attn_temp.proj.weight"):
        load_release_encoder(ckpt_copy/"fmri_encoder")


def test_shape_mismatch_is_named(ckpt_copy):
    path = ckpt_copy/"unet"/"diffusion_pytorch_model.bin"
    sd = load_weights(path); sd["conv_in.weight"] = torch.zeros(16, 4, 1, 1); torch.save(sd, path)
    with pytest.raises(InputError, match=r"diffusion_pytorch_model.bin: .*shape mismatches \(1\): conv_in.weight \(16, 4, 1, 1\) in the file"):
        load_release_unet(ckpt_copy/"unet")


def test_pickle_needing_more_than_weights_is_refused(ckpt_copy):
    path = ckpt_copy/"fmri_encoder"/"model.pth"  # the release reads model.pth first, optionally {"model": ...}
    torch.save({"model": load_weights(ckpt_copy/"fmri_encoder"/"diffusion_pytorch_model.bin"), "config": argparse.Namespace(lr=1)}, path)
    with pytest.raises(InputError, match=r"model.pth: refused: it cannot be read with torch.load\(weights_only=True\)"):
        load_release_encoder(ckpt_copy/"fmri_encoder")


def test_model_pth_wrapped_in_model_key_loads(ckpt_copy, parts):
    sd = load_weights(ckpt_copy/"fmri_encoder"/"diffusion_pytorch_model.bin")
    torch.save({"model": sd, "epoch": 3}, ckpt_copy/"fmri_encoder"/"model.pth")
    enc = load_release_encoder(ckpt_copy/"fmri_encoder")
    assert all(torch.equal(v, parts["fmri_encoder"].state_dict()[k]) for k, v in enc.state_dict().items())


def test_unsupported_encoder_config(ckpt_copy):
    p = ckpt_copy/"fmri_encoder"/"config.json"
    p.write_text(json.dumps({**json.loads(p.read_text()), "use_norm": True}))
    with pytest.raises(ConfigError, match="use_norm"): load_release_encoder(ckpt_copy/"fmri_encoder")


def test_check_state_dict_lists_all_problems():
    lin = torch.nn.Linear(2, 3)
    with pytest.raises(InputError, match=r"x.bin: .*missing keys \(1\): bias; unexpected keys \(1\): extra"):
        check_state_dict({"weight": torch.zeros(3, 2), "extra": torch.zeros(1)}, lin, "x.bin")


def test_clips_do_not_mix(parts, ref):
    "Frames fold clip-major, as the release's (b f): each clip's prediction is the same alone, or in a batch in another order."
    lat, emb = torch.from_numpy(ref["latents"]), torch.from_numpy(ref["embeddings"])
    with torch.no_grad():
        alone = parts["unet"](lat[1:], int(ref["timestep"]), emb[1:]).sample.numpy()
        swapped = parts["unet"](lat.flip(0), torch.tensor([int(ref["timestep"])] * 2), emb.flip(0)).sample.numpy()
    assert _maxdiff(alone[0], ref["noise_pred"][1]) < TOL
    assert _maxdiff(swapped[::-1], ref["noise_pred"]) < TOL


def test_num_voxels_override(parts):
    "num_voxels is the data's padded width: the config's by default; another width resizes pos_embed but must fit the head."
    same = load_release_encoder(CKPT/"fmri_encoder", num_voxels=112)
    assert all(torch.equal(v, parts["fmri_encoder"].state_dict()[k]) for k, v in same.state_dict().items())
    with pytest.raises(InputError, match=r"shape mismatches \(1\): proj_head.channel_mapper.weight \(5, 14\) in the file, \(5, 12\) in the model"):
        load_release_encoder(CKPT/"fmri_encoder", num_voxels=96)


def test_fast_path_batched_matches_one_clip_at_a_time(ref):
    "The authors' network, float32: clips sampled together (fast path: channels-last, chunked decoding) = one clip per call."
    pipe = MindVideoPipeline.from_release(CKPT); pipe.set_progress_bar_config(disable=True)
    fmri = torch.from_numpy(np.concatenate([ref["fmri"], ref["fmri"][:1] * -1]))  # 3 clips
    kw = dict(negative_fmri=torch.from_numpy(ref["uncon_fmri"][:1]), num_frames=6, height=16, width=16, num_inference_steps=4,
              guidance_scale=12.5, output_type="np")
    gen = torch.Generator().manual_seed(3407)  # one generator drawn from in test order, as the release's eval_all.py
    one = np.concatenate([pipe(fmri=fmri[k:k + 1], generator=gen, **kw).frames for k in range(3)])
    pipe.enable_fast_sampling(channels_last=True)
    batched = pipe(fmri=fmri, generator=torch.Generator().manual_seed(3407), decode_chunk_size=5, **kw).frames
    assert _maxdiff(batched, one) < 1e-5
