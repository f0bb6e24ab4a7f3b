"""Search strategies: which candidate layers to binarize, decided by measurement.

A strategy is a function ``strategy(session) -> None`` that drives a
:class:`~albsnn_compress.search.protocol.StrategySession`. :data:`STRATEGIES`
maps a name to one; :func:`register_strategy` adds one, and
``SearchConfig(strategy=...)`` also takes a function directly.

``recover`` (default) binarizes every candidate and lets the whole run of
``epochs`` recover them, because binary layers keep recovering long after a short
trial would have judged them; over budget, a float control finetuned the same way
says whether the layers are to blame, and the worst-ranked layers (estimated harm
per bit) return to float one slice at a time until the drop fits.

``adaptive`` (the default before issue 25) is the ALBSNN idea made cheap: the selection is decided
*during* one finetuning run of ``epochs``. Candidates are re-estimated on the
adapted network and ranked by estimated harm per bit saved; the largest *group*
whose summed calibrated estimate fits the remaining budget is binarized, one
slice of ``trial_epochs`` finetunes it, and a measurement keeps or reverts it. A
kept trial slice is part of the finetuning run; only reverted slices are
overhead. When nothing fits, the rest of the run finetunes as one slice (the
network recovers), and trials go on while some estimate fits the budget it
freed. A failed group is bisected (its better-ranked half is tried next) and the
next group size halves; a single layer that missed the budget by at most
``extend_within`` times the budget gets one more slice before it is rejected.
Groups wait until the calibration rests on ``group_after`` measurements. The
cost grows with how often the estimates are wrong, not with the layer count.

``oracle`` measures each layer alone (one finetuning slice each: the expensive
truth the estimators try to predict), then picks greedily by measured drop per
bit and finetunes ``epochs``. ``all`` binarizes every candidate; ``none``
binarizes nothing. Both are baselines and ignore the budget.

``recover``, ``adaptive`` and ``oracle`` end with :func:`verify_and_back_off`, the step that
makes the budget hold whatever the estimates said.

Precisions (``SearchConfig.precisions``): ``recover`` and ``all`` start each candidate at its
fewest allowed bits, and ``recover`` raises a layer that does not recover one precision at a time;
``adaptive`` and ``oracle`` decide between 1 bit and float only (:data:`MULTI_PRECISION` names the
strategies that take more). Asked for none, a strategy takes :func:`default_precisions`.

Targets without float layers (``SearchConfig.target``, :mod:`albsnn_compress.targets`): the top of
each ladder is its highest precision, not float (:func:`_ceiling`), so ``recover`` and
:func:`verify_and_back_off` raise a layer at most to it, and where the budget is missed with every
layer there, the run raises :class:`~albsnn_compress.errors.CompressionError` instead of returning the
input model (which has float layers). Only :data:`NO_FLOAT` strategies run on such a target.
"""

from __future__ import annotations

from albsnn_compress.errors import CompressionError
from albsnn_compress.precision import FLOAT_BITS
from albsnn_compress.registry import Registry
from albsnn_compress.search.protocol import Strategy, StrategySession
from albsnn_compress.search.result import LayerDecision
from albsnn_compress.targets import TARGETS

__all__ = [
    "recover",
    "adaptive",
    "oracle",
    "binarize_all",
    "binarize_none",
    "verify_and_back_off",
    "MULTI_PRECISION",
    "RECOMMENDED_PRECISIONS",
    "default_precisions",
    "NO_FLOAT",
    "STRATEGIES",
    "register_strategy",
    "resolve_strategy",
]

_EPS = 1e-9


def _short(name: str) -> str:
    return name.split(".")[-1]


def _harm_per_bit(session: StrategySession, raw: dict[str, float]) -> list[str]:
    return sorted(raw, key=lambda name: (raw[name] / max(session.saved_bits[name], 1), name))


