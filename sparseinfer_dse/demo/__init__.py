"""Built-in demo model."""
