"""Kafka's windowed rate (``org.apache.kafka.common.metrics.stats.Rate`` over a ``WindowedSum``,
as of Kafka 3.8/3.9) and its throttle time (``QuotaUtils.throttleTime``).

``samples`` windows of ``window_ms`` each (``quota.window.num`` 11, ``quota.window.size.seconds``
1), plus one spare for the sample overlapping the start of the monitored span. A sample whose
last event is ``samples * window_ms`` old is reset. The rate is the sum of the samples divided
by the elapsed span, which is never taken as shorter than ``samples - 1`` full windows: a fresh
client is measured as if it had been quiet for ten seconds, so it may send about ten seconds'
worth at once before it is throttled (Kafka behaves the same way).
"""

from __future__ import annotations

import math

_INT_MAX = 2**31 - 1


class _Sample:
    __slots__ = ("value", "events", "start_ms", "last_event_ms")

    def __init__(self, now_ms: int) -> None:
        self.value = 0.0
        self.events = 0
        self.start_ms = now_ms
        self.last_event_ms = now_ms

    def reset(self, now_ms: int) -> None:
        self.value = 0.0
        self.events = 0
        self.start_ms = now_ms
        self.last_event_ms = now_ms


class WindowedRate:
    """Units per second over the last ``samples`` windows (``Rate(SECONDS, WindowedSum)``)."""

    __slots__ = ("samples", "window_ms", "_samples", "_current", "last_record_ms")

    def __init__(self, samples: int = 11, window_ms: int = 1000) -> None:
        if samples < 1 or window_ms < 1:
            raise ValueError("samples and window_ms must be at least 1")
        self.samples = samples
        self.window_ms = window_ms
        self._samples: list[_Sample] = []
        self._current = 0
        self.last_record_ms = 0

    def record(self, value: float, now_ms: int) -> None:
        """SampledStat.record: into the current sample, or the next once this one is full."""
        sample = self._current_sample(now_ms)
        if now_ms - sample.start_ms >= self.window_ms:
            sample = self._advance(now_ms)
        sample.value += value
        sample.events += 1
        sample.last_event_ms = now_ms
        self.last_record_ms = now_ms

    def _current_sample(self, now_ms: int) -> _Sample:
        if not self._samples:
            self._samples.append(_Sample(now_ms))
        return self._samples[self._current]

    def _advance(self, now_ms: int) -> _Sample:
        self._current = (self._current + 1) % (self.samples + 1)
        if self._current >= len(self._samples):
            sample = _Sample(now_ms)
            self._samples.append(sample)
            return sample
        sample = self._samples[self._current]
        sample.reset(now_ms)
        return sample

    def _purge(self, now_ms: int) -> None:
        expire = self.samples * self.window_ms
        for sample in self._samples:
            if now_ms - sample.last_event_ms >= expire:
                sample.reset(now_ms)

    def window_size_ms(self, now_ms: int) -> int:
        """Rate.windowSize: the span the rate is measured over, at least samples - 1 windows."""
        self._purge(now_ms)
        if not self._samples:
            self._samples.append(_Sample(now_ms))
        oldest = min(s.start_ms for s in self._samples)
        elapsed = now_ms - oldest
        full = elapsed // self.window_ms
        if full < self.samples - 1:
            elapsed += (self.samples - 1 - full) * self.window_ms
        return max(elapsed, 1)

    def total(self, now_ms: int) -> float:
        self._purge(now_ms)
        return sum(s.value for s in self._samples)

    def measure(self, now_ms: int) -> float:
        """Rate.measure: units per second."""
        value = self.total(now_ms)
        return value / (self.window_size_ms(now_ms) / 1000.0)


def java_round(x: float) -> int:
    """Math.round(double): floor(x + 0.5)."""
    return math.floor(x + 0.5)


def throttle_time_ms(observed: float, bound: float, window_ms: int) -> int:
    """QuotaUtils.throttleTime: the delay X that brings ``observed`` (measured over
    ``window_ms``) down to ``bound``: O * W / (W + X) = T, so X = (O - T) / T * W.

    ClientQuotaManager (Kafka 3.9) applies it unbounded, narrowed to an int. Where Java's
    arithmetic goes astray (a quota of 0 divides by zero, Math.round gives Long.MAX_VALUE and
    toInt -1, so Kafka does not throttle at all) this answers 0 as well; a finite delay beyond
    an int is capped at Integer.MAX_VALUE instead of wrapping around."""
    if bound <= 0 or observed <= bound:
        return 0
    delay = (observed - bound) / bound * window_ms
    if not math.isfinite(delay):
        return 0
    return min(java_round(delay), _INT_MAX)


class QuotaSensor:
    """A rate with its quota (``Sensor`` with one ``Rate`` metric and a ``Quota.upperBound``)."""

    __slots__ = ("rate", "bound", "throttle_ms_total", "throttled")

    def __init__(self, samples: int, window_ms: int, bound: float) -> None:
        self.rate = WindowedRate(samples, window_ms)
        self.bound = bound
        self.throttle_ms_total = 0  # for metrics and tests: what this sensor imposed
        self.throttled = 0

    def record(self, value: float, now_ms: int, check: bool = True) -> int:
        """Sensor.record(value, now, checkQuotas): the throttle time when the rate, with
        ``value`` counted, exceeds the quota (Quota.acceptable: value <= bound), else 0."""
        self.rate.record(value, now_ms)
        if not check or self.bound == math.inf:
            return 0
        observed = self.rate.measure(now_ms)
        if observed <= self.bound:
            return 0
        delay = throttle_time_ms(observed, self.bound, self.rate.window_size_ms(now_ms))
        if delay > 0:
            self.throttle_ms_total += delay
            self.throttled += 1
        return delay
