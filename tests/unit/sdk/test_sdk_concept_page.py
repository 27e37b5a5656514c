"""The concept page's rendering, from plain cards (the services are exercised by
tests/integration/test_toolkit.py)."""

import re

from xaimesh.concepts.page import ConceptCard, ConceptPage


def _cards():
    active = ConceptCard(index=0, llm_label="family <members>", extractive_label="brother, sister",
                         scores={"detection": 0.91, "fuzzing": None},
                         examples=[[("my", False, 0.0), (" brother", True, 2.5), (" laughed", False, 0.1)]],
                         histogram=([0.0, 1.0, 2.0, 3.0], [5, 0, 2]), zero_share=0.75,
                         promoted=[(" sister", 1.2)], suppressed=[(" car", -0.8)], importance=0.42)
    dead = ConceptCard(index=1)
    return [active, dead]


def test_every_concept_has_a_card_with_its_parts(tmp_path):
    page = ConceptPage(_cards(), "SemiNMF concepts")
    fragment = page.html()
    assert len(re.findall(r"<section class='xm-card'", fragment)) == 2
    assert len(re.findall(r"<button type='button' data-i=", fragment)) == 2
    first = fragment[fragment.index("data-i='0'><h2>"):fragment.index("data-i='1'><h2>")]
    assert "family &lt;members&gt;" in first and "<b>brother, sister</b>" in first  # escaped
    assert "detection 0.91, fuzzing n/a" in first and "importance: 0.42" in first
    assert "<mark title='activation 2.5'> brother</mark>" in first
    assert first.count("<rect") == 3 and "zero on 75.0 % of the rows" in first
    assert "promotes: <span class='xm-tok' title='1.2'> sister</span>" in first
    second = fragment[fragment.index("data-i='1'><h2>"):]
    assert "never active on the set" in second and "Output tokens" not in second
    saved = page.save_html(tmp_path / "concepts.html").read_text(encoding="utf-8")
    assert saved.startswith("<!DOCTYPE html>") and not re.search(r"(src|href)\s*=\s*[\"']?https?:", saved)


def _headless(url: str) -> tuple[str, str]:
    """(the DOM after the scripts ran, the browser's log) from Debian's chromium, headless."""
    import shutil
    import subprocess
    import tempfile

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "the concept page is checked in a real browser: install Debian's chromium (apt-get install chromium)"
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                               "--enable-logging=stderr", "--v=0", "--dump-dom", url],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


def test_the_page_runs_in_a_headless_browser(tmp_path):
    path = ConceptPage(_cards(), "SemiNMF concepts").save_html(tmp_path / "concepts.html")
    dom, log = _headless(path.as_uri())
    # The script ran: the first card is shown, the second hidden, the first concept's button pressed.
    assert re.search(r'<section class="xm-card" data-i="0">', dom)
    assert re.search(r'<section class="xm-card" data-i="1" hidden="">', dom)
    assert re.search(r'<button type="button" data-i="0" aria-pressed="true">', dom)
    assert "CONSOLE" not in log and "Uncaught" not in log, log[-2000:]
    # Selecting another concept (through the address, as a click does) shows only its card.
    dom, log = _headless(path.as_uri() + "#concept-1")
    assert re.search(r'<section class="xm-card" data-i="0" hidden="">', dom)
    assert re.search(r'<section class="xm-card" data-i="1">', dom)
    assert re.search(r'<button type="button" data-i="1" aria-pressed="true">', dom)
    assert "Uncaught" not in log, log[-2000:]
