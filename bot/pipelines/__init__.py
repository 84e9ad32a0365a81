"""Pipelines (issue 17): pull rows from a source, upsert them into a Feishu bitable table by key,
read the table back and verify it.

Pure: `spec.py` (the definition), `cadence.py` (schedules and the days a run covers),
`values.py` (Python values ↔ bitable cells), `plan.py` (creates/updates/deletes), `verify.py`
(rows and sums per group), `summary.py` (result text and card). I/O: `sources.py` (a Python
callable or an SQL query, with `context.py`'s FetchContext), `target.py` (the table through the
gateway, one writer at a time), `writer.py` (write, re-read, repair), `store.py` (definitions),
`runs.py` (run rows: start, claim, resume, status), `runner.py` (one run end to end),
`schedule.py` (the queue and the cron), `alerts.py`.
"""
