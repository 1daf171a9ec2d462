"""Whatever a CIFAR-format file holds, `load_dataset` reads it back or refuses it, naming the file.

A small valid set is written in each layout (CIFAR-10, CIFAR-100); hypothesis then applies one corruption
to one file: a cut, a wrong 'data' shape or dtype, labels out of range or of the wrong type, extra or
missing keys, a pickle that is not a dict, Python 2 and Python 3 pickles of every protocol, bytes keys, or
a payload that asks the unpickler to run code. The property: either the arrays come back as written
(harmless changes), or DatasetError names the damaged file; never another exception, and the code never
runs (its marker file never appears). `measure_sizes` never raises.
"""

import importlib
import io
import itertools
import os
import pickle
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bestbatch.data import (
    LAYOUTS,
    DatasetError,
    load_dataset,
    make_synthetic,
    measure_sizes,
    restricted_load,
    write_dataset,
)

N_CLASSES = {"cifar10": 10, "cifar100": 100}
SETS = {
    "cifar10": make_synthetic(12, 5, seed=1),  # 3, 3, 2, 2, 2 images in the five training files
    "cifar100": make_synthetic(7, 5, seed=2, n_classes=100),
}


def _originals():
    """{source: {file name: (the pickled object, its bytes)}} of the valid sets."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for source, arrays in SETS.items():
            paths = write_dataset(tmp, *arrays, source=source)
            out[source] = {p.name: (pickle.loads(p.read_bytes(), encoding="latin1"), p.read_bytes()) for p in paths}
    return out


ORIGINAL = _originals()


# ------------------------------------------------------------------------------- crafting pickles
class _Global:
    """A global named by module and name, written into a pickle without importing it."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # save_reduce wants a callable; never called here
        raise AssertionError("not to be called")

    def __repr__(self):
        return f"{self.module}.{self.name}"


