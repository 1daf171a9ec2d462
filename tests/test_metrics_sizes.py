"""Every metric past CIFAR's 32 px: orderings at 64 px against references written here from scikit-image,
the lpips package and numpy directly (issue 32), and shape sanity at 16 and 96 px."""

import warnings

import lpips
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.color import rgb2gray, rgb2hsv
from skimage.feature import canny

from bestbatch.metrics import METRICS, order_from_scores, score_images

RANDOM_LPIPS = {"pretrained_backbone": False, "seed": 0}  # no pretrained AlexNet offline
RTOL, ATOL = 1e-5, 1e-7  # float32 AlexNet, summed in another order; measured: 2.5e-7 relative at most


def varied(n, size, seed=0):
    """Deterministic images where every metric differs: a colour gradient, stripes, blobs and noise, each drawn per image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        base = rng.uniform(0, 255, 3)
        slope = rng.uniform(-80, 80, (2, 3))
        img = base + yy[..., None] * slope[0] + xx[..., None] * slope[1]
        angle, freq = rng.uniform(0, np.pi), rng.uniform(1, 8)
        stripes = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy)) > 0
        img += stripes[..., None] * rng.uniform(-90, 90, 3)
        for _ in range(rng.integers(0, 4)):
            cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
            img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r**2)[..., None] * rng.uniform(-150, 150, 3)
        img += rng.normal(0, rng.uniform(0, 30), img.shape)
        out[i] = np.clip(img, 0, 255)
    return out


@pytest.fixture(scope="module")
def images64():
    return varied(48, 64)


def stable_order(values):
    return np.argsort(values, kind="stable")  # ascending, ties by index


def assert_no_near_ties(values):
    """Neighbours further apart than both sides' tolerance: an exact order check is then no matter of luck."""
    gaps = np.diff(np.sort(values))
    assert gaps.min() > 2 * (ATOL + RTOL * np.abs(values).max()), "test data has near-ties"


def test_intensity_at_64_matches_numpy_sum(images64):
    ref = np.array([int(img.astype(np.int64).sum()) for img in images64])
    assert len(np.unique(ref)) == len(ref)
    scores = score_images("intensity", images64, {})
    np.testing.assert_array_equal(scores, ref)
    np.testing.assert_array_equal(order_from_scores(scores), stable_order(ref))
    full = np.full((2, 96, 96, 3), 255, np.uint8)  # would wrap in uint8 or overflow a 32-px assumption
    assert score_images("intensity", full, {}).tolist() == [96 * 96 * 3 * 255] * 2


def test_color_at_64_matches_skimage_hsv_of_mean_rgb(images64):
    mean_rgb = np.array([img.reshape(-1, 3).mean(axis=0) / 255.0 for img in images64])
    hsv = np.array([rgb2hsv(c[None, None, :])[0, 0] for c in mean_rgb])
    assert len(np.unique(hsv[:, 0])) == len(hsv)  # distinct hues: the primary key decides
    scores = score_images("color", images64, {})
    assert scores.shape == (len(images64), 3)
    np.testing.assert_allclose(scores, hsv, rtol=0, atol=1e-12)
    ref_order = sorted(range(len(hsv)), key=lambda i: (hsv[i, 0], hsv[i, 1], hsv[i, 2], i))
    assert order_from_scores(scores).tolist() == ref_order


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_edges_at_64_match_skimage_canny(images64, sigma):
    ref = np.array([canny(rgb2gray(img), sigma=sigma).sum() for img in images64])
    assert len(np.unique(ref)) > len(ref) // 2  # mostly distinct counts, so the order says something
    one = score_images("edges", images64, {"sigma": sigma}, threads=1)
    np.testing.assert_array_equal(one, ref)
    np.testing.assert_array_equal(score_images("edges", images64, {"sigma": sigma}, threads=2), one)
    np.testing.assert_array_equal(order_from_scores(one), stable_order(ref))


@pytest.fixture(scope="module")
def package_lpips():
    """The lpips package's own model, seeded as a random-backbone run is: torch.manual_seed(seed), then construct."""
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # lpips passes torchvision's legacy `pretrained` kwarg
        torch.manual_seed(RANDOM_LPIPS["seed"])
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    return model.eval()


def package_lpips_to_mean(model, images, size=None):
    """lpips.LPIPS.forward of each image against the set's per-pixel mean image, inputs in [-1, 1]."""
    x = torch.tensor(images.transpose(0, 3, 1, 2) / 127.5 - 1.0, dtype=torch.float32)
    ref = x.mean(dim=0, keepdim=True)
    if size is not None:
        x, ref = (F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in (x, ref))
    with torch.no_grad():
        return model(x, ref.expand_as(x)).flatten().double().numpy()


def test_lpips_at_64_matches_package_forward(images64, package_lpips):
    ref = package_lpips_to_mean(package_lpips, images64)
    assert_no_near_ties(ref)
    scores = score_images("lpips", images64, {**RANDOM_LPIPS, "batch_size": 20})  # several batches
    np.testing.assert_allclose(scores, ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(order_from_scores(scores), stable_order(ref))
    # a different seed is a different random backbone: the reference really pins the seed
    other = score_images("lpips", images64[:8], {**RANDOM_LPIPS, "seed": 1})
    assert not np.allclose(other, package_lpips_to_mean(package_lpips, images64[:8]), rtol=1e-3)


def test_lpips_under_32_px_is_the_package_on_bilinear_upsampled_images(package_lpips):
    small = varied(12, 16, seed=3)
    scores = score_images("lpips", small, RANDOM_LPIPS)
    np.testing.assert_allclose(scores, package_lpips_to_mean(package_lpips, small, size=(32, 32)), rtol=RTOL, atol=ATOL)


def test_random_keys_depend_on_count_and_seeds_not_size():
    params = {"seed": 4, "run_seed": 2}
    at32 = score_images("random", varied(40, 32, seed=1), params)
    at64 = score_images("random", varied(40, 64, seed=2), params)
    np.testing.assert_array_equal(at32, at64)
    np.testing.assert_array_equal(order_from_scores(at32), order_from_scores(at64))
    np.testing.assert_array_equal(at32, np.random.default_rng([4, 2]).random(40))
    assert not np.array_equal(at32, score_images("random", varied(40, 64), {"seed": 4, "run_seed": 3}))
    assert len(score_images("random", varied(41, 64), params)) == 41


@pytest.mark.parametrize("size", [16, 96])
def test_every_metric_runs_at_other_sizes(size):
    imgs = varied(10, size, seed=size)
    for name in METRICS:
        scores = score_images(name, imgs, RANDOM_LPIPS)
        assert len(scores) == 10 and np.all(np.isfinite(scores)), name
        order = order_from_scores(scores)
        assert sorted(order.tolist()) == list(range(10)), name
        if name != "edges":  # a 16 px image may have no Canny edges at all
            assert len(np.unique(scores.reshape(10, -1), axis=0)) == 10, name
