"""Feishu Contract bulk export: windows past the 1000-row cap, files caught and merged."""
