"""Search strategies: which candidate layers to binarize, decided by measurement.

``adaptive`` (default) is the ALBSNN idea made cheap: the selection is decided
*during* one finetuning run of ``epochs``. Candidates are re-estimated on the
adapted network and ranked by estimated harm per bit saved; the largest *group*
whose summed calibrated estimate fits the remaining budget is binarized, one
slice of ``trial_epochs`` finetunes it, and a measurement keeps or reverts it. A
kept trial slice is part of the finetuning run; only reverted slices are
overhead. When nothing fits, the rest of the run finetunes as one slice (the
network recovers), and trials go on while some estimate fits the budget it
freed. A failed group is bisected (its better-ranked half is tried next) and the
next group size halves; a single layer that missed the budget by less than the
budget itself gets one more slice before it is rejected. The cost grows with how
often the estimates are wrong, not with the layer count.

``oracle`` measures each layer alone (one finetuning slice each: the expensive
truth the estimators try to predict), then picks greedily by measured drop per
bit and finetunes ``epochs``. ``all`` binarizes every candidate; ``none``
binarizes nothing. Both are baselines and ignore the budget.
"""

from __future__ import annotations

from collections.abc import Callable

from albsnn_compress.search import SearchSession

__all__ = ["adaptive", "oracle", "binarize_all", "binarize_none", "STRATEGY_FUNCTIONS"]

EXTEND_WITHIN = 2.0  # a single layer measured within this multiple of the budget gets one more slice
GROUP_AFTER = 2  # measurements the calibration needs before several layers are tried at once
_EPS = 1e-9


def _harm_per_bit(session: SearchSession, raw: dict[str, float]) -> list[str]:
    return sorted(raw, key=lambda name: (raw[name] / max(session.saved_bits[name], 1), name))


def _choose_group(session: SearchSession, raw: dict[str, float], cap: int) -> list[str]:
    """The best-ranked layers whose summed estimate fits the remaining budget (at most ``cap``).

    Until the calibration rests on ``GROUP_AFTER`` measurements, one layer at a
    time: a factor fitted to a single point is too weak to bet a group on.
    """
    order = _harm_per_bit(session, raw)
    if not session.calibration.ready:
        return order[:1]  # the first measurement calibrates the estimator
    if len(session.calibration.observations) < GROUP_AFTER:
        cap = 1
    left = session.budget - session.current_drop
    group, spent = [], 0.0
    for name in order:
        points = session.calibration.points(raw[name]) or 0.0
        if points > left - spent:
            session.decide(name, False, f"est. {points:.2f} pts > remaining budget {max(left - spent, 0):.2f}", raw[name])
            continue
        group.append(name)
        spent += points
        if len(group) >= cap:
            break
    return group


def _worth_extending(session: SearchSession, group: list[str], drop: float) -> bool:
    """Whether a failed single-layer trial is close enough to the budget to earn one more slice.

    A short trial slice overestimates what a layer finally costs (finetuning keeps
    recovering), so a layer that misses by little gets a second slice before it is
    rejected for good; one that misses by more than ``EXTEND_WITHIN`` times the
    budget is rejected at once, and groups are bisected instead.
    """
    return len(group) == 1 and session.budget > 0 and drop <= EXTEND_WITHIN * session.budget


def _trial(session: SearchSession, group: list[str], raw: dict[str, float]) -> tuple[float, float]:
    """Binarize ``group``, finetune one slice (two for a near miss), measure.

    Returns the measured drop and the finetuning epochs the trial took; the
    estimator's calibration learns the increment of the first slice.
    """
    before = session.current_drop
    epochs = session.config.trial_epochs
    session.binarize(group)
    session.finetune(epochs, f"try {', '.join(n.split('.')[-1] for n in group)}")
    drop = session.measure()
    session.calibration.observe(sum(max(raw[n], 0.0) for n in group), drop - before)
    if drop > session.budget and _worth_extending(session, group, drop):
        session.finetune(epochs, f"extend {group[0].split('.')[-1]}")
        drop = session.measure()
        epochs *= 2
    return drop, epochs


