"""``dnnpart import`` on models from strangers: BAD_INPUTS.md, section "Reading a model".

Every row of that table is built here as a tiny model in ``tmp_path`` and fed to the CLI.
An error must be one line on stderr naming the culprit, with the exit code of its kind
(DESIGN.md: 3 invalid model, 4 unsafe reference, 5 resource limit), nothing on stdout and
no traceback; a model that can be handled must import with exit 0 and say what it
approximated. External-data tests also watch every file the importer opens: nothing
outside the model's folder may be opened, and a canary file beside the folder must never
leak into the output. Most runs use click's ``CliRunner`` in-process (cheap); a few use the
installed ``dnnpart`` script as a real process (a FIFO that could hang, the exact stderr
of a real run, and ``strace`` as a witness of the C-level opens).
"""

from __future__ import annotations

import builtins
import io
import json
import mmap
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import dnnpart
from dnnpart.cli import main
from dnnpart.errors import UnsafeReferenceError

DNNPART = Path(sys.executable).with_name("dnnpart")
W = np.arange(12, dtype=np.float32).reshape(4, 3)
CANARY = (b"CANARY-SECRET-" * 4)[: W.nbytes]  # the size of W: a length check cannot stop it


# -- building tiny models ------------------------------------------------------------------
def _vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _model(nodes, inputs, outputs, inits=(), *, opset=17, ir=8, functions=(), extra_opsets=()):
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(inits))
    opsets = [helper.make_opsetid("", opset), *extra_opsets]
    return helper.make_model(graph, opset_imports=opsets, ir_version=ir, functions=list(functions))


def _mlp(weight: TensorProto | None = None) -> onnx.ModelProto:
    """x[1,4] -> MatMul(W[4,3]) -> y -> Relu -> z."""
    w = weight if weight is not None else numpy_helper.from_array(W, "W")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["y"], name="fc"),
        helper.make_node("Relu", ["y"], ["z"], name="relu"),
    ]
    return _model(nodes, [_vi("x", [1, 4])], [_vi("z", [1, 3])], [w])


def _external(name: str, location: str, dims=(4, 3), dtype=TensorProto.FLOAT) -> TensorProto:
    t = TensorProto(name=name, data_type=dtype, dims=list(dims))
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=location)
    return t


def _save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


# -- running the CLI -----------------------------------------------------------------------
def _run(path, *args):
    result = CliRunner().invoke(main, ["import", str(path), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a bug escaped the CLI's handler: show it
    return result


def _assert_error(result, code: int, *culprits: str) -> str:
    """Exit ``code``, one line on stderr naming every culprit, nothing on stdout."""
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("dnnpart: error: "), line
    for c in culprits:
        assert c in line, (c, line)
    return line


def _assert_ok(result, *args) -> dict:
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout) if "--json" in args else {}


def _import_json(path, *args):
    result = _run(path, "--json", *args)
    doc = _assert_ok(result, "--json")
    return doc, result


# -- garbage ------------------------------------------------------------------------------
GOOD = _mlp().SerializeToString()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"this is not an onnx model\n" * 8, id="text"),
        pytest.param(np.random.default_rng(0).bytes(512), id="random"),
        pytest.param(b"", id="empty"),
        pytest.param(GOOD[: len(GOOD) // 2], id="truncated-half"),
        pytest.param(GOOD[:-1], id="truncated-last-byte"),
        pytest.param(GOOD + b"\x00", id="trailing-zero"),
        pytest.param(GOOD + b"garbage!", id="trailing-text"),
        pytest.param(GOOD + b"\xf8\x06\x01", id="trailing-unknown-field"),  # field 111 varint
        pytest.param(GOOD + b"\x08\x07", id="trailing-ir-version"),  # parses: ir_version again
        pytest.param(GOOD + GOOD, id="model-twice"),  # parses: graphs merge
    ],
)
def test_not_a_model(tmp_path, data):
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    _assert_error(_run(path), 3, "not a valid ONNX model", str(path))


@pytest.mark.parametrize(
    ("field", "value", "word"),
    [
        ("ir_version", 0, "ir_version 0"),
        ("ir_version", 10**6, "ir_version 1000000"),
        ("opset", 0, "opset version 0"),
        ("opset", -5, "opset version -5"),
    ],
)
def test_invalid_header_fields(tmp_path, field, value, word):
    m = _mlp()
    if field == "opset":
        m.opset_import[0].version = value
    else:
        setattr(m, field, value)
    path = _save(m, tmp_path / "m.onnx")
    _assert_error(_run(path), 3, "not a valid ONNX model", str(path), word)


def test_good_model_imports(tmp_path):
    """The control for the rows below: the unbroken model imports and is read right."""
    doc, _ = _import_json(_save(_mlp(), tmp_path / "m.onnx"))
    assert doc["params"] == 12 and doc["macs"] == 12
    assert [s["name"] for s in doc["splittable"]] == ["fc"]
    assert doc["splittable"][0]["synapses"] == 11  # W = 0..11 has one zero


def test_model_over_2gib_refused_by_size(tmp_path):
    """A sparse 2 GiB + 1 file: refused from its size, never read or re-serialised."""
    path = _save(_mlp(), tmp_path / "big.onnx")
    os.truncate(path, (2 << 30) + 1)
    line = _assert_error(_run(path), 5, str(path), "external data")
    assert "GiB" in line


def test_embedded_tensor_shape_disagrees_with_data(tmp_path):
    raw = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 3])
    raw.raw_data = W.reshape(-1)[:8].tobytes()
    _assert_error(_run(_save(_mlp(raw), tmp_path / "m.onnx")), 3, "'W'", "32 bytes")
    typed = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 3], float_data=[1.0] * 5)
    _assert_error(_run(_save(_mlp(typed), tmp_path / "t.onnx")), 3, "'W'")
    strings = TensorProto(name="S", data_type=TensorProto.STRING, dims=[1 << 40])
    strings.string_data.append(b"a")
    m = _mlp()
    m.graph.initializer.append(strings)
    _assert_error(_run(_save(m, tmp_path / "s.onnx")), 3, "'S'", "strings")


def test_unknown_element_type_names_tensor(tmp_path):
    t = TensorProto(name="W", data_type=999, dims=[4, 3], raw_data=bytes(48))
    _assert_error(_run(_save(_mlp(t), tmp_path / "m.onnx")), 3, "'W'", "element type 999")


