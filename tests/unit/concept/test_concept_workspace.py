import json
import os

import numpy as np
import pytest

from xaimesh_concept.common import Provenance
from xaimesh_runtime.errors import Cancelled, InvalidArgument, NotFound
from xaimesh_concept.workspace import ConceptWorkspace, SetRange

N, D = 120, 10


@pytest.fixture()
def ws(tmp_path):
    return ConceptWorkspace(str(tmp_path / "data"), default_device="cpu")


def data(seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.random((N, 3)) @ rng.standard_normal((3, D))).astype(np.float32)
    prov = [Provenance(i // 6, i % 6, i % 6 + 1, f"tok{i % 11}") for i in range(N)]
    return X, prov


def make_set(ws, seed=0, **kw):
    X, prov = data(seed)
    chunks = [(X[i:i + 25], prov[i:i + 25]) for i in range(0, N, 25)]
    info = ws.create_activation_set(chunks, granularity="TOKEN", model="smol", split_point="8",
                                    display_name="acts", **kw)
    return X, prov, info


def test_set_lifecycle_and_read_ranges(ws):
    X, prov, info = make_set(ws)
    assert info.shape == (N, D) and info.model == "smol" and info.num_samples == 20
    assert ws.get_activation_set(info.name) == info == ws.get_activation_set(info.id)
    chunks = list(ws.read_activation_set(info.name, 7, 101, include_provenance=True,
                                         chunk_bytes=13 * D * 4))
    assert [c.row_start for c in chunks] == list(range(7, 101, 13))
    np.testing.assert_array_equal(np.concatenate([c.rows for c in chunks]), X[7:101])
    assert sum((c.provenance for c in chunks), []) == prov[7:101]
    assert list(ws.read_activation_set(info.name))[0].provenance is None
    with pytest.raises(InvalidArgument, match="row range"):
        list(ws.read_activation_set(info.name, 50, 500))
    page, tok = ws.list_activation_sets()
    assert [s.id for s in page] == [info.id] and tok == ""
    ws.delete_activation_set(info.name)
    with pytest.raises(NotFound, match=info.id):
        ws.get_activation_set(info.name)


def test_upload_stream(ws):
    X, prov = data()
    raw = X.tobytes()
    parts = [("header", {"display_name": "up", "granularity": "GRANULARITY_TOKEN"})]
    step = 1000
    for off in range(0, len(raw), step):
        p = {"data": raw[off:off + step], "byte_offset": off, "total_bytes": len(raw)}
        if off == 0:
            p.update(dtype="DATA_TYPE_FLOAT32", shape=[N, D])
        parts.append(("chunk", p))
    parts.append(("provenance", prov[:60]))
    parts.append(("provenance", prov[60:]))
    info = ws.upload_activation_set(parts)
    assert info.display_name == "up" and info.shape == (N, D) and info.has_provenance
    np.testing.assert_array_equal(ws.open_activation_set(info.name).read(0, N), X)
    bad = X.copy()
    bad[77, 4] = np.inf
    with pytest.raises(InvalidArgument, match="row 77"):
        ws.upload_activation_set([("header", {}), ("chunk", {"data": bad.tobytes(), "byte_offset": 0,
                                                             "dtype": "float32", "shape": [N, D]})])
    with pytest.raises(InvalidArgument, match="header"):
        ws.upload_activation_set([("chunk", {"data": raw})])
    assert ws.list_activation_sets()[0] == [info]
    assert os.listdir(ws.store.tmp_dir) == []


def test_fit_encode_decode_dictionary(ws):
    X, prov, info = make_set(ws)
    logs = []
    options = {"seed": 0, "device": "", "max_iterations": 0, "tolerance": 0.0, "epochs": 7,
               "top_k": 0, "relu_negative_inputs": False}  # proto zero values = defaults
    m = ws.fit(info.name, "CONCEPT_METHOD_SEMI_NMF", 3, options, display_name="snmf",
               progress=logs.append)
    assert m.name.startswith("conceptModels/") and m.method == "SEMI_NMF" and m.nb_concepts == 3
    assert m.hidden_size == D and m.activation_set == info.name and m.granularity == "TOKEN"
    assert m.model == "smol" and m.split_point == "8" and m.device == "cpu"
    opts = json.loads(m.options_json)
    assert opts["max_iterations"] == 200 and "epochs" not in opts and opts["device"] == "cpu"
    assert m.final_loss is not None and m.final_loss < 1e-3 and m.fit_seconds > 0
    assert any(not e.progress_only for e in logs) and m.training_log
    assert ws.get_concept_model(m.id) == m
    # encode a row range: row_start is the index in the set
    chunks = list(ws.encode(m.name, SetRange(info.name, 10, 90), chunk_bytes=7 * 3 * 4))
    assert chunks[0].row_start == 10 and chunks[1].row_start == 17
    codes = np.concatenate([c.rows for c in chunks])
    assert codes.shape == (80, 3) and codes.dtype == np.float32
    np.testing.assert_array_equal(codes, ws.encode_all(m.name, X[10:90]))  # tensor source
    np.testing.assert_array_equal(codes, ws.encode_all(m.name, SetRange(info.name, 10, 90)))
    rec = np.concatenate([c.rows for c in ws.decode(m.name, codes, chunk_bytes=40 * D * 4)])
    assert np.linalg.norm(rec - X[10:90]) / np.linalg.norm(X[10:90]) < 1e-2
    assert ws.get_dictionary(m.name).shape == (3, D)
    with pytest.raises(InvalidArgument, match="codes must be"):
        list(ws.decode(m.name, np.zeros((2, 4))))


def test_fit_validation(ws):
    X, prov, info = make_set(ws)
    with pytest.raises(InvalidArgument, match="unknown concept method") as e:
        ws.fit(info.name, "NMFF", 3)
    assert e.value.field == "method"
    with pytest.raises(InvalidArgument, match="no concept method"):
        ws.fit(info.name, "CONCEPT_METHOD_UNSPECIFIED", 3)
    with pytest.raises(InvalidArgument, match="nb_concepts must be >= 1"):
        ws.fit(info.name, "PCA", 0)
    with pytest.raises(InvalidArgument, match=f"from {N} rows"):
        ws.fit(info.name, "KMEANS", N + 1)
    with pytest.raises(InvalidArgument, match="relu_negative_inputs"):
        ws.fit(info.name, "NMF", 3)
    with pytest.raises(NotFound, match="abcdef123456"):
        ws.fit("activationSets/abcdef123456", "PCA", 3)
    with pytest.raises(InvalidArgument, match="unknown fit option"):
        ws.fit(info.name, "PCA", 3, {"learning_rat": 0.1})
    # the fit on a row range
    m = ws.fit(SetRange(info.name, 0, 30), "PCA", 2)
    assert m.nb_concepts == 2
    with pytest.raises(Cancelled):
        ws.fit(info.name, "SAE_TOPK", 8, {"top_k": 2}, should_stop=lambda: True)
    assert len(ws.list_concept_models()[0]) == 1


def test_hidden_size_mismatch(ws):
    X, prov, info = make_set(ws)
    other = ws.create_activation_set([np.ones((5, 4), np.float32)])
    m = ws.fit(info.name, "PCA", 2)
    with pytest.raises(InvalidArgument, match="hidden size 4 but concept model"):
        list(ws.encode(m.name, SetRange(other.name)))
    with pytest.raises(InvalidArgument, match="hidden size 4 but concept model"):
        list(ws.encode(m.name, np.ones((3, 4), np.float32)))
    with pytest.raises(InvalidArgument, match="hidden size 4"):
        ws.compute_metrics([m.name], SetRange(other.name))
    with pytest.raises(InvalidArgument, match="hidden size 4"):
        ws.top_examples(m.name, other.name)
    with pytest.raises(InvalidArgument, match="NaN or Inf"):
        list(ws.encode(m.name, np.full((2, D), np.nan, np.float32)))


def test_metrics_examples_and_stability(ws):
    X, prov, info = make_set(ws)
    a = ws.fit(info.name, "PCA", 3)
    b = ws.fit(info.name, "SEMI_NMF", 3, {"seed": 1})
    seen = []
    vals = ws.compute_metrics([a.name], SetRange(info.name), progress=seen.append)
    got = {v.metric: v.value for v in vals}
    assert set(got) == {"MSE", "FROBENIUS", "EXPLAINED_VARIANCE", "SPARSITY", "SPARSITY_RATIO", "L0",
                        "DEAD_CONCEPTS", "FID", "AVERAGE_EUCLIDEAN", "COSINE_DISTANCE"}
    assert got["MSE"] == pytest.approx(got["FROBENIUS"] ** 2 / (N * D))
    assert got["EXPLAINED_VARIANCE"] > 0.999 and all(v.concept_model == a.name for v in vals)
    assert seen and seen[-1].done == seen[-1].total
    vals = ws.compute_metrics([a.name, b.name], X, ["CONCEPT_METRIC_MSE", "STABILITY"])
    assert [(v.metric, v.concept_model) for v in vals] == [("MSE", a.name), ("MSE", b.name),
                                                           ("STABILITY", "")]
    assert 0 < vals[-1].value <= 1
    assert ws.compute_metrics([a.name, a.id], None, ["STABILITY"])[0].value == pytest.approx(1.0)
    with pytest.raises(InvalidArgument, match="at least 2"):
        ws.compute_metrics([a.name], X, ["STABILITY"])
    with pytest.raises(InvalidArgument, match="need activations"):
        ws.compute_metrics([a.name], None, ["MSE"])
    ex = ws.top_examples(b.name, info.name, [2, 0], k=3, k_context=1)
    assert [c.concept_index for c in ex] == [2, 0]
    assert len(ex[0].examples) == 3 and ex[0].examples[0].context


def test_export_import_and_restart(ws, tmp_path):
    X, prov, info = make_set(ws)
    m = ws.fit(info.name, "SAE_BATCH_TOPK", 16, {"top_k": 2, "epochs": 2})
    codes = ws.encode_all(m.name, X)
    meta, pieces = ws.iter_export(m.name, chunk_bytes=1000)
    pieces = list(pieces)
    assert meta == m and len(pieces) > 1
    imported = ws.import_concept_model(iter(pieces), display_name="imported")
    assert imported.id != m.id and imported.display_name == "imported"
    assert imported.method == "SAE_BATCH_TOPK" and imported.nb_concepts == 16
    np.testing.assert_array_equal(ws.encode_all(imported.name, X), codes)
    with pytest.raises(InvalidArgument):
        ws.import_concept_model(b"not a model")
    # restart: a new workspace over the same directory sees everything
    ws2 = ConceptWorkspace(ws.store.root, default_device="cpu")
    assert {x.id for x in ws2.list_concept_models()[0]} == {m.id, imported.id}
    np.testing.assert_array_equal(ws2.encode_all(m.name, SetRange(info.name)), codes)
    ws2.delete_concept_model(m.name)
    with pytest.raises(NotFound, match=m.id):
        ws2.encode_all(m.name, X)
    with pytest.raises(NotFound):
        ws2.delete_concept_model(m.name)
    with pytest.raises(InvalidArgument):
        ws2.get_concept_model("conceptModels/../../etc")
