"""One-sided binomial bounds for agreement counts (exact, from the binomial distribution itself)."""

from __future__ import annotations

from math import comb


def tail_below(n: int, p: float, k: int) -> float:
    """P[X < k] for X ~ Binomial(n, p)."""
    return sum(comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(max(k, 0)))


def min_agreeing(n: int, p: float, alpha: float) -> int:
    """The largest k with P[X < k] <= alpha under Binomial(n, p): requiring at least k successes fails an
    engine whose per-trial success probability is p (or more) with probability at most alpha."""
    k = 0
    while k < n and tail_below(n, p, k + 1) <= alpha:
        k += 1
    return k


def clopper_pearson_lower(n: int, k: int, alpha: float) -> float:
    """The one-sided Clopper-Pearson lower confidence bound (level 1 - alpha) on p after k successes in n:
    the p at which P[X >= k] = alpha (0 when k is 0), found by bisection."""
    if k == 0:
        return 0.0
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if 1 - tail_below(n, middle, k) < alpha:
            low = middle
        else:
            high = middle
    return low
