"""Feedback endpoint (placeholder, replaced by the order-entry/feedback work)."""

from flask import Blueprint

bp = Blueprint("feedback", __name__)
