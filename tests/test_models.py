import pytest
import torch

from bestbatch.models import build_model, parameter_count


@pytest.mark.parametrize("name,count", [("dpn92", 34_236_634), ("resnet18", 11_173_962)])
def test_kuangliu_parameter_counts(name, count):
    assert parameter_count(build_model(name)) == count


def test_small_cnn_is_small_and_runs():
    net = build_model("small_cnn")
    assert parameter_count(net) <= 500_000
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_seeded_initialisation_is_reproducible():
    a, b, c = build_model("small_cnn", seed=0), build_model("small_cnn", seed=0), build_model("small_cnn", seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.linear.weight, c.linear.weight)


def test_unknown_model_names_the_allowed_ones():
    with pytest.raises(ValueError, match="models: unknown model 'vgg'; allowed: .*dpn92"):
        build_model("vgg")