class _Call:
    """Pickles as `func(*args)`: what unpickling it would run."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):  # a call's result called in turn (getattr(...)(...)); never called here
        raise AssertionError("not to be called")

    def __repr__(self):
        return f"{self.func!r}{self.args!r}"


class _Pickler(pickle._Pickler):
    """Python's own pure-Python pickler that can also write any global (`_Global`) and, with py2=True,
    Python 2's str (STRING/BINSTRING opcodes: the official files' bytes, read back with latin1)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file, protocol, py2=False):
        super().__init__(file, protocol)
        self.py2 = py2

    def _save_global_ref(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    dispatch[_Global] = _save_global_ref

    def _save_text(self, obj):
        if not self.py2:
            return (pickle._Pickler.save_str if isinstance(obj, str) else pickle._Pickler.save_bytes)(self, obj)
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if self.proto == 0:
            self.write(pickle.STRING + repr(raw)[1:].encode("ascii") + b"\n")
        elif len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = _save_text
    dispatch[bytes] = _save_text


def dumps(obj, protocol=2, py2=False):
    f = io.BytesIO()
    _Pickler(f, protocol, py2).dump(obj)
    raw = f.getvalue()
    # Python 2's numpy 1 named numpy.core.multiarray
    return raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray") if py2 else raw


# ------------------------------------------------------------------------------ code-running payloads
_module_names = itertools.count()


def payload(kind, marker):
    """A pickled call that, if the unpickler ran it, would create `marker`; and the global it names first."""
    m = str(marker)
    if kind == "os.system":
        return _Call(_Global("os", "system"), f"touch '{m}'"), "os.system"
    if kind == "posix.system":
        return _Call(_Global("posix", "system"), f"touch '{m}'"), "posix.system"
    if kind == "builtins.eval":
        return _Call(_Global("builtins", "eval"), f"open({m!r}, 'w').close()"), "builtins.eval"
    if kind == "builtins.exec":
        return _Call(_Global("builtins", "exec"), f"open({m!r}, 'w').close()"), "builtins.exec"
    if kind == "subprocess.Popen":
        return _Call(_Global("subprocess", "Popen"), ["touch", m]), "subprocess.Popen"
    if kind == "subprocess.check_call":
        return _Call(_Global("subprocess", "check_call"), ["touch", m]), "subprocess.check_call"
    if kind == "builtins.__import__":  # importing this module creates the marker
        name = f"bestbatch_evil_{next(_module_names)}"
        (Path(marker).parent / f"{name}.py").write_text(f"open({m!r}, 'w').close()\n")
        importlib.invalidate_caches()
        return _Call(_Global("builtins", "__import__"), name), "builtins.__import__"
    if kind == "getattr(__import__('os'), 'system')":
        imp = _Call(_Global("builtins", "__import__"), "os")
        return _Call(_Call(_Global("builtins", "getattr"), imp, "system"), f"touch '{m}'"), "builtins.getattr"
    if kind == "numpy.load":
        return _Call(_Global("numpy", "load"), m, None, True), "numpy.load"
    raise ValueError(kind)


PAYLOADS = [
    "os.system",
    "posix.system",
    "builtins.eval",
    "builtins.exec",
    "subprocess.Popen",
    "subprocess.check_call",
    "builtins.__import__",
    "getattr(__import__('os'), 'system')",
    "numpy.load",
]


# ------------------------------------------------------------------------------------ corruptions
@dataclass(frozen=True)
class Case:
    """One corruption of one file of one layout; `detail` holds what was drawn."""

    source: str
    file: str
    kind: str
    detail: tuple

    @property
    def layout(self):
        return LAYOUTS[self.source]

    @property
    def is_meta(self):
        return self.file == self.layout.meta_file

    def required(self):
        return {self.layout.names_key} if self.is_meta else {"data", self.layout.label_key}


_BAD_LABEL_ITEMS = st.one_of(
    st.text(max_size=3),
    st.floats(),
    st.booleans(),
    st.none(),
    st.binary(max_size=2),
    st.lists(st.integers(0, 9), max_size=2),
    st.integers(min_value=2**63),
    st.just(np.float64(1.0)),
    st.just(np.bool_(True)),
    st.just(np.array([1, 2])),
)
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=5)
    | st.sampled_from([np.zeros((2, 2), np.int16), np.float32(1.5)]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3) | st.tuples(c, c),
    max_leaves=6,
)
_LABEL_WHOLE_BAD = [
    "str",
    "bytes",
    "None",
    "int",
    "float",
    "dict",
    "0-d array",
    "float array",
    "str array",
    "list of str",
    "list of float",
    "nested lists",
    "list of bools",
    "bool array",
    "huge ints",
    "list of tuples",
    "2-D array",
    "set",
]
_LABEL_WHOLE_OK = ["tuple", "int64 array", "int32 array", "uint8 array", "uint64 array", "list of numpy ints"]
_DATA_SHAPES_BAD = [
    "(n, 3071)",
    "(n, 3073)",
    "(n, 3, 1024)",
    "(n*3072,)",
    "(n, 32, 32, 3)",
    "(3072, n)",
    "()",
    "(n+1, 3072)",
    "(n-1, 3072)",
]
_DATA_DTYPES_BAD = ["int16", "float32", "float64", "object", "int8", "bool", "uint16", ">u2", "list", "bytes", "None"]
_NOT_DICT = ["list", "empty list", "int", "str", "None", "tuple of items", "the data array", "set", "frozenset"]
_NAMES_BAD = ["str", "None", "int", "dict", "empty list", "list of ints", "one int", "array", "list of None"]
_NAMES_OK = ["tuple", "list of bytes"]


