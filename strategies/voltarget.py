"""Volatility-targeted sizing (``sizing="vol_target"``) for the shipped strategies: a position is
``min(max_leverage, target_vol / predicted annualised volatility)`` of its sleeve, resized only when that moves by
more than ``RESIZE_BAND``, with the predicted volatility from the first source that has a value at the bar.

The sources, in order (``VOL_SOURCES``); each bar takes the first with a finite value, and ``vol_sources`` counts
per ticker the bars each one sized:

1. ``vol_model``: the ``pred_vol`` line of a volatility forecast indicator the strategy builds from the params
   ``vol_model`` (a model family, built with ``vol_kwargs`` plus ``target="volatility"``) and ``vol_kwargs`` (with
   an indicator class: its kwargs as given);
2. ``pred_vol``: a ``pred_vol`` line on the strategy's own forecast indicator;
3. ``interval``: the return forecast's prediction interval, half-width / the normal quantile of its coverage, per
   bar (over ``sqrt(horizon)``);
4. ``trailing_20``: the root mean squared log return of the last 20 bars (``volbaselines``' trailing estimate).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd

from puffin_bt.adapters.indicators import forecast_indicators
from puffin_bt.dates import periods_per_year
from puffin_bt.errors import ConfigError
from puffin_bt.options import OPTIONS
from puffin_bt.volbaselines import TRAILING_BARS

VOL_SOURCES = ("vol_model", "pred_vol", "interval", "trailing_20")
# Resize a held position only when its target moves by more than this share of it: daily volatility forecasts
# wobble by a few percent a day, and chasing each wobble would trade every bar for nothing.
RESIZE_BAND = 0.10
VOL_TARGET_OPTIONS = ("target_vol", "max_leverage", "periods_per_year")
# The strategy params of the volatility model (beside ``model`` / ``forecast_kwargs``), and with the options for a
# strategy whose params do not come from the registry's groups (buy-and-hold).
VOL_MODEL_PARAMS = (("vol_model", None), ("vol_kwargs", None))
VOL_TARGET_PARAMS = (*VOL_MODEL_PARAMS, *((name, OPTIONS[name].default) for name in VOL_TARGET_OPTIONS))


def vol_target_weight(per_bar_vol: float, target_vol: float, max_weight: float, bars_a_year: float) -> float:
    """The share of the sleeve that brings a position with this per-bar volatility to ``target_vol`` a year,
    at most ``max_weight``; NaN without a usable volatility.

    >>> round(vol_target_weight(0.02, 0.15, 1.0, 252), 4)  # 0.02 a day is 0.317 a year: 0.15 / 0.317
    0.4725
    """
    if not math.isfinite(per_bar_vol) or per_bar_vol <= 0:
        return math.nan
    return min(max_weight, target_vol / (per_bar_vol * math.sqrt(bars_a_year)))


def interval_vol(lo: float, hi: float, coverage: float, horizon: int) -> float:
    """The per-bar volatility a normal prediction interval ``[lo, hi]`` of ``coverage`` over ``horizon`` bars
    implies: its half-width over the normal quantile, over ``sqrt(horizon)``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or not 0 < coverage < 1:
        return math.nan
    return (hi - lo) / 2 / NormalDist().inv_cdf((1 + coverage) / 2) / math.sqrt(horizon)


def trailing_vol(closes: np.ndarray) -> float:
    """Root mean squared log return of the last ``TRAILING_BARS`` bars of ``closes``; NaN with fewer."""
    closes = np.asarray(closes, dtype=float)[-(TRAILING_BARS + 1):]
    if len(closes) <= TRAILING_BARS or np.any(closes <= 0):
        return math.nan
    return float(np.sqrt(np.mean(np.diff(np.log(closes)) ** 2)))


def outside_band(shares: float, target_shares: float) -> bool:
    """Whether a position of ``shares`` should move to ``target_shares``: always to or from flat, else only when
    the target differs by more than ``RESIZE_BAND`` of the position."""
    if shares == 0 or target_shares == 0:
        return shares != target_shares
    return abs(target_shares - shares) > RESIZE_BAND * abs(shares)


