"""The method registry, typed parameters with presence, the noise tunnel,
pipelined scoring, and the SDK's method table against the registry."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from attr_backends import SyntheticBackend

from xaimesh_contracts.v1 import attribution_pb2 as apb
from xaimesh_contracts.v1 import model_pb2
from xaimesh_attribution import REGISTRY, InvalidArgument, explain
from xaimesh_attribution.methods import MODULES, register, resolve_method
from xaimesh_attribution.server import parameters_of

DATA = Path(__file__).resolve().parent / "data"


# --------------------------------------------------------------------------- the registry


def test_every_contract_method_is_registered_once_by_its_enum_name():
    contract = {name for name, number in apb.AttributionMethod.items() if number}
    assert {m.enum_name for m in REGISTRY.values()} == contract
    names = [m.name for module in MODULES for m in module.METHODS]
    assert len(names) == len(set(names)) == len(REGISTRY)  # each method in one module, once
    for name, m in REGISTRY.items():
        assert m.number == apb.AttributionMethod.Value("ATTRIBUTION_METHOD_" + name.upper())
        assert resolve_method(m.number) is m and resolve_method(m.enum_name) is m
        # its parameter message is its own field of MethodParameters, with the dataclass's field names
        message = type(getattr(apb.MethodParameters(), name))
        assert message.__name__ == m.Parameters.__name__
        assert {f.name for f in dataclasses.fields(m.Parameters)} == set(message.DESCRIPTOR.fields_by_name)
        assert m.doc and "\n" not in m.doc and m.family in ("perturbation", "gradient")
    with pytest.raises(ValueError, match="twice"):
        register(REGISTRY["lime"])


def test_noise_tunnel_is_one_wrapper_for_three_methods():
    tunnel = [REGISTRY[n] for n in ("smooth_grad", "square_grad", "var_grad")]
    assert len({type(m) for m in tunnel}) == 1 and len({m.Parameters for m in tunnel}) == 1
    assert len({m.statistic for m in tunnel}) == 3


def test_parameters_validated_once_into_a_typed_object():
    lime = REGISTRY["lime"]
    p = lime.parameters({"n_perturbations": 8, "regularization": 0})
    assert p.regularization == 0.0 and p.n_perturbations == 8 and p.kernel_width == 0.25
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.seed = 3
    with pytest.raises(InvalidArgument) as info:
        lime.Parameters(n_perturbations=0)  # building one validates it
    assert info.value.field == "parameters.n_perturbations"
    with pytest.raises(InvalidArgument) as info:
        lime.parameters({"seed": -1})
    assert info.value.field == "parameters.seed"
    assert lime.Parameters.from_proto(p.to_proto()) == p
    assert lime.parameters(p.to_dict()) == p


def test_presence_zero_is_a_value_and_unset_is_the_default():
    lime = REGISTRY["lime"]
    unset = parameters_of(lime, apb.MethodParameters(lime=apb.LimeParameters()))
    assert unset == lime.defaults and unset.regularization == 1.0
    zero = parameters_of(lime, apb.MethodParameters(lime=apb.LimeParameters(regularization=0)))
    assert zero.regularization == 0.0
    assert parameters_of(lime, apb.MethodParameters()) == lime.defaults
    with pytest.raises(InvalidArgument) as info:
        parameters_of(lime, apb.MethodParameters(lime=apb.LimeParameters(n_perturbations=0)))
    assert info.value.field == "parameters.lime.n_perturbations"
    with pytest.raises(InvalidArgument) as info:
        parameters_of(lime, apb.MethodParameters(kernel_shap=apb.KernelShapParameters()))
    assert info.value.field == "parameters.kernel_shap"
    ks = parameters_of(REGISTRY["kernel_shap"], apb.MethodParameters(kernel_shap=apb.KernelShapParameters(
        replacement=model_pb2.Replacement(policy=model_pb2.REPLACEMENT_POLICY_TOKEN_ID, token_id=7))))
    assert (ks.replacement.policy, ks.replacement.token_id) == ("token_id", 7)


def _game(keep, ids, classes, mode):
    k = keep.astype(float)
    w = np.linspace(-1, 2, k.shape[1])
    return np.stack([k @ w + 0.7 * k[:, 0] * k[:, 1] + c for c in classes], axis=1)


def test_lime_regularization_zero_is_honoured():
    b = SyntheticBackend(_game, task="sequence_classification", labels=["a", "b"])
    text = "a b c d e"
    default = explain(b, "lime", {"n_perturbations": 64}, text, 0)
    zero = explain(b, "lime", {"n_perturbations": 64, "regularization": 0}, text, 0)
    tiny = explain(b, "lime", {"n_perturbations": 64, "regularization": 1e-12}, text, 0)
    assert zero.parameters.regularization == 0.0 and default.parameters.regularization == 1.0
    assert not np.allclose(zero.scores, default.scores)  # 0 is used, not replaced by the default
    np.testing.assert_allclose(zero.scores, tiny.scores, atol=1e-6)  # the unregularised fit


# --------------------------------------------------------------------------- the noise tunnel


@pytest.fixture(scope="module")
def reference():
    return json.loads((DATA / "noise_tunnel_reference.json").read_text())


def test_noise_tunnel_equals_the_former_smoothgrad_squaregrad_vargrad(lm_backend, clf_backend, reference):
    """Scores recorded from the former three gradient branches (gradient.py
    before the noise tunnel) for every statistic, both reductions, token
    and word granularity (full gradients for multi-token words)."""
    assert len(reference) == 15
    for case in reference:
        if case["model"] == "lm":
            r = explain(lm_backend, case["method"], case["params"], "Alice and Bob enter the bar.",
                        " Alice smiles at Bob.", granularity=case["granularity"])
        else:
            r = explain(clf_backend, case["method"], case["params"], "I love this movie.", None)
        want = np.array([[np.nan if x is None else x for x in row] for row in case["scores"]], dtype=np.float32)
        np.testing.assert_allclose(r.scores, want, rtol=1e-5, atol=1e-6, equal_nan=True,
                                   err_msg=f"{case['method']} {case['params']} {case['granularity']}")


# --------------------------------------------------------------------------- pipelined scoring


class SlowBackend(SyntheticBackend):
    """Score calls that take a random time, so concurrent batches finish out of order."""

    def __init__(self, *args, max_in_flight=1, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_in_flight = max_in_flight
        self.active = self.peak = 0
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(0)

    def score(self, *args, **kwargs):
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            delay = float(self._rng.random()) * 0.01
        time.sleep(delay)
        try:
            return super().score(*args, **kwargs)
        finally:
            with self._lock:
                self.active -= 1


@pytest.mark.parametrize("method, params", [
    ("kernel_shap", {"n_perturbations": 200, "batch_size": 8}),
    ("lime", {"n_perturbations": 100, "batch_size": 4}),
    ("sobol", {"n_perturbations": 16, "batch_size": 8}),
    ("occlusion", {"batch_size": 1}),
])
def test_pipelined_scoring_equals_sequential(method, params):
    text, target = "a b c d e f g", " h i"

    def causal(keep, ids, positions, mode):
        k = keep.astype(float)
        return np.stack([1 / (1 + np.exp(-(k[:, :p] @ np.linspace(-1, 1, p)))) for p in positions], axis=1)

    sequential = SlowBackend(causal, max_in_flight=1)
    pipelined = SlowBackend(causal, max_in_flight=4)
    events_s, events_p = [], []
    a = explain(sequential, method, params, text, target, granularity="token",
                progress=lambda *e: events_s.append(e))
    b = explain(pipelined, method, params, text, target, granularity="token",
                progress=lambda *e: events_p.append(e))
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.target_scores, b.target_scores)
    assert events_s == events_p  # progress in the same order
    assert sequential.peak == 1 and 1 < pipelined.peak <= 4
    assert sequential.n_forwards == pipelined.n_forwards


def test_pipelined_scoring_stops_when_asked():
    def game(keep, ids, classes, mode):
        return keep.astype(float).sum(axis=1, keepdims=True).repeat(len(classes), axis=1)

    b = SlowBackend(game, task="sequence_classification", labels=["x"], max_in_flight=4)
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 5

    from xaimesh_attribution import Cancelled

    with pytest.raises(Cancelled):
        explain(b, "kernel_shap", {"n_perturbations": 400, "batch_size": 2}, "a b c d e f g h i j", 0,
                should_stop=stop)
    time.sleep(0.1)
    assert b.active == 0 and len(b.score_calls) <= 5 + 4  # stopped: at most the batches in flight finished


# --------------------------------------------------------------------------- the SDK's method table


def test_sdk_method_table_agrees_with_the_service_registry():
    from xaimesh.attributions import _methods, explainers
    import xaimesh.attributions as sdk

    assert {m.method for m in _methods.METHODS} == set(REGISTRY)
    for spec in _methods.METHODS:
        method = REGISTRY[spec.method]
        assert spec.number == method.number and spec.family == method.family
        assert spec.defaults == method.defaults.to_dict(), spec.class_name  # names and defaults
        cls = getattr(explainers, spec.class_name)
        assert cls.method == spec.method and spec.class_name in sdk.__all__
        assert set(p.name for p in cls.options) == set(spec.defaults)
        # what the SDK sends decodes on the service side to the same values
        values = {p.name: p.default for p in spec.params if p.default is not None}
        sent = _methods.encode_parameters(spec.method, values)
        assert parameters_of(method, sent) == method.defaults
    assert _methods.METHOD_CLASS_NAMES == {s.method: s.class_name for s in _methods.METHODS}


def test_sdk_options_enums_are_the_contract_enums():
    from xaimesh.attributions import options as sdk_options
    from xaimesh_attribution import options as service_options

    for enum, proto_enum in sdk_options.PROTO_ENUMS.items():
        service_enum = getattr(service_options, enum.__name__)
        assert service_options.PROTO_ENUMS[service_enum] is proto_enum
        assert {m.value for m in enum} <= {m.value for m in service_enum}
