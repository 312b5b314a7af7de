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