class VolTargetSizing:
    """A strategy mixin: ``vol_target_weight_for(data)``, the sources it reads (``_init_vol_target`` in
    ``__init__``, after the strategy's own forecasts) and the bookkeeping: ``vol_sources`` (ticker -> {source:
    bars}) and ``traded_value`` (the summed value of filled orders, for turnover)."""

    def _init_vol_target(self, forecasts: dict | None = None, scope: str = "per_ticker") -> None:
        p = self.p
        for name in VOL_TARGET_OPTIONS:
            OPTIONS[name].check(getattr(p, name))
        self.vol_sources: dict[str, dict[str, int]] = {}
        self.traded_value = 0.0
        self._return_forecasts = forecasts or {}
        self._vol_forecasts: dict = {}
        self._bars_a_year: dict = {}
        if p.sizing != "vol_target":
            if p.vol_model is not None:
                raise ConfigError(f"vol_model={p.vol_model!r} sizes positions only with sizing='vol_target' "
                                  f"(sizing={p.sizing!r}); set sizing='vol_target' or drop vol_model")
            return
        if p.vol_model is not None:
            kwargs = dict(p.vol_kwargs or {})
            if isinstance(p.vol_model, str):
                kwargs["target"] = "volatility"
            self._vol_forecasts = forecast_indicators(self.datas, p.vol_model, kwargs, scope)
            for fc in self._vol_forecasts.values():
                if "pred_vol" not in fc.lines.getlinealiases():
                    raise ConfigError(f"vol_model={p.vol_model!r} has no 'pred_vol' line; give a volatility forecast "
                                      "(a model family, built with target='volatility', or an indicator with pred_vol)")
                fc.plotinfo.plotname = "volatility forecast"

    def _bars_a_year_of(self, data) -> float:
        if self.p.periods_per_year is not None:
            return float(self.p.periods_per_year)
        if data not in self._bars_a_year:  # from the dates seen so far, once: the bar size does not change
            dates = pd.DatetimeIndex([data.datetime.datetime(-k) for k in range(len(data) - 1, -1, -1)])
            self._bars_a_year[data] = periods_per_year(dates)[0]
        return self._bars_a_year[data]

    def predicted_vol(self, data) -> tuple[float, str]:
        """The per-bar volatility of ``data``'s next bars from the first source with a value now, and its name."""
        fc = self._vol_forecasts.get(data)
        if fc is not None and len(fc) and math.isfinite(vol := fc.pred_vol[0]):
            return vol, "vol_model"
        fc = self._return_forecasts.get(data)
        if fc is not None and len(fc):
            aliases = fc.lines.getlinealiases()
            if "pred_vol" in aliases and math.isfinite(vol := fc.pred_vol[0]):
                return vol, "pred_vol"
            coverage = getattr(fc.p, "interval", None)
            if coverage is not None and "pred_lo" in aliases:
                vol = interval_vol(fc.pred_lo[0], fc.pred_hi[0], coverage, getattr(fc.p, "horizon", 1))
                if math.isfinite(vol):
                    return vol, "interval"
        return trailing_vol(data.close.get(size=min(len(data), TRAILING_BARS + 1))), "trailing_20"

    def vol_target_weight_for(self, data, max_weight: float) -> float:
        """``data``'s vol-target share of its sleeve now, at most ``max_weight``; NaN without any volatility yet."""
        vol, source = self.predicted_vol(data)
        weight = vol_target_weight(vol, self.p.target_vol, max_weight, self._bars_a_year_of(data))
        if math.isfinite(weight):
            counts = self.vol_sources.setdefault(data._name, {})
            counts[source] = counts.get(source, 0) + 1
        return weight

    def _count_traded(self, order) -> None:
        if order.status == order.Completed:
            self.traded_value += abs(order.executed.size * order.executed.price)
