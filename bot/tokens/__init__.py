"""Tokens: the app's tenant token (cached in Redis for every process), OAuth grants — Feishu
users' and external providers' — in one store (login, refresh exactly once across workers,
status, alerts) and the secret box that seals them at rest."""