def _choose_group(session: StrategySession, raw: dict[str, float], cap: int) -> list[str]:
    """The best-ranked layers whose summed estimate fits the remaining budget (at most ``cap``).

    Until the calibration rests on ``config.group_after`` measurements, one layer
    at a time: a factor fitted to a single point is too weak to bet a group on.
    """
    order = _harm_per_bit(session, raw)
    if not session.calibration.ready:
        return order[:1]  # the first measurement calibrates the estimator
    if len(session.calibration.observations) < session.config.group_after:
        cap = 1
    left = session.budget - session.current_drop
    group, spent = [], 0.0
    for name in order:
        points = session.calibration.points(raw[name]) or 0.0
        if points > left - spent:
            session.decide(
                name, False, f"est. {points:.2f} pts > remaining budget {max(left - spent, 0):.2f}", raw=raw[name]
            )
            continue
        group.append(name)
        spent += points
        if len(group) >= cap:
            break
    return group


def _drop_text(drop: float, judged: float) -> str:
    """``measured drop 0.18``, with the bound the decision used when it is not the drop itself."""
    return f"measured drop {drop:.2f}" + (f" (upper bound {judged:.2f})" if judged != drop else "")


def _worth_extending(session: StrategySession, group: list[str], drop: float) -> bool:
    """Whether a failed single-layer trial is close enough to the budget to earn one more slice.

    A short trial slice overestimates what a layer finally costs (finetuning keeps
    recovering), so a layer that misses by little gets a second slice before it is
    rejected for good; one that misses by more than ``config.extend_within`` times
    the budget is rejected at once, and groups are bisected instead.
    """
    return len(group) == 1 and session.budget > 0 and drop <= session.config.extend_within * session.budget


def _trial(session: StrategySession, group: list[str]) -> tuple[float, float, float]:
    """Binarize ``group``, finetune one slice (two for a near miss), measure.

    Returns the drop measured after the first slice (what the calibration learns
    from), the final measured drop, and the finetuning epochs the trial took.
    """
    epochs = session.config.trial_epochs
    session.binarize(group)
    session.finetune(epochs, f"try {', '.join(_short(n) for n in group)}")
    first = drop = session.measure()
    if not session.fits_budget() and _worth_extending(session, group, drop):
        session.finetune(epochs, f"extend {_short(group[0])}")
        drop = session.measure()
        epochs *= 2
    return first, drop, epochs


def _keep(session: StrategySession, group: list[str], raw: dict[str, float], drop: float, increment: float) -> None:
    judged = session.judged_drop()
    for name in group:
        estimate = session.calibration.points(raw[name])
        basis = f"est. {estimate:.2f} pts fits" if estimate is not None else "tried first (no calibration yet)"
        reason = f"{basis}; {_drop_text(drop, judged)} <= budget {session.budget:.2f}"
        session.decide(name, True, reason, raw=raw[name], increment=increment)
    session.record("binarize", group, raw)


def _finetune_only(session: StrategySession, epochs: float, description: str) -> None:
    """A slice of the run with no change tried: the network recovers; measure where it stands."""
    session.finetune(epochs, description)
    session.measure()
    session.record("finetuned", [])


