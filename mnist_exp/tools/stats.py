"""The statistics behind ``compare``: Student's t, the mean with its confidence interval, McNemar, Welch.

Plain Python (math only): the t distribution through the regularized incomplete beta function,
so degrees of freedom need not be whole numbers (Welch's are not).
"""

import functools
import math
from dataclasses import dataclass

CONFIDENCE = 0.95


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (Lentz's method)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only below this point: use the symmetry
        return 1.0 - incomplete_beta(b, a, 1.0 - x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 1000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * fraction / a


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (df > 0, not necessarily whole)."""
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@functools.lru_cache(maxsize=1024)  # a leaderboard asks for the same few (p, df) once per seed group
def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p: bisection on ``t_cdf`` to full double precision."""
    if not 0.0 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, not p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        low, high = (middle, high) if t_cdf(middle, df) < p else (low, middle)
    return 0.5 * (low + high)


@dataclass
class Summary:
    """Mean, sample standard deviation, minimum and the 95% interval of the mean of some values."""

    n: int
    mean: float
    std: float  # nan for one value
    min: float
    low: float  # the interval: nan for one value
    high: float

    def overlaps(self, other: "Summary") -> bool:
        return self.low <= other.high and other.low <= self.high


ANY_NUMBER, ACCURACY = (-math.inf, math.inf), (0.0, 1.0)  # the ranges values can have


def summarize(values: list[float], within: tuple[float, float] = ANY_NUMBER) -> Summary:
    """``within``: the values' range (0 to 1 for an accuracy), which the interval of their mean stays inside too:
    with two runs the t interval is wide enough to reach past 100%, where no mean can be."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Summary(n, mean, math.nan, min(values), math.nan, math.nan)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, min(values), max(mean - half, within[0]), min(mean + half, within[1]))


def mcnemar_p(only_a: int, only_b: int) -> float:
    """The exact McNemar test's two-sided p-value: a binomial test of the discordant pairs against 1/2."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    term = tail = 1  # C(n, 0); then C(n, k + 1) = C(n, k) (n - k) / (k + 1), whole numbers all along
    for k in range(min(only_a, only_b)):
        term = term * (n - k) // (k + 1)
        tail += term
    return min(1.0, 2 * tail / 2 ** n)  # one division of whole numbers: correctly rounded for any n


@dataclass
class Welch:
    """The difference of two means (b - a), its 95% interval and p-value by Welch's t-test."""

    difference: float
    low: float
    high: float
    df: float  # Welch-Satterthwaite; nan when both groups have no spread
    p: float


def welch(a: Summary, b: Summary) -> Welch:
    """Welch's unequal-variance t interval of ``b.mean - a.mean``; each group needs two values or more."""
    if a.n < 2 or b.n < 2:
        raise ValueError("Welch's interval needs at least two values in each group")
    difference = b.mean - a.mean
    va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
    se = math.sqrt(va + vb)
    if se == 0.0:  # every run of each group scored the same: the difference is exact
        return Welch(difference, difference, difference, math.nan, 1.0 if difference == 0 else 0.0)
    df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
    half = t_quantile(0.5 + CONFIDENCE / 2, df) * se
    p = 2.0 * t_cdf(-abs(difference) / se, df)
    return Welch(difference, difference - half, difference + half, df, p)


if __name__ == "__main__":
    from mnist_exp.tools.cli import refuse_as_a_command

    refuse_as_a_command(__spec__.name)