BAD_UTF8 = b"\xff\xfe\xfd\xfc\xfb\xfa\xf9"  # as long as the placeholder below
PLACEHOLDER = "UTF8BAD"


def _with_bad_utf8(model: onnx.ModelProto) -> bytes:
    data = model.SerializeToString()
    assert data.count(PLACEHOLDER.encode()) >= 1
    return data.replace(PLACEHOLDER.encode(), BAD_UTF8)  # same length: framing stays valid


def _bad_utf8_models():
    def with_odd_node(**names):
        m = _mlp()
        for key, value in names.items():
            setattr(m.graph.node[1], key, value)
        return m

    renamed = _mlp(numpy_helper.from_array(W, PLACEHOLDER))
    renamed.graph.node[0].input[1] = PLACEHOLDER
    domain = _mlp()
    domain.opset_import.append(helper.make_opsetid(PLACEHOLDER, 1))
    return [
        pytest.param(with_odd_node(op_type=PLACEHOLDER), id="op_type"),
        pytest.param(with_odd_node(name=PLACEHOLDER), id="node-name"),
        pytest.param(renamed, id="tensor-name"),
        pytest.param(_mlp(_external("W", PLACEHOLDER)), id="location"),
        pytest.param(domain, id="opset-domain"),
    ]


@pytest.mark.parametrize("model", _bad_utf8_models())
def test_names_not_utf8_refused(tmp_path, model):
    """proto2 hands back bytes for a string that is not UTF-8: refused, never a TypeError."""
    path = tmp_path / "m.onnx"
    path.write_bytes(_with_bad_utf8(model))
    _assert_error(_run(path), 3, "UTF-8")


def test_names_with_newlines_stay_on_one_line(tmp_path):
    """A name is shown with repr: a newline in it cannot forge a second line."""
    evil = "W\ndnnpart: forged second line"
    m = _mlp(TensorProto(name=evil, data_type=TensorProto.FLOAT, dims=[4, 3], raw_data=bytes(8)))
    m.graph.node[0].input[1] = evil
    _assert_error(_run(_save(m, tmp_path / "m.onnx")), 3, repr(evil))


# -- external data ------------------------------------------------------------------------
@pytest.fixture
def ext(tmp_path, monkeypatch):
    """A model folder with ``w.bin`` (W's bytes), a canary beside it, and an open recorder.

    ``ext.run(location, **keys)`` writes ``model/m.onnx`` whose W lives at ``location``,
    imports it and checks that no file outside ``model/`` was opened and the canary's bytes
    never reached the output.
    """
    return _Ext(tmp_path, monkeypatch)


class _Ext:
    def __init__(self, root: Path, monkeypatch):
        self.root = root
        self.dir = root / "model"
        self.dir.mkdir()
        (self.dir / "w.bin").write_bytes(W.tobytes())
        self.outside = root / "outside"
        self.outside.mkdir()
        self.canary = root / "secret.bin"
        self.canary.write_bytes(CANARY)
        (self.outside / "secret.bin").write_bytes(CANARY)
        self.opened: list[str] = []
        self._patch(monkeypatch)

    def _record(self, target, follow: bool = True) -> None:
        if not isinstance(target, (str, bytes, os.PathLike)):  # an fd or file object
            return
        path = os.path.abspath(os.fsdecode(target))
        if follow:
            self.opened.append(os.path.realpath(path))
        else:  # O_NOFOLLOW opens the link itself, never what it points to
            head, tail = os.path.split(path)
            self.opened.append(os.path.join(os.path.realpath(head), tail))

    def _patch(self, monkeypatch) -> None:
        real_os_open, real_open, real_mmap = os.open, builtins.open, mmap.mmap
        real_memmap, real_fromfile = np.memmap, np.fromfile
        nofollow = getattr(os, "O_NOFOLLOW", 0)

        def os_open(path, flags, *a, **k):
            self._record(path, follow=not (flags & nofollow))
            return real_os_open(path, flags, *a, **k)

        def b_open(file, *a, **k):
            self._record(file)
            return real_open(file, *a, **k)

        def mm(fileno, *a, **k):
            if fileno >= 0:  # -1 is an anonymous map
                self.opened.append(os.path.realpath(f"/proc/self/fd/{fileno}"))
            return real_mmap(fileno, *a, **k)

        def memmap(filename, *a, **k):
            self._record(filename)
            return real_memmap(filename, *a, **k)

        def fromfile(file, *a, **k):
            self._record(file)
            return real_fromfile(file, *a, **k)

        monkeypatch.setattr(os, "open", os_open)
        monkeypatch.setattr(builtins, "open", b_open)
        monkeypatch.setattr(io, "open", b_open)
        monkeypatch.setattr(mmap, "mmap", mm)
        monkeypatch.setattr(np, "memmap", memmap)
        monkeypatch.setattr(np, "fromfile", fromfile)

    def model(self, location: str, *, dims=(4, 3), **keys) -> Path:
        t = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=list(dims))
        t.data_location = TensorProto.EXTERNAL
        entries = {"location": location, **{k: str(v) for k, v in keys.items()}}
        for k, v in entries.items():
            t.external_data.add(key=k, value=v)
        return _save(_mlp(t), self.dir / "m.onnx")

    def run(self, location: str, *args, dims=(4, 3), **keys):
        path = self.model(location, dims=dims, **keys)
        self.opened.clear()  # what the test itself wrote does not count
        result = _run(path, *args)
        self.check_confined(result)
        return result

    def check_confined(self, result=None) -> None:
        """Nothing opened outside ``model/`` (nor any device); no canary in the output."""
        inside = os.path.realpath(self.dir)
        root = os.path.realpath(self.root)
        for p in self.opened:
            assert not p.startswith("/dev/"), p
            if os.path.commonpath([root, p]) == root:
                assert os.path.commonpath([inside, p]) == inside, f"opened {p}"
        if result is not None:
            assert CANARY.decode()[:14] not in result.stdout + result.stderr


def test_external_data_inside_folder_imports(ext):
    """The control: a well-formed external reference imports and its bytes are read."""
    result = ext.run("w.bin", "--json", offset=0, length=48)
    doc = _assert_ok(result, "--json")
    assert doc["splittable"][0]["synapses"] == 11
    assert os.path.realpath(ext.dir / "w.bin") in ext.opened  # the recorder does see reads


