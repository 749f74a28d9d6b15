import json

import numpy as np
import pytest

from mindvideo.core import ConfigError, InputError, atomic_path, check_array, load_npy, load_preset
from mindvideo.paths import stage_dir
from mindvideo.provenance import save_fig, save_metrics


@pytest.mark.parametrize("name", ["smoke", "quick", "wen2018", "quick+no_mae", "quick+no_contrastive", "quick+no_temporal", "quick+no_guidance"])
def test_presets_load(name):
    p = load_preset(name)
    assert p.data.frames_per_tr == 6


@pytest.mark.parametrize("overrides, msg", [
    ({"mae.mask_ratoi": 0.5}, "unknown key quick.mae.mask_ratoi"),
    ({"mae.mask_ratio": 1.5}, "quick.mae.mask_ratio: expected <= 0.99"),
    ({"data.n_voxels": "many"}, "quick.data.n_voxels"),
    ({"data.source": "hcp"}, "quick.data.source: expected one of"),
    ({"diffusion.attention": "dense"}, "quick.diffusion.attention"),
    ({"nosection.x": 1}, "unknown override key 'nosection.x'"),
    ({"guidance.scale": -1.0}, "quick.guidance.scale"),
])
def test_bad_preset_key_or_value(overrides, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(".", r"\.")):
        load_preset("quick", overrides)


def test_unknown_preset_and_ablation():
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        load_preset("fast")
    with pytest.raises(ConfigError, match="unknown ablation 'no_x'"):
        load_preset("quick+no_x")


def test_env_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("MINDVIDEO_CACHE", str(tmp_path))
    assert str(stage_dir(load_preset("smoke"), "world", "data")).startswith(str(tmp_path))


def test_load_npy_refuses_objects_and_nan(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="o.npy: expected a numeric or string array"):
        load_npy(tmp_path / "o.npy")
    np.save(tmp_path / "n.npy", np.array([1.0, np.inf]))
    with pytest.raises(InputError, match="NaN/Inf"):
        load_npy(tmp_path / "n.npy")
    with pytest.raises(InputError, match="missing.npy: file not found"):
        load_npy(tmp_path / "missing.npy")
    np.save(tmp_path / "s.npy", np.zeros((2, 3)))
    with pytest.raises(InputError, match=r"expected shape \(\*, 4\), found \(2, 3\)"):
        load_npy(tmp_path / "s.npy", shape=(None, 4))


def test_atomic_dir_survives_interrupt(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_path(target, is_dir=True) as t:
        (t / "w").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_path(target, is_dir=True) as t:
            (t / "w").write_text("half")
            raise RuntimeError
    assert (target / "w").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_save_fig_and_metrics_manifest(tmp_path):
    import matplotlib.pyplot as plt
    fig = plt.figure()
    f = save_fig(fig, "demo", nb="03_contrastive", preset="quick", seed=1, out_dir=tmp_path, paper_ref="Fig. 2")
    m = save_metrics({"a": 1.0}, "demo", nb="03_contrastive", preset="quick", seed=1, out_dir=tmp_path)
    assert f == tmp_path / "quick" / "03_demo.png" and f.exists()
    man = json.loads((tmp_path / "quick" / "MANIFEST.json").read_text())["outputs"]
    assert man["03_demo.png"]["paper_ref"] == "Fig. 2" and man["03_demo.png"]["seed"] == 1
    assert json.loads(m.read_text())["provenance"]["notebook"] == "03_contrastive"
    with pytest.raises(ConfigError, match="nb: expected a notebook name"):
        save_fig(fig, "x", nb="contrastive", preset="quick", seed=0, out_dir=tmp_path)


def test_check_array_object():
    with pytest.raises(InputError, match="x: expected a numeric array"):
        check_array(np.array([None]), "x")
