"""Geometry of the leaderboard's rating plot, drawn as server-side SVG by
``frontend/_rating_plot.html`` (no script, no external library; the template escapes every name).

One row per model; each board (people, judge) is a point at its Bradley-Terry rating with a bar
over its 95 % bootstrap interval."""
from __future__ import annotations

import math

WIDTH = 760
LEFT = 230  # room for model names
RIGHT = 24
TOP = 44
ROW = 40
BOTTOM = 42
SERIES = (("human", "People", -7), ("judge", "Judge", 7))


def _nice_step(span: float) -> float:
    raw = span / 5
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def rating_plot(leaderboard: dict) -> dict | None:
    """Rows, points, bars and ticks in SVG coordinates; None when no board has a rating yet."""
    names = [m["name"] for m in leaderboard["models"]]
    rows = {key: {r["model"]: r for r in leaderboard[key]["models"]} for key, _label, _dy in SERIES}
    values = [v for key in rows for r in rows[key].values() for v in (r["ci_low"], r["ci_high"], r["rating"])
              if v is not None]
    if not values:
        return None
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.08, 25.0)
    lo, hi = lo - pad, hi + pad
    step = _nice_step(hi - lo)
    plot_w = WIDTH - LEFT - RIGHT

    def x(value: float) -> float:
        return round(LEFT + (value - lo) / (hi - lo) * plot_w, 1)

    # best first, by the people's rating, then the judge's
    def order(name):
        human, judge = rows["human"].get(name, {}), rows["judge"].get(name, {})
        return (-(human.get("rating") or -1e9), -(judge.get("rating") or -1e9), name)

    height = TOP + ROW * len(names) + BOTTOM
    out_rows = []
    for i, name in enumerate(sorted(names, key=order)):
        y = TOP + ROW * i + ROW / 2
        marks = []
        for key, label, dy in SERIES:
            r = rows[key].get(name)
            if r and r["rating"] is not None:
                cx, cy = x(r["rating"]), y + dy
                marks.append({"series": key, "label": label, "x": cx, "y": cy, "box_x": cx - 5, "box_y": cy - 5,
                              "end_top": cy - 4, "end_bottom": cy + 4, "x1": x(r["ci_low"]), "x2": x(r["ci_high"]),
                              "rating": r["rating"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]})
        out_rows.append({"name": name, "y": y, "text_y": y + 4, "marks": marks, "band": i % 2 == 1,
                         "band_y": y - ROW / 2})
    first = math.ceil(lo / step) * step
    ticks = []
    value = first
    while value <= hi:
        ticks.append({"x": x(value), "label": f"{value:g}"})
        value += step
    return {"width": WIDTH, "height": height, "left": LEFT, "right": WIDTH - RIGHT, "top": TOP - 10,
            "bottom": height - BOTTOM + 6, "axis_y": height - BOTTOM + 6, "tick_label_y": height - BOTTOM + 22,
            "axis_label_y": height - 6, "rows": out_rows, "ticks": ticks, "row_h": ROW,
            "center_x": x(1000.0) if lo <= 1000 <= hi else None,
            "name_x": LEFT - 10,
            "legend": [{"series": key, "label": label, "x": LEFT + 10 + 110 * n, "box_x": LEFT + 5 + 110 * n,
                        "text_x": LEFT + 20 + 110 * n} for n, (key, label, _) in enumerate(SERIES)]}