def _keep(session: SearchSession, group: list[str], raw: dict[str, float], drop: float, increment: float) -> None:
    for name in group:
        estimate = session.calibration.points(raw[name])
        basis = f"est. {estimate:.2f} pts fits" if estimate is not None else "tried first (no calibration yet)"
        session.decide(name, True, f"{basis}; measured drop {drop:.2f} <= budget {session.budget:.2f}", raw[name], increment)
    session.record("binarize", ",".join(group), raw)


def _finetune_only(session: SearchSession, epochs: float, description: str) -> None:
    """A slice of the run with no change tried: the network recovers; measure where it stands."""
    session.finetune(epochs, description)
    session.measure()
    session.record("finetuned", None)


def adaptive(session: SearchSession) -> None:
    """Estimator-guided progressive binarization during one finetuning run (see module docs).

    The run lasts ``epochs``: kept trial slices, then the rest as one slice once
    nothing fits (a single cosine schedule recovers better than restarting the
    learning rate every slice). After it, trials go on only while some
    candidate's estimate fits; the final check follows.
    """
    remaining = list(session.candidates)
    run_left = session.config.epochs
    cap = len(remaining)
    bisect: list[str] = []  # the kept half of a group that failed: tried next, as is
    while remaining:
        raw = session.estimate(remaining)
        group = bisect or _choose_group(session, raw, cap)
        bisect = []
        if not group:
            if run_left <= _EPS:
                break
            _finetune_only(session, run_left, "finetune the rest")
            run_left = 0.0
            continue
        before = session.current_drop
        snapshot = session.snapshot()
        drop, epochs = _trial(session, group, raw)
        increment = drop - before
        if drop <= session.budget:
            _keep(session, group, raw, drop, increment)
            remaining = [name for name in remaining if name not in group]
            run_left -= epochs
            continue
        session.restore(snapshot, before)
        session.record("revert", ",".join(group), raw)
        if len(group) == 1:
            session.decide(group[0], False, f"tried: measured drop {drop:.2f} pts > budget {session.budget:.2f}", raw[group[0]], increment)
            remaining.remove(group[0])
        else:
            bisect = group[: len(group) // 2]
        cap = max(1, len(group) // 2)
    if run_left > _EPS:
        session.finetune(run_left, "final finetune")
    session.verify_and_back_off()


def oracle(session: SearchSession) -> None:
    """Measure every candidate alone after one finetuning slice, then pick greedily."""
    measured: dict[str, float] = {}
    for name in session.candidates:
        snapshot = session.snapshot()
        session.binarize([name])
        session.finetune(session.config.trial_epochs, f"oracle {name.split('.')[-1]}")
        measured[name] = session.measure()
        session.restore(snapshot, 0.0)
        session.record("probe", name, {name: measured[name]})
    order = sorted(measured, key=lambda n: (max(measured[n], 0.0) / max(session.saved_bits[n], 1), n))
    spent = 0.0
    for name in order:
        cost = max(measured[name], 0.0)
        if spent + cost <= session.budget:
            spent += cost
            session.decide(name, True, f"measured alone {measured[name]:.2f} pts; total {spent:.2f} <= budget", measured=measured[name])
            session.binarize([name])
        else:
            session.decide(name, False, f"measured alone {measured[name]:.2f} pts > remaining budget {session.budget - spent:.2f}", measured=measured[name])
    session.record("binarize", None)
    session.finetune(session.config.epochs, "final finetune")
    session.verify_and_back_off()


def binarize_all(session: SearchSession) -> None:
    """Baseline: binarize every candidate, finetune, report (the budget is not enforced)."""
    session.binarize(session.candidates)
    for name in session.candidates:
        session.decide(name, True, "strategy 'all' binarizes every candidate")
    session.finetune(session.config.epochs, "final finetune")
    session.measure()
    session.record("final", None)


def binarize_none(session: SearchSession) -> None:
    """Baseline: keep every layer in float (measures the pipeline's own effect)."""
    for name in session.candidates:
        session.decide(name, False, "strategy 'none' keeps every layer in float")
    session.measure()
    session.record("final", None)


STRATEGY_FUNCTIONS: dict[str, Callable[[SearchSession], None]] = {
    "adaptive": adaptive,
    "oracle": oracle,
    "all": binarize_all,
    "none": binarize_none,
}
