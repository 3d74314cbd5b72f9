"""An interactive trade chart of a backtest as ONE self-contained HTML file (Bokeh, all JavaScript and CSS inlined).

Per ticker: candles, volume, trades, the forecasts with their thresholds and the retrain dates; plus the portfolio
against buy-and-hold with drawdowns. It opens offline, e.g. from an e-mail attachment.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..checks import check_float
from ..errors import ConfigError, DataError
from ..files import atomic_write_bytes

__all__ = ["HTML_UNAVAILABLE", "html_available", "write_trades_html"]

HTML_UNAVAILABLE = "the HTML trade chart needs Bokeh, which is not installed: pip install bokeh"

TRADE_COLUMNS = ("ticker", "direction", "entry_date", "exit_date", "entry_price", "exit_price", "size", "pnl_net", "return")
OPEN_COLUMNS = ("ticker", "direction", "entry_date", "entry_price", "size")
FORECAST_COLUMNS = ("ticker", "date", "close", "pred_return")
FOLD_COLUMNS = ("ticker", "date")
PRICE_COLUMNS = ("open", "high", "low", "close")

_UP, _DOWN = "#26a69a", "#ef5350"
_BUY, _SELL = "#1565c0", "#d81b60"
_CLOSE, _FORECAST, _PRED = "#37474f", "#f57c00", "#7b1fa2"
_STRATEGY, _BENCHMARK = "#1565c0", "#757575"
_DAY_MS = 86_400_000.0
# Beyond this many bars in view a candle is under ~3 px wide on a laptop screen and the close line reads better.
_CANDLE_MAX_BARS = 400
# A price range wider than this factor gets a log axis, so early years of a long history are not a flat line.
_LOG_SPAN = 10.0

_TEMPLATE = """
{% block preamble %}
<style>
  body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #263238; }
  .pb-head { padding: 10px 18px 4px 18px; }
  .pb-head h1 { font-size: 20px; margin: 0 0 4px 0; }
  .pb-head p { margin: 2px 0; font-size: 13px; }
  .pb-head .pb-hint { color: #78909c; font-size: 12px; }
  .pb-head a { color: #1565c0; margin-right: 14px; }
  .pb-good { color: #2e7d32; } .pb-bad { color: #c62828; }
  .pb-body { padding: 0 10px 10px 10px; }
</style>
{% endblock %}
{% block contents %}
{{ header }}
<div class="pb-body">{{ super() }}</div>
{% endblock %}
"""

# Runs whenever a tab's x range moves (and on load): fits each y range to the data in view (Bokeh's DataRange1d fits
# the whole history, which flattens a zoomed-in window) and shows candles only when few enough bars are in view.
_AUTOSCALE_JS = """
function span(t, x0, x1) {
  let lo = 0, hi = t.length;
  while (lo < hi) { const m = (lo + hi) >> 1; if (t[m] < x0) lo = m + 1; else hi = m; }
  const i0 = lo;
  hi = t.length;
  while (lo < hi) { const m = (lo + hi) >> 1; if (t[m] <= x1) lo = m + 1; else hi = m; }
  return [i0, lo];
}
const [i0, i1] = span(source.get_column("t"), xr.start, xr.end);
if (line !== null) {
  const show = i1 - i0 <= max_bars;
  for (const r of candles) r.visible = show;
  line.glyph.line_alpha = show ? 0 : 1;  // still there, unseen, under candles: it carries the bar tooltip
}
// Markers shrink when many are in view: decades of trades stay a band of small marks, not a smear.
let shown = 0;
for (const r of markers) for (const t of r.data_source.get_column("t")) if (t >= xr.start && t <= xr.end) shown++;
const size = Math.max(5, Math.min(13, 13 * Math.sqrt(150 / Math.max(shown, 1))));
for (const r of markers) r.glyph.size = size;
for (const y of ranges) {
  let lo = Infinity, hi = -Infinity;
  for (const name of y.lo) { const a = source.get_column(name); for (let i = i0; i < i1; i++) if (a[i] < lo) lo = a[i]; }
  for (const name of y.hi) { const a = source.get_column(name); for (let i = i0; i < i1; i++) if (a[i] > hi) hi = a[i]; }
  for (const v of y.fixed) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!isFinite(lo) || !isFinite(hi)) continue;
  if (y.log) {
    const f = Math.pow(Math.max(hi / lo, 1.02), y.pad);
    y.range.setv({start: lo / f, end: hi * f});
  } else {
    const p = (hi - lo) * y.pad || Math.abs(hi) * 0.05 || 1;
    y.range.setv({start: lo - p, end: hi + p});
  }
}
"""

_READOUT_JS = """
const i = cb_data.index.line_indices[0];
if (i === undefined) return;
const col = (name) => source.get_column(name);
const num = (v, digits = 2) => Number.isFinite(v) ? v.toLocaleString("en-US", {maximumFractionDigits: digits}) : "n/a";
const day = new Date(col("t")[i]);
let text = `${name}  ${["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][day.getUTCDay()]} ${day.toISOString().slice(0, 10)}` +
  `   O ${num(col("open")[i], 4)}  H ${num(col("high")[i], 4)}  L ${num(col("low")[i], 4)}  C ${num(col("close")[i], 4)}`;
if (col("volume") !== null) text += `   vol ${num(col("volume")[i] / 1e6, 2)} M`;
if (col("pred") !== null) {
  const pred = col("pred")[i];
  text += `   forecast of this close ${num(col("fc_price")[i], 4)}   pred next return ${pred >= 0 ? "+" : ""}${num(pred, 3)}%`;
}
title.text = text;
"""

# The URL's #TICKER opens that ticker's tab (links from a report, a bookmark); switching tabs updates it.
_HASH_TO_TAB_JS = """
const name = decodeURIComponent(window.location.hash.slice(1));
const i = tabs.tabs.findIndex((panel) => panel.title === name);
if (i >= 0) tabs.active = i;
"""
_TAB_TO_HASH_JS = """
try { history.replaceState(null, "", "#" + encodeURIComponent(tabs.tabs[tabs.active].title)); } catch (e) {}
"""


def html_available() -> bool:
    """Whether Bokeh can be imported, i.e. whether :func:`write_trades_html` can work (else see ``HTML_UNAVAILABLE``)."""
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- input checks


def _frame(name: str, value, required: tuple[str, ...]) -> pd.DataFrame:
    """``value`` as a DataFrame with the ``required`` columns; None or an empty frame mean 'none'."""
    if value is None:
        return pd.DataFrame(columns=list(required))
    if not isinstance(value, pd.DataFrame):
        raise ConfigError(f"{name} must be a pandas DataFrame, got {type(value).__name__}")
    if value.empty and not set(required) <= set(value.columns):
        return pd.DataFrame(columns=list(required))
    missing = [c for c in required if c not in value.columns]
    if missing:
        raise DataError(f"{name} is missing column(s) {missing} (it has {list(value.columns)}); "
                        f"pass the frame a backtest produced (BacktestResult.{name} or {name}.csv)")
    return value.copy()  # dates get parsed in place below; the caller's frame stays as it was


def _dates(values, what: str) -> pd.DatetimeIndex:
    """Parsed, timezone-free dates (daily bars: the wall-clock date is what matters)."""
    try:
        out = pd.DatetimeIndex(pd.to_datetime(values))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} holds values that are not dates ({exc}); pass ISO dates such as 2010-01-04") from None
    return out.tz_localize(None) if out.tz is not None else out


def _check_prices(prices) -> dict[str, pd.DataFrame]:
    if not isinstance(prices, dict) or not prices:
        raise ConfigError(f"prices must be a non-empty dict {{ticker: OHLCV DataFrame}} (e.g. load_sample(...)), "
                          f"got {type(prices).__name__ if not isinstance(prices, dict) else 'an empty dict'}")
    out = {}
    for ticker, px in prices.items():
        if not isinstance(px, pd.DataFrame):
            raise ConfigError(f"prices[{ticker!r}] must be a DataFrame, got {type(px).__name__}")
        missing = [c for c in PRICE_COLUMNS if c not in px.columns]
        if missing:
            raise DataError(f"prices[{ticker!r}] is missing column(s) {missing} (it has {list(px.columns)}); "
                            "pass OHLCV frames as load_sample()/load_csv() return them")
        if not isinstance(px.index, pd.DatetimeIndex):
            raise DataError(f"prices[{ticker!r}] needs a DatetimeIndex, got {type(px.index).__name__}; "
                            "e.g. df.set_index(pd.to_datetime(df['date']))")
        if px.empty:
            raise DataError(f"prices[{ticker!r}] has no rows; drop the ticker or pass its prices")
        cols = [c for c in (*PRICE_COLUMNS, "volume") if c in px.columns]
        frame = px[cols].apply(pd.to_numeric, errors="coerce")
        frame.index = _dates(px.index, f"prices[{ticker!r}].index")
        out[str(ticker)] = frame.sort_index()
    return out


def _known_tickers(frame: pd.DataFrame, name: str, tickers) -> None:
    unknown = sorted(set(frame["ticker"].astype(str)) - set(tickers))
    if unknown:
        raise DataError(f"{name} has ticker(s) {unknown} that are not in prices (which has {sorted(tickers)}); "
                        f"pass their prices too or filter {name} to those tickers")


def _rows(frame: pd.DataFrame, ticker: str, by: str) -> pd.DataFrame:
    return frame[frame["ticker"].astype(str) == ticker].sort_values(by)


def _out_path(out_path) -> Path:
    if not isinstance(out_path, (str, os.PathLike)):
        raise ConfigError(f"out_path must be a file path, got {type(out_path).__name__}")
    out = Path(out_path)
    if out.is_dir():
        raise ConfigError(f"out_path {str(out)!r} is a directory; pass a file path such as {str(out / 'trades.html')!r}")
    return out


def _equity_frame(equity) -> pd.DataFrame:
    if equity is None:
        return pd.DataFrame(columns=["strategy"])
    if not isinstance(equity, pd.DataFrame):
        raise ConfigError(f"equity must be a pandas DataFrame, got {type(equity).__name__}")
    if equity.empty:
        return pd.DataFrame(columns=["strategy"])
    frame = equity.set_index("date") if "date" in equity.columns else equity
    if "strategy" not in frame.columns:
        raise DataError(f"equity is missing the 'strategy' column (it has {list(equity.columns)}); "
                        "pass BacktestResult.equity or equity.csv (columns strategy, buy_hold)")
    cols = [c for c in ("strategy", "buy_hold") if c in frame.columns]
    out = frame[cols].apply(pd.to_numeric, errors="coerce")
    out.index = _dates(frame.index, "equity dates")
    return out.sort_index()


# --------------------------------------------------------------------------- data per ticker


def _ms(dates) -> np.ndarray:
    """Milliseconds since the epoch: what Bokeh's datetime axis plots."""
    return pd.DatetimeIndex(dates).values.astype("datetime64[ms]").astype(np.int64).astype(np.float64)


def _horizon(fc: pd.DataFrame) -> int:
    """Bars a forecast looks ahead: forecast_frame leaves realized_return NaN on the last ``horizon`` rows; that count
    is trusted when the realised returns are indeed the close that many bars later over this one, else 1."""
    if "realized_return" not in fc.columns or not fc["realized_return"].notna().any():
        return 1
    realized = fc["realized_return"].to_numpy(float)
    h = len(realized) - 1 - int(np.flatnonzero(np.isfinite(realized))[-1])
    close = fc["close"].to_numpy(float)
    if h < 1 or not np.allclose(close[h:] / close[:-h] - 1, realized[:-h], rtol=1e-4, atol=1e-6, equal_nan=True):
        return 1
    return h


def _bar_columns(px: pd.DataFrame, fc: pd.DataFrame, band: bool) -> dict[str, np.ndarray]:
    """One row per bar: prices, the forecast made on the bar (panel), and the forecast price of the bar's close.

    The forecast price close*(1+pred_return) made on bar t is drawn on bar t+horizon, the close it predicts, so the
    gap between it and the candle is the forecast error. float32 halves the page; ms timestamps need float64.
    """
    f32 = lambda s: np.asarray(s, dtype=np.float32)  # noqa: E731
    cols = {"t": _ms(px.index), **{c: f32(px[c]) for c in px.columns},
            "up": (px["close"] >= px["open"]).to_numpy(np.uint8)}
    if fc.empty:
        return cols
    fc = fc.set_index("date").reindex(px.index)
    shift = _horizon(fc.dropna(subset=["pred_return"]))
    cols["pred"] = f32(fc["pred_return"] * 100)
    cols["fc_price"] = f32((fc["close"] * (1 + fc["pred_return"])).shift(shift))
    if "realized_return" in fc.columns:
        cols["real"] = f32(fc["realized_return"] * 100)
    if band:
        cols["pred_lo"], cols["pred_hi"] = f32(fc["pred_lo"] * 100), f32(fc["pred_hi"] * 100)
        cols["fc_lo"] = f32((fc["close"] * (1 + fc["pred_lo"])).shift(shift))
        cols["fc_hi"] = f32((fc["close"] * (1 + fc["pred_hi"])).shift(shift))
    return cols


def _signals(fills: pd.Series, fc: pd.DataFrame) -> list[str]:
    """The forecast behind each fill: the one of the last bar strictly before it (orders fill at the next open)."""
    if fc.empty or fills.empty:
        return ["no forecast before this fill"] * len(fills)
    left = pd.DataFrame({"fill": fills.to_numpy(), "row": np.arange(len(fills))}).sort_values("fill")
    right = fc[["date", "pred_return"]].rename(columns={"date": "signal"}).sort_values("signal")
    hit = pd.merge_asof(left, right, left_on="fill", right_on="signal", allow_exact_matches=False).sort_values("row")
    return [f"pred {p:+.3%} on {d:%Y-%m-%d}" if pd.notna(p) else "no forecast before this fill"
            for p, d in zip(hit["pred_return"], hit["signal"])]


def _money(v: float) -> str:
    return f"{v:+,.2f}" if pd.notna(v) else "n/a"


def _trade_marks(trades: pd.DataFrame, open_pos: pd.DataFrame, fc: pd.DataFrame, last_t: float, last_close: float):
    """Entry and exit markers (as buys and sells) and the segments joining each round trip."""
    entries, exits, legs = [], [], []
    for is_open, frame in ((False, trades), (True, open_pos)):
        if frame.empty:
            continue
        entry_sig = _signals(frame["entry_date"], fc)
        exit_sig = None if is_open else _signals(frame["exit_date"], fc)
        for i, row in enumerate(frame.to_dict("records")):
            long = str(row["direction"]).lower() != "short"
            side, other, held = ("buy", "sell", "long") if long else ("sell", "buy", "short")
            t0, p0, size = _ms([row["entry_date"]])[0], float(row["entry_price"]), abs(float(row["size"]))
            if is_open:
                ret = (last_close / p0 - 1) * (1 if long else -1)
                outcome, t1, p1, colour = f"still open at the end: {ret:+.2%} to the last close", last_t, last_close, "#90a4ae"
            else:
                ret, pnl = float(row["return"]), float(row["pnl_net"])
                t1, p1 = _ms([row["exit_date"]])[0], float(row["exit_price"])
                outcome, colour = f"exit {row['exit_date']:%Y-%m-%d}: {ret:+.2%}, net P/L {_money(pnl)}", _UP if pnl > 0 else _DOWN
                bars = f"{int(row['bars'])} bars " if pd.notna(row.get("bars", math.nan)) else ""
                exits.append({"t": t1, "price": p1, "size": size, "buy": not long, "signal": exit_sig[i],
                              "kind": f"{other} to close the {held}", "pnl": f"{_money(pnl)} ({ret:+.2%})",
                              "held": f"{bars}from {row['entry_date']:%Y-%m-%d}"})
            entries.append({"t": t0, "price": p0, "size": size, "buy": long, "signal": entry_sig[i],
                            "kind": f"{side} to open a {held}", "outcome": outcome})
            legs.append({"x0": t0, "y0": p0, "x1": t1, "y1": p1, "colour": colour})
    return pd.DataFrame(entries), pd.DataFrame(exits), pd.DataFrame(legs)


@dataclass
class _Ticker:
    name: str
    bars: dict[str, np.ndarray]
    entries: pd.DataFrame
    exits: pd.DataFrame
    legs: pd.DataFrame
    folds: pd.DataFrame
    log: bool


def _ticker_data(name: str, px: pd.DataFrame, trades: pd.DataFrame, open_pos: pd.DataFrame, fc: pd.DataFrame,
                 folds: pd.DataFrame, band: bool) -> _Ticker:
    if fc["date"].duplicated().any():
        dup = fc.loc[fc["date"].duplicated(), "date"].iloc[0]
        raise DataError(f"forecasts has two rows for {name} on {dup:%Y-%m-%d}; pass one forecast per ticker and date")
    bars = _bar_columns(px, fc, band)
    entries, exits, legs = _trade_marks(trades, open_pos, fc, bars["t"][-1], float(px["close"].iloc[-1]))
    lo, hi = float(np.nanmin(px["low"])), float(np.nanmax(px["high"]))
    return _Ticker(name, bars, entries, exits, legs, folds, lo > 0 and hi / lo > _LOG_SPAN)


# --------------------------------------------------------------------------- figures


def _figure(height: int, x_range, log: bool = False, **kwargs):
    from bokeh.plotting import figure

    p = figure(height=height, sizing_mode="stretch_width", x_axis_type="datetime", x_range=x_range,
               y_axis_type="log" if log else "linear", tools="xpan,xwheel_zoom,xbox_zoom,reset,save", min_border_left=70,
               min_border_right=10, **kwargs)
    p.toolbar.logo = None
    p.grid.grid_line_alpha = 0.35
    p.axis.minor_tick_line_color = None
    p.xaxis.visible = False
    p.yaxis.axis_label_text_font_size = "11px"
    p.yaxis.axis_label_text_font_style = "normal"
    return p


def _x_range(t: np.ndarray, years: float | None):
    """Pan/zoom limited to the history (plus a little air), opening on its last ``years`` years."""
    from bokeh.models import Range1d

    pad = 5 * _DAY_MS
    lo, hi = t[0] - pad, t[-1] + pad
    start = lo if years is None else max(lo, t[-1] - years * 365.25 * _DAY_MS)
    return Range1d(start, hi, bounds=(lo, hi), min_interval=10 * _DAY_MS)


def _autoscale(x_range, source, ranges: list[dict], candles: list = (), line=None, markers: list = ()) -> object:
    """Attach the autoscale callback to ``x_range``; returns it, to run once more when the page is ready."""
    from bokeh.models import CustomJS

    cb = CustomJS(args={"xr": x_range, "source": source, "ranges": ranges, "candles": list(candles), "line": line,
                        "markers": list(markers), "max_bars": _CANDLE_MAX_BARS}, code=_AUTOSCALE_JS)
    x_range.js_on_change("start", cb)
    x_range.js_on_change("end", cb)
    return cb


def _grid(panels: list):
    """The panels stacked with one toolbar (their frames aligned); the wheel zooms without a click first."""
    from bokeh.layouts import gridplot
    from bokeh.models import WheelZoomTool

    grid = gridplot([[p] for p in panels], merge_tools=True, toolbar_location="right", sizing_mode="stretch_width")
    grid.toolbar.active_scroll = next(t for t in grid.toolbar.tools if isinstance(getattr(t, "tools", [t])[0], WheelZoomTool))
    return grid


def _legend(p, items: list[tuple[str, list]]) -> None:
    """A horizontal legend above the plot, so it never covers data; a click hides a series."""
    from bokeh.models import Legend, LegendItem

    legend = Legend(items=[LegendItem(label=label, renderers=rs) for label, rs in items if rs], orientation="horizontal",
                    click_policy="hide", location="top_left", label_text_font_size="11px", glyph_width=16,
                    spacing=12, padding=2, margin=2, border_line_alpha=0)
    p.add_layout(legend, "above")


def _hover(p, renderers, tooltips, mode: str = "mouse") -> None:
    from bokeh.models import HoverTool

    p.add_tools(HoverTool(renderers=renderers, tooltips=tooltips, formatters={"@t": "datetime"}, mode=mode))


def _source(frame: pd.DataFrame):
    """A ColumnDataSource of the frame's columns only (Bokeh would add the index as one more column)."""
    from bokeh.models import ColumnDataSource

    return ColumnDataSource({c: frame[c].to_numpy() for c in frame.columns})


def _y_range(values: list[np.ndarray], log: bool):
    """A y range over the whole history; the autoscale callback narrows it to the view on load."""
    from bokeh.models import Range1d

    data = np.concatenate([np.asarray(v, dtype=float).ravel() for v in values])
    data = data[np.isfinite(data)]
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 1.0)
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    return Range1d(lo * 0.9 if log else lo, hi * 1.1 if log else hi)


def _price_panel(tk: _Ticker, src, x_range, width_ms: float, band: bool):
    from bokeh.models import CustomJS, HoverTool, NumeralTickFormatter
    from bokeh.transform import linear_cmap

    b = tk.bars
    p = _figure(400, x_range, tk.log, y_range=_y_range([b["low"], b["high"]], tk.log))
    p.yaxis.axis_label = "price (log scale)" if tk.log else "price"
    p.yaxis.formatter = NumeralTickFormatter(format="0,0.[00]")  # 1, 10, 100 rather than 10^0, 10^1, 10^2
    legend = []
    if "fc_price" in b:
        # Under the prices: the forecast sits within a few tenths of a percent of the close it predicts.
        if band:
            legend.append(("forecast interval", [p.varea("t", "fc_lo", "fc_hi", source=src, fill_color=_FORECAST,
                                                         fill_alpha=0.15)]))
        fc = p.line("t", "fc_price", source=src, line_color=_FORECAST, line_width=1.2, line_alpha=0.85)
        legend.insert(0, ("forecast price (of this close)", [fc]))
    colour = linear_cmap("up", palette=[_DOWN, _UP], low=0, high=1)
    wick = p.segment("t", "high", "t", "low", source=src, line_color=colour, line_width=1)
    body = p.vbar("t", width_ms * 0.7, top="open", bottom="close", source=src, fill_color=colour, line_color=colour)
    line = p.line("t", "close", source=src, line_color=_CLOSE, line_width=1.3)
    # The bar under the pointer is read out in the title row (as trading terminals do) rather than in a tooltip, which
    # would sit on top of a trade marker's tooltip whenever the pointer is on a marker.
    p.title.text = f"{tk.name}: hover for a bar's prices" + (" and forecast" if "pred" in b else "")
    p.title.text_font_size = "12px"
    p.title.text_font_style = "normal"
    p.add_tools(HoverTool(renderers=[line], mode="vline", tooltips=None,
                          callback=CustomJS(args={"source": src, "title": p.title, "name": tk.name}, code=_READOUT_JS)))
    if not tk.legs.empty:
        legs = p.segment("x0", "y0", "x1", "y1", source=_source(tk.legs), line_color="colour", line_width=1.3,
                         line_alpha=0.7, line_dash="dotted")
        legend.append(("round trip (win/loss/open)", [legs]))
    buys, sells = [], []
    for marks, tips in ((tk.entries, [("", "@kind"), ("trade", "@outcome")]),
                        (tk.exits, [("", "@kind"), ("round trip", "@pnl"), ("held", "@held")])):
        for is_buy, colour_, marker, bucket in ((True, _BUY, "triangle", buys), (False, _SELL, "inverted_triangle", sells)):
            rows = marks[marks["buy"] == is_buy] if not marks.empty else marks
            if rows.empty:
                continue
            r = p.scatter("t", "price", source=_source(rows.drop(columns="buy")), marker=marker, size=13,
                          fill_color=colour_, line_color="white", line_width=1.2)
            bucket.append(r)
            _hover(p, [r], [tips[0], ("date", "@t{%a %F}"), ("price", "@price{0,0.00[00]}"), ("size", "@size{0,0}"),
                            ("signal", "@signal"), *tips[1:]])
    legend += [("buy", buys), ("sell", sells)]
    _legend(p, legend)
    lo, hi = ["low"], ["high"]
    if "fc_price" in b:
        lo, hi = lo + ["fc_price"], hi + ["fc_price"]
    scale = {"range": p.y_range, "lo": lo, "hi": hi, "fixed": [], "log": tk.log, "pad": 0.05}
    return p, [wick, body], line, buys + sells, scale


def _volume_panel(tk: _Ticker, src, x_range, width_ms: float):
    from bokeh.models import NumeralTickFormatter
    from bokeh.transform import linear_cmap

    p = _figure(80, x_range, y_range=_y_range([tk.bars["volume"], [0]], False))
    p.vbar("t", width_ms * 0.7, top="volume", source=src, fill_color=linear_cmap("up", palette=[_DOWN, _UP], low=0, high=1),
           line_color=None, fill_alpha=0.45)
    p.yaxis.axis_label = "volume"
    p.yaxis.formatter = NumeralTickFormatter(format="0 a")
    p.yaxis.ticker.desired_num_ticks = 2
    return p, {"range": p.y_range, "lo": [], "hi": ["volume"], "fixed": [0.0], "log": False, "pad": 0.05}


def _forecast_panel(tk: _Ticker, src, x_range, entry: float | None, exit: float | None, band: bool):
    from bokeh.models import Label, Span

    b = tk.bars
    levels = [(entry * 100, f"entry > {entry:+.2%}", _BUY)] if entry is not None else []
    levels += [(-exit * 100, f"exit < {-exit:+.2%}", _SELL)] if exit is not None else []
    p = _figure(160, x_range, y_range=_y_range([b["pred"], [level for level, _, _ in levels]], False))
    p.yaxis.axis_label = "pred return %"
    legend = []
    if band:
        legend.append(("interval", [p.varea("t", "pred_lo", "pred_hi", source=src, fill_color=_PRED, fill_alpha=0.15)]))
    if "real" in b:
        # Off at first: realised returns are several times larger and would drown the forecast; a legend click shows them.
        real = p.line("t", "real", source=src, line_color="#b0bec5", line_width=1, visible=False)
        legend.append(("realised next return", [real]))
    pred = p.line("t", "pred", source=src, line_color=_PRED, line_width=1.3)
    legend.insert(0, ("pred return (next bar, made at this close)", [pred]))
    p.add_layout(Span(location=0, dimension="width", line_color="#90a4ae", line_width=1))
    for level, text, colour in levels:
        p.add_layout(Span(location=level, dimension="width", line_color=colour, line_dash="dashed", line_width=1.2))
        p.add_layout(Label(x=6, x_units="screen", y=level, text=text, text_font_size="10px", text_color=colour,
                           y_offset=2))
    tips = [("date", "@t{%a %F}"), ("pred next return", "@pred{+0.000}%")]
    if band:
        tips.append(("interval", "@pred_lo{+0.000}% .. @pred_hi{+0.000}%"))
    if "real" in b:
        tips.append(("realised next return", "@real{+0.000}%"))
    _hover(p, [pred], tips, mode="vline")
    _legend(p, legend)
    lo, hi = ["pred"], ["pred"]
    if band:
        lo, hi = ["pred", "pred_lo"], ["pred", "pred_hi"]
    return p, {"range": p.y_range, "lo": lo, "hi": hi, "fixed": [0.0, *(level for level, _, _ in levels)], "log": False,
                "pad": 0.15}


def _fold_panel(tk: _Ticker, x_range):
    """Retrain dates as ticks in their own strip: hundreds of them stay readable and never cover a price. Hovering
    anywhere in the strip shows the fold whose model made the forecasts at that date."""
    from bokeh.models import ColumnDataSource, HoverTool, Label, Range1d

    p = _figure(52, x_range, y_range=Range1d(0, 1))
    p.yaxis.visible = False
    p.ygrid.visible = False
    p.xaxis.visible = True
    folds = tk.folds
    t = _ms(folds["date"])
    data = {"t": t, "until": np.append(t[1:], tk.bars["t"][-1]), "y0": np.zeros(len(t)), "y1": np.ones(len(t))}
    tips = [("retrained", "@t{%F}"), ("in use until", "@until{%F}")]
    for col, label in (("index", "fold"), ("bar", "bar"), ("n_train", "training rows"), ("epochs_run", "epochs"),
                       ("warm_start", "warm start"), ("val_loss", "val loss")):
        if col in folds.columns:
            data[col] = folds[col].astype(str).to_numpy() if col == "warm_start" else folds[col].to_numpy()
            tips.append((label, f"@{col}" + ("{0.0000}" if col == "val_loss" else "")))
    src = ColumnDataSource(data)
    p.segment("t", "y0", "t", "y1", source=src, line_color="#8e24aa", line_alpha=0.55, line_width=1)
    spans = p.quad(left="t", right="until", bottom="y0", top="y1", source=src, fill_alpha=0, line_alpha=0,
                   hover_fill_color="#8e24aa", hover_fill_alpha=0.15, hover_line_alpha=0)
    p.add_tools(HoverTool(renderers=[spans], tooltips=tips, formatters={"@t": "datetime", "@until": "datetime"}))
    p.add_layout(Label(x=6, x_units="screen", y=0.5, y_units="data", text=f"retrains ({len(folds)})", text_font_size="10px",
                       text_color="#546e7a", text_baseline="middle", background_fill_color="white", background_fill_alpha=0.85))
    return p


def _navigator(tk: _Ticker, src, x_range):
    """The whole history, small, with the window in view: drag it to move, drag its edges to resize."""
    from bokeh.models import Range1d, RangeTool
    from bokeh.plotting import figure

    t = tk.bars["t"]
    p = figure(height=80, sizing_mode="stretch_width", x_axis_type="datetime", y_axis_type="log" if tk.log else "linear",
               x_range=Range1d(t[0], t[-1]), y_range=_y_range([tk.bars["close"]], tk.log), tools="", toolbar_location=None,
               min_border_left=70, min_border_right=10)
    p.toolbar.logo = None
    p.line("t", "close", source=src, line_color=_CLOSE, line_width=1)
    p.yaxis.visible = False
    p.grid.visible = False
    p.xaxis.major_label_text_font_size = "10px"
    tool = RangeTool(x_range=x_range)
    tool.overlay.fill_color = _BUY
    tool.overlay.fill_alpha = 0.12
    p.add_tools(tool)
    return p


def _ticker_tab(tk: _Ticker, years: float | None, entry: float | None, exit: float | None, band: bool):
    from bokeh.models import ColumnDataSource, CrosshairTool, Span, TabPanel

    src = ColumnDataSource(tk.bars)
    t = tk.bars["t"]
    x_range = _x_range(t, years)
    width_ms = float(np.median(np.diff(t))) if len(t) > 1 else _DAY_MS
    price, candles, line, markers, scale = _price_panel(tk, src, x_range, width_ms, band)
    panels, ranges = [price], [scale]
    if "volume" in tk.bars:
        volume, scale = _volume_panel(tk, src, x_range, width_ms)
        panels.append(volume)
        ranges.append(scale)
    if "pred" in tk.bars:
        fc, scale = _forecast_panel(tk, src, x_range, entry, exit, band)
        panels.append(fc)
        ranges.append(scale)
    if tk.folds.empty:
        panels[-1].xaxis.visible = True
    else:
        panels.append(_fold_panel(tk, x_range))
    cross = Span(dimension="height", line_color="#546e7a", line_dash="dotted", line_width=1)
    for p in panels:
        p.add_tools(CrosshairTool(overlay=cross))
    grid = _grid([*panels, _navigator(tk, src, x_range)])
    # Several thousand bars of candles would be unreadable and slow: start on the close line, the callback decides.
    for r in candles:
        r.visible = False
    return TabPanel(child=grid, title=tk.name), _autoscale(x_range, src, ranges, candles, line, markers)


def _portfolio_tab(equity: pd.DataFrame, benchmark: str):
    from bokeh.models import ColumnDataSource, CrosshairTool, NumeralTickFormatter, Span, TabPanel

    t = _ms(equity.index)
    x_range = _x_range(t, None)
    data = {"t": t}
    lines = [c for c in ("strategy", "buy_hold") if c in equity.columns]
    for c in lines:
        data[c] = equity[c].to_numpy(float)
        data[f"dd_{c}"] = (equity[c] / equity[c].cummax() - 1).to_numpy(float) * 100
    src = ColumnDataSource(data)
    values = [data[c] for c in lines]
    finite = np.concatenate(values)
    finite = finite[np.isfinite(finite)]
    log = finite.size > 0 and finite.min() > 0 and finite.max() / finite.min() > _LOG_SPAN
    eq = _figure(420, x_range, log, y_range=_y_range(values, log))
    eq.yaxis.axis_label = "portfolio value (log scale)" if log else "portfolio value"
    eq.yaxis.formatter = NumeralTickFormatter(format="0,0")
    dd = _figure(170, x_range, y_range=_y_range([data[f"dd_{c}"] for c in lines] + [[0]], False))
    dd.yaxis.axis_label = "drawdown %"
    dd.xaxis.visible = True
    names = {"strategy": "strategy", "buy_hold": benchmark}  # Bokeh shows "&" escaped in tooltips: callers say "and"
    styles = {"strategy": (_STRATEGY, 1.8), "buy_hold": (_BENCHMARK, 1.3)}
    eq_items, dd_items, tips = [], [], [("date", "@t{%a %F}")]
    for c in lines:
        colour, width = styles[c]
        eq_items.append((names[c], [eq.line("t", c, source=src, line_color=colour, line_width=width)]))
        if c == "strategy":
            r = dd.varea("t", f"dd_{c}", 0, source=src, fill_color=_DOWN, fill_alpha=0.35)
        else:
            r = dd.line("t", f"dd_{c}", source=src, line_color=colour, line_width=width)
        dd_items.append((f"{names[c]} drawdown", [r]))
        tips += [(names[c], f"@{c}{{0,0}}"), (f"{names[c]} drawdown", f"@dd_{c}{{0.0}}%")]
    _hover(eq, [eq_items[0][1][0]], tips, mode="vline")
    _legend(eq, eq_items)
    _legend(dd, dd_items)
    cross = Span(dimension="height", line_color="#546e7a", line_dash="dotted", line_width=1)
    for p in (eq, dd):
        p.add_tools(CrosshairTool(overlay=cross))
    ranges = [{"range": eq.y_range, "lo": lines, "hi": lines, "fixed": [], "log": bool(log), "pad": 0.05},
              {"range": dd.y_range, "lo": [f"dd_{c}" for c in lines], "hi": [], "fixed": [0.0], "log": False, "pad": 0.05}]
    return TabPanel(child=_grid([eq, dd]), title="Portfolio"), _autoscale(x_range, src, ranges)


# --------------------------------------------------------------------------- page


def _header(title: str, tickers: list[str], period: tuple, trades: pd.DataFrame, open_pos: pd.DataFrame,
            n_folds: int, equity: pd.DataFrame, rule: str, benchmark: str, links: dict[str, str] | None) -> str:
    e = html.escape
    parts = [f"<h1>{e(title)}</h1>",
             f"<p><b>{e(', '.join(tickers))}</b> &middot; {period[0]:%Y-%m-%d} to {period[1]:%Y-%m-%d} &middot; "
             f"{len(trades)} round trip(s), {len(open_pos)} still open"
             + (f" &middot; {n_folds} retrain(s)" if n_folds else "")
             + (f" &middot; {e(rule)}" if rule else "") + "</p>"]
    if not equity.empty:
        stats = []
        for col, name in (("strategy", "strategy"), ("buy_hold", e(benchmark))):
            if col in equity.columns and equity[col].notna().any():
                s = equity[col].dropna()
                total, dd = s.iloc[-1] / s.iloc[0] - 1, (1 - s / s.cummax()).max()
                stats.append(f"{name} <span class='{'pb-good' if total >= 0 else 'pb-bad'}'>{total:+.1%}</span> "
                             f"(max drawdown {dd:.1%})")
        parts.append(f"<p>{' &middot; '.join(stats)}</p>")
    if links:
        parts.append("<p>" + "".join(f"<a href=\"{e(href)}\">{e(label)}</a>" for label, href in links.items()) + "</p>")
    parts.append("<p class='pb-hint'>Scroll to zoom, drag to pan, drag the window in the small chart under each ticker; "
                 f"candles appear when fewer than {_CANDLE_MAX_BARS} bars are in view; click a legend entry to hide it; "
                 "hover for details.</p>")
    return "<header class='pb-head'>" + "".join(parts) + "</header>"


def _check_links(links) -> dict[str, str] | None:
    if links is None:
        return None
    if not isinstance(links, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in links.items()):
        raise ConfigError(f"links must be a dict {{label: href}} of strings, e.g. {{'quantstats report': 'report.html'}}; "
                          f"got {links!r}")
    return links


def write_trades_html(out_path: str | os.PathLike, prices: dict[str, pd.DataFrame], trades: pd.DataFrame | None,
                      forecasts: pd.DataFrame | None, folds: pd.DataFrame | None, equity: pd.DataFrame | None, *,
                      entry: float | None = 0.005, exit: float | None = 0.005, title: str | None = None,
                      links: dict[str, str] | None = None, default_years: float | None = 3.0,
                      open_positions: pd.DataFrame | None = None, rule: str | None = None,
                      benchmark: str = "buy and hold") -> Path:
    """Write an interactive, self-contained HTML chart of a backtest to ``out_path``; returns the path.

    A "Portfolio" tab (equity vs buy-and-hold, drawdowns) and one tab per ticker of ``prices`` (candles or close line,
    volume, buy/sell markers with the forecast that triggered each fill, the forecast price, the pred_return panel
    with the ``+entry``/``-exit`` thresholds (None: no line), retrain dates, a navigator), opening on the last ``default_years``
    years (None: everything). ``trades``/``forecasts``/``folds``/``equity`` are BacktestResult's frames (or the CSV
    files it saves); None or empty frames just leave their part out. ``open_positions`` (optional: ticker,
    direction, entry_date, entry_price, size) marks positions still open at the end. ``links``: {label: href} shown
    in the header. ``rule``: the trading rule in words for the header (default: the threshold rule of ``entry``/``exit``);
    ``benchmark``: the name of ``equity``'s ``buy_hold`` column. ``page.html#MSFT`` opens on MSFT's tab.

    Raises:
        ConfigError: Bokeh missing, a bad parameter, or ``out_path`` a directory.
        DataError: a frame without its required columns, unparseable dates, or tickers not in ``prices``.
    """
    if not html_available():
        raise ConfigError(HTML_UNAVAILABLE)
    from bokeh.document import Document
    from bokeh.embed import file_html
    from bokeh.models import CustomJS, Tabs
    from bokeh.resources import INLINE

    out = _out_path(out_path)
    entry = None if entry is None else check_float("entry", entry, 0.0, 1.0)
    exit = None if exit is None else check_float("exit", exit, 0.0, 1.0)
    for name, text in (("rule", rule), ("benchmark", benchmark)):
        if text is not None and not isinstance(text, str):
            raise ConfigError(f"{name} must be a string, got {type(text).__name__}")
    if rule is None and entry is not None and exit is not None:
        rule = f"long when pred return > {entry:+.2%}, flat when < {-exit:+.2%}"
    if default_years is not None:
        default_years = check_float("default_years", default_years, 0.0, min_inclusive=False)
    if title is not None and not isinstance(title, str):
        raise ConfigError(f"title must be a string or None, got {type(title).__name__}")
    links = _check_links(links)
    frames = _check_prices(prices)
    trades = _frame("trades", trades, TRADE_COLUMNS)
    open_pos = _frame("open_positions", open_positions, OPEN_COLUMNS)
    forecasts = _frame("forecasts", forecasts, FORECAST_COLUMNS)
    folds = _frame("folds", folds, FOLD_COLUMNS)
    band = {"pred_lo", "pred_hi"} <= set(forecasts.columns)
    if not band and ({"pred_lo", "pred_hi"} & set(forecasts.columns)):
        raise DataError("forecasts has only one of pred_lo/pred_hi; pass both (the interval's bounds) or neither")
    equity = _equity_frame(equity)
    for name, frame, cols in (("trades", trades, ("entry_date", "exit_date")), ("open_positions", open_pos, ("entry_date",)),
                              ("forecasts", forecasts, ("date",)), ("folds", folds, ("date",))):
        _known_tickers(frame, name, frames)
        for col in cols:
            frame[col] = _dates(frame[col], f"{name}.{col}") if len(frame) else pd.Series(dtype="datetime64[ns]")

    panels, callbacks = [], []
    for name, px in frames.items():
        tk = _ticker_data(name, px, _rows(trades, name, "entry_date"), _rows(open_pos, name, "entry_date"),
                          _rows(forecasts, name, "date"), _rows(folds, name, "date"), band)
        panel, cb = _ticker_tab(tk, default_years, entry, exit, band)
        panels.append(panel)
        callbacks.append(cb)
    if not equity.dropna(how="all").empty:
        panel, cb = _portfolio_tab(equity.dropna(how="all"), benchmark)
        panels.insert(0, panel)
        callbacks.append(cb)
    tabs = Tabs(tabs=panels, sizing_mode="stretch_width")
    tabs.js_on_change("active", CustomJS(args={"tabs": tabs}, code=_TAB_TO_HASH_JS))
    doc = Document()
    doc.add_root(tabs)
    for cb in [*callbacks, CustomJS(args={"tabs": tabs}, code=_HASH_TO_TAB_JS)]:
        doc.js_on_event("document_ready", cb)
    title = title or "Walk-forward forecast trades"
    period = (min(px.index[0] for px in frames.values()), max(px.index[-1] for px in frames.values()))
    header = _header(title, list(frames), period, trades, open_pos, len(folds), equity, rule, benchmark, links)
    page = file_html(doc, resources=INLINE, title=title, template=_TEMPLATE, template_variables={"header": header})
    atomic_write_bytes(out, page.encode("utf-8"))
    return out
