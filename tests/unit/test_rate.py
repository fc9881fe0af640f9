"""HAProxy's sliding-second event rate (``fastproxy.rate``), on a clock the tests drive."""

from __future__ import annotations

import pytest

from fastproxy.rate import FreqCounter


def test_the_previous_second_fades_out_of_the_window():
    counter = FreqCounter()
    counter.add(0.0, 10)
    assert counter.rate(0.5) == 10
    assert counter.rate(1.25) == pytest.approx(7.5)  # a quarter of the previous second has slid out
    assert counter.rate(1.75) == pytest.approx(2.5)
    assert counter.rate(3.0) == 0


def test_remain_counts_down_to_the_limit():
    counter = FreqCounter()
    assert counter.remain(0.0, 20) == 20
    counter.add(0.1, 15)
    assert counter.remain(0.2, 20) == 5
    counter.add(0.3, 5)
    assert counter.remain(0.4, 20) == 0


@pytest.mark.parametrize("burst, limit", [(20, 20), (35, 20), (3, 1)])
def test_delay_is_when_the_limit_allows_one_more(burst, limit):
    counter = FreqCounter()
    counter.add(0.2, burst)
    now = 0.3
    delay = counter.delay(now, limit)
    assert delay > 0
    assert counter.remain(now + delay, limit) >= 1
    assert counter.remain(now + delay - 0.01, limit) == 0


def test_a_steady_flow_at_the_limit_is_admitted_and_no_more():
    counter, limit, admitted, now = FreqCounter(), 50, 0, 0.0
    while now < 10.0:  # a client every millisecond, ten seconds long
        if counter.remain(now, limit):
            counter.add(now)
            admitted += 1
        now += 0.001
    assert 10 * limit - limit <= admitted <= 10 * limit + limit
