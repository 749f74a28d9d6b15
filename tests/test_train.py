"""The shared training loop: stages that ask for different mixed precisions in one process."""
import pytest
import torch
from accelerate import Accelerator

from mindvideo.train import fit, make_accelerator


def _tiny_fit(mixed_precision):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1); X = torch.randn(8, 3); y = X.sum(1, keepdim=True)
    loss = lambda m, b: ((m(b[0].to(next(m.parameters()).device)) - b[1].to(next(m.parameters()).device)) ** 2).mean()
    return fit(model, loss, [(X, y)], steps=3, lr=0.1, mixed_precision=mixed_precision)


def test_fit_after_a_stage_with_another_precision():
    make_accelerator("bf16")  # e.g. the co-training in bf16, earlier in the same process (bf16 autocast runs on a CPU)
    with pytest.raises(ValueError, match="already been initialized"):
        Accelerator(mixed_precision="no")  # what accelerate alone does next
    hist = _tiny_fit("no")  # what every stage does: it gets the precision it asks for
    assert len(hist["loss"]) == 3 and hist["loss"][-1] < hist["loss"][0]
    assert make_accelerator("bf16").mixed_precision == "bf16" and make_accelerator("no").mixed_precision == "no"


def test_make_accelerator_passes_on_unknown_precisions():
    with pytest.raises(ValueError, match="fp7"):
        make_accelerator("fp7")
