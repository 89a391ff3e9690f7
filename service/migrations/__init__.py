"""Alembic migrations of the feedback / issued-card / JWT-id schema (``hcc-cds db upgrade``; service/db.py)."""