def adaptive(session: StrategySession) -> None:
    """Estimator-guided progressive binarization during one finetuning run (see module docs).

    The run lasts ``epochs``: kept trial slices, then the rest as one slice once
    nothing fits (a single cosine schedule recovers better than restarting the
    learning rate every slice). After it, trials go on only while some
    candidate's estimate fits; the final check follows. Verdicts and steps carry
    the estimates in points as the search saw them when it chose; each trial's
    first-slice increment then joins the calibration.
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
        first, drop, epochs = _trial(session, group)
        increment = drop - before
        judged = session.judged_drop()
        if session.fits_budget():
            _keep(session, group, raw, drop, increment)
            remaining = [name for name in remaining if name not in group]
            run_left -= epochs
        else:
            session.restore(snapshot, before)
            session.record("revert", group, raw)
            if len(group) == 1:
                reason = f"tried: {_drop_text(drop, judged)} pts > budget {session.budget:.2f}"
                session.decide(group[0], False, reason, raw=raw[group[0]], increment=increment)
                remaining.remove(group[0])
            else:
                bisect = group[: len(group) // 2]
            cap = max(1, len(group) // 2)
        session.calibration.observe(sum(max(raw[n], 0.0) for n in group), first - before)
    if run_left > _EPS:
        session.finetune(run_left, "final finetune")
    verify_and_back_off(session)


def recover(session: StrategySession) -> None:
    """Compress every candidate, let one run recover, raise to more bits what does not recover.

    Binary layers keep recovering long after a short trial slice would have judged them
    (docs/method.md, "The binary-aware recipe"), so every layer is judged after the whole
    run: the candidates are ranked by estimated harm per bit, each set to its fewest allowed
    bits (1 bit: binarized), and the run's ``epochs`` finetune them as one cosine slice.
    Within budget: done. Over it, a float control finetuned the same way says whether the
    layers are to blame: if finetuning alone costs the budget on this split, no layer choice
    can meet it and the input model is returned; otherwise one layer at a time moves one
    precision up (1 to 2 bits, ..., the highest to float), the one whose step is estimated to
    win back the most harm per bit it adds, each followed by one ``trial_epochs`` slice and a
    measurement, until the drop fits. With 1 bit the only precision, each step returns the
    worst-ranked layer to float. If every layer went back to float, the input model is returned
    (a finetuned float copy saves nothing and only adds finetuning's drift). On a target without
    float layers the climb stops at each ladder's highest precision and a run still over budget
    there raises :class:`~albsnn_compress.errors.CompressionError` (:func:`_out_of_reach`).
    """
    harm = _ladder_estimates(session)
    fewest = {name: session.ladders[name][0] for name in session.candidates}
    raw = {name: harm[name][bits] for name, bits in fewest.items()}
    order = _harm_per_bit(session, raw)
    in_input = _below_float(session.bits())
    session.set_bits({name: fewest[name] for name in order})
    session.record("binarize", order, raw)
    session.finetune(session.config.epochs, "finetune, every candidate binary")
    drop = session.measure()
    session.record("finetuned", [])
    if not session.fits_budget() and not _recover_over_budget(session, harm, raw, in_input):
        return
    judged = session.judged_drop()
    kept = _below_float(session.bits())
    for name, bits in kept.items():
        reason = f"recovered: {_drop_text(session.current_drop, judged)} <= budget {session.budget:.2f} after the run"
        session.decide(name, bits == 1, _at(bits, reason), raw=harm[name][bits], bits=bits)
    session.calibration.observe(sum(max(harm[n][bits], 0.0) for n, bits in kept.items()), drop)
    verify_and_back_off(session)


def _recover_over_budget(
    session: StrategySession, harm: dict[str, dict[int, float]], raw: dict[str, float], in_input: dict[str, int]
) -> bool:
    """Over budget after the run: the float control, then the climb (:func:`_raise_precisions`).

    Returns ``False`` when the input model was returned instead (the control is over budget, or
    every layer went back to float); ``True`` when the model climbed within budget.

    Raises:
        CompressionError: on a target without float layers, where the input cannot be returned: the
            control is over budget, or the drop misses the budget with every layer at its highest precision.
    """
    if not session.control(session.config.epochs):
        if not _float_allowed(session):
            raise _out_of_reach(
                session, "a float control finetuned the same way is over budget too (finetuning alone costs it)"
            )
        _restore_input_over_control(session, raw)
        return False
    _raise_precisions(session, harm)
    if not _float_allowed(session):
        if not session.fits_budget():
            raise _out_of_reach(session, "every layer is at its highest precision")
        return True
    if set(_below_float(session.bits())) <= set(in_input):
        _restore_input_nothing_kept(session)
        return False
    return True


def _float_allowed(session: StrategySession) -> bool:
    """Whether a layer may go to float: no target, or one that takes float layers."""
    target = session.config.target
    return target is None or TARGETS.lookup(target).float_layers


def _ceiling(session: StrategySession, name: str) -> int:
    """The most bits ``name`` may go up to: float, or the top of its ladder on a target without float layers."""
    return FLOAT_BITS if _float_allowed(session) else session.ladders[name][-1]


def _below_ceiling(session: StrategySession, bits: dict[str, int]) -> dict[str, int]:
    """The layers of ``bits`` that may still go up (:func:`_ceiling`), with their bits."""
    return {name: value for name, value in bits.items() if value < _ceiling(session, name)}


def _out_of_reach(session: StrategySession, situation: str) -> CompressionError:
    """The error of a run that misses the budget on a target without float layers (the input is no answer)."""
    judged = session.judged_drop()
    return CompressionError(
        f"target {session.config.target!r} takes no float layers and {situation}: "
        f"{_drop_text(session.current_drop, judged)} pts > budget {session.budget:.2f}; allow a larger budget, "
        "finetune longer (epochs), or choose a target that takes float layers"
    )


def _ladder_estimates(session: StrategySession) -> dict[str, dict[int, float]]:
    """Per candidate, the raw estimated harm at every precision on its ladder (float: 0).

    One estimator call per precision; with 1 bit the only one, exactly the binary search's one call.
    """
    harm: dict[str, dict[int, float]] = {name: {FLOAT_BITS: 0.0} for name in session.candidates}
    for bits in sorted({step for ladder in session.ladders.values() for step in ladder}):
        names = [name for name in session.candidates if bits in session.ladders[name]]
        for name, value in session.estimate(names, {name: bits for name in names}).items():
            harm[name][bits] = value
    return harm


def _below_float(bits: dict[str, int]) -> dict[str, int]:
    """The layers of ``bits`` below float, with their bits."""
    return {name: value for name, value in bits.items() if value < FLOAT_BITS}


def _at(bits: int, reason: str) -> str:
    """``reason``, prefixed with the precision when it is not 1 bit (a 1-bit verdict reads as before)."""
    return reason if bits == 1 else f"{bits}-bit: {reason}"


def _next_bits(session: StrategySession, name: str, bits: int) -> int:
    """The precision above ``bits`` on ``name``'s ladder, float above the highest (:func:`_ceiling`)."""
    return next((step for step in session.ladders[name] if step > bits), _ceiling(session, name))


def _step_up(session: StrategySession, harm: dict[str, dict[int, float]], bits: dict[str, int]) -> str | None:
    """The layer below its ceiling (:func:`_ceiling`) whose next precision wins back the most estimated harm per
    bit it adds.

    With 1-bit ladders this is the layer of largest harm per bit saved (ties: the later name),
    the binary search's worst-first order.
    """

    def gain_per_bit(name: str) -> tuple[float, str]:
        now, up = bits[name], _next_bits(session, name, bits[name])
        added = session.saved_bits_at(name, now) - session.saved_bits_at(name, up)
        return (harm[name][now] - harm[name][up]) / max(added, 1), name

    below = list(_below_ceiling(session, {name: bits[name] for name in session.candidates}))
    return max(below, key=gain_per_bit) if below else None


def _raise_precisions(session: StrategySession, harm: dict[str, dict[int, float]]) -> None:
    """Move one layer at a time one precision up (:func:`_step_up`), one slice each, until the drop fits."""
    while not session.fits_budget():
        bits = session.bits()
        name = _step_up(session, harm, bits)
        if name is None:
            return
        up = _next_bits(session, name, bits[name])
        session.set_bits({name: up}, keep_values=True)  # from the values it computes: the function is unchanged
        target = "float" if up == FLOAT_BITS else f"{up} bits"
        session.finetune(session.config.trial_epochs, f"return {_short(name)} to {target}", lr=session.config.return_lr)
        before = session.current_drop
        session.measure()
        reason = _at(bits[name], f"did not recover: drop {before:.2f} pts with it > budget {session.budget:.2f}")
        session.decide(
            name, up == 1, reason, raw=harm[name][bits[name]], increment=before - session.current_drop, bits=up
        )
        session.record("backoff", [name], {layer: harm[layer][session.ladders[layer][0]] for layer in harm})


def _restore_input_nothing_kept(session: StrategySession) -> None:
    """Every layer went back to float: the input model is returned, not a finetuned copy of it.

    The copy saves nothing and its measured drop is finetuning noise at best (issue 25's rerun:
    +0.20 validation points with every layer returned), where the input's is 0 by definition.
    """
    session.restore_input()
    for name in session.binarized():  # the search starts from float and 1-bit layers only
        session.decide(name, True, "binarized in the input model, which is returned: no layer recovered")
    session.record("restore-input", [])


def _restore_input_over_control(session: StrategySession, raw: dict[str, float]) -> None:
    """Finetuning alone costs the budget here: return the input model, every candidate in float."""
    for name in _below_float(session.bits()):
        reason = (
            f"a float control finetuned the same way is over budget {session.budget:.2f} pts on this split: "
            "finetuning alone costs the budget, so the input model is returned"
        )
        session.decide(name, False, reason, raw=raw[name])
    session.restore_input()
    for name in session.binarized():
        session.decide(name, True, "binarized in the input model, which is returned: finetuning alone costs the budget")
    session.record("restore-input", [])


def oracle(session: StrategySession) -> None:
    """Measure every candidate alone after one finetuning slice, then pick greedily."""
    measured: dict[str, float] = {}
    for name in session.candidates:
        snapshot = session.snapshot()
        session.binarize([name])
        session.finetune(session.config.trial_epochs, f"oracle {_short(name)}")
        measured[name] = session.measure()
        session.record("probe", [name])
        session.restore(snapshot, 0.0)
    order = sorted(measured, key=lambda n: (max(measured[n], 0.0) / max(session.saved_bits[n], 1), n))
    spent = 0.0
    chosen = []
    for name in order:
        cost = max(measured[name], 0.0)
        if spent + cost <= session.budget:
            spent += cost
            session.decide(
                name,
                True,
                f"measured alone {measured[name]:.2f} pts; total {spent:.2f} <= budget",
                alone=measured[name],
            )
            session.binarize([name])
            chosen.append(name)
        else:
            reason = f"measured alone {measured[name]:.2f} pts > remaining budget {session.budget - spent:.2f}"
            session.decide(name, False, reason, alone=measured[name])
    session.record("binarize", chosen)
    session.finetune(session.config.epochs, "final finetune")
    verify_and_back_off(session)


def _measured(decision: LayerDecision | None) -> float:
    """What the search measured for a layer: alone (oracle), else its group's increment (adaptive)."""
    if decision is None:
        return 0.0
    if decision.measured_alone_points is not None:
        return decision.measured_alone_points
    return decision.measured_increment_points or 0.0


def verify_and_back_off(session: StrategySession) -> None:
    """Measure the final model; while over budget, return the costliest-per-bit layer to float.

    Each back-off finetunes one trial slice and measures again. If the model is
    still over budget with every candidate in float (finetuning itself cost
    accuracy), the input model is returned unchanged: its drop is 0 by definition.
    On a target without float layers a back-off raises the layer to its highest
    precision instead (:func:`_ceiling`), and a model over budget with every layer
    there raises :class:`~albsnn_compress.errors.CompressionError`.
    """
    session.measure()
    session.record("final", [])
    while not session.fits_budget() and (compressed := _below_ceiling(session, session.bits())):
        worst = max(compressed, key=lambda n: _measured(session.decisions.get(n)) / max(session.saved_bits[n], 1))
        up = _ceiling(session, worst)
        session.set_bits({worst: up})
        session.finetune(session.config.trial_epochs, f"back off {worst}")
        session.measure()
        previous = session.decisions.get(worst)
        what = "backed off" if up == FLOAT_BITS else f"raised to {up} bits"
        session.decide(
            worst,
            up == 1,
            f"{what} at the final check: drop with it > budget {session.budget:.2f} pts",
            raw=previous.estimate_raw if previous else None,
            alone=previous.measured_alone_points if previous else None,
            increment=previous.measured_increment_points if previous else None,
            bits=up,
        )
        session.record("backoff", [worst])
    if not session.fits_budget() and not _float_allowed(session):
        raise _out_of_reach(session, "every layer is at its highest precision after the final check")
    if not session.fits_budget():
        session.restore_input()
        for name in session.binarized():
            session.decide(
                name, True, "binarized in the input model, which is returned: over budget with every candidate in float"
            )
        session.record("restore-input", [])


def binarize_all(session: StrategySession) -> None:
    """Baseline: every candidate at its fewest allowed bits (1: binarized), finetune, report (no budget)."""
    fewest = {name: session.ladders[name][0] for name in session.candidates}
    session.set_bits(fewest)
    for name, bits in fewest.items():
        reason = "strategy 'all' binarizes every candidate" if bits == 1 else f"strategy 'all': its fewest bits, {bits}"
        session.decide(name, bits == 1, reason, bits=bits)
    session.finetune(session.config.epochs, "final finetune")
    session.measure()
    session.record("final", [])


def binarize_none(session: StrategySession) -> None:
    """Baseline: change no layer (measures the pipeline's own effect; layers binarized in the input stay so)."""
    already = set(session.binarized())
    for name in session.candidates:
        if name in already:
            session.decide(name, True, "binarized in the input model; strategy 'none' changes no layer")
        else:
            session.decide(name, False, "strategy 'none' keeps every layer in float")
    session.measure()
    session.record("final", [])


STRATEGIES: Registry[Strategy] = Registry("strategy", CompressionError, "or pass a function strategy(session)")
for _name, _strategy in (
    ("recover", recover),
    ("adaptive", adaptive),
    ("oracle", oracle),
    ("all", binarize_all),
    ("none", binarize_none),
):
    STRATEGIES.register(_name, _strategy)


MULTI_PRECISION = frozenset({"recover", "all", "none"})
"""The registered strategies that take precisions besides 1 bit (a strategy function of your own drives
:meth:`~albsnn_compress.search.protocol.StrategySession.set_bits` as it likes)."""


RECOMMENDED_PRECISIONS = (1, 2, 4, 8)
"""What a search over precisions takes by default: on the aug40 FashionMNIST reference, ``recover`` with these
kept 90-96 % of the weight bits saved within budget 0.2 on the test split in every seed, where 1 bit alone
saved 0 % in 3 of 4 seeds (docs/method.md, "The search over precisions")."""


def default_precisions(strategy_name: str) -> tuple[int, ...]:
    """The precisions a strategy takes when none are asked for: :data:`RECOMMENDED_PRECISIONS` for the registered
    strategies of :data:`MULTI_PRECISION`, 1 bit for the others (``adaptive``, ``oracle``, a function of your own)."""
    return RECOMMENDED_PRECISIONS if strategy_name in MULTI_PRECISION else (1,)


NO_FLOAT = frozenset({"recover", "all"})
"""The registered strategies that run on a target without float layers: they give every candidate a precision
(``adaptive`` and ``oracle`` decide between 1 bit and float, ``none`` keeps float layers float)."""


def register_strategy(name: str, strategy: Strategy) -> None:
    """Let ``SearchConfig(strategy=name)`` run ``strategy``.

    Raises:
        CompressionError: ``name`` is already registered.
    """
    STRATEGIES.register(name, strategy)


def resolve_strategy(strategy: str | Strategy) -> tuple[str, Strategy]:
    """The name and function of a registered name or a strategy function.

    A function's name is its registered name if it has one, else its ``__name__``.

    Raises:
        CompressionError: an unknown name, or something that is neither a name nor callable.
    """
    if isinstance(strategy, str):
        return strategy, STRATEGIES.lookup(strategy)
    if not callable(strategy):
        raise CompressionError(
            f"strategy {strategy!r} is not callable; pass one of {list(STRATEGIES)} or a function strategy(session)"
        )
    registered = STRATEGIES.name_of(strategy)
    return registered if registered is not None else str(
        getattr(strategy, "__name__", type(strategy).__name__)
    ), strategy
