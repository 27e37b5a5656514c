"""The seed flow of `make demo`, end to end, through real service processes."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _seed_demo():
    spec = importlib.util.spec_from_file_location("seed_demo", ROOT / "examples" / "seed_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _concept_rows(report: Path) -> int:
    page = report.read_text()
    section = page.split("SemiNMF concepts", 1)[1].split("</section>", 1)[0]
    return len(re.findall(r"<tr><td class=\"num\">\d+</td>", section))


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XAIMESH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XAIMESH_PROGRESS", "0")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for var in ("XAIMESH_MODEL_SERVER", "XAIMESH_ATTRIBUTION_SERVICE", "XAIMESH_CONCEPT_SERVICE",
                "XAIMESH_LABELING_SERVICE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_demo_entry_point_on_the_tiny_model(isolated_home, tiny_lm_path):
    result = _seed_demo().run(out_dir=isolated_home / "out", n_texts=120, nb_concepts=20, split_point=2,
                              models=[str(tiny_lm_path)])
    report = result["report"]
    assert report.exists() and _concept_rows(report) == 20
    assert len(result["labels"]) == 20
    assert result["mse"] > 0 and 0 < result["sparsity"] <= 1
    page = report.read_text()
    assert "Deletion curve" in page and "<svg" in page and "KernelShap" in page
    assert set(result["extractive_labels"]) == set(result["labels"]) and "extractive label" in page
    assert "<table>" in (isolated_home / "out" / "lens.html").read_text()
    assert (isolated_home / "out" / "concepts.html").read_text().count("<section class='xm-card'") == 20
    assert not re.search(r"(src|href)\s*=\s*[\"']?https?:", page)  # standalone: nothing loaded from outside


def test_demo_entry_point_on_a_tiny_gpt2(isolated_home):
    # The seed notebook's own family: GPT-2 (learned positions, no special
    # tokens, transformer.h.N layers), tiny and built offline, served through
    # xaimesh.connect(models=[path]) with the rest of the flow unchanged.
    from tests.fixtures.family_models import family_dir

    result = _seed_demo().run(out_dir=isolated_home / "out", n_texts=120, nb_concepts=20, split_point=1,
                              models=[str(family_dir("gpt2"))])
    assert _concept_rows(result["report"]) == 20 and len(result["labels"]) == 20
    assert result["mse"] > 0 and 0 < result["sparsity"] <= 1
    assert "KernelShap" in result["report"].read_text()


@pytest.mark.slow
def test_demo_on_the_embedded_smollm2(isolated_home):
    result = _seed_demo().run(out_dir=isolated_home / "out", n_texts=200, score_labels=False)
    assert _concept_rows(result["report"]) == 20
    labelled = [label for label in result["labels"].values() if label]
    assert len(labelled) >= 10, result["labels"]
    print(f"SmolLM2 seed flow on 200 texts: {result['seconds']:.0f} s, Deletion AUC {result['auc']:.4f} "
          f"vs random {result['random_auc']:.4f}, MSE {result['mse']:.4f}, sparsity {result['sparsity']:.4f}")
