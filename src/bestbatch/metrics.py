"""Per-image heuristic scores (paper section 3.2) and the fixed orders they induce.

Every metric is `fn(images, params, threads, device, progress) -> scores` on uint8 (N, H, W, 3) RGB
images; scores are (N,) or (N, k) for lexicographic keys. The order is ascending by score, ties
broken by image index, so it is a pure function of (images, params).
"""

import multiprocessing as mp
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm


class MetricError(Exception):
    """A metric cannot run as configured; the message names the problem and the fix."""


@dataclass(frozen=True)
class Metric:
    name: str
    score: object  # fn(images, params, threads, device, progress) -> scores
    label: str  # what the score is, for axis titles and hover labels
    cost_ms: tuple  # time per image on one CPU core and on a GPU, for the job's runtime request
    uses_gpu: bool  # whether its job asks for the GPU when training does
    seeded: bool  # one ordering per run seed (params get `run_seed`), not one per data set


METRICS = {}  # the registry: every metric's name lives here (and in the config schema's enum; a test checks)


def register(name, label, cost_ms, uses_gpu=False, seeded=False):
    def wrap(fn):
        METRICS[name] = Metric(name, fn, label, tuple(cost_ms), uses_gpu, seeded)
        return fn

    return wrap


def metric_label(name):
    return METRICS[name].label if name in METRICS else name


def score_images(name, images, params=None, threads=1, device="cpu", progress=False):
    if name not in METRICS:
        raise MetricError(
            f"unknown metric {name!r}; choose one of {sorted(METRICS)} "
            f"(or add one with @register in bestbatch/metrics.py)"
        )
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise MetricError(
            f"metric {name!r} needs uint8 RGB images shaped (N, H, W, 3), got "
            f"{images.dtype} {images.shape}; pass CIFAR10.data-style arrays"
        )
    scores = np.asarray(METRICS[name].score(images, dict(params or {}), max(1, int(threads)), device, progress))
    if len(scores) != len(images) or not np.all(np.isfinite(scores)):
        raise MetricError(
            f"metric {name!r} returned scores shaped {scores.shape} for {len(images)} images, "
            f"{np.sum(~np.isfinite(scores))} non-finite; fix the metric function to give one finite row per image"
        )
    return scores


def order_from_scores(scores):
    """Ascending order; column 0 is the primary key, then 1, ...; ties by index (explicit, not luck)."""
    scores = np.asarray(scores)
    cols = scores.reshape(len(scores), -1)
    keys = (np.arange(len(scores)),) + tuple(cols[:, j] for j in reversed(range(cols.shape[1])))
    return np.lexsort(keys).astype(np.int64)  # lexsort's last key is the primary one


def display_score(scores):
    scores = np.asarray(scores, dtype=np.float64)
    return scores if scores.ndim == 1 else scores[:, 0]


@register("intensity", "pixel intensity sum", cost_ms=(0.01, 0.01))
def intensity(images, params, threads, device, progress):
    """M1 = sum of all channels at all positions (3.2.1); int64, so no image of any practical size overflows."""
    return images.reshape(len(images), -1).sum(axis=1, dtype=np.int64)


@register("color", "hue of the mean colour", cost_ms=(0.05, 0.05))
def color(images, params, threads, device, progress):
    """(hue, saturation, value) of the mean RGB colour, sorted lexicographically (3.2.2).

    The paper sorts in HSV because RGB order looks noisy. We average RGB first and convert once:
    averaging per-pixel hues would be wrong, since hue is circular (red at 0.01 and 0.99 would
    average to cyan).
    """
    from skimage.color import rgb2hsv

    mean_rgb = images.reshape(len(images), -1, 3).mean(axis=1) / 255.0
    return rgb2hsv(mean_rgb[:, None, :])[:, 0, :]


def _canny_counts(images, sigma):
    from skimage.color import rgb2gray
    from skimage.feature import canny

    gray = rgb2gray(images)
    return np.array([canny(g, sigma=sigma).sum() for g in gray], dtype=np.int64)


