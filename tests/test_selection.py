"""lib.selection: the learning-rate rule as pure functions, one case per branch."""
import pytest

from lib import selection as S


def pts(*accs, lrs=(0.01, 0.03, 0.1), nonfinite=()):
    return [{"lr": lr, "best_val_acc": a, "nonfinite": lr in nonfinite} for lr, a in zip(lrs, accs)]


@pytest.mark.parametrize("accs, added, extend, nonfinite, want", [
    ((0.5, 0.6, 0.7), 0, 2, (), 0.3),        # best at the top end, strictly better: go up
    ((0.7, 0.6, 0.5), 0, 2, (), 0.003),      # best at the bottom end: go down
    ((0.5, 0.7, 0.6), 0, 2, (), None),       # best inside: final
    ((0.5, 0.6, 0.7), 2, 2, (), None),       # extension budget spent: final
    ((0.5, 0.7, 0.7), 0, 2, (), None),       # tie with the neighbour: the smaller rate wins, inside
    ((0.5, 0.6, 0.7), 0, 0, (), None),       # lr_extend 0: never extends
    ((0.5, 0.9, 0.7), 0, 2, (0.03,), 0.3),   # a diverged point is not eligible (counts as -1)
])
def test_next_rate(accs, added, extend, nonfinite, want):
    rows = pts(*accs, nonfinite=nonfinite)
    got = S.next_rate([0.01, 0.03, 0.1], rows, added, extend)
    assert got == want


def test_choose_lr_ties_and_divergence():
    assert S.choose_lr(pts(0.7, 0.7, 0.5)) == 0.01
    assert S.choose_lr(pts(0.7, 0.9, 0.5, nonfinite=(0.03,))) == 0.01
    assert S.choose_lr(pts(0.7, 0.9, 0.5, nonfinite=(0.01, 0.03, 0.1))) == 0.01
    with pytest.raises(ValueError):
        S.choose_lr([])


def test_ladder_and_rule_text_share_constants():
    assert [S.half_decade(x, up=True) for x in (0.01, 0.03, 1.0, 3.0)] == [0.03, 0.1, 3.0, 10.0]
    assert [S.half_decade(x, up=False) for x in (0.01, 0.03, 3.0)] == [0.003, 0.01, 1.0]
    assert f"ties go to the {S.TIE_BREAK} rate" in S.SELECTION_RULE


def test_one_se_takes_the_smallest_rate_within_one_standard_error():
    rows = pts(0.60, 0.66, 0.70)                      # SE at 0.70 with 100 images: 0.0458
    assert S.choose_lr(rows, "best") == 0.1
    assert S.choose_lr(rows, "one_se", n_val=100) == 0.03   # 0.66 >= 0.70 - 0.046; 0.60 is not
    assert S.choose_lr(rows, "one_se", n_val=10_000) == 0.1  # SE 0.0046: only the best
    assert S.choose_lr(pts(0.60, 0.66, 0.70, nonfinite=(0.03,)), "one_se", n_val=100) == 0.1
    with pytest.raises(ValueError, match="n_val"):
        S.choose_lr(rows, "one_se")
    with pytest.raises(ValueError, match="unknown learning-rate rule"):
        S.choose_lr(rows, "median")


def test_rule_texts():
    assert S.rule_text("best") == S.SELECTION_RULE
    assert "one binomial standard error" in S.rule_text("one_se")
    assert S.rule_text("one_se").startswith(S.SELECTION_RULE.split("the rate with")[0])
