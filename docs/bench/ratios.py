#!/usr/bin/env python3
"""Draws docs/bench-ratios.svg: each issue-16 target as a share of its goal, before and after.

Reads the load tool's JSON reports in docs/bench/ (before/ holds the same-session runs with the
orders levers off); the read's "before" is the first ceiling run (browse-events-ceiling-c64.json).
Run from the repository root: python3 docs/bench/ratios.py
"""
import json
from pathlib import Path

B = Path("docs/bench")


def load(name):
    return json.loads((B / name).read_text())


def order_ratio(r):
    return r["ratios"][0]["ratio"]


def c1_factor(r):
    row = next(x for x in r["rows"] if x["op"] == "createOrder")
    return row["p50_ms"] / r["pgbench"][0]["p50_ms"]


def hot_ratio(r):
    best = max(p["tps"] for p in r["pgbench"])
    return r["rows"][0]["ok_per_s"] / best


def read_ratio(r):
    gw = next(x for x in r["rows"] if x["region"] == "*")["ok_per_s"]
    ceil = next(x for x in r["read_ceiling"] if x["region"] == "*")["ok_per_s"]
    return gw / ceil


# (label, before, after, goal, higher_is_better)
rows = [
    ("orders c=16 / pgbench", order_ratio(load("before/orders-c16.json")), order_ratio(load("orders-c16.json")), 0.40, True),
    ("orders c=16, no pipeline / pgbench", None, order_ratio(load("orders-c16-no-pipeline.json")), 0.40, True),
    ("hot c=64 / best 1-row pgbench", hot_ratio(load("before/orders-hot-c64.json")), hot_ratio(load("orders-hot-c64.json")), 0.50, True),
    ("c=1 p50 / pgbench p50", c1_factor(load("before/orders-c1.json")), c1_factor(load("orders-c1.json")), 2.5, False),
    ("cached events / read ceiling", read_ratio(load("browse-events-ceiling-c64.json")), read_ratio(load("browse-events-c64.json")), 0.50, True),
]

W, ROW, LEFT, BAR = 760, 54, 250, 440
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{ROW * len(rows) + 70}" font-family="sans-serif" font-size="12">',
       '<rect width="100%" height="100%" fill="white"/>',
       '<text x="10" y="20" font-size="14" font-weight="bold">Issue 16 targets: share of the goal reached (goal = the dashed line)</text>',
       '<text x="10" y="38" fill="#555">grey: before (levers off, same session; read: first ceiling run) · blue: after · for c=1, goal ÷ measured (lower is better)</text>']
scale = BAR / 1.6  # bars up to 160 % of the goal
gx = LEFT + scale
out.append(f'<line x1="{gx}" y1="48" x2="{gx}" y2="{ROW * len(rows) + 56}" stroke="#c00" stroke-dasharray="4 3"/>')
for i, (label, before, after, goal, higher) in enumerate(rows):
    y = 56 + i * ROW
    out.append(f'<text x="10" y="{y + 24}">{label}</text>')
    for j, (v, colour) in enumerate(((before, "#aaa"), (after, "#2a6fdb"))):
        if v is None:
            continue
        share = v / goal if higher else goal / v
        w = min(share, 1.6) * scale
        out.append(f'<rect x="{LEFT}" y="{y + 6 + j * 20}" width="{w:.1f}" height="16" fill="{colour}"/>')
        shown = f"{v * 100:.1f} %" if higher else f"{v:.2f}×"
        out.append(f'<text x="{LEFT + w + 6:.1f}" y="{y + 19 + j * 20}">{shown}</text>')
out.append("</svg>")
Path("docs/bench-ratios.svg").write_text("\n".join(out) + "\n")
for r in rows:
    print(r)
