"""Structured logging (placeholder, replaced by the operations work)."""

from flask import Flask


def init_app(app: Flask) -> None:
    pass
