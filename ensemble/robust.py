"""Fit a combiner for robustness: clean fit rows plus shifted copies of them (issue 10, item 3d).

Why: weights fitted on clean validation alone reward the most accurate member on clean images,
which is often the most fragile one (the zoo's vote once picked a member that fell from 98% to
28% under another lab's staining). Adding the members' probabilities on corrupted copies of the
same images (families from :mod:`zoo.shift`) makes the log-loss objective pay for fragility.

Honesty rules: the families used here become *in-family* for the ensemble (its card lists them
under ``fit_families`` and in ``augment_families``), and a shifted copy of an image is always in
the same cross-fitting fold as the image, so out-of-fold scores never see another copy of the
row they score.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ensemble.cv import replicate_folds
from zoo.errors import ZooError

log = logging.getLogger(__name__)
DEFAULT_SEVERITIES = (2, 4)


def shifted_member_probs(
    source,
    split: str,
    families: Sequence[str],
    severities: Sequence[int] = DEFAULT_SEVERITIES,
    seed: int = 0,
    batch_size: int = 64,
) -> list[np.ndarray]:
    """Member probabilities ``(M, N, C)`` on each (family, severity) corrupted copy of ``split``'s images."""
    from zoo import shift
    from zoo.runs import load_model

    fams = shift.resolve_families(list(families))
    sevs = [int(s) for s in severities]
    if not sevs or any(not 1 <= s <= 5 for s in sevs):
        raise ZooError(f"robust-fit severities must be in 1..5, got {list(severities)}")
    part = source.dataset().split(split)
    copies = [shift.corrupt(part.images, f, s, seed) for f in fams for s in sevs]
    out = [[] for _ in copies]
    for m in source.members:
        # the ensemble's images (its input size): a smaller member resizes them in its graph, as at inference
        model = load_model(m.path, m.card, input_size=source.input_size)
        log.info("robust fit: member '%s' on %d shifted copies of %s", m.name, len(copies), split)
        for j, x in enumerate(copies):
            out[j].append(model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0))
    return [np.stack(p).astype(np.float64) for p in out]


def extend_fit_rows(fit_probs: np.ndarray, fit_labels: np.ndarray, folds, shifted: Sequence[np.ndarray]):
    """Clean rows then every shifted copy; folds replicated so each copy stays in its image's fold."""
    n = len(fit_labels)
    if not shifted:
        return fit_probs, fit_labels, folds
    for s in shifted:
        if s.shape != fit_probs.shape:
            raise ZooError(f"shifted member probabilities {s.shape} do not match the fit rows {fit_probs.shape}")
    reps = 1 + len(shifted)
    probs = np.concatenate([fit_probs, *shifted], axis=1)
    labels = np.tile(np.asarray(fit_labels), reps)
    return probs, labels, replicate_folds(folds, n, reps)


def choose_under_floor(clean: Sequence[float], shifted: Sequence[float], floor: float) -> int:
    """Index of the candidate most accurate on shifted rows among those whose clean accuracy reaches ``floor``
    (ties: the more accurate clean); when none does, the most accurate clean one (ties: the more robust).

    The one rule behind every clean-floor fit: the vote's weight grid (:func:`ensemble.voting.fit_weights_floor`)
    and the stack's candidates (:func:`ensemble.stacking.select_candidate`). The first of equal candidates wins.
    """
    c, s = np.asarray(clean, dtype=np.float64), np.asarray(shifted, dtype=np.float64)
    ok = c >= floor
    keys = [(1, s[i], c[i]) if ok[i] else (0, c[i], s[i]) for i in range(len(c))]
    return max(range(len(keys)), key=keys.__getitem__)
