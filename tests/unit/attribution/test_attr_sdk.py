"""The SDK's attribution side without any service: AttributionOutput (JSON,
proto), rendering (HTML, terminal), plot_attributions, option checks, target
normalisation, request building, item errors and metrics over fake clients."""

from __future__ import annotations

import json
import math
import re

import grpc
import numpy as np
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from xaimesh.attributions import (
    AttributionOutput,
    AttributionPlot,
    Granularity,
    InferenceModes,
    IntegratedGradients,
    KernelShap,
    Lime,
    Occlusion,
    PerturbationExplainer,
    Saliency,
    Segment,
    SmoothGrad,
    Sobol,
    load_json,
    plot_attributions,
)
from xaimesh.attributions.explainers import _per_input_targets, _targets_proto
from xaimesh.attributions.metrics import Deletion, Insertion
from xaimesh.attributions.plots import in_notebook, render_html, render_text
from xaimesh.errors import InvalidArgumentError, XaimeshError
from xaimesh.mesh import RemoteModel
from xaimesh_contracts.v1 import attribution_pb2 as apb
from xaimesh_contracts.v1 import model_pb2, tensor_pb2

# --------------------------------------------------------------------------- fixtures


def generation_output() -> AttributionOutput:
    prompt = ["Alice", " and", " <b>Bob</b> &", " enter"]
    targets = [" then", " Alice", " smiles"]
    elements = prompt + targets
    P, T = len(prompt), len(targets)
    a = np.full((T, P + T), np.nan, dtype=np.float32)
    rng = np.random.default_rng(0)
    for t in range(T):
        a[t, : P + t] = rng.normal(size=P + t).astype(np.float32)
    a[0, 0] = np.float32(1 / 3)
    text = "".join(elements)
    segments, pos = [], 0
    for i, e in enumerate(elements):
        segments.append(Segment(e, pos, pos + len(e), i + 1, i + 2))
        pos += len(e)
    return AttributionOutput(
        attributions=a, elements=elements, target_elements=targets, method="kernel_shap",
        parameters={"n_perturbations": 16, "seed": 0}, model_id="tiny-lm", task="causal_lm", granularity="word",
        inference_mode="softmax", num_prompt_elements=P, segments=segments, target_token_ids=[10, 11, 12],
        target_element_token_ends=[1, 2, 3], target_scores=np.array([0.1, 0.2, 0.3], np.float32), text=text)


def classification_output() -> AttributionOutput:
    elements = ["I", " am", " happy"]
    return AttributionOutput(
        attributions=np.array([[0.5, -0.25, 1.0], [-0.5, 0.0, 0.125]], np.float32), elements=elements,
        target_elements=["positive", "negative"], method="saliency", model_id="tiny-clf",
        task="sequence_classification", granularity="token", aggregation="sum", inference_mode="logits",
        target_classes=[2, 0], target_scores=np.array([2.0, -1.0], np.float32), text="I am happy")


class FakeClient:
    def __init__(self, events=()):
        self.events = list(events)
        self.calls = []

    def stream(self, method, request, **kwargs):
        self.calls.append((method, request, kwargs))
        yield from self.events


class FakeMesh:
    def __init__(self, client):
        self._client = client

    def client(self, service):
        assert service == "attribution"
        return self._client


def fake_model(classifier=False, events=()):
    client = FakeClient(events)
    task = model_pb2.MODEL_TASK_SEQUENCE_CLASSIFICATION if classifier else model_pb2.MODEL_TASK_CAUSAL_LM
    model = RemoteModel(FakeMesh(client), model_pb2.ModelInfo(model_id="clf" if classifier else "lm", task=task))
    return model, client


def result_event(index, output):
    return apb.ExplainResponse(result=apb.AttributionResult(input_index=index, attribution=output.to_proto()))


