"""bestbatch's SGD (training.SGD) is torch.optim.SGD bit for bit, shares its state_dict, and keeps torch._dynamo
out of the training jobs (the reason it exists)."""

import subprocess
import sys

import pytest
import torch
from conftest import REPO

from bestbatch.models import build_model
from bestbatch.training import SGD

LR, MOMENTUM, WD = 0.1, 0.9, 5e-4


def nets(dtype, device="cpu"):
    a = build_model("small_cnn", num_classes=10, seed=3).to(device=device, dtype=dtype)
    b = build_model("small_cnn", num_classes=10, seed=3).to(device=device, dtype=dtype)
    return a, b


def train(net, opt, steps, seed, device="cpu", lr_at=None):
    g = torch.Generator().manual_seed(seed)
    dtype = next(net.parameters()).dtype
    for step in range(steps):
        if lr_at and step in lr_at:
            for group in opt.param_groups:
                group["lr"] = lr_at[step]
        x = torch.randn(16, 3, 32, 32, generator=g).to(device=device, dtype=dtype)
        y = torch.randint(0, 10, (16,), generator=g).to(device)
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def check_against_torch(dtype, device):
    ours, ref = nets(dtype, device)
    train(ours, SGD(ours.parameters(), LR, MOMENTUM, WD), 6, 0, device, lr_at={3: 0.01})
    train(ref, torch.optim.SGD(ref.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD), 6, 0, device, {3: 0.01})
    assert same(ours, ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_same_bits_as_torch_optim_sgd(dtype):
    check_against_torch(dtype, "cpu")


def test_a_frozen_parameter_is_left_alone_as_torch_does():
    ours, ref = nets(torch.float32)
    for net in (ours, ref):
        next(net.parameters()).requires_grad_(False)
    train(ours, SGD(ours.parameters(), LR, MOMENTUM, WD), 3, 1)
    train(ref, torch.optim.SGD(ref.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD), 3, 1)
    assert same(ours, ref)


def test_state_dicts_cross_over_both_ways_and_training_continues_bitwise():
    """A checkpoint's optimizer state from either class resumes in the other with the same bits."""
    a, b = nets(torch.float32)
    opt_a = SGD(a.parameters(), LR, MOMENTUM, WD)
    opt_b = torch.optim.SGD(b.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    train(a, opt_a, 2, 2)
    train(b, opt_b, 2, 2)
    ours_state, torch_state = opt_a.state_dict(), opt_b.state_dict()
    assert ours_state["param_groups"] == torch_state["param_groups"]
    assert ours_state["state"].keys() == torch_state["state"].keys()
    resumed_ours = SGD(b.parameters(), 0.5, 0.0, 0.0)  # hyperparameters come from the state, as in torch
    resumed_ours.load_state_dict(torch_state)
    assert resumed_ours.param_groups[0]["momentum"] == MOMENTUM
    c, d = nets(torch.float32)
    c.load_state_dict(a.state_dict())
    d.load_state_dict(a.state_dict())
    opt_c = SGD(c.parameters(), LR, MOMENTUM, WD)
    opt_c.load_state_dict(torch_state)
    opt_d = torch.optim.SGD(d.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    opt_d.load_state_dict(ours_state)
    train(c, opt_c, 3, 4)
    train(d, opt_d, 3, 4)
    assert same(c, d)


def test_a_state_for_another_network_is_refused_with_the_counts():
    a, b = nets(torch.float32)
    opt = SGD(a.parameters(), LR, MOMENTUM, WD)
    state = opt.state_dict()
    state["param_groups"][0]["params"] = state["param_groups"][0]["params"][:-1]
    with pytest.raises(ValueError, match="parameters in one group"):
        SGD(b.parameters(), LR, MOMENTUM, WD).load_state_dict(state)


def test_a_training_step_does_not_import_the_compiler():
    """What the class is for: torch.optim's step imports torch._dynamo (seconds per job); ours does not."""
    code = (
        "import sys, torch; from bestbatch.models import build_model; from bestbatch.training import make_optimizer;"
        "net = build_model('small_cnn', num_classes=10, seed=0); opt = make_optimizer(net, 0.1, 0.9, 5e-4);"
        "torch.nn.functional.cross_entropy(net(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward();"
        "opt.step(); opt.zero_grad(); opt.load_state_dict(opt.state_dict());"
        "print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    ).stdout
    assert out.strip() == "False"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_same_bits_as_torch_optim_sgd_on_cuda():
    """On CUDA torch.optim.SGD takes its foreach path: the same arithmetic, element by element."""
    check_against_torch(torch.float32, "cuda")
