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


# -- the finetune job's loss curve (``frontend/_loss_plot.svg``, a standalone SVG image) ------------
LOSS_W, LOSS_H = 720, 280
LOSS_LEFT, LOSS_RIGHT, LOSS_TOP, LOSS_BOTTOM = 64, 20, 20, 44
MAX_POINTS = 2000  # a long run is thinned for drawing (every step stays in the job and the API)


def _ticks(lo: float, hi: float) -> list[float]:
    step = _nice_step(hi - lo)
    first = math.ceil(lo / step) * step
    out, value = [], first
    while value <= hi + step * 1e-9:
        out.append(round(value, 10))
        value += step
    return out


def loss_plot(metrics: list[dict], total_steps: int = 0) -> dict:
    """Training loss per optimiser step in SVG coordinates. Steps whose loss was not finite are
    left out (the trainer reports them as null); with no finite loss yet, only the frame."""
    points = [(int(m["step"]), float(m["loss"])) for m in metrics or []
              if isinstance(m.get("loss"), (int, float)) and math.isfinite(m["loss"]) and m.get("step") is not None]
    if len(points) > MAX_POINTS:
        stride = math.ceil(len(points) / MAX_POINTS)
        points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    plot_w = LOSS_W - LOSS_LEFT - LOSS_RIGHT
    plot_h = LOSS_H - LOSS_TOP - LOSS_BOTTOM
    last_step = max([total_steps or 0, *(s for s, _ in points)] or [1])
    x_hi = max(last_step, 2)
    frame = {"width": LOSS_W, "height": LOSS_H, "left": LOSS_LEFT, "right": LOSS_W - LOSS_RIGHT, "top": LOSS_TOP,
             "bottom": LOSS_H - LOSS_BOTTOM, "x_label_y": LOSS_H - 6, "tick_label_y": LOSS_H - LOSS_BOTTOM + 16,
             "y_label_x": 14, "mid_y": LOSS_TOP + plot_h / 2, "empty": not points, "points": "", "dots": [],
             "x_ticks": [], "y_ticks": [], "first": None, "last": None, "count": len(points)}
    if not points:
        return frame
    losses = [v for _, v in points]
    lo, hi = min(losses), max(losses)
    pad = max((hi - lo) * 0.08, abs(hi) * 0.02, 1e-3)
    lo, hi = lo - pad, hi + pad

    def x(step: float) -> float:
        return round(LOSS_LEFT + (step - 1) / (x_hi - 1) * plot_w, 1)

    def y(value: float) -> float:
        return round(LOSS_TOP + (hi - value) / (hi - lo) * plot_h, 1)

    frame.update(
        points=" ".join(f"{x(s)},{y(v)}" for s, v in points),
        dots=[{"x": x(s), "y": y(v), "step": s, "loss": round(v, 4)} for s, v in points] if len(points) <= 60 else [],
        x_ticks=[{"x": x(t), "label": f"{t:g}"} for t in _ticks(1, x_hi) if t >= 1 and t == int(t)],
        y_ticks=[{"y": y(t), "label": f"{t:.4g}"} for t in _ticks(lo, hi)],
        first={"step": points[0][0], "loss": round(points[0][1], 4)},
        last={"step": points[-1][0], "loss": round(points[-1][1], 4)},
    )
    return frame