def error_event(index, message, field):
    status = status_pb2.Status(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=message)
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=field, description=message)]))
    status.details.append(detail)
    return apb.ExplainResponse(item_error=model_pb2.ItemError(index=index, status=status))


# --------------------------------------------------------------------------- AttributionOutput


def test_json_round_trip_is_exact(tmp_path):
    out = generation_output()
    text = out.to_json()
    json.loads(text)  # strict JSON: no NaN literal
    assert "NaN" not in text
    back = AttributionOutput.from_json(text)
    assert back == out
    np.testing.assert_array_equal(back.attributions, out.attributions)  # NaN at the same places, bits equal
    assert back.attributions[0, 0] == np.float32(1 / 3)
    path = out.save_json(tmp_path / "a.json")
    assert AttributionOutput.load_json(path) == out == load_json(path)
    clf = classification_output()
    assert AttributionOutput.from_json(clf.to_json()) == clf
    with pytest.raises(ValueError):
        AttributionOutput.from_dict({"format": "something-else"})


def test_proto_round_trip_and_views():
    out = generation_output()
    back = AttributionOutput.from_proto(out.to_proto())
    assert back == out
    assert out.to_proto().granularity == tensor_pb2.GRANULARITY_WORD
    assert out.to_proto().method == apb.ATTRIBUTION_METHOD_KERNEL_SHAP
    assert out.input_text == "Alice and <b>Bob</b> & enter"
    assert out.target_text == " then Alice smiles"
    assert out.prompt_elements == out.elements[:4]
    assert out.shape == (3, 7) and out.method_name == "KernelShap"
    assert "KernelShap" in repr(out) and "3 target(s) x 7 element(s)" in repr(out)
    clf = classification_output()
    assert AttributionOutput.from_proto(clf.to_proto()) == clf and clf.is_classification


# --------------------------------------------------------------------------- rendering


def _self_contained(page: str) -> None:
    lowered = page.lower()
    for bad in ("http://", "https://", "<link", " src=", "@import", "url("):
        assert bad not in lowered, bad


def test_html_generation_view(tmp_path):
    out = generation_output()
    fragment = out._repr_html_()
    _self_contained(fragment)
    assert "&lt;b&gt;Bob&lt;/b&gt; &amp;" in fragment and "<b>Bob</b>" not in fragment  # escaped
    for e in (" then", " Alice", " smiles", "Alice", " and"):
        assert f">{e}</span>" in fragment
    assert fragment.count('data-t="') == 3 and "<script>" in fragment and "mouseenter" in fragment
    # symmetric scale for row 0 in the legend
    scale = float(np.nanmax(np.abs(out.attributions[0])))
    assert f">{-scale:+.3g}<" in fragment and f">{scale:+.3g}<" in fragment
    # target elements not yet seen by row 0 are marked as not covered
    assert fragment.count("xm-nc") >= 3
    # two renderings do not share element ids
    ids = re.findall(r'id="(xm-[0-9a-f]+)"', fragment + render_html(out))
    assert len(set(ids)) == 2
    page = plot_attributions(out, show=False).save_html(tmp_path / "p.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>") and 'charset="utf-8"' in page
    _self_contained(page)


def test_html_classification_view():
    out = classification_output()
    fragment = render_html(out)
    _self_contained(fragment)
    assert fragment.count("<tr>") == 2 and "positive" in fragment and "negative" in fragment
    assert "<script>" not in fragment  # static: one row per class
    assert ">+1<" in fragment and ">-1<" in fragment  # one scale shared by the rows: max |a| = 1
    assert "background:rgb(178,24,43)" in fragment  # the largest positive value: the red end


def test_terminal_rendering():
    out = generation_output()
    text = str(out)
    assert "KernelShap" in text and "model tiny-lm" in text
    assert "input:   'Alice and <b>Bob</b> & enter'" in text
    lines = text.splitlines()
    first_row = lines[lines.index("' then' (score 0.1)") + 1]
    assert "'Alice' +0.333" in first_row and "' then'" not in first_row  # NaN (not covered) left out
    clf = render_text(classification_output())
    assert "classes: positive, negative" in clf and "' happy' +1" in clf


