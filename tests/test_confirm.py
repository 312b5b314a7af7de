"""Which designs confirm gives more seeds: every baseline, then the best others."""

from __future__ import annotations

from losstune import confirm, results


def _design(key, mean, baseline=None, n=1):
    return results.Design(key=key, family=key, words=key, description={"family": key},
                          params={"loss": key}, baseline=baseline,
                          by_seed={i: mean for i in range(n)}, trials=[0])


def test_baselines_first_then_the_top_others():
    ranking = [_design("a", 0.9, n=3), _design("ce", 0.8, baseline="ce", n=3),
               _design("b", 0.85), _design("c", 0.7), _design("focal", 0.6, baseline="f")]
    verdict = results.Verdict("s", "macro_f1", True, ranking[0], [], ranking)
    chosen = [d.key for d in confirm.choose(verdict, top=2)]
    assert chosen == ["ce", "focal", "a", "b"]
    assert [d.key for d in confirm.choose(verdict, top=0)] == ["ce", "focal"]


class _Companion:
    def __init__(self, errors):
        from types import SimpleNamespace

        self._trials = [SimpleNamespace(state=SimpleNamespace(name="FAIL"),
                                        user_attrs={"error": e}) for e in errors]

    def get_trials(self, deepcopy=False):
        return self._trials


def test_some_runs_failing_is_a_note_all_failing_an_error():
    import pytest

    from losstune.errors import LosstuneError

    a = _design("a", 0.9, n=2)
    verdict = results.Verdict("s", "macro_f1", True, a, [], [a])
    assert confirm._check_made(verdict, [("a", 0), ("a", 1)], _Companion([])) == []
    notes = confirm._check_made(verdict, [("a", 1), ("a", 2)], _Companion(["boom"]))
    assert notes == ["1 of 2 confirmation runs failed (last error: boom); their designs have "
                     "fewer seeds"]
    with pytest.raises(LosstuneError, match="all 2 confirmation runs failed; last error: boom"):
        confirm._check_made(verdict, [("a", 2), ("a", 3)], _Companion(["x", "boom"]))