@st.composite
def cases(draw):
    source = draw(st.sampled_from(sorted(LAYOUTS)))
    layout = LAYOUTS[source]
    name = draw(st.sampled_from(layout.files))
    obj, raw = ORIGINAL[source][name]
    common = ["truncate", "extra_keys", "missing_key", "not_dict", "protocol", "python2", "bytes_keys", "code"]
    meta = name == layout.meta_file
    kind = draw(
        st.sampled_from(
            common
            + (
                ["names"]
                if meta
                else ["data_shape", "data_dtype", "labels_range", "labels_type", "label_items", "label_count"]
            )
        )
    )
    n = 0 if meta else len(obj["data"])
    if kind == "truncate":
        detail = (draw(st.integers(0, len(raw) - 1)),)
    elif kind == "extra_keys":
        keys = st.one_of(st.text(min_size=1, max_size=8), st.integers(), st.binary(max_size=6))
        keys = keys.filter(lambda k: k not in obj)
        detail = tuple(draw(st.dictionaries(keys, _VALUES, min_size=1, max_size=3)).items())
    elif kind == "missing_key":
        detail = (draw(st.sampled_from(sorted(obj))),)
    elif kind == "not_dict":
        detail = (draw(st.sampled_from(_NOT_DICT)),)
    elif kind == "protocol":
        detail = (draw(st.integers(0, 5)),)
    elif kind == "python2":
        detail = (draw(st.integers(0, 2)), draw(st.booleans()))  # protocol, latin1 (non-ASCII) strings
    elif kind == "bytes_keys":
        detail = (draw(st.sampled_from(["all"] + sorted(obj))), draw(st.integers(2, 5)))
    elif kind == "code":
        places = ["whole", "extra key"] + (
            ["names", "a name"] if meta else ["data", "labels", "a label", "batch_label"]
        )
        detail = (
            draw(st.sampled_from(PAYLOADS)),
            draw(st.sampled_from(places)),  # payload, where, protocol
            draw(st.sampled_from([0, 2, 4, 5])),
        )
    elif kind == "names":
        detail = (draw(st.sampled_from(_NAMES_BAD + _NAMES_OK)),)
    elif kind == "data_shape":
        detail = (draw(st.sampled_from(_DATA_SHAPES_BAD + ["Fortran order"])),)
    elif kind == "data_dtype":
        detail = (draw(st.sampled_from(_DATA_DTYPES_BAD)),)
    elif kind == "labels_range":
        n_classes = N_CLASSES[source]
        detail = (draw(st.integers(0, n - 1)), draw(st.integers(max_value=-1) | st.integers(min_value=n_classes)))
    elif kind == "labels_type":
        detail = (draw(st.sampled_from(_LABEL_WHOLE_BAD + _LABEL_WHOLE_OK)),)
    elif kind == "label_items":
        detail = (draw(st.integers(0, n - 1)), draw(_BAD_LABEL_ITEMS))
    else:  # label_count
        detail = (draw(st.sampled_from(["one fewer", "one more"])),)
    return Case(source, name, kind, detail)


def _empty_bytes_in(value):
    if isinstance(value, (list, tuple)):
        return any(map(_empty_bytes_in, value))
    if isinstance(value, dict):
        return any(map(_empty_bytes_in, (*value, *value.values())))
    return isinstance(value, bytes) and not value


def expected(case):
    """'ok' (read back as written), 'error' (DatasetError naming the file) or 'either'."""
    kind, detail = case.kind, case.detail
    if kind == "extra_keys" and _empty_bytes_in(detail):
        # Python 3 pickles b"" with protocol <= 2 as a call of the global __builtin__.bytes, which the
        # restricted unpickler refuses (see test_empty_split_round_trip)
        return "either"
    if kind in ("extra_keys", "protocol", "python2"):
        return "ok"
    if kind == "missing_key":
        return "error" if detail[0] in case.required() else "ok"
    if kind == "bytes_keys":
        return "error" if detail[0] == "all" or detail[0] in case.required() else "ok"
    if kind == "names":
        return "ok" if detail[0] in _NAMES_OK else "error"
    if kind == "data_shape":
        return "ok" if detail[0] == "Fortran order" else "error"
    if kind == "labels_type":
        return "ok" if detail[0] in _LABEL_WHOLE_OK else "error"
    return "error"


