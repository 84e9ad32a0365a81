"""HTTP blueprints of the bridge's web process."""
