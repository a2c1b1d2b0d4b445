#!/usr/bin/env python3
"""Waits until every task in an Easel database has ended, then reports end-to-end throughput
from the tasks' own timestamps: count / (last finished_at - first created_at).

    bench/generation-report.py data/easel.db [expected-count]
"""

import datetime
import sqlite3
import sys
import time


def parse(value):
    return datetime.datetime.fromisoformat(value.replace(" ", "T"))


database = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=5)
expected = int(sys.argv[2]) if len(sys.argv) > 2 else None
deadline = time.time() + 300
while True:
    total, open_tasks = database.execute(
        "SELECT COUNT(*), SUM(status IN ('queued', 'running')) FROM generation_task"
    ).fetchone()
    if (open_tasks or 0) == 0 and (expected is None or total >= expected) or time.time() > deadline:
        break
    time.sleep(0.1)
first, last, succeeded, failed = database.execute(
    "SELECT MIN(created_at), MAX(finished_at), SUM(status = 'succeeded'), SUM(status = 'failed') FROM generation_task"
).fetchone()
span = (parse(last) - parse(first)).total_seconds()
print(f"tasks: {total} ({succeeded} succeeded, {failed} failed, {open_tasks or 0} unfinished)")
print(f"end to end: {total / span:.0f} tasks/s ({total} tasks from the first submit to the last stored result in {span:.2f} s)")