@pytest.mark.parametrize(
    "location",
    [
        pytest.param("ABSOLUTE", id="absolute"),
        pytest.param("../secret.bin", id="dotdot"),
        pytest.param("sub/../../secret.bin", id="dotdot-nested"),
        pytest.param("..\\secret.bin", id="dotdot-backslash"),
        pytest.param("C:\\secret.bin", id="drive-letter"),
        pytest.param("C:secret.bin", id="drive-relative"),
        pytest.param("\\\\server\\share\\secret.bin", id="unc"),
        pytest.param("//server/share/secret.bin", id="unc-slashes"),
        pytest.param("~/secret.bin", id="home"),
        pytest.param("w.bin\x00.txt", id="nul"),
    ],
)
def test_external_location_text_refused(ext, location):
    if location == "ABSOLUTE":
        location = str(ext.canary)
    line = _assert_error(ext.run(location), 4, "'W'")
    assert "location" in line or "outside" in line


def test_external_dotdot_staying_inside_refused(ext):
    """``..`` is refused from the text alone, even when it would resolve inside."""
    (ext.dir / "sub").mkdir()
    _assert_error(ext.run("sub/../w.bin"), 4, "'W'", "sub/../w.bin")


def test_external_symlinked_file_outside_refused(ext):
    os.symlink(ext.canary, ext.dir / "link.bin")
    _assert_error(ext.run("link.bin"), 4, "'W'", "link.bin", "outside")


def test_external_symlinked_parent_folder_outside_refused(ext):
    os.symlink(ext.outside, ext.dir / "sub")
    _assert_error(ext.run("sub/secret.bin"), 4, "'W'", "sub/secret.bin", "outside")


def test_external_sibling_folder_with_common_prefix_refused(ext):
    """``model-evil/`` shares the string prefix ``model``: whole components must be compared."""
    evil = ext.root / "model-evil"
    evil.mkdir()
    (evil / "w.bin").write_bytes(CANARY)
    os.symlink(evil, ext.dir / "sub")
    _assert_error(ext.run("sub/w.bin"), 4, "'W'", "outside")


def test_external_symlink_inside_folder_allowed(ext):
    (ext.dir / "data").mkdir()
    shutil.move(ext.dir / "w.bin", ext.dir / "data" / "w.bin")
    os.symlink("data/w.bin", ext.dir / "link.bin")
    doc = _assert_ok(ext.run("link.bin", "--json"), "--json")
    assert doc["splittable"][0]["synapses"] == 11


def test_external_symlink_to_device_refused(ext):
    os.symlink("/dev/zero", ext.dir / "zero.bin")
    _assert_error(ext.run("zero.bin"), 4, "'W'", "zero.bin")


def test_external_device_node_inside_folder_refused(ext):
    try:
        os.mknod(ext.dir / "null.bin", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError):
        pytest.skip("cannot create a device node here")
    _assert_error(ext.run("null.bin"), 4, "'W'", "null.bin", "not a regular file")


def test_external_symlink_loop_refused(ext):
    os.symlink("loop.bin", ext.dir / "loop.bin")
    _assert_error(ext.run("loop.bin"), 4, "'W'", "loop.bin")


def test_external_name_too_long_refused(ext):
    _assert_error(ext.run("a" * 5000), 4, "'W'")


def _constant(output: str, tensor: TensorProto, name: str) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [output], value=tensor, name=name)


def _outside_in_constant(loc):
    nodes = [
        _constant("Wc", _external("Wc", loc), "const"),
        helper.make_node("Relu", ["Wc"], ["z"]),
    ]
    return _model(nodes, [], [_vi("z", [4, 3])]), "'value' of node 'const'"


def _outside_in_if_body(loc):
    body = helper.make_graph(
        [helper.make_node("Relu", ["Wb"], ["t"])],
        "b",
        [],
        [_vi("t", [4, 3])],
        [_external("Wb", loc)],
    )
    node = helper.make_node("If", ["c"], ["z"], then_branch=body, else_branch=body, name="br")
    return _model([node], [_vi("c", [], TensorProto.BOOL)], [_vi("z", [4, 3])]), "'Wb'"


def _outside_in_function(loc):
    fn = helper.make_function(
        "local",
        "f",
        [],
        ["b"],
        [_constant("b", _external("Wf", loc), "fconst")],
        [helper.make_opsetid("", 17)],
    )
    node = helper.make_node("f", [], ["z"], domain="local", name="call")
    m = _model(
        [node],
        [],
        [_vi("z", [4, 3])],
        functions=[fn],
        extra_opsets=[helper.make_opsetid("local", 1)],
    )
    return m, "'fconst'"


def _outside_in_sparse(loc):
    sparse = helper.make_sparse_tensor(
        _external("Ws", loc, dims=(12,)), numpy_helper.from_array(np.arange(12), "Ws_i"), [4, 3]
    )
    m = _model([helper.make_node("Relu", ["Ws"], ["z"])], [], [_vi("z", [4, 3])])
    m.graph.sparse_initializer.append(sparse)
    return m, "'Ws'"


def _outside_in_sparse_attribute_indices(loc):
    idx = _external("si", loc, dims=(6,), dtype=TensorProto.INT64)
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.ones(6, np.float32), "sv"), idx, [4, 3]
    )
    node = helper.make_node("Constant", [], ["Wc"], sparse_value=sparse, name="sconst")
    return _model([node], [], [_vi("Wc", [4, 3])]), "indices of attribute 'sparse_value'"


@pytest.mark.parametrize(
    "build",
    [
        _outside_in_constant,
        _outside_in_if_body,
        _outside_in_function,
        _outside_in_sparse,
        _outside_in_sparse_attribute_indices,
    ],
)
@pytest.mark.parametrize("location", ["../secret.bin", "link.bin"])
def test_external_outside_anywhere_in_the_model_refused(ext, build, location):
    """Every tensor is checked: constants, subgraph and sparse initializers, function bodies."""
    os.symlink(ext.canary, ext.dir / "link.bin")
    model, culprit = build(location)
    path = _save(model, ext.dir / "m.onnx")
    ext.opened.clear()
    result = _run(path)
    ext.check_confined(result)
    _assert_error(result, 4, culprit, location)