def damage(case, marker):
    """The damaged file's bytes, and the class names the loader must then report (None: unchanged)."""
    obj, raw = ORIGINAL[case.source][case.file]
    obj = dict(obj)
    kind, detail = case.kind, case.detail
    key = case.layout.names_key if case.is_meta else case.layout.label_key
    classes = None
    if kind == "truncate":
        return raw[: detail[0]], None
    if kind == "extra_keys":
        obj.update(detail)
    elif kind == "missing_key":
        del obj[detail[0]]
    elif kind == "not_dict":
        obj = {
            "list": list(obj.values()),
            "empty list": [],
            "int": 7,
            "str": "batch",
            "None": None,
            "tuple of items": tuple(obj.items()),
            "the data array": obj.get("data", np.zeros((2, 3072), np.uint8)),
            "set": {1, 2},
            "frozenset": frozenset("ab"),
        }[detail[0]]
    elif kind == "protocol":
        return pickle.dumps(obj, protocol=detail[0]), None
    elif kind == "python2":
        protocol, latin1 = detail
        if latin1:
            if case.is_meta:
                obj[key] = classes = [f"{c}_é" for c in obj[key]]
            else:
                obj["batch_label"] += " (copie à Montréal)"
                obj["filenames"] = [f"{f}_ß.png" for f in obj["filenames"]]
        return dumps(obj, protocol, py2=True), classes
    elif kind == "bytes_keys":
        which, protocol = detail
        obj = {(k.encode() if which in ("all", k) else k): v for k, v in obj.items()}
        return pickle.dumps(obj, protocol=protocol), None
    elif kind == "code":
        what, place, protocol = detail
        evil, _ = payload(what, marker)
        if place == "whole":
            obj = evil
        elif place == "extra key":
            obj["evil"] = evil
        elif place in ("names", "data", "labels", "batch_label"):
            obj[key if place in ("names", "labels") else place] = evil
        else:  # an item of the names / labels
            obj[key] = [evil, *obj[key][1:]]
        return dumps(obj, protocol), None
    elif kind == "names":
        names = obj[key]
        obj[key] = {
            "str": "airplane",
            "None": None,
            "int": 10,
            "dict": dict(enumerate(names)),
            "empty list": [],
            "list of ints": list(range(len(names))),
            "one int": [1, *names[1:]],
            "array": np.array(names),
            "list of None": [None] * len(names),
            "tuple": tuple(names),
            "list of bytes": [c.encode("latin1") for c in names],
        }[detail[0]]
    elif kind == "data_shape":
        data, n = obj["data"], len(obj["data"])
        obj["data"] = {
            "(n, 3071)": lambda: data[:, :3071],
            "(n, 3073)": lambda: np.pad(data, ((0, 0), (0, 1))),
            "(n, 3, 1024)": lambda: data.reshape(n, 3, 1024),
            "(n*3072,)": lambda: data.reshape(-1),
            "(n, 32, 32, 3)": lambda: data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1).copy(),
            "(3072, n)": lambda: data.T.copy(),
            "()": lambda: np.array(7, np.uint8),
            "(n+1, 3072)": lambda: np.vstack([data, data[:1]]),
            "(n-1, 3072)": lambda: data[:-1],
            "Fortran order": lambda: np.asfortranarray(data),
        }[detail[0]]()
    elif kind == "data_dtype":
        data = obj["data"]
        obj["data"] = (
            data.tolist()
            if detail[0] == "list"
            else data.tobytes()
            if detail[0] == "bytes"
            else None
            if detail[0] == "None"
            else data.astype(detail[0])
        )
    elif kind == "labels_range":
        i, value = detail
        obj[key] = [value if j == i else y for j, y in enumerate(obj[key])]
    elif kind == "labels_type":
        y = obj[key]
        obj[key] = {
            "str": lambda: "".join(map(str, y)),
            "bytes": lambda: bytes(y),
            "None": lambda: None,
            "int": lambda: y[0],
            "float": lambda: 1.0,
            "dict": lambda: dict(enumerate(y)),
            "0-d array": lambda: np.array(y[0]),
            "float array": lambda: np.array(y, np.float32),
            "str array": lambda: np.array(y).astype(str),
            "list of str": lambda: [str(v) for v in y],
            "list of float": lambda: [float(v) for v in y],
            "nested lists": lambda: [[v] for v in y],
            "list of bools": lambda: [bool(v % 2) for v in y],
            "bool array": lambda: np.array(y, bool),
            "huge ints": lambda: [v + 2**64 for v in y],
            "list of tuples": lambda: [(v,) for v in y],
            "2-D array": lambda: np.array(y)[:, None],
            "set": lambda: set(y),
            "tuple": lambda: tuple(y),
            "int64 array": lambda: np.array(y, np.int64),
            "int32 array": lambda: np.array(y, np.int32),
            "uint8 array": lambda: np.array(y, np.uint8),
            "uint64 array": lambda: np.array(y, np.uint64),
            "list of numpy ints": lambda: [np.int64(v) for v in y],
        }[detail[0]]()
    elif kind == "label_items":
        i, value = detail
        obj[key] = [value if j == i else y for j, y in enumerate(obj[key])]
    elif kind == "label_count":
        obj[key] = obj[key][:-1] if detail[0] == "one fewer" else [*obj[key], 0]
    return pickle.dumps(obj, protocol=2), classes


