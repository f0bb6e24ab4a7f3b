"""Raw estimator values to accuracy points: the ratio fit of the drops the search measured."""

from __future__ import annotations

import pytest

from albsnn_compress.search.calibration import Calibration


def test_calibration_maps_raw_values_to_points() -> None:
    calibration = Calibration()
    assert calibration.points(1.0) is None
    calibration.observe(2.0, 0.5)
    calibration.observe(2.0, 0.3)
    assert calibration.points(1.0) == pytest.approx(0.2)
    assert calibration.points(-3.0) == 0.0


def test_changes_without_a_positive_raw_value_teach_nothing() -> None:
    calibration = Calibration()
    calibration.observe(0.0, 0.4)
    calibration.observe(-1.0, 0.4)
    assert not calibration.ready and calibration.observations == []
    calibration.observe(1.0, -0.5)  # an improvement: the factor never goes negative
    assert calibration.ready and calibration.factor == 0.0
