"""From raw estimator values to accuracy points, fitted to the drops the search measures.

Each estimator speaks its own unit (a relative error, a fraction of flipped
spikes, nats); the budget is in percentage points of validation accuracy. The
search measures what its changes really cost and fits one factor per run:

.. math::

    \\mathrm{points}(r) = k \\cdot \\max(r, 0), \\qquad
    k = \\frac{\\max(\\sum_i \\Delta_i, 0)}{\\sum_i r_i}

over every measured change :math:`i` with summed raw value :math:`r_i > 0` and
measured drop increment :math:`\\Delta_i` (points). This ratio is the weighted
least-squares fit through the origin with weights :math:`1 / r_i`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Calibration"]


@dataclass
class Calibration:
    """Maps raw estimator values to accuracy points: ``points = factor * raw`` (see the module docstring).

    Attributes:
        measured_points: sum of the measured drop increments, percentage points.
        raw_total: sum of the raw values of those changes (estimator units).
        observations: ``(raw, measured increment in points)`` per measured change, in order.
    """

    measured_points: float = 0.0
    raw_total: float = 0.0
    observations: list[tuple[float, float]] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        """Whether a change with a positive raw value has been measured."""
        return self.raw_total > 0

    @property
    def factor(self) -> float:
        """Points per raw unit (>= 0); 0 until calibrated."""
        if not self.ready:
            return 0.0
        return max(self.measured_points, 0.0) / self.raw_total

    def observe(self, raw: float, measured_increment_points: float) -> None:
        """Record that changes worth ``raw`` cost ``measured_increment_points``; ignored unless ``raw > 0``."""
        if raw <= 0:
            return
        self.observations.append((raw, measured_increment_points))
        self.raw_total += raw
        self.measured_points += measured_increment_points

    def points(self, raw: float) -> float | None:
        """Estimated accuracy drop in points, or ``None`` before the first measurement."""
        return self.factor * max(raw, 0.0) if self.ready else None
