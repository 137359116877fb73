"""`benchmarks gate`'s report of the bundle's calls where the guard is silent, including when it is silent on
no subject at all (a guard that flags a whole shifted cohort)."""

from __future__ import annotations

import warnings

import numpy as np

from benchmarks.gate import call_figures, calls_line


def test_calls_where_the_guard_flags_every_subject_are_reported_as_none() -> None:
    p_fatty = np.array([0.9, 0.2, 0.7, 0.4])
    fatty = np.array([True, False, False, True])
    every = call_figures(p_fatty, fatty, 0.5, np.ones(4, bool))
    assert every == {"subjects": 4, "auc": 0.75, "accuracy": 0.5}  # 3 of 4 fatty-normal pairs ranked right
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice", no NaN in the report
        silent = call_figures(p_fatty, fatty, 0.5, np.zeros(4, bool))
    assert silent == {"subjects": 0, "auc": None, "accuracy": None}
    line = calls_line({"all": every, "guard_passed": silent})
    assert line == "The bundle's calls: 4 subjects, AUC 0.750, accuracy 50.0 %; where the guard is silent: no subjects."