def check(case, base):
    """Write the valid set with `case` applied under `base`, then load it: the property."""
    layout, arrays = case.layout, SETS[case.source]
    marker = Path(base) / "marker"
    folder = Path(base) / layout.dirname
    folder.mkdir()
    for name, (_, raw) in ORIGINAL[case.source].items():
        (folder / name).write_bytes(raw)
    sys.path.insert(0, str(base))  # where a builtins.__import__ payload's module lies
    try:
        broken, classes = damage(case, marker)
        (folder / case.file).write_bytes(broken)
        want = expected(case)
        try:
            ds = load_dataset(base, case.source)
        except DatasetError as e:
            assert want != "ok", f"{case} must load, but: {e}"
            assert str(folder / case.file) in str(e), f"{case}: the error does not name the file: {e}"
            if case.kind == "code":
                assert "refused to unpickle global" in str(e), str(e)
        else:
            assert want != "error", f"{case} loaded instead of being refused"
            for got, written in zip((ds.train_images, ds.train_labels, ds.test_images, ds.test_labels), arrays):
                assert got.dtype == written.dtype and np.array_equal(got, written)
            assert ds.classes == tuple(classes or arrays[4]) and not ds.official
        measured = measure_sizes(base, case.source)
        assert measured is None or (isinstance(measured, tuple) and len(measured) == 3), measured
        if want == "ok":
            assert measured == (len(arrays[1]), len(arrays[3]), N_CLASSES[case.source])
    finally:
        sys.path.remove(str(base))
        for module in [m for m in sys.modules if m.startswith("bestbatch_evil_")]:
            del sys.modules[module]
        assert not marker.exists(), f"{case}: the pickle ran code"