def test_plot_attributions_outside_a_notebook(capsys):
    assert not in_notebook()
    out = generation_output()
    plot = plot_attributions(out)
    assert isinstance(plot, AttributionPlot)
    printed = capsys.readouterr().out
    assert printed.strip() == str(out).strip()
    assert "save_html" in repr(plot)
    plot_attributions([out, classification_output()], show=False)
    assert capsys.readouterr().out == ""
    with pytest.raises(TypeError):
        plot_attributions([1])


# --------------------------------------------------------------------------- options and targets


def test_option_checks():
    model, _ = fake_model()
    with pytest.raises(InvalidArgumentError) as info:
        KernelShap(model, n_perturbations=0)
    assert info.value.field_violations[0].field == "n_perturbations"
    with pytest.raises(TypeError, match="window"):
        KernelShap(model, window=3)
    # zero is a value: sent as given (the contract's fields have presence)
    p = Lime(model, regularization=0).request(["a"], [None]).parameters
    assert p.lime.HasField("regularization") and p.lime.regularization == 0
    assert not p.lime.HasField("kernel_width")
    with pytest.raises(InvalidArgumentError):
        Lime(model, regularization=-1)
    with pytest.raises(InvalidArgumentError):
        Lime(model, keep_probability=1.0)
    with pytest.raises(InvalidArgumentError, match="granularity"):
        KernelShap(model, granularity="paragraph")
    with pytest.raises(TypeError, match="base class"):
        PerturbationExplainer(model)
    with pytest.raises(TypeError, match="mesh.model"):
        KernelShap(42)  # names, paths and Hugging Face objects are models too (tests/integration/test_sdk_models.py)
    assert KernelShap(model, granularity="WORD").options["granularity"] == tensor_pb2.GRANULARITY_WORD
    assert KernelShap(model, granularity=Granularity.SENTENCE).options["granularity"] == \
        tensor_pb2.GRANULARITY_SENTENCE
    assert Saliency(model, inference_mode=InferenceModes.SOFTMAX).options["inference_mode"] == \
        tensor_pb2.INFERENCE_MODE_SOFTMAX


def test_request_building():
    model, _ = fake_model()
    explainer = KernelShap(model, n_perturbations=64, batch_size=8, seed=3, replacement="unk_token",
                           granularity="sentence", inference_mode="log_softmax")
    req = explainer.request(["a", "b"], [apb.Targets(text=" x"), None])
    assert req.model == "lm" and req.method == apb.ATTRIBUTION_METHOD_KERNEL_SHAP
    assert req.parameters.WhichOneof("method") == "kernel_shap"
    p = req.parameters.kernel_shap
    assert (p.n_perturbations, p.batch_size, p.seed) == (64, 8, 3)
    assert p.replacement.policy == model_pb2.REPLACEMENT_POLICY_UNK_TOKEN
    assert req.granularity == tensor_pb2.GRANULARITY_SENTENCE
    assert req.inference_mode == tensor_pb2.INFERENCE_MODE_LOG_SOFTMAX
    assert req.inputs[0].targets.text == " x" and not req.inputs[1].HasField("targets")
    p = Occlusion(model, replacement=42).request(["a"], [None]).parameters.occlusion
    assert (p.replacement.policy, p.replacement.token_id) == (model_pb2.REPLACEMENT_POLICY_TOKEN_ID, 42)
    p = IntegratedGradients(model, baseline="pad_token", n_steps=7).request(["a"], [None]).parameters
    assert p.integrated_gradients.baseline.kind == model_pb2.BASELINE_KIND_PAD_TOKEN
    assert p.integrated_gradients.n_steps == 7
    req = SmoothGrad(model, noise_std=0.05, aggregation="mean", gradient_reduction="l2_norm").request(["a"], [None])
    assert math.isclose(req.parameters.smooth_grad.noise_std, 0.05, rel_tol=1e-6)
    assert req.aggregation == tensor_pb2.AGGREGATION_MEAN
    assert req.parameters.smooth_grad.gradient_reduction == apb.GRADIENT_REDUCTION_L2_NORM
    req = Sobol(model, sobol_sampler="halton", sobol_index="FIRST").request(["a"], [None])
    assert req.parameters.sobol.sobol_sampler == apb.SOBOL_SAMPLER_HALTON
    assert req.parameters.sobol.sobol_index == apb.SOBOL_INDEX_FIRST
    # no option given: no parameters at all (the service's defaults)
    assert Saliency(model).request(["a"], [None]).parameters.WhichOneof("method") is None