@register("edges", "Canny edge pixels", cost_ms=(2.0, 2.0))
def edges(images, params, threads, device, progress):
    """M3 = number of Canny edge pixels on the grayscale image (3.2.3); per-image, so chunks run in processes."""
    sigma = float(params.get("sigma", 1.0))
    # several chunks per worker balance the load and give the progress bar something to count
    chunks = np.array_split(images, max(1, min(len(images), max(threads * 4, len(images) // 2000))))
    bar = dict(total=len(chunks), desc="edges", unit="chunk", disable=not progress)
    if threads == 1:
        return np.concatenate(list(tqdm(map(_canny_counts, chunks, [sigma] * len(chunks)), **bar)))
    # fork avoids re-importing skimage in every worker; the workers never touch torch
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with ProcessPoolExecutor(threads, mp_context=ctx) as pool:
        return np.concatenate(list(tqdm(pool.map(_canny_counts, chunks, [sigma] * len(chunks)), **bar)))


ALEXNET_FIX = "or set `orderings.lpips.pretrained_backbone: false` in the config to run with a seeded random AlexNet backbone instead"


def _require_alexnet_weights():
    """Fetch torchvision's ImageNet AlexNet if needed, failing with where to put it by hand."""
    import torch
    from torchvision.models import AlexNet_Weights

    url = AlexNet_Weights.IMAGENET1K_V1.url
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
    if os.path.exists(path):
        return path
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        hash_prefix = torch.hub.HASH_REGEX.search(os.path.basename(url)).group(1)  # as torchvision checks it
        torch.hub.download_url_to_file(url, path, hash_prefix=hash_prefix, progress=False)
    except Exception as e:
        raise MetricError(
            f"lpips needs the ImageNet-pretrained AlexNet weights {os.path.basename(url)}, which are not at "
            f"{path} and could not be downloaded ({type(e).__name__}: {e}). On a machine that is online, fetch "
            f"{url} and copy it to {path} (the directory is torch.hub.get_dir()/checkpoints; TORCH_HOME moves it), "
            f"{ALEXNET_FIX}."
        ) from e
    return path


def lpips_model(pretrained_backbone=True, seed=0, device="cpu"):
    """LPIPS(alex) with the package's own linear weights; a random backbone is seeded so runs agree."""
    import lpips
    import torch

    if pretrained_backbone:
        _require_alexnet_weights()
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():  # seed without touching the caller's RNG
        warnings.filterwarnings(
            "ignore", message=".*(pretrained|weights).*", category=UserWarning
        )  # lpips uses tv's legacy kwarg
        torch.manual_seed(seed)
        model = lpips.LPIPS(net="alex", pnet_rand=not pretrained_backbone, verbose=False)
    return model.eval().to(device)


LPIPS_MIN_SIDE = 32  # AlexNet's pooling leaves no pixel of an image under 31 px: smaller ones are upsampled to this


def _to_lpips_input(images, device):
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.ascontiguousarray(images), device=device)
    x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # uint8 HWC -> [-1, 1] NCHW as LPIPS expects
    short = min(x.shape[2:])
    if short < LPIPS_MIN_SIDE:  # bilinear stays within [-1, 1]; 32 px and larger pass untouched
        size = [round(d * LPIPS_MIN_SIDE / short) for d in x.shape[2:]]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x


def lpips_features(model, x):
    """Unit-normalised AlexNet activations, one tensor per LPIPS layer."""
    import lpips

    return [lpips.normalize_tensor(f) for f in model.net(model.scaling_layer(x))]


def lpips_to_reference(model, x, ref_feats):
    """LPIPS(x_i, ref) for a batch x, given the reference's lpips_features computed once.

    Same arithmetic as lpips.LPIPS.forward (squared feature difference, linear layer, spatial mean,
    sum over layers) but the average image goes through AlexNet once, not once per image.
    """
    return sum(
        lin((f - r) ** 2).mean(dim=(2, 3))[:, 0] for lin, f, r in zip(model.lins, lpips_features(model, x), ref_feats)
    )


@register("lpips", "LPIPS distance to the average image", cost_ms=(5.0, 0.2), uses_gpu=True)
def lpips_distance(images, params, threads, device, progress):
    """LPIPS (AlexNet) distance of each image to the per-pixel average image of the set (3.2.4).

    Images whose shorter side is under LPIPS_MIN_SIDE (32) px are upsampled bilinearly to it first, the
    average image with them: AlexNet cannot take them as they are.
    """
    import torch

    model = lpips_model(params.get("pretrained_backbone", True), params.get("seed", 0), device)
    batch = int(params.get("batch_size", 500))
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = np.empty(len(images), dtype=np.float64)
        with torch.no_grad():
            ref = lpips_features(model, _to_lpips_input(images.mean(axis=0, dtype=np.float64)[None], device))
            for i in tqdm(range(0, len(images), batch), desc="lpips", unit="batch", disable=not progress):
                out[i : i + batch] = (
                    lpips_to_reference(model, _to_lpips_input(images[i : i + batch], device), ref).cpu().numpy()
                )
    finally:
        torch.set_num_threads(old_threads)
    return out


@register("random", "random key", cost_ms=(0.001, 0.001), seeded=True)
def random_keys(images, params, threads, device, progress):
    """Seeded random keys: a random fixed order, the control the paper lacks; one per run seed
    (`run_seed`, mixed with the ordering's own `seed`), so each seed has its own null."""
    return np.random.default_rng([params.get("seed", 0), params.get("run_seed", 0)]).random(len(images))