def test_external_missing_file(ext):
    _assert_error(ext.run("nope.bin"), 3, "'W'", "nope.bin", "not found")


def test_external_directory(ext):
    (ext.dir / "adir").mkdir()
    _assert_error(ext.run("adir"), 4, "'W'", "adir", "not a regular file")


def test_external_model_folder_itself(ext):
    _assert_error(ext.run("."), 4, "'W'")


def test_external_hard_link_refused(ext):
    os.link(ext.dir / "w.bin", ext.dir / "w2.bin")
    _assert_error(ext.run("w2.bin"), 4, "'W'", "w2.bin", "hard-linked")


def test_external_hard_link_to_outside_file_refused(ext):
    """A hard link looks inside by path; its link count gives it away."""
    os.link(ext.canary, ext.dir / "h.bin")
    _assert_error(ext.run("h.bin"), 4, "'W'", "h.bin", "hard-linked")


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        pytest.param({"offset": -4}, ["offset", "-4"], id="offset-negative"),
        pytest.param({"length": -48}, ["length", "-48"], id="length-negative"),
        pytest.param({"offset": "abc"}, ["offset", "abc"], id="offset-text"),
        pytest.param({"length": "4.8e1"}, ["length"], id="length-float"),
        pytest.param({"offset": "0x10"}, ["offset"], id="offset-hex"),
        pytest.param({"offset": ""}, ["offset"], id="offset-empty"),
        pytest.param({"offset": 2**70}, ["offset"], id="offset-overflow"),
        pytest.param({"length": 2**70}, ["length"], id="length-overflow"),
        pytest.param({"offset": 2**63 - 1, "length": 48}, ["past"], id="offset-int64-max"),
        pytest.param({"offset": 8, "length": 48}, ["past", "w.bin"], id="range-past-end"),
        pytest.param({"offset": 4}, ["length 44", "48 bytes"], id="implicit-length-short"),
        pytest.param({"length": 44}, ["length 44", "48 bytes"], id="length-not-dtype-shape"),
        pytest.param({"basepath": "/etc"}, ["basepath"], id="unknown-key"),
    ],
)
def test_external_offset_length_keys(ext, keys, words):
    line = _assert_error(ext.run("w.bin", **keys), 3, "'W'")
    for w in words:
        assert w in line, (w, line)


def test_external_key_given_twice(ext):
    path = ext.model("w.bin")
    m = onnx.load(path, load_external_data=False)
    m.graph.initializer[0].external_data.add(key="location", value="../secret.bin")
    _save(m, path)
    ext.opened.clear()
    result = _run(path)
    ext.check_confined(result)
    _assert_error(result, 3, "'W'", "location")


def test_external_huge_shape_little_data(ext):
    """Shape [2^20, 2^20] backed by 48 bytes: refused from the header, nothing allocated."""
    _assert_error(ext.run("w.bin", dims=(1 << 20, 1 << 20)), 3, "'W'", "48")


def test_external_data_changed_after_check(ext):
    """Swapped for a symlink to the canary between the check and the read: refused (4)."""
    graph = dnnpart.load(ext.model("w.bin"))
    (ext.dir / "w.bin").unlink()
    os.symlink(ext.canary, ext.dir / "w.bin")
    ext.opened.clear()
    with pytest.raises(UnsafeReferenceError, match="changed|cannot open"):
        graph.layer("fc").weights["weight"].numpy()
    ext.check_confined()


# -- declared shapes ----------------------------------------------------------------------
def _tensor_with(dims, nbytes):
    t = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=list(dims))
    t.raw_data = b"\0" * nbytes
    return t


@pytest.mark.parametrize(
    ("dims", "code", "word"),
    [
        pytest.param((1 << 40, 1 << 20), 5, "elements", id="huge-over-limit"),
        pytest.param((1 << 20, 1 << 20), 3, "bytes", id="huge-within-limit"),
        pytest.param((2**62, 2**62), 5, "elements", id="product-overflows-int64"),
        pytest.param((-1, 3), 3, "negative", id="negative-dim"),
        pytest.param((4, -3), 3, "negative", id="negative-dim-last"),
        pytest.param((1,) * 100, 5, "rank 100", id="rank-100"),
        pytest.param((1,) * 100_000, 5, "rank 100000", id="rank-100000"),
    ],
)
def test_declared_shape_refused(tmp_path, dims, code, word):
    _assert_error(_run(_save(_mlp(_tensor_with(dims, 48)), tmp_path / "m.onnx")), code, "'W'", word)


def test_huge_constant_of_shape_refused(tmp_path):
    """ConstantOfShape of a huge constant shape must not allocate the fill."""
    shape = numpy_helper.from_array(np.array([1 << 40, 1 << 40], dtype=np.int64), "s")
    nodes = [
        helper.make_node("ConstantOfShape", ["s"], ["big"], name="fill"),
        helper.make_node("Add", ["x", "big"], ["y"], name="add"),
    ]
    m = _model(nodes, [_vi("x", [1, 1])], [_vi("y", None)], [shape])
    _assert_error(_run(_save(m, tmp_path / "m.onnx")), 5, "'big'")


# -- graph structure ----------------------------------------------------------------------
def test_nodes_out_of_order_are_sorted(tmp_path):
    m = _mlp()
    nodes = list(m.graph.node)[::-1]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    path = _save(m, tmp_path / "m.onnx")
    doc, _ = _import_json(path)
    assert doc["layers"] == 2 and doc["macs"] == 12
    graph = dnnpart.load(path)
    assert [layer.name for layer in graph.layers] == ["fc", "relu"]
    assert graph.edges() == [(0, 1, "y")]


def test_cycle_named(tmp_path):
    nodes = [
        helper.make_node("Add", ["x", "b"], ["a"], name="A"),
        helper.make_node("Relu", ["a"], ["b"], name="B"),
        helper.make_node("Relu", ["b"], ["z"], name="C"),
    ]
    m = _model(nodes, [_vi("x", [1, 3])], [_vi("z", [1, 3])])
    _assert_error(_run(_save(m, tmp_path / "m.onnx")), 3, "cycle", "'A'", "'B'")


