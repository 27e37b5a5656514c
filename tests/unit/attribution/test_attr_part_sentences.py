"""PART_SENTENCE elements: the model-server's parts of sentences, for a prompt and a target."""

import numpy as np

from xaimesh_attribution import explain


def test_prompt_and_target_elements_are_parts_of_sentences(lm_backend, clf_backend):
    r = explain(lm_backend, "occlusion", {}, "Alice offers a drink, and Bob smiles.", " Thanks: cheers",
                granularity="part_sentence")
    assert [s.text for s in r.input_elements] == ["Alice offers a drink,", "and Bob smiles.", "Thanks:", "cheers"]
    assert r.num_prompt_elements == 2 and r.target_elements == ["Thanks:", "cheers"]
    assert r.scores.shape == (2, 4) and not np.isnan(r.scores[:, :2]).any()
    c = explain(clf_backend, "occlusion", {}, "a fine film, truly; I loved it", None, granularity="part_sentence")
    assert [s.text for s in c.input_elements] == ["a fine film,", "truly;", "I loved it"]
