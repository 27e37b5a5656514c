"""FIRST / LAST aggregations of token attributions into element attributions."""

import numpy as np

from xaimesh_attribution.gradient import aggregate
from xaimesh_attribution.options import Aggregation


def test_attribution_elements_take_their_first_and_last_token():
    values = np.array([[1.0, 2.0, 3.0, 4.0]])
    positions = [np.array([0, 1]), np.array([2]), np.array([3])]
    assert aggregate(values, positions, Aggregation.FIRST).tolist() == [[1.0, 3.0, 4.0]]
    assert aggregate(values, [np.array([0, 1, 2]), np.array([3])], Aggregation.LAST).tolist() == [[3.0, 4.0]]
