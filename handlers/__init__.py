"""Event handlers — what each Feishu event does — run by workers (never in the webhook request).

Each handler takes the process's Services and the recorded event (the schema 2.0 document,
verification token removed) and returns a short outcome for the receipt. They are wired to
their event types by name in `bot/intake/routes.py`; they stay short and call into
`bot/<capability>`.
"""
