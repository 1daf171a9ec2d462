"""What the jobs ask the scheduler for: bestbatch.resources.job_resources as a pure function of the study's sizes."""

import itertools

import pytest

from bestbatch.metrics import METRICS
from bestbatch.resources import MIN_RUNTIME, MODEL_COST, Study, job_resources, model_cost

PAPER = Study(model="dpn92", n_train=50000, n_test=10000, batch_size=256, value_bytes=4, threads=4, gpu=True)

MODELS = sorted(MODEL_COST)
N_TRAIN = (256, 2048, 10000, 50000, 200000)
BATCH_SIZES = (32, 128, 256, 512)
VALUE_BYTES = (4, 8)
THREADS = (1, 4, 16)


def study(**changes):
    return Study(**{**PAPER.__dict__, **changes})


def requests(res):
    """(rule, request) for every request in a job_resources result, orderings as 'ordering:<metric>'."""
    for rule, req in res.items():
        if rule == "ordering":
            for metric, r in req.items():
                yield f"ordering:{metric}", r
        else:
            yield rule, req


def grid(**fixed):
    """Every study of the grid below, with the keys in `fixed` held."""
    axes = dict(
        model=MODELS,
        n_train=N_TRAIN,
        batch_size=BATCH_SIZES,
        value_bytes=VALUE_BYTES,
        threads=THREADS,
        gpu=(False, True),
    )
    axes.update({k: (v,) for k, v in fixed.items()})
    for values in itertools.product(*axes.values()):
        yield study(**dict(zip(axes, values)))


# --- (a) the paper's study gives the figures docs/slurm.md documents -----------------------------------


def test_paper_study_matches_the_documented_requests():
    res = job_resources(PAPER)
    assert res["train_epoch"] == dict(mem_mb=7250, runtime=35, gpu=1)
    assert res["reduce_epoch"] == dict(mem_mb=2000, runtime=25, gpu=0)
    assert res["verify_dataset"] == dict(mem_mb=2000, runtime=10, gpu=0)
    assert res["init_model"] == dict(mem_mb=1500, runtime=10, gpu=0)
    assert res["ordering"]["lpips"] == dict(mem_mb=7000, runtime=15, gpu=1)
    for metric in set(METRICS) - {"lpips"}:
        assert res["ordering"][metric] == dict(mem_mb=3750, runtime=15, gpu=0), metric


def test_job_resources_is_pure():
    """Same study, same answer, and the study is not changed (a frozen dataclass, but also no hidden state)."""
    before = PAPER.__dict__.copy()
    assert job_resources(PAPER) == job_resources(PAPER) == job_resources(study())
    assert PAPER.__dict__ == before


# --- (b) properties ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_more_training_images_never_lower_the_training_request(model):
    for base in grid(model=model, n_train=N_TRAIN[0]):
        prev = None
        for n in N_TRAIN:
            req = job_resources(study(**{**base.__dict__, "n_train": n}))["train_epoch"]
            if prev is not None:
                assert req["runtime"] >= prev["runtime"], (base, n, req, prev)
                assert req["mem_mb"] >= prev["mem_mb"], (base, n, req, prev)
            prev = req


@pytest.mark.parametrize("model", MODELS)
def test_more_training_images_never_lower_any_request(model):
    for base in grid(model=model, n_train=N_TRAIN[0]):
        prev = None
        for n in N_TRAIN:
            req = dict(requests(job_resources(study(**{**base.__dict__, "n_train": n}))))
            if prev is not None:
                for rule, r in req.items():
                    assert r["mem_mb"] >= prev[rule]["mem_mb"], (rule, base, n)
                    assert r["runtime"] >= prev[rule]["runtime"], (rule, base, n)
            prev = req


@pytest.mark.parametrize("model", MODELS)
def test_float64_never_needs_less_memory_than_float32(model):
    for s32 in grid(model=model, value_bytes=4):
        r32 = dict(requests(job_resources(s32)))
        r64 = dict(requests(job_resources(study(**{**s32.__dict__, "value_bytes": 8}))))
        assert r32.keys() == r64.keys()
        for rule in r32:
            assert r64[rule]["mem_mb"] >= r32[rule]["mem_mb"], (rule, s32, r32[rule], r64[rule])
        assert r64["train_epoch"]["runtime"] >= r32["train_epoch"]["runtime"], s32