def test_target_normalisation():
    lm = lambda t, n=1: _per_input_targets(t, n, False)  # noqa: E731
    clf = lambda t, n=1: _per_input_targets(t, n, True)  # noqa: E731
    assert lm(None, 2) == [None, None]
    assert lm(" then", 2) == [" then", " then"]
    assert lm([" a", " b"], 2) == [" a", " b"]
    assert lm([5, 6], 2) == [[5, 6], [5, 6]]
    assert lm(np.array([5, 6])) == [[5, 6]]
    assert lm([[5], None], 2) == [[5], None]
    with pytest.raises(InvalidArgumentError, match="3 targets for 2 inputs"):
        lm([" a", " b", " c"], 2)
    assert clf(1, 2) == [[1], [1]]
    assert clf("positive") == [["positive"]]
    assert clf(["positive", "negative"], 2) == [["positive", "negative"]] * 2
    assert clf([["positive"], [0, 1]], 2) == [["positive"], [0, 1]]
    assert _targets_proto(" x", False, None, 0).text == " x"
    assert list(_targets_proto([3, 4], False, None, 0).token_ids.ids) == [3, 4]
    assert list(_targets_proto([2], True, None, 0).class_indices.indices) == [2]
    assert list(_targets_proto(["positive"], True, None, 0).class_names.names) == ["positive"]
    assert _targets_proto(None, False, 5, 0).max_new_tokens == 5
    with pytest.raises(InvalidArgumentError):
        _targets_proto([1, "positive"], True, None, 0)


# --------------------------------------------------------------------------- calls over a fake client


def test_results_in_order_and_item_errors():
    out = generation_output()
    events = [apb.ExplainResponse(progress=tensor_pb2.Progress(stage="scoring", done=1, total=2)),
              result_event(0, out), error_event(1, "text is empty", "inputs[1].text")]
    model, client = fake_model(events=events)
    explainer = KernelShap(model, show_progress=False)
    with pytest.raises(InvalidArgumentError) as info:
        explainer(["a", ""], " x")
    error = info.value
    assert "input 1: text is empty" in str(error)
    assert error.field_violations[0].field == "inputs[1].text"
    assert error.results[0] == out and error.results[1] is None and set(error.errors) == {1}
    outputs = explainer(["a", ""], " x", errors="none")
    assert outputs[0] == out and outputs[1] is None
    method, request, kwargs = client.calls[-1]
    assert method == "Explain" and len(request.inputs) == 2 and kwargs["description"] == "KernelShap"
    model, _ = fake_model(events=[result_event(0, out)])
    with pytest.raises(XaimeshError, match="without a result"):
        KernelShap(model, show_progress=False)(["a", "b"])


