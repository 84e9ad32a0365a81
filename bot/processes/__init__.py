"""The bridge's processes: web (gunicorn), RQ workers, the cron scheduler, and `up`, which
supervises them all (with the embedded Redis and, for the demo, the sandbox)."""
