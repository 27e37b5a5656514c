import os

import numpy as np
import pytest

from xaimesh_concept import store as store_mod
from xaimesh_concept.common import Provenance
from xaimesh_runtime.errors import InvalidArgument, NotFound
from xaimesh_concept.methods import ConceptMethod, build_method
from xaimesh_concept.store import (ConceptModelInfo, Store, bytes_to_float32, parse_model_file,
                                   parse_name)


def rows(n, d=6, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def tmp_entries(store):
    return os.listdir(store.tmp_dir)


def test_chunked_set_read_back_across_chunk_boundaries(tmp_path):
    st = Store(tmp_path)
    X = rows(1000, 8)
    prov = [Provenance(i // 7, i % 7, i % 7 + 1, f"t{i}") for i in range(1000)]
    # tiny chunk size: ~30 rows per chunk file
    w = st.new_activation_set(chunk_bytes=30 * 8 * 4, granularity="GRANULARITY_TOKEN")
    for i in range(0, 1000, 45):  # appended pieces do not align with chunk files
        w.append(X[i:i + 45], prov[i:i + 45])
    info = w.commit()
    d = os.path.join(st.sets_dir, info.id)
    assert len([f for f in os.listdir(d) if f.startswith("rows-")]) > 20
    r = st.open_activation_set(info.id)
    assert (r.n_rows, r.n_features) == (1000, 8) and info.granularity == "TOKEN"
    for a, b in [(0, 1000), (29, 31), (25, 95), (999, 1000), (0, 0), (310, 777)]:
        np.testing.assert_array_equal(r.read(a, b), X[a:b])
    got = np.concatenate([c for _, c in r.iter_chunks(77, 13, 900)])
    np.testing.assert_array_equal(got, X[13:900])
    assert r.read_provenance(58, 61) == prov[58:61]
    assert r.texts(0, 3) == ["t0", "t1", "t2"]
    np.testing.assert_array_equal(r.provenance_arrays(5, 9)["sample_index"], [0, 0, 1, 1])
    assert info.num_samples == 143 and info.has_provenance
    assert info.size_bytes >= X.nbytes
    with pytest.raises(InvalidArgument, match="out of bounds"):
        r.read(990, 1001)


def test_provenance_in_many_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "PROV_CHUNK_ROWS", 16)
    st = Store(tmp_path)
    X = rows(100)
    prov = [Provenance(i, 0, 1, "é" * (i % 3) + str(i)) for i in range(100)]
    w = st.new_activation_set()
    w.append_rows(X)
    w.append_provenance(prov[:50])
    w.append_provenance([{"sample_index": p.sample_index, "token_start": 0, "token_end": 1,
                          "text": p.text} for p in prov[50:]])
    info = w.commit()
    r = st.open_activation_set(info.id)
    assert r.read_provenance(0, 100) == prov
    assert r.texts(14, 18) == [p.text for p in prov[14:18]]


def test_restart_sees_everything_and_reads_do_not_map_the_set(tmp_path):
    st = Store(tmp_path)
    X = rows(50)
    info = st.put_activation_set(X, display_name="a", model="m", split_point="3")
    m = build_method("PCA", 2, {"device": "cpu"}).fit(X)
    minfo = st.save_concept_model(ConceptModelInfo(id="", method="PCA", nb_concepts=2, hidden_size=6),
                                  m.state_dict())
    st2 = Store(tmp_path)
    got = st2.get_activation_set(info.id)
    assert got == info and got.display_name == "a"
    r = st2.open_activation_set(info.id)
    np.testing.assert_array_equal(r.read(0, 50), X)
    np.testing.assert_array_equal(r.read(7, 19), X[7:19])
    # positioned reads, not memmaps: the chunk file is not mapped into the process
    with open("/proc/self/maps") as f:
        assert "rows-00000000.npy" not in f.read()
    info2, state = st2.load_concept_model(minfo.id)
    assert info2 == minfo
    np.testing.assert_array_equal(ConceptMethod.from_state(state).encode(X), m.encode(X))


def test_crash_midway_leaves_nothing_visible_and_temp_is_cleaned(tmp_path, monkeypatch):
    st = Store(tmp_path)
    # 1) an exception inside the writer: aborted, nothing visible, no temp left
    with pytest.raises(RuntimeError):
        with st.new_activation_set(chunk_bytes=64) as w:
            w.append_rows(rows(20))
            raise RuntimeError("boom")
    assert st.list_activation_sets()[0] == [] and tmp_entries(st) == []
    # 2) a "process crash" mid-write: chunk files in tmp/, never committed
    w = st.new_activation_set(chunk_bytes=64)
    w.append_rows(rows(20))
    assert tmp_entries(st) and os.listdir(os.path.join(st.tmp_dir, tmp_entries(st)[0]))
    assert st.list_activation_sets()[0] == []
    # 3) a crash during the rename of a concept model
    X = rows(30)
    m = build_method("PCA", 2, {"device": "cpu"}).fit(X)

    def crash(src, dst):
        raise OSError("disk pulled out")

    monkeypatch.setattr(store_mod.os, "rename", crash)
    with pytest.raises(OSError):
        st.save_concept_model(ConceptModelInfo(id="", method="PCA", nb_concepts=2, hidden_size=6),
                              m.state_dict())
    with pytest.raises(OSError):
        st.put_activation_set(X)
    monkeypatch.undo()
    assert st.list_concept_models()[0] == [] and st.list_activation_sets()[0] == []
    assert os.listdir(st.models_dir) == [] and os.listdir(st.sets_dir) == []
    # restart: leftovers of the interrupted write are removed
    st2 = Store(tmp_path)
    assert tmp_entries(st2) == []
    assert st2.list_activation_sets()[0] == []


def test_ids_and_path_traversal_are_rejected(tmp_path):
    st = Store(tmp_path)
    for bad in ["../x", "a/b", "/etc", ".", "..", "", "a b", "x" * 65, "a\\b", "\x00", "abc\n"]:
        with pytest.raises(InvalidArgument):
            st.get_activation_set(bad)
        with pytest.raises(InvalidArgument):
            st.delete_concept_model(bad)
    with pytest.raises(InvalidArgument):
        parse_name("activationSets/../../etc", "activationSets")
    with pytest.raises(InvalidArgument, match="not a conceptModels name"):
        parse_name("activationSets/abc", "conceptModels")
    assert parse_name("activationSets/abc123", "activationSets") == "abc123"
    with pytest.raises(NotFound, match="'abcdef012345'"):
        st.get_activation_set("abcdef012345")
    with pytest.raises(NotFound, match="'abcdef012345'"):
        st.delete_activation_set("abcdef012345")
    with pytest.raises(NotFound, match="'abcdef012345'"):
        st.get_concept_model("abcdef012345")
    info = st.put_activation_set(rows(3))
    assert len(info.id) == 12 and info.name == f"activationSets/{info.id}"


def test_pagination_and_delete(tmp_path):
    st = Store(tmp_path)
    ids = [st.put_activation_set(rows(2, seed=i), display_name=str(i)).id for i in range(7)]
    seen, token, pages = [], "", 0
    while True:
        page, token = st.list_activation_sets(page_size=3, page_token=token)
        seen += [x.id for x in page]
        pages += 1
        if not token:
            break
    assert seen == ids and pages == 3
    st.delete_activation_set(ids[3])
    page, token = st.list_activation_sets(page_size=10)
    assert [x.id for x in page] == ids[:3] + ids[4:] and token == ""
    with pytest.raises(NotFound):
        st.open_activation_set(ids[3])
    with pytest.raises(InvalidArgument, match="page_token"):
        st.list_activation_sets(page_token="garbage!")
    with pytest.raises(InvalidArgument, match="page_size"):
        st.list_activation_sets(page_size=-1)
    assert tmp_entries(st) == []


def test_export_import_round_trip(tmp_path):
    st = Store(tmp_path)
    X = rows(40)
    m = build_method("SAE_TOPK", 8, {"device": "cpu", "epochs": 1, "top_k": 2}).fit(X)
    info = st.save_concept_model(ConceptModelInfo(id="", display_name="orig", method="SAE_TOPK",
                                                  nb_concepts=8, hidden_size=6,
                                                  options={"top_k": 2}), m.state_dict())
    data = st.export_concept_model(info.id)
    assert data[8:9] == b"{"  # a safetensors file
    from safetensors import safe_open
    p = tmp_path / "x.safetensors"
    p.write_bytes(data)
    with safe_open(str(p), "np") as f:
        assert "xaimesh.concept_model" in f.metadata()
        assert set(f.keys()) >= {"W_enc", "W_dec", "b_enc", "b_dec"}
    new, state = Store(tmp_path / "other").import_concept_model(data, display_name="copy")
    assert new.id != info.id and new.display_name == "copy" and new.method == "SAE_TOPK"
    np.testing.assert_array_equal(ConceptMethod.from_state(state).encode(X), m.encode(X))
    for bad in [b"", b"12345678", b"\x05\x00\x00\x00\x00\x00\x00\x00{\"a\"", data[:-10] + b"x" * 3]:
        with pytest.raises(InvalidArgument):
            st.import_concept_model(bad)
    from safetensors.numpy import save
    with pytest.raises(InvalidArgument, match="not a xaimesh concept model"):
        st.import_concept_model(save({"a": np.zeros(2, np.float32)}))


def test_writer_validation(tmp_path):
    st = Store(tmp_path)
    bad = rows(5)
    bad[3, 2] = np.nan
    with pytest.raises(InvalidArgument, match="row 3, column 2"):
        st.put_activation_set(bad)
    with st.new_activation_set() as w:
        w.append_rows(rows(2))
        with pytest.raises(InvalidArgument, match="hidden size 4"):
            w.append_rows(np.zeros((2, 4), np.float32))
    with pytest.raises(InvalidArgument, match="no activation rows"):
        with st.new_activation_set() as w:
            w.commit()
    with pytest.raises(InvalidArgument, match="provenance for 1 rows"):
        st.put_activation_set(rows(2), [Provenance(0, 0, 1, "a")])
    with pytest.raises(InvalidArgument, match="granularity"):
        st.new_activation_set(granularity="PARAGRAPH")
    assert tmp_entries(st) == []


def test_tensor_chunk_upload_with_partial_rows_and_bf16(tmp_path):
    st = Store(tmp_path)
    X = rows(9, 5)
    raw = X.tobytes()
    with st.new_activation_set() as w:
        for i, off in enumerate(range(0, len(raw), 13)):  # pieces cut mid-row
            w.append_tensor_chunk(raw[off:off + 13], byte_offset=off, total_bytes=len(raw),
                                  dtype="DATA_TYPE_FLOAT32" if i == 0 else None,
                                  shape=[9, 5] if i == 0 else None)
        info = w.commit()
    np.testing.assert_array_equal(st.open_activation_set(info.id).read(0, 9), X)
    # bfloat16: upper 16 bits of float32
    bf = (X.view(np.uint32) >> 16).astype("<u2")
    np.testing.assert_array_equal(bytes_to_float32(bf.tobytes(), "bfloat16").reshape(9, 5),
                                  (bf.astype(np.uint32) << 16).view(np.float32))
    with pytest.raises(InvalidArgument, match="byte_offset"):
        with st.new_activation_set() as w:
            w.append_tensor_chunk(raw[:40], byte_offset=0, dtype="float32", shape=[9, 5])
            w.append_tensor_chunk(raw[60:], byte_offset=60)
    with pytest.raises(InvalidArgument, match="incomplete"):
        with st.new_activation_set() as w:
            w.append_tensor_chunk(raw[:40], byte_offset=0, total_bytes=len(raw), dtype="float32",
                                  shape=[9, 5])
            w.commit()
    with pytest.raises(InvalidArgument, match="not supported"):
        with st.new_activation_set() as w:
            w.append_tensor_chunk(raw, dtype="DATA_TYPE_INT64", shape=[9, 5])


def test_parse_model_file_requires_state(tmp_path):
    with pytest.raises(InvalidArgument):
        parse_model_file(b"\x00" * 4)
