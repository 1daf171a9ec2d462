"""A researcher's own study end to end (.test/config/own.yaml): a network from a module beside the config and an
image folder of PNGs written by the test; the distances against the float64 brute force on that network; the
jobs' resources computed from the network's probe; and each refusal naming the key or the file."""

import copy
import json
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import REPO, SNAKEMAKE, run_snakemake, write_config
from test_slurm import planned_jobs

from bestbatch.augment import images_to_tensor, make_batch
from bestbatch.config import num_batches
from bestbatch.data import channel_statistics, load_dataset, normalization_record
from bestbatch.distances import batch_distances
from bestbatch.formats import load_checkpoint, read_ordering
from bestbatch.model_spec import code_identity
from bestbatch.models import build_model
from bestbatch.resources import Study, job_resources, probe_figures

sys.path.insert(0, str(REPO / "tools"))
from test_images import write as write_images  # noqa: E402

OWN = yaml.safe_load((REPO / ".test" / "config" / "own.yaml").read_text())
MODEL = "own_net.build"  # the path-safe name of own_net:build


def own_config(folder, **changes):
    """The test config in `folder`, beside a copy of its module, reading the image folder `folder`/images."""
    shutil.copy(REPO / ".test" / "config" / "own_net.py", folder / "own_net.py")
    config = copy.deepcopy(OWN)
    config["data"]["root"] = str(folder / "images")
    config.update(changes)
    return write_config(folder / "own.yaml", config)


@pytest.fixture(scope="module")
def own_study(tmp_path_factory):
    work = tmp_path_factory.mktemp("own")
    write_images(work / "images")
    config = copy.deepcopy(OWN)
    config["training"] = dict(config["training"], dtype="float64")  # against the brute force, in float64
    cfg = own_config(
        work, models=["own_net:build"], seeds=[0], metrics=["intensity", "random"], training=config["training"]
    )
    run_snakemake(work, "--configfile", str(cfg), "--cores", "2")
    return work, cfg


@pytest.mark.slow
def test_own_network_on_own_images_runs_to_all(own_study):
    work, _ = own_study
    r = work / "results" / "own"
    for page, size in (("index.html", 2_000), ("claims.html", 10_000), ("selection.html", 10_000)):
        assert (r / page).stat().st_size > size, page
    for page in ("claims.html", "selection.html"):  # the two with figures load the study's plotly.js
        assert '<script src="plotly.min.js"></script>' in (r / page).read_text(), page
    assert (r / "plotly.min.js").stat().st_size > 1_000_000
    summary = json.loads((r / "dataset.json").read_text())
    assert summary["classes"] == ["blues", "greens", "reds"] and summary["n_train"] == 72 and summary["n_test"] == 24
    # an image folder's inputs are normalised by its own training images' statistics, recorded where they are used
    own_normalization = normalization_record("train", channel_statistics(load_dataset(r / "data").train_images))
    assert summary["normalization"] == own_normalization
    with h5py.File(r / MODEL / "seed_0" / "intensity" / "distances.h5", "r") as f:
        assert f["distance"].shape == (3, 72 // 16)
        provenance = json.loads(f.attrs["provenance"])
    # the full path, and the code it was (model_spec.code_identity: the module's hash; tests/test_model_code.py)
    code = code_identity("own_net:build", [work])
    assert provenance["model"] == {"name": MODEL, "import": "own_net:build", "kwargs": {}, "code": code}
    assert provenance["normalization"] == own_normalization
    probe = json.loads((r / "models" / MODEL / "cost.json").read_text())
    assert probe["params"] == sum(p.numel() for p in build_model("own_net:build", 3, import_paths=[work]).parameters())
    log = (work / "logs" / "own" / "models" / MODEL / "model_cost.log").read_text()
    assert "models[0]" in log and "trainable parameters" in log


@pytest.mark.slow
def test_distances_match_the_float64_brute_force_on_that_network(own_study):
    """Epoch 1 of the intensity run: every batch's gradient at init.pt's parameters on the same inputs, one by
    one from a fresh copy, and their distances to the mean, against the workflow's matrix."""
    work, _ = own_study
    r = work / "results" / "own"
    ds = load_dataset(r / "data", "cifar10")
    images, labels = images_to_tensor(ds.train_images, "cpu"), torch.as_tensor(ds.train_labels)
    stats = channel_statistics(ds.train_images)  # an image folder's normalisation
    order, _ = read_ordering(r / "orderings" / "intensity.h5")
    net0 = build_model("own_net:build", 3, import_paths=[work]).double()
    net0.load_state_dict(load_checkpoint(r / MODEL / "seed_0" / "checkpoints" / "init.pt").model)
    rows = []
    for k in range(num_batches(len(order), 16)):
        net = copy.deepcopy(net0).train()
        idx = torch.as_tensor(order[16 * k : 16 * (k + 1)])
        x = make_batch(images, idx, 0, 1, k, True, torch.float64, stats)
        loss = F.cross_entropy(net(x), labels[idx])
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(net.parameters()))]).numpy())
    want = batch_distances(np.stack(rows))
    with h5py.File(r / MODEL / "seed_0" / "intensity" / "distances.h5", "r") as f:
        got = f["distance"][0]
    np.testing.assert_allclose(got, want["distance"], rtol=1e-9)
    assert np.ptp(want["distance"]) / want["distance"].max() > 1e-3