def test_float64_needs_more_memory_for_the_paper_model():
    """Twice the bytes per value of 34M parameters (and their activations) is not lost in the rounding."""
    for gpu in (False, True):
        r32, r64 = job_resources(study(gpu=gpu)), job_resources(study(gpu=gpu, value_bytes=8))
        assert r64["train_epoch"]["mem_mb"] > r32["train_epoch"]["mem_mb"]
        assert r64["reduce_epoch"]["mem_mb"] > r32["reduce_epoch"]["mem_mb"]
        assert r64["init_model"]["mem_mb"] > r32["init_model"]["mem_mb"]


def test_gpu_training_asks_for_a_gpu_and_cpu_training_does_not():
    for s in grid():
        res = job_resources(s)
        assert res["train_epoch"]["gpu"] == (1 if s.gpu else 0), s
        for rule in ("reduce_epoch", "init_model", "synthetic_dataset", "verify_dataset"):
            assert res[rule]["gpu"] == 0, (rule, s)
        for metric, req in res["ordering"].items():
            assert req["gpu"] == int(s.gpu and METRICS[metric].uses_gpu), (metric, s)


@pytest.mark.parametrize("model", MODELS)
def test_cpu_training_memory_grows_with_the_batch_size(model):
    """On CPU one batch of activations is held: the request grows with the batch (and covers it); on a GPU the
    activations live in GPU memory and the host request does not depend on the batch size."""
    _, _, act_mb, _, _ = model_cost(model)
    for vb, n_train in itertools.product(VALUE_BYTES, N_TRAIN):
        cpu = [
            job_resources(study(model=model, n_train=n_train, value_bytes=vb, batch_size=b, gpu=False))["train_epoch"][
                "mem_mb"
            ]
            for b in BATCH_SIZES
        ]
        gpu = [
            job_resources(study(model=model, n_train=n_train, value_bytes=vb, batch_size=b, gpu=True))["train_epoch"][
                "mem_mb"
            ]
            for b in BATCH_SIZES
        ]
        assert cpu == sorted(cpu), (model, vb, n_train, cpu)
        assert len(set(gpu)) == 1, (model, vb, n_train, gpu)
        for b, mem in zip(BATCH_SIZES, cpu):
            assert mem >= act_mb * b * vb / 4, (model, b, vb, mem)


def test_cpu_training_memory_grows_with_the_batch_size_for_the_paper_model():
    mems = [job_resources(study(gpu=False, batch_size=b))["train_epoch"]["mem_mb"] for b in BATCH_SIZES]
    assert all(a < b for a, b in zip(mems, mems[1:])), mems
    assert mems[BATCH_SIZES.index(256)] > job_resources(PAPER)["train_epoch"]["mem_mb"]  # activations > CUDA runtime


def test_requests_are_rounded_for_the_scheduler():
    """Memory in multiples of 250 MB, runtime in multiples of 5 minutes and never below the start-up time."""
    for s in grid():
        for rule, req in requests(job_resources(s)):
            assert set(req) == {"mem_mb", "runtime", "gpu"}, (rule, req)
            for key in ("mem_mb", "runtime", "gpu"):
                assert isinstance(req[key], int) and not isinstance(req[key], bool), (rule, key, req)
            assert req["mem_mb"] > 0 and req["mem_mb"] % 250 == 0, (rule, s, req)
            assert req["runtime"] % 5 == 0 and req["runtime"] >= 10, (rule, s, req)
    assert MIN_RUNTIME >= 10


# --- (c) an unknown model -------------------------------------------------------------------------------


def test_unknown_model_raises_naming_the_key_and_the_model():
    with pytest.raises(ValueError) as exc:
        job_resources(study(model="resnet1001"))
    message = str(exc.value)
    assert "models" in message and "resnet1001" in message, message
    with pytest.raises(ValueError, match=r"models.*'resnet1001'"):
        model_cost("resnet1001")


# --- (d) every metric -----------------------------------------------------------------------------------


def test_every_metric_gets_an_ordering_request():
    for s in (PAPER, study(gpu=False), study(model="small_cnn", n_train=2048, n_test=512, batch_size=64)):
        ordering = job_resources(s)["ordering"]
        assert set(ordering) == set(METRICS), s
        for metric, req in ordering.items():
            assert set(req) == {"mem_mb", "runtime", "gpu"}, (metric, req)


def test_a_selection_chunk_costs_about_half_an_algorithm1_epoch_per_epoch():
    from bestbatch.resources import select_chunk_resources

    s = study()
    one, ten = select_chunk_resources(s, 1), select_chunk_resources(s, 10)
    assert one["mem_mb"] == job_resources(s)["train_epoch"]["mem_mb"] and one["gpu"] == 1
    assert one["runtime"] < ten["runtime"] <= 10 * job_resources(s)["train_epoch"]["runtime"]
