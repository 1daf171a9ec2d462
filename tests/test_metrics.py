"""Metrics against hand-computed values on tiny generated images (no dataset, no network)."""

import os

import numpy as np
import pytest
import torch

from bestbatch.metrics import (
    METRICS,
    MetricError,
    _to_lpips_input,
    display_score,
    lpips_features,
    lpips_model,
    lpips_to_reference,
    order_from_scores,
    score_images,
)


def solid(*rgbs):
    return np.array([np.broadcast_to(np.array(c, np.uint8), (8, 8, 3)) for c in rgbs])


def structured(n, seed=0):
    """Smooth blobs plus noise, so Canny finds a varying number of edges."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, 4, 4, 3))
    smooth = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)
    return np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)


def no_download(monkeypatch):
    def refuse(*a, **k):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


# --- registry and input checks ---


def test_registry_and_errors():
    assert set(METRICS) >= {"intensity", "color", "edges", "lpips", "random"}
    with pytest.raises(MetricError, match="unknown metric 'hue'.*intensity"):
        score_images("hue", solid((0, 0, 0)), {})
    with pytest.raises(MetricError, match="uint8"):
        score_images("intensity", solid((0, 0, 0)).astype(np.float32), {})


# --- ordering ---


def test_order_ascending_with_ties_by_index():
    order = order_from_scores(np.array([3.0, 1.0, 2.0, 1.0, 0.5]))
    assert order.dtype == np.int64
    assert order.tolist() == [4, 1, 3, 2, 0]


def test_order_lexicographic():
    scores = np.array([[1, 5], [0, 9], [1, 2], [0, 9], [0, 1]])
    assert order_from_scores(scores).tolist() == [4, 1, 3, 2, 0]
    assert display_score(scores).tolist() == [1, 0, 1, 0, 0]
    assert display_score(np.array([3, 1])).dtype == np.float64


# --- intensity (3.2.1) ---


def test_intensity_hand_computed():
    img = np.zeros((2, 32, 32, 3), np.uint8)
    img[0] = 1
    img[1, 5, 7] = (255, 10, 0)
    s = score_images("intensity", img, {})
    assert s.tolist() == [32 * 32 * 3, 265]
    assert score_images("intensity", np.full((1, 32, 32, 3), 255, np.uint8), {})[0] == 32 * 32 * 3 * 255


# --- colour (3.2.2) ---


def test_color_known_hsv_and_order():
    imgs = solid((255, 0, 0), (0, 0, 255), (128, 128, 128), (0, 255, 0))
    s = score_images("color", imgs, {})
    assert s.shape == (4, 3)
    np.testing.assert_allclose(s, [[0, 1, 1], [2 / 3, 1, 1], [0, 0, 128 / 255], [1 / 3, 1, 1]], atol=1e-12)
    # grey ties red on hue 0 and wins on saturation 0 < 1
    assert order_from_scores(s).tolist() == [2, 0, 3, 1]


def test_color_averages_rgb_before_hsv():
    img = solid((255, 0, 0))
    img[0, :, 4:] = (0, 0, 255)  # half red, half blue: mean RGB (0.5, 0, 0.5) is magenta
    np.testing.assert_allclose(score_images("color", img, {})[0], [5 / 6, 1, 0.5], atol=1e-12)


def test_color_ties_by_index():
    s = score_images("color", solid((10, 200, 30), (10, 200, 30), (10, 200, 30)), {})
    assert order_from_scores(s).tolist() == [0, 1, 2]


# --- edges (3.2.3) ---


def test_edges_flat_is_zero_and_square_is_its_perimeter():
    imgs = np.zeros((4, 32, 32, 3), np.uint8)
    imgs[1] = 128
    imgs[2] = 255  # bright flat images must not pick up edges from the border padding
    imgs[3, 10:22, 10:22] = 255
    s = score_images("edges", imgs, {})
    assert s[:3].tolist() == [0, 0, 0]
    assert 40 <= s[3] <= 56  # a 12x12 square's boundary is ~4*12 = 48 pixels (exactly 48 on skimage 0.26)


def test_edges_same_for_any_threads():
    imgs = structured(40)
    one = score_images("edges", imgs, {}, threads=1)
    assert one.std() > 0
    np.testing.assert_array_equal(one, score_images("edges", imgs, {}, threads=2, progress=True))
    np.testing.assert_array_equal(one, score_images("edges", imgs, {}, threads=3))
    assert not np.array_equal(one, score_images("edges", imgs, {"sigma": 3.0}))


# --- lpips (3.2.4) ---


@pytest.fixture(scope="module")
def random_lpips():
    return lpips_model(pretrained_backbone=False, seed=0)


def test_lpips_average_image_scores_zero():
    rng = np.random.default_rng(1)
    a, b = (2 * rng.integers(0, 128, (2, 32, 32, 3))).astype(np.uint8)
    imgs = np.stack([a, b, ((a.astype(int) + b) // 2).astype(np.uint8)])  # the third is the exact mean
    s = score_images("lpips", imgs, {"pretrained_backbone": False, "batch_size": 2}, progress=True)
    assert s.shape == (3,) and s.dtype == np.float64
    assert abs(s[2]) < 1e-6 and s[0] > 1e-3 and s[1] > 1e-3


def test_lpips_fast_path_matches_package_forward(random_lpips):
    x = _to_lpips_input(structured(6), "cpu")
    ref = _to_lpips_input(structured(1, seed=5), "cpu")
    with torch.no_grad():
        ours = lpips_to_reference(random_lpips, x, lpips_features(random_lpips, ref))
        theirs = random_lpips(x, ref.expand_as(x)).flatten()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_lpips_random_backbone_is_seeded_and_offline(random_lpips, monkeypatch):
    no_download(monkeypatch)  # a random backbone must never try to fetch weights
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    again = lpips_model(pretrained_backbone=False, seed=0)
    assert torch.rand(1) == before  # the caller's RNG stream is untouched
    for p, q in zip(random_lpips.parameters(), again.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    other = lpips_model(pretrained_backbone=False, seed=1)
    assert not torch.equal(next(other.net.parameters()), next(again.net.parameters()))


def test_lpips_missing_pretrained_weights_names_file_path_and_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))  # what torch.hub.set_dir sets, undone after the test
    no_download(monkeypatch)
    with pytest.raises(MetricError) as err:
        score_images("lpips", structured(2), {})
    msg = str(err.value)
    path = os.path.join(str(tmp_path), "checkpoints", "alexnet-owt-7be5be79.pth")
    assert path in msg
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in msg
    assert "pretrained_backbone: false" in msg


def test_lpips_pretrained_loads_from_the_path_we_name(tmp_path, monkeypatch):
    """Placing a file where the error message says makes torchvision load it, without any download."""
    import torchvision

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    no_download(monkeypatch)
    path = tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth"
    path.parent.mkdir()
    state = {k: torch.full_like(v, 0.01) for k, v in torchvision.models.alexnet().state_dict().items()}
    torch.save(state, path)
    try:
        model = lpips_model(pretrained_backbone=True)
        assert torch.all(next(model.net.parameters()) == 0.01)
    finally:
        path.unlink()  # 240 MB; don't leave it in pytest's kept tmp dirs


# --- random control ---


def test_random_is_a_seeded_permutation():
    imgs = np.zeros((50, 2, 2, 3), np.uint8)
    a, b = score_images("random", imgs, {"seed": 7}), score_images("random", imgs, {"seed": 7})
    np.testing.assert_array_equal(a, b)
    order = order_from_scores(a)
    assert sorted(order.tolist()) == list(range(50)) and order.tolist() != list(range(50))
    assert not np.array_equal(order, order_from_scores(score_images("random", imgs, {"seed": 8})))