def test_self_loop_named(tmp_path):
    nodes = [helper.make_node("Add", ["x", "a"], ["a"], name="A")]
    m = _model(nodes, [_vi("x", [1, 3])], [_vi("a", [1, 3])])
    _assert_error(_run(_save(m, tmp_path / "m.onnx")), 3, "'A'", "'a'")


def test_tensor_produced_twice_named(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["y"], name="first"),
        helper.make_node("Sigmoid", ["x"], ["y"], name="second"),
    ]
    m = _model(nodes, [_vi("x", [1, 3])], [_vi("y", [1, 3])])
    _assert_error(_run(_save(m, tmp_path / "m.onnx")), 3, "'y'", "produced twice", "'second'")


def test_input_nobody_produces_named(tmp_path):
    nodes = [helper.make_node("Add", ["x", "ghost"], ["y"], name="adder")]
    m = _model(nodes, [_vi("x", [1, 3])], [_vi("y", [1, 3])])
    _assert_error(_run(_save(m, tmp_path / "m.onnx")), 3, "'ghost'", "'adder'")


def test_output_nobody_produces_named(tmp_path):
    m = _mlp()
    m.graph.output.append(_vi("phantom", [1]))
    _assert_error(_run(_save(m, tmp_path / "m.onnx")), 3, "'phantom'")


def test_duplicate_initializer_names(tmp_path):
    m = _mlp()
    m.graph.initializer.append(numpy_helper.from_array(W * 2, "W"))
    _assert_error(_run(_save(m, tmp_path / "m.onnx")), 3, "duplicate", "'W'")


# -- unknown ops, domains, opsets ---------------------------------------------------------
def _with_custom(op: str, domain: str, extra_opsets=()):
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["y"], name="fc"),
        helper.make_node(op, ["y"], ["z"], name="odd", domain=domain),
    ]
    return _model(
        nodes,
        [_vi("x", [1, 4])],
        [_vi("z", None)],
        [numpy_helper.from_array(W, "W")],
        extra_opsets=extra_opsets,
    )


@pytest.mark.parametrize(
    ("op", "domain", "opsets"),
    [
        pytest.param("FrobnicateNd", "", (), id="unknown-op"),
        pytest.param("Normalizer", "ai.onnx.ml", [helper.make_opsetid("ai.onnx.ml", 3)], id="ml"),
        pytest.param("Gizmo", "com.example", [helper.make_opsetid("com.example", 1)], id="custom"),
    ],
)
def test_unknown_op_opaque_with_warning_and_strict_fails(tmp_path, op, domain, opsets):
    path = _save(_with_custom(op, domain, opsets), tmp_path / "m.onnx")
    doc, result = _import_json(path)
    assert doc["layers"] == 2 and doc["ops"][op] == 1
    assert any("'odd'" in w and op in w for w in doc["warnings"]), doc["warnings"]
    assert "warning:" in result.stderr and op in result.stderr
    graph = dnnpart.load(path)
    assert graph.layer("odd").kind == "opaque" and graph.layer("odd").macs == 0
    _assert_error(_run(path, "--strict"), 3, "'odd'", op, "strict")


@pytest.mark.parametrize("name", ["odd[/red]", "odd[bold]x"])
def test_names_with_markup_printed_verbatim(tmp_path, name):
    m = _with_custom("Gizmo", "com.example", [helper.make_opsetid("com.example", 1)])
    m.graph.node[1].name = name
    m.graph.node[0].name = name + "fc"  # a splittable layer: shown in the table
    result = _run(_save(m, tmp_path / "m.onnx"))
    assert result.exit_code == 0, result.stderr
    assert f"'{name}'" in result.stderr and f"{name}fc" in result.stdout


def test_unknown_opset_version_warns_and_strict_fails(tmp_path):
    m = _mlp()
    m.opset_import[0].version = 999
    path = _save(m, tmp_path / "m.onnx")
    doc, _ = _import_json(path)
    assert any("999" in w for w in doc["warnings"]), doc["warnings"]
    _assert_error(_run(path, "--strict"), 3, "opset 999")


# -- control flow -------------------------------------------------------------------------
def _if_model():
    """``If(cond)``: then ``Relu(x @ W)``, else ``xn @ W`` -- both bodies read outer names."""
    then_g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["t0"], name="then_mm"),
            helper.make_node("Relu", ["t0"], ["t1"], name="then_relu"),
        ],
        "then",
        [],
        [_vi("t1", [1, 3])],
    )
    else_g = helper.make_graph(
        [helper.make_node("MatMul", ["xn", "W"], ["e0"], name="else_mm")],
        "else",
        [],
        [_vi("e0", [1, 3])],
    )
    nodes = [
        helper.make_node("Neg", ["x"], ["xn"], name="neg"),
        helper.make_node(
            "If", ["cond"], ["z"], name="branch", then_branch=then_g, else_branch=else_g
        ),
    ]
    inputs = [_vi("x", [1, 4]), _vi("cond", [], TensorProto.BOOL)]
    return _model(nodes, inputs, [_vi("z", [1, 3])], [numpy_helper.from_array(W, "W")])


def test_if_with_outer_scope_values(tmp_path):
    path = _save(_if_model(), tmp_path / "m.onnx")
    _import_json(path)
    graph = dnnpart.load(path)
    layer = graph.layer("branch")
    assert layer.kind == "control_flow"
    assert set(layer.captured) == {"x", "xn"}
    assert layer.weights["outer:W"].shape == (4, 3)
    # the captured activation is a real dependency: neg comes before the If
    names = [lay.name for lay in graph.layers]
    assert names.index("neg") < names.index("branch")
    assert (names.index("neg"), names.index("branch"), "xn") in graph.edges()


def test_if_before_its_captured_producer_is_sorted(tmp_path):
    m = _if_model()
    nodes = list(m.graph.node)[::-1]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    graph = dnnpart.load(_save(m, tmp_path / "m.onnx"))
    assert [lay.name for lay in graph.layers] == ["neg", "branch"]