@settings(max_examples=1500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_any_damage_is_read_back_or_refused_naming_the_file(case, tmp_path_factory):
    with tempfile.TemporaryDirectory(dir=tmp_path_factory.getbasetemp()) as base:
        check(case, base)


# ----------------------------------------------------------------------------- explicit examples
@pytest.mark.parametrize("source", sorted(LAYOUTS))
@pytest.mark.parametrize(
    "what",
    [
        "os.system",
        "builtins.eval",
        "subprocess.Popen",
        "posix.system",
        "builtins.__import__",
        "builtins.exec",
        "subprocess.check_call",
        "getattr(__import__('os'), 'system')",
        "numpy.load",
    ],
)
def test_code_running_pickle_is_refused(tmp_path, monkeypatch, source, what):
    layout = LAYOUTS[source]
    write_dataset(tmp_path, *SETS[source], source=source)
    monkeypatch.syspath_prepend(str(tmp_path))
    marker = tmp_path / "marker"
    evil, named = payload(what, marker)
    batch = tmp_path / layout.dirname / layout.train_files[0]
    obj, _ = ORIGINAL[source][layout.train_files[0]]
    batch.write_bytes(dumps({**obj, layout.label_key: evil}, protocol=2))
    for load in (lambda: restricted_load(batch), lambda: load_dataset(tmp_path, source)):
        with pytest.raises(DatasetError) as e:
            load()
        assert str(batch) in str(e.value) and f"refused to unpickle global {named}" in str(e.value)
    assert measure_sizes(tmp_path, source) is None
    assert not marker.exists()


def test_the_payloads_do_run_when_unpickled_freely(tmp_path, monkeypatch):
    """The payloads above are live: a plain pickle.loads creates the marker (so its absence means something)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    for what in ["os.system", "builtins.eval", "posix.system", "builtins.__import__", "subprocess.check_call"]:
        marker = tmp_path / f"marker_{what}"
        pickle.loads(dumps({"labels": payload(what, marker)[0]}))
        assert marker.exists(), what


@pytest.mark.parametrize("protocol", [0, 1, 2])
@pytest.mark.parametrize("source", sorted(LAYOUTS))
def test_python2_pickles_are_read(tmp_path, source, protocol):
    """Files as Python 2 wrote them (str as latin1 bytes, numpy.core module names) read back as written."""
    for name in (LAYOUTS[source].meta_file, LAYOUTS[source].test_file, LAYOUTS[source].train_files[0]):
        (tmp_path / name).mkdir()
        check(Case(source, name, "python2", (protocol, True)), tmp_path / name)


@pytest.mark.parametrize("labels", ["0-d array", "set", "huge ints", "str", "2-D array", "bool array"])
def test_labels_of_the_wrong_type_are_refused(tmp_path, labels):
    check(Case("cifar10", "data_batch_2", "labels_type", (labels,)), tmp_path)


def test_numpy_bool_among_int_labels_is_refused(tmp_path):
    """A Python bool label is refused; a numpy bool among ints must be too (np.asarray would make it 1)."""
    check(Case("cifar10", "data_batch_2", "label_items", (0, np.True_)), tmp_path)


@pytest.mark.parametrize("source, n_train, n_test", [("cifar10", 3, 2), ("cifar100", 10, 0)])
def test_empty_split_round_trip(tmp_path, source, n_train, n_test):
    """write_dataset writes a file with no images (fewer training images than files, or no test images);
    load_dataset reads it back."""
    arrays = make_synthetic(n_train, n_test, seed=0, n_classes=N_CLASSES[source])
    write_dataset(tmp_path, *arrays, source=source)
    ds = load_dataset(tmp_path, source)
    assert np.array_equal(ds.train_labels, arrays[1]) and np.array_equal(ds.test_images, arrays[2])
    assert measure_sizes(tmp_path, source) == (n_train, n_test, N_CLASSES[source])


def test_tiny_file_claiming_millions_of_images_is_refused(tmp_path):
    """numpy.ndarray called with zero strides: ~150 bytes that describe 2*10**7 images (61 GB once copied).
    Loaded in a child process whose address space is capped at 4 GiB, so a failure cannot exhaust memory."""
    folder = tmp_path / LAYOUTS["cifar10"].dirname
    folder.mkdir()
    for name, (_, raw) in ORIGINAL["cifar10"].items():
        (folder / name).write_bytes(raw)
    ndarray, n = _Global("numpy", "ndarray"), 2 * 10**7
    batch = folder / "data_batch_1"
    batch.write_bytes(
        dumps(
            {
                "data": _Call(ndarray, (n, 3072), "u1", b"\0", 0, (0, 0)),
                "labels": _Call(ndarray, (n,), "<i8", b"\0" * 8, 0, (0,)),
            },
            protocol=4,
        )
    )
    assert batch.stat().st_size < 200
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 * 1024 ** 3, resource.RLIM_INFINITY))\n"
        "from bestbatch.data import DatasetError, load_dataset\n"
        "try:\n    load_dataset(sys.argv[1])\n"
        "except DatasetError as e:\n    print('DatasetError', e)\n"
        "except BaseException as e:\n    print('OTHER', type(e).__name__, e)\n"
        "else:\n    print('LOADED')\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.stdout.startswith("DatasetError") and str(batch) in proc.stdout, proc.stdout + proc.stderr
