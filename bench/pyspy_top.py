"""Summarise py-spy collapsed stacks (`--format raw`): where the samples went.

    python -m bench.pyspy_top FILE [--threads] [--top 40] [--filter SUBSTRING]

Prints inclusive and self shares per function (file:function), optionally per thread, so
bench/README.md can say what bounded a figure without a flame-graph viewer.
"""

from __future__ import annotations

import argparse
import collections
import re


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--filter", default="", help="only stacks containing this text")
    ap.add_argument("--idle", action="store_true", help="keep idle frames (select, wait)")
    a = ap.parse_args()
    incl: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in open(a.file, encoding="utf-8", errors="replace"):
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if not n.isdigit() or (a.filter and a.filter not in stack):
            continue
        frames = stack.split(";")
        if not a.idle and any(re.search(r"\b(select|poll|wait|_worker|get) \(", f)
                              and ("selectors" in f or "threading" in f or "queue" in f
                                   or "thread.py" in f) for f in frames[-2:]):
            continue
        c = int(n)
        total += c
        threads[frames[0]] += c
        seen = set()
        for f in frames[1:]:
            key = re.sub(r" \(/.*?/(site-packages|lib/python3\.\d+|main)/", " (", f)
            key = re.sub(r":\d+\)$", ")", key)
            if key not in seen:
                incl[key] += c
                seen.add(key)
        last = re.sub(r":\d+\)$", ")", re.sub(r" \(/.*?/(site-packages|lib/python3\.\d+|main)/",
                                               " (", frames[-1]))
        self_[last] += c
    print(f"{total} busy samples")
    for t, c in threads.most_common(8):
        print(f"  thread {t[:70]:<70} {100 * c / total:5.1f}%")
    print("-- inclusive --")
    for k, c in incl.most_common(a.top):
        print(f"{100 * c / total:5.1f}%  {k[:140]}")
    print("-- self --")
    for k, c in self_.most_common(a.top):
        print(f"{100 * c / total:5.1f}%  {k[:140]}")


if __name__ == "__main__":
    main()
