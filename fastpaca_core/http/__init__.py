"""The canonical HTTP API (aiohttp): contexts, messages, LLM context, stream, ops.

``create_app(settings)`` builds the application; ``fastpaca serve`` runs it.
"""

from .app import create_app
from .errors import HttpError
from .state import ENGINE, METRICS, SETTINGS, STREAMS, SUMMARIZER

__all__ = ["ENGINE", "METRICS", "SETTINGS", "STREAMS", "SUMMARIZER", "HttpError", "create_app"]
