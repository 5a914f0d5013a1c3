"""Serving a trained embedding: ``cdml serve``'s HTTP search service and web page."""

from cdml.serving.server import serve
from cdml.serving.service import Limits, RequestError, SearchService

__all__ = ["Limits", "RequestError", "SearchService", "serve"]
