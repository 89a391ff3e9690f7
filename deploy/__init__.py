"""The production stack: nginx in front of gunicorn, PostgreSQL as the store (compose.yaml; stack.py)."""