@pytest.mark.slow
def test_the_slurm_plan_asks_for_what_the_probe_measured(own_study):
    work, cfg = own_study
    out = run_snakemake(
        work,
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--configfile",
        str(cfg),
        "-n",
        "--forcerun",
        "train_epoch",
        "--",
        f"results/own/{MODEL}/seed_0/intensity/checkpoints/epoch_3.pt",
    )
    jobs = [j for j in planned_jobs(out.stdout + out.stderr) if j["rule"] == "train_epoch"]
    assert len(jobs) == 3
    probe = json.loads((work / "results" / "own" / "models" / MODEL / "cost.json").read_text())
    t = OWN["training"]
    want = job_resources(
        Study(MODEL, 72, 24, t["batch_size"], 8, t["threads"], False, n_classes=3, probe=probe_figures(probe))
    )["train_epoch"]
    for job in jobs:
        assert int(job["resources"]["mem_mb"]) == want["mem_mb"] and int(job["resources"]["runtime"]) == want["runtime"]


@pytest.mark.parametrize(
    "models, words",
    [
        (["no_such_module:build"], r"models\[0\]: cannot import 'no_such_module'"),
        (["own_net:missing"], r"models\[0\]: 'own_net' has no attribute 'missing'"),
        (["own_net:build", {"import": "own_net:build"}], r"models\[1\]: .* is named 'own_net.build' like an earlier"),
    ],
)
@pytest.mark.slow
def test_a_network_that_cannot_take_part_stops_before_any_training(tmp_path, models, words):
    write_images(tmp_path / "images", n_train=16, n_test=4)
    cfg = own_config(tmp_path, models=models, seeds=[0], metrics=["intensity"])
    config = yaml.safe_load(cfg.read_text())
    del config["selection"]
    write_config(cfg, config)
    proc = run_snakemake(tmp_path, "--configfile", str(cfg), "--cores", "1", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and re.search(words, text), text[-3000:]
    assert not list((tmp_path / "results" / "own").glob("**/checkpoints/epoch_*.pt"))  # nothing trained
    assert not list((tmp_path / "results" / "own").glob("**/init.pt"))


@pytest.mark.parametrize("configfile", ["config/config.yaml", ".test/config/own.yaml"])
def test_planning_needs_no_pytorch(tmp_path, configfile):
    """The workflow plans (a dry run, as GitHub's check jobs do in a venv without PyTorch) with PyTorch
    unimportable, import-path models and an image folder included: their checks that need it run in jobs."""
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision', 'lpips'):\n"
        "            raise ImportError(name + ' is blocked')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO / 'src'}")
    proc = subprocess.run(
        [*SNAKEMAKE, "-n", "--quiet", "rules", "--configfile", configfile],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and "is blocked" not in proc.stdout + proc.stderr, proc.stderr[-3000:]


# --- what the image folder's jobs rerun on: its content, split by split (bestbatch.fingerprint) ---------------
def planned_rules(work, cfg):
    """The rules of the jobs a dry run of the study in `work` plans (a complete study: none)."""
    proc = run_snakemake(work, "--configfile", str(cfg), "-n")
    return sorted({job["rule"] for job in planned_jobs(proc.stdout + proc.stderr)})


def rewrite_one_pixel(path):
    """The image at `path` with one pixel changed, saved again: other bytes, same size on screen."""
    from PIL import Image

    with Image.open(path) as img:
        x = np.asarray(img.convert("RGB")).copy()
    x[0, 0] = 255 - x[0, 0]
    Image.fromarray(x).save(path)


@pytest.mark.slow
def test_the_image_folder_reruns_on_its_content_not_its_times(own_study):
    work, cfg = own_study
    images = work / "images"
    assert planned_rules(work, cfg) == []
    # touch every image, then a copy of the folder that does not keep times: nothing to do
    for path in images.rglob("*.png"):
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert planned_rules(work, cfg) == []
    images.rename(work / "images_kept")
    shutil.copytree(work / "images_kept", images, copy_function=shutil.copyfile)
    assert planned_rules(work, cfg) == []
    # one test image changed: its split's decode and what reads the test set (the epochs record test accuracy);
    # no job that reads only the training split
    test_image = sorted((images / "test").rglob("*.png"))[0]
    kept = test_image.read_bytes()
    rewrite_one_pixel(test_image)
    rules = planned_rules(work, cfg)
    assert {"imagefolder_test", "verify_dataset", "train_epoch", "select_train"} <= set(rules), rules
    assert not {"imagefolder_train", "ordering", "seeded_ordering", "init_model", "model_cost"} & set(rules), rules
    test_image.write_bytes(kept)  # the same bytes again: nothing to do
    assert planned_rules(work, cfg) == []
    # one training image changed: the study reruns from the decode on
    train_image = sorted((images / "train").rglob("*.png"))[0]
    kept = train_image.read_bytes()
    rewrite_one_pixel(train_image)
    rules = planned_rules(work, cfg)
    train_image.write_bytes(kept)  # the study as the other tests of this module expect it
    assert {"imagefolder_train", "ordering", "seeded_ordering", "model_cost", "train_epoch", "claims"} <= set(rules)
    assert "imagefolder_test" not in rules, rules
    assert planned_rules(work, cfg) == []
