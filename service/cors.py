"""CORS for browser clients (placeholder, replaced by the security work)."""

from flask import Flask


def init_app(app: Flask) -> None:
    pass