def test_loop_and_scan_with_outer_scope_values(tmp_path):
    loop_body = helper.make_graph(
        [
            helper.make_node("Identity", ["c_in"], ["c_out"]),
            helper.make_node("Add", ["acc", "bias_outer"], ["acc_out"], name="loop_add"),
        ],
        "loop_body",
        [_vi("i", [], TensorProto.INT64), _vi("c_in", [], TensorProto.BOOL), _vi("acc", [1, 3])],
        [_vi("c_out", [], TensorProto.BOOL), _vi("acc_out", [1, 3])],
    )
    scan_body = helper.make_graph(
        [
            helper.make_node("Add", ["s", "row"], ["s2"]),
            helper.make_node("Mul", ["row", "scale_outer"], ["r2"]),
        ],
        "scan_body",
        [_vi("s", [3]), _vi("row", [3])],
        [_vi("s2", [3]), _vi("r2", [3])],
    )
    nodes = [
        helper.make_node("Relu", ["x"], ["bias_outer"], name="mkbias"),
        helper.make_node("Sigmoid", ["x"], ["scale_outer"], name="mkscale"),
        helper.make_node("Loop", ["n", "", "x"], ["acc_final"], name="loop", body=loop_body),
        helper.make_node(
            "Scan",
            ["s0", "acc_final"],
            ["s_final", "rows"],
            name="scan",
            body=scan_body,
            num_scan_inputs=1,
        ),
    ]
    inputs = [_vi("x", [1, 3]), _vi("n", [], TensorProto.INT64), _vi("s0", [3])]
    outputs = [_vi("s_final", [3]), _vi("rows", [1, 3])]
    path = _save(_model(nodes, inputs, outputs), tmp_path / "m.onnx")
    _import_json(path)
    graph = dnnpart.load(path)
    assert graph.layer("loop").kind == "control_flow"
    assert graph.layer("loop").captured == ("bias_outer",)
    assert graph.layer("scan").kind == "control_flow"
    assert graph.layer("scan").captured == ("scale_outer",)
    edges = {(graph.layers[a].name, graph.layers[b].name, t) for a, b, t in graph.edges()}
    assert {("mkbias", "loop", "bias_outer"), ("mkscale", "scan", "scale_outer")} <= edges


def test_body_reading_a_tensor_nobody_produces_named(tmp_path):
    then_g = helper.make_graph(
        [helper.make_node("Relu", ["ghost"], ["t"])], "t", [], [_vi("t", [3])]
    )
    else_g = helper.make_graph([helper.make_node("Relu", ["x"], ["e"])], "e", [], [_vi("e", [3])])
    node = helper.make_node("If", ["c"], ["z"], then_branch=then_g, else_branch=else_g, name="br")
    m = _model([node], [_vi("x", [3]), _vi("c", [], TensorProto.BOOL)], [_vi("z", [3])])
    _assert_error(_run(_save(m, tmp_path / "m.onnx")), 3, "'ghost'", "'br'")


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, encoded by hand."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _nested_ifs(depth: int) -> bytes:
    """A model whose If nodes nest ``depth`` deep in their then-branches, as bytes.

    Encoded by hand, level by level: protobuf's own (de)serialisers refuse to build
    messages this deep, but a stranger's file can be anything.
    """
    body = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r0"])], "g0", [], [_vi("r0", [1, 3])]
    )
    inner = body.SerializeToString()
    main_graph = _model([], [_vi("x", [1, 3]), _vi("cond", [], TensorProto.BOOL)], [])
    for level in range(1, depth + 1):
        flat = helper.make_graph(
            [helper.make_node("Neg", ["x"], [f"n{level}"])],
            f"e{level}",
            [],
            [_vi(f"n{level}", [1, 3])],
        )  # the else branch stays flat: the model grows linearly with depth
        node = helper.make_node("If", ["cond"], [f"r{level}"], else_branch=flat, name=f"if{level}")
        then = onnx.AttributeProto(name="then_branch", type=onnx.AttributeProto.GRAPH)
        then_bytes = then.SerializeToString() + _field(6, inner)  # AttributeProto.g = 6
        node_bytes = node.SerializeToString() + _field(5, then_bytes)  # NodeProto.attribute = 5
        out = [_vi(f"r{level}", [1, 3])]
        shell = main_graph.graph if level == depth else helper.make_graph([], f"g{level}", [], out)
        if level == depth:
            shell.output.extend(out)
        inner = shell.SerializeToString() + _field(1, node_bytes)  # GraphProto.node = 1
    main_graph.ClearField("graph")
    return main_graph.SerializeToString() + _field(7, inner)  # ModelProto.graph = 7


def test_moderately_nested_subgraphs_import(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(_nested_ifs(8))
    onnx.checker.check_model(onnx.load(path))  # the hand encoding is a valid model
    graph = dnnpart.load(path)
    (layer,) = graph.layers
    assert layer.name == "if8" and layer.kind == "control_flow"
    assert set(layer.captured) == {"x", "cond"}


@pytest.mark.parametrize(
    ("depth", "culprit"),
    [
        pytest.param(30, "'if6'", id="30-our-cap"),  # the node at depth MAX_DEPTH + 1
        pytest.param(40, "m.onnx", id="40-parser-cap"),  # past protobuf's 100 message levels
        pytest.param(1000, "m.onnx", id="1000"),
    ],
)
def test_deeply_nested_subgraphs_refused(tmp_path, depth, culprit):
    path = tmp_path / "m.onnx"
    path.write_bytes(_nested_ifs(depth))
    line = _assert_error(_run(path), 5, culprit)
    assert "nested" in line.replace(str(tmp_path), "")


def _function(name: str, calls: str, domain="local") -> onnx.FunctionProto:
    return helper.make_function(
        domain,
        name,
        ["a"],
        ["b"],
        [helper.make_node(calls, ["a"], ["b"], domain=domain if calls != "Relu" else "")],
        [helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)],
    )


@pytest.mark.parametrize(
    "functions",
    [
        pytest.param([("f", "f")], id="self"),
        pytest.param([("f", "g"), ("g", "h"), ("h", "f")], id="mutual"),
    ],
)
def test_recursive_local_functions_refused(tmp_path, functions):
    funcs = [_function(n, c) for n, c in functions]
    nodes = [helper.make_node("f", ["x"], ["z"], name="call", domain="local")]
    m = _model(
        nodes,
        [_vi("x", [1, 3])],
        [_vi("z", [1, 3])],
        functions=funcs,
        extra_opsets=[helper.make_opsetid("local", 1)],
    )
    _assert_error(_run(_save(m, tmp_path / "m.onnx")), 3, "recursive", "local function")


