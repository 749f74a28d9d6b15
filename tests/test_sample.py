"""`mindvideo sample` end to end on the smoke model: files, record, same seed -> same frames, clear errors."""
import json

import imageio.v3 as iio
import numpy as np
import pytest

from mindvideo.data import load_dataset
from mindvideo.reconstruct import load_pipeline
from mindvideo.reproduce import main


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("sample")
    load_pipeline("smoke", device="cpu").save_pretrained(d / "model")
    test = load_dataset("smoke", "test")
    np.save(d / "windows.npy", np.stack([test[i]["fmri"].numpy() for i in range(2)]))
    return d


def test_sample_command_writes_clips_and_repeats(model):
    args = ["sample", "--model", str(model / "model"), "--fmri", str(model / "windows.npy"), "--steps", "3", "--seed", "5",
            "--device", "cpu"]
    assert main(args + ["--out", str(model / "a")]) == 0 and main(args + ["--out", str(model / "b"), "--batch-size", "1"]) == 0
    rec = json.loads((model / "a" / "samples.json").read_text())
    assert rec["n_clips"] == 2 and rec["steps"] == 3 and rec["guidance"] == "adversarial" and rec["seed"] == 5
    assert (rec["batch_size"], rec["device"], rec["dtype"]) == (4, "cpu", "float32")
    for f in rec["files"]:  # the same clips, whether sampled together or one per call
        assert (model / "a" / f"{f}.mp4").stat().st_size > 0
        assert np.array_equal(iio.imread(model / "a" / f"{f}.gif"), iio.imread(model / "b" / f"{f}.gif"))


def test_sample_command_errors(model, capsys):
    bad = model / "bad.npy"; np.save(bad, np.zeros((2, 2, 7), np.float32))
    assert main(["sample", "--model", str(model / "model"), "--fmri", str(bad), "--out", str(model / "c")]) == 1
    err = capsys.readouterr().err
    assert "bad.npy" in err and "num_voxels=" in err and not (model / "c").exists()
    assert main(["sample", "--model", str(model), "--fmri", str(bad), "--out", str(model / "c")]) == 1
    assert "missing model_index.json" in capsys.readouterr().err
