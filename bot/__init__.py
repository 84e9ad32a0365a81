"""Feishu Bridge: the web app, settings, database, queue, Feishu client and CLI."""