def test_non_recursive_local_function_imports(tmp_path):
    funcs = [_function("f", "g"), _function("g", "Relu")]
    nodes = [helper.make_node("f", ["x"], ["z"], name="call", domain="local")]
    m = _model(
        nodes,
        [_vi("x", [1, 3])],
        [_vi("z", [1, 3])],
        functions=funcs,
        extra_opsets=[helper.make_opsetid("local", 1)],
    )
    path = _save(m, tmp_path / "m.onnx")
    doc, _ = _import_json(path)
    assert any("'call'" in w and "local function" in w for w in doc["warnings"])
    _assert_error(_run(path, "--strict"), 3, "'call'")


# -- old IR, sparse and quantised tensors -------------------------------------------------
def test_initializers_listed_as_inputs_ir3(tmp_path):
    m = _mlp()
    m.ir_version = 3
    m.opset_import[0].version = 8
    m.graph.input.append(_vi("W", [4, 3]))
    path = _save(m, tmp_path / "m.onnx")
    doc, _ = _import_json(path)
    assert [t["name"] for t in doc["inputs"]] == ["x"]
    assert doc["params"] == 12
    graph = dnnpart.load(path)
    fc = graph.layer("fc")
    assert fc.kind == "dense" and fc.neurons == 3
    assert [t.name for t in fc.inputs] == ["x"] and fc.weights["weight"].shape == (4, 3)


def test_sparse_initializer_refused(tmp_path):
    values = numpy_helper.from_array(np.array([1.0, 2.0], dtype=np.float32), "Ws")
    indices = numpy_helper.from_array(np.array([0, 5], dtype=np.int64), "Ws_idx")
    sparse = helper.make_sparse_tensor(values, indices, [4, 3])
    nodes = [helper.make_node("MatMul", ["x", "Ws"], ["z"], name="fc")]
    m = _model(nodes, [_vi("x", [1, 4])], [_vi("z", [1, 3])])
    m.graph.sparse_initializer.append(sparse)
    _assert_error(_run(_save(m, tmp_path / "m.onnx")), 3, "sparse", "'Ws'")


def test_sparse_initializer_in_subgraph_refused(tmp_path):
    values = numpy_helper.from_array(np.array([1.0], dtype=np.float32), "Wb")
    sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(np.array([2]), "i"), [3])
    body = helper.make_graph([helper.make_node("Relu", ["Wb"], ["t"])], "b", [], [_vi("t", [3])])
    body.sparse_initializer.append(sparse)
    node = helper.make_node("If", ["c"], ["z"], then_branch=body, else_branch=body, name="br")
    m = _model([node], [_vi("c", [], TensorProto.BOOL)], [_vi("z", [3])])
    _assert_error(_run(_save(m, tmp_path / "m.onnx")), 3, "sparse", "'Wb'", "'br'")


def test_sparse_constant_attribute_refused(tmp_path):
    values = numpy_helper.from_array(np.array([1.0, 2.0], dtype=np.float32), "v")
    indices = numpy_helper.from_array(np.array([0, 5], dtype=np.int64), "i")
    sparse = helper.make_sparse_tensor(values, indices, [4, 3])
    nodes = [
        helper.make_node("Constant", [], ["Wc"], sparse_value=sparse, name="c"),
        helper.make_node("MatMul", ["x", "Wc"], ["z"], name="fc"),
    ]
    m = _model(nodes, [_vi("x", [1, 4])], [_vi("z", [1, 3])])
    onnx.checker.check_model(m, full_check=True)  # a valid model that dnnpart refuses
    _assert_error(_run(_save(m, tmp_path / "m.onnx")), 3, "sparse", "'sparse_value'", "'c'")


def _q(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def test_quantised_tensors_import(tmp_path):
    """int8 weights: QLinearConv, QLinearMatMul and DequantizeLinear -> MatMul."""
    rng = np.random.default_rng(0)
    wc = rng.integers(-8, 8, size=(2, 1, 3, 3), dtype=np.int8)
    wm = rng.integers(-8, 8, size=(8, 3), dtype=np.int8)
    wd = rng.integers(-8, 8, size=(3, 2), dtype=np.int8)
    inits = [
        _q("xs", np.float32(0.1)), _q("xz", np.uint8(128)),
        _q("wcs", np.float32(0.05)), _q("wcz", np.int8(0)), _q("wc", wc),
        _q("ys", np.float32(0.2)), _q("yz", np.uint8(128)),
        _q("shape", np.array([1, 8], dtype=np.int64)),
        _q("wm", wm), _q("wms", np.float32(0.05)), _q("wmz", np.int8(0)),
        _q("zs", np.float32(0.3)), _q("zz", np.uint8(128)),
        _q("wd", wd), _q("wds", np.float32(0.01)), _q("wdz", np.int8(0)),
    ]  # fmt: skip
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="quant"),
        helper.make_node(
            "QLinearConv",
            ["xq", "xs", "xz", "wc", "wcs", "wcz", "ys", "yz"],
            ["yq"],
            name="qconv",
        ),
        helper.make_node("Reshape", ["yq", "shape"], ["yq2"], name="flat"),
        helper.make_node(
            "QLinearMatMul", ["yq2", "ys", "yz", "wm", "wms", "wmz", "zs", "zz"], ["zq"], name="qmm"
        ),
        helper.make_node("DequantizeLinear", ["zq", "zs", "zz"], ["zf"], name="dq_act"),
        helper.make_node("DequantizeLinear", ["wd", "wds", "wdz"], ["wdf"], name="dq_w"),
        helper.make_node("MatMul", ["zf", "wdf"], ["out"], name="fc"),
    ]
    m = _model(nodes, [_vi("x", [1, 1, 4, 4])], [_vi("out", [1, 2])], inits, opset=13)
    onnx.checker.check_model(m, full_check=True)
    path = _save(m, tmp_path / "m.onnx")
    doc, _ = _import_json(path)
    assert doc["ops"]["QLinearConv"] == 1 and doc["ops"]["QLinearMatMul"] == 1
    graph = dnnpart.load(path)
    qconv = graph.layer("qconv")
    assert qconv.weights["input3"].dtype == "INT8" and qconv.weights["input3"].shape == wc.shape
    assert graph.layer("qmm").weights["input3"].numpy().tolist() == wm.tolist()
    assert graph.params >= wc.size + wm.size + wd.size


