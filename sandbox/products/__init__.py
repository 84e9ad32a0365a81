"""One blueprint per emulated Feishu product."""
