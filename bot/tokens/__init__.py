"""Tokens: the app's tenant token (cached in Redis for every process), users' OAuth grants
(login, refresh exactly once across workers, status, alerts) and the secret box that seals
them at rest."""