# -- shapes unknown -----------------------------------------------------------------------
def test_unknown_shape_warning_names_tensor(tmp_path):
    """A Reshape to a runtime shape leaves ``r`` unknown; the MatMul's cost needs it."""
    nodes = [
        helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape"),
        helper.make_node("MatMul", ["r", "W"], ["z"], name="fc"),
    ]
    inputs = [_vi("x", [2, 2]), _vi("s", [2], TensorProto.INT64)]
    m = _model(nodes, inputs, [_vi("z", None)], [numpy_helper.from_array(W, "W")])
    doc, result = _import_json(_save(m, tmp_path / "m.onnx"))
    assert any("'fc'" in w and "'r'" in w for w in doc["warnings"]), doc["warnings"]
    assert "'r'" in result.stderr


def test_custom_op_output_shape_unknown_names_tensor(tmp_path):
    nodes = [
        helper.make_node("Gizmo", ["x"], ["g"], name="odd", domain="com.example"),
        helper.make_node("MatMul", ["g", "W"], ["z"], name="fc"),
    ]
    m = _model(
        nodes,
        [_vi("x", [1, 4])],
        [_vi("z", None)],
        [numpy_helper.from_array(W, "W")],
        extra_opsets=[helper.make_opsetid("com.example", 1)],
    )
    doc, _ = _import_json(_save(m, tmp_path / "m.onnx"))
    assert any("'fc'" in w and "'g'" in w for w in doc["warnings"]), doc["warnings"]


def test_shape_inference_contradiction_is_a_warning(tmp_path):
    """x[1,4] @ W[5,3]: inference leaves ``y`` unknown; the import says so and goes on."""
    w = numpy_helper.from_array(np.ones((5, 3), dtype=np.float32), "W")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["y"], name="fc"),
        helper.make_node("Relu", ["y"], ["z"], name="relu"),
    ]
    m = _model(nodes, [_vi("x", [1, 4])], [_vi("z", [1, 3])], [w])
    doc, _ = _import_json(_save(m, tmp_path / "m.onnx"))
    assert any("'fc'" in w and "'y'" in w for w in doc["warnings"]), doc["warnings"]


def test_shape_inference_raising_is_a_warning(tmp_path):
    """No opset for the default domain: onnx's inference raises; a warning, not an error."""
    m = _mlp()
    del m.opset_import[:]
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    doc, _ = _import_json(_save(m, tmp_path / "m.onnx"))
    assert any(w.startswith("shape inference failed") for w in doc["warnings"]), doc["warnings"]
    assert any("'fc'" in w and "'y'" in w for w in doc["warnings"]), doc["warnings"]


# -- real processes -----------------------------------------------------------------------
def _cli(*args, timeout=30.0, prefix=()):
    return subprocess.run(
        [*prefix, str(DNNPART), "import", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "DNNPART_DEBUG": ""},
    )


needs_script = pytest.mark.skipif(not DNNPART.exists(), reason="dnnpart script not installed")


@needs_script
def test_real_process_garbage(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07garbage")
    proc = _cli(path)
    assert proc.returncode == 3 and proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"dnnpart: error: not a valid ONNX model: {path}")


@needs_script
def test_real_process_fifo_does_not_hang(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    os.mkfifo(model_dir / "pipe.bin")
    os.mkfifo(tmp_path / "model.onnx")
    t = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 3])
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="pipe.bin")
    path = _save(_mlp(t), model_dir / "m.onnx")
    proc = _cli(path, timeout=20)
    assert proc.returncode == 4 and proc.stdout == "", proc.stderr
    assert "'W'" in proc.stderr and "pipe.bin" in proc.stderr and "Traceback" not in proc.stderr
    proc = _cli(tmp_path / "model.onnx", timeout=20)  # the model itself a FIFO
    assert proc.returncode == 3 and "not a regular file" in proc.stderr, proc.stderr


@needs_script
@pytest.mark.parametrize("num_outputs", [1, 1 << 40])
def test_real_process_split_that_crashes_onnx_inference(tmp_path, num_outputs):
    """onnx 1.23's shape inference aborts on Split(num_outputs=1) with two outputs and
    allocates num_outputs entries: refused before it runs. A real process, so that a
    regression kills only the child."""
    node = helper.make_node(
        "Split", ["x"], ["a", "b"], axis=1, num_outputs=num_outputs, name="split"
    )
    m = _model([node], [_vi("x", [1, 4])], [_vi("a", None), _vi("b", None)], opset=18)
    proc = _cli(_save(m, tmp_path / "m.onnx"))
    assert proc.returncode == 3, (proc.returncode, proc.stderr[-300:])
    assert proc.stdout == "" and "'split'" in proc.stderr and "num_outputs" in proc.stderr


@needs_script
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
def test_real_process_opens_nothing_outside_model_folder(tmp_path):
    """strace sees every open, C++ (onnx, protobuf) included: none reaches the canaries."""
    model_dir = tmp_path / "model"
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.bin").write_bytes(CANARY)
    (tmp_path / "secret.bin").write_bytes(CANARY)
    model_dir.mkdir()
    os.symlink(tmp_path / "outside", model_dir / "sub")
    os.symlink(tmp_path / "secret.bin", model_dir / "link.bin")
    for i, location in enumerate(["link.bin", "sub/secret.bin", "../secret.bin"]):
        t = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 3])
        t.data_location = TensorProto.EXTERNAL
        t.external_data.add(key="location", value=location)
        path = _save(_mlp(t), model_dir / f"m{i}.onnx")
        log = tmp_path / f"strace{i}.txt"
        proc = _cli(path, prefix=("strace", "-f", "-qq", "-e", "trace=open,openat", "-o", log))
        if proc.returncode != 4 and "ptrace" in proc.stderr:
            pytest.skip("strace cannot trace here")
        assert proc.returncode == 4, proc.stderr
        assert "Traceback" not in proc.stderr and CANARY.decode()[:14] not in proc.stderr
        opened = log.read_text()
        assert "secret.bin" not in opened
        assert str(tmp_path / "outside") not in opened
        assert str(model_dir / f"m{i}.onnx") in opened  # the log does record opens
