"""Coze sync: per-table templates, DB triggers that fill a transactional outbox, and the
dispatcher that delivers each outbox row to a Coze workflow, in per-row order."""