def _metric_events(aucs, random_aucs):
    events = []
    for i, (auc, rnd) in enumerate(zip(aucs, random_aucs, strict=True)):
        result = apb.AttributionMetricResult(
            input_index=i, metric=apb.ATTRIBUTION_METRIC_DELETION,
            curve=apb.MetricCurve(fractions=[0, 0.5, 1], scores=[0.5, 0.2, 0.1], auc=auc),
            per_target_scores=tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=[1, 3],
                                                raw_contents=np.array([[0.5, 0.2, 0.1]], "<f4").tobytes()))
        if rnd is not None:
            result.random_curve.CopyFrom(apb.MetricCurve(fractions=[0, 0.5, 1], scores=[0.5, 0.4, 0.1], auc=rnd))
        events.append(apb.EvaluateAttributionsResponse(result=result))
    return events


def test_metrics_over_a_fake_client():
    assert Deletion.better == "lower" and Insertion.better == "higher"
    assert "LOWER" in Deletion.__doc__ and "HIGHER" in Insertion.__doc__
    out = generation_output()
    model, client = fake_model(events=_metric_events([0.2, 0.4], [0.3, 0.35]))
    auc, detailed = Deletion(model, n_steps=4, n_random_orders=0, show_progress=False,
                             replacement="zero_embedding").evaluate([out, out])
    assert auc == pytest.approx(0.3) and detailed.auc == pytest.approx(0.3)
    assert detailed.random_auc == pytest.approx(0.325)
    assert [o.beats_random for o in detailed] == [True, False]
    assert len(detailed) == 2 and detailed[0].per_target_scores.shape == (1, 3)
    assert detailed[1].target_elements == out.target_elements
    assert "lower is better" in repr(detailed)
    json.dumps(detailed.to_dict())
    _, request, _ = client.calls[-1]
    assert request.metric == apb.ATTRIBUTION_METRIC_DELETION and request.n_steps == 4
    assert request.n_random_orders == -1  # 0 random orders: none (the proto's 0 would mean 10)
    assert request.replacement.policy == model_pb2.REPLACEMENT_POLICY_ZERO_EMBEDDING
    assert len(request.attributions) == 2 and request.attributions[0].text == out.text
    model, client = fake_model(events=_metric_events([0.6], [None]))
    auc, detailed = Insertion(model, show_progress=False).evaluate(out)
    assert auc == pytest.approx(0.6) and detailed.random_auc is None and detailed[0].beats_random is None
    assert client.calls[-1][1].n_random_orders == 0  # the service default (10)


def test_sdk_options_name_every_proto_value():
    """The SDK's documented option enums and the contract agree: every proto
    value has a member (the activation-only granularities excepted) and every
    member a proto value, so neither side can drift."""
    from xaimesh.attributions import options

    from xaimesh_contracts.enums import prefix as enum_prefix

    activation_only = {"SAMPLE", "CLS_TOKEN"}
    for enum, proto_enum in options.PROTO_ENUMS.items():
        prefix = enum_prefix(proto_enum)
        proto = {v.name[len(prefix):] for v in proto_enum.DESCRIPTOR.values if v.number != 0}
        if enum is options.Granularity:
            proto -= activation_only
        assert {m.name for m in enum} == proto, enum.__name__
        assert all(m.value == m.name.lower() for m in enum), enum.__name__
        for m in enum:
            assert options.from_proto_enum(enum, options.to_proto_enum(enum, m, "x")) == m.value


def test_report_with_attributions_prints_nothing_and_is_standalone(tmp_path, capsys):
    from xaimesh.report import Report

    out = generation_output()
    report = Report("a <report>").add_attributions([out], heading="KernelShap attributions")
    report.add_metrics({"MSE": 1.5, "Sparsity": 0.25})
    assert capsys.readouterr().out == ""  # the page holds the view: nothing printed to the terminal
    page = report.save(tmp_path / "r.html").read_text(encoding="utf-8")
    _self_contained(page)
    assert page.startswith("<!DOCTYPE html>") and "a &lt;report&gt;" in page
    assert "KernelShap attributions" in page and "&lt;b&gt;Bob&lt;/b&gt;" in page
    assert ">1.5000<" in page and ">0.2500<" in page
