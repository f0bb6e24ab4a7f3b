"""The run's settings: JSON-able for the result and the report, strategy and estimator by name."""

from __future__ import annotations

import json

from albsnn_compress.search.config import SearchConfig
from albsnn_compress.search.estimators import OutputEstimator


def test_settings_are_json_with_names_for_objects() -> None:
    config = SearchConfig(estimator=OutputEstimator(), layers=["conv3"], extend_within=3.0)
    values = config.as_json("adaptive", "output")
    assert json.loads(json.dumps(values)) == values
    assert values["estimator"] == "output" and values["strategy"] == "adaptive"
    assert values["extend_within"] == 3.0 and values["group_after"] == 2 and values["layers"] == ["conv3"]
    values["layers"].append("conv4")
    assert config.layers == ["conv3"]  # a copy
