"""``cdml serve``: load a model and an index once, then answer searches over HTTP."""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import os
import socket
import sys
from pathlib import Path

from cdml.serving.service import Limits, SearchService

TOKEN_VARIABLE = "CDML_SERVE_TOKEN"


def serve(
    index: Path,
    checkpoint: Path | None = None,
    model: Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    threads: int | None = None,
    device: str | None = None,
    rerank: str | None = None,
    max_upload_mb: float = Limits.max_upload_mb,
    max_pixels: int = Limits.max_pixels,
    max_k: int = Limits.max_k,
    max_images: int = Limits.max_images,
    timeout: float = Limits.timeout,
    max_batch: int = 32,
    max_wait_ms: float = 5.0,
    reload_index: bool = False,
) -> None:
    """Serve searches of ``index`` with the model it was built with until stopped (Ctrl-C,
    or SIGTERM, which lets the requests in flight finish).

    Args:
        index: an index folder written by cdml index.
        checkpoint: the cdml checkpoint the index was built with.
        model: or that checkpoint exported by cdml export --format onnx (its .json sidecar
            beside it), run by onnxruntime.
        host: the address to listen on; 127.0.0.1 (this machine only) unless told
            otherwise, e.g. 0.0.0.0 for every interface.
        port: the port to listen on (0: any free one).
        token: a secret every request must carry (Authorization: Bearer TOKEN; the web
            page as /?token=TOKEN); default the environment variable CDML_SERVE_TOKEN.
        threads: CPU threads of the model and the index search (default: the library's).
        device: where the checkpoint's model runs; default cuda when available.
        rerank: re-rank the results: aqe, dba or kreciprocal, with parameters as
            'aqe:k=2,alpha=3' (default: the index's ranking).
        max_upload_mb: the largest request, in MB.
        max_pixels: the most pixels of an uploaded image (decompression bombs refused).
        max_k: the most neighbours one search returns.
        max_images: the most images of one request to /embed.
        timeout: seconds one request may take.
        max_batch: the most images of concurrent requests embedded together.
        max_wait_ms: milliseconds a request waits for others to share a batch.
        reload_index: load the index folder again when it is rewritten (e.g. by cdml
            index --extend), checked every 2 seconds.
    """
    missing = [name for name in ("fastapi", "uvicorn", "multipart", "swagger_ui_bundle")
               if importlib.util.find_spec(name) is None]  # fmt: skip
    if missing:
        raise ImportError(f"cdml serve needs {', '.join(missing)}: pip install 'cdml[serve]'")
    import uvicorn

    from cdml.serving.app import create_app
    from cdml.serving.embedders import open_embedder

    token = token or os.environ.get(TOKEN_VARIABLE) or None
    if threads is not None:
        _use_threads(threads)
    limits = Limits(max_upload_mb, max_pixels, max_k, max_images, timeout)
    listener = _listen(host, port)  # a taken port is refused before the model loads
    try:
        embedder = open_embedder(checkpoint, model, device, threads)
        service = SearchService(embedder, index, limits, rerank, max_batch, max_wait_ms / 1000)
    except BaseException:
        listener.close()
        raise
    app = create_app(service, token, reload_every=2.0 if reload_index else None)
    _log_requests()
    facts = service.facts()
    print(
        f"cdml serve: {_url(listener)} serves {facts['index_size']:,} items "
        f"({facts['embedding_size']}-d, {facts['metric']}) with {facts['model']}"
        f"{'; a token is required' if token else ''}; API at /docs; Ctrl-C stops",
        flush=True,
    )
    if token is None and not ipaddress.ip_address(listener.getsockname()[0]).is_loopback:
        print(f"cdml serve: warning: listening on {host} without a token: anyone who reaches "
              f"this machine can search (set --token or {TOKEN_VARIABLE})",
              file=sys.stderr, flush=True)  # fmt: skip
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=int(timeout) + 1
    )
    uvicorn.Server(config).run(sockets=[listener])


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (connections wait in its backlog until served)."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        raise ValueError(f"--host must be an IP address (e.g. 127.0.0.1), got {host!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, got {port}")
    # IPPROTO_TCP named: asyncio then turns Nagle's algorithm off on each connection, which
    # otherwise holds a response's body for the client's delayed ACK (40 ms a request).
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise OSError(
            f"--host {host} --port {port}: cannot listen there ({error.strerror})"
        ) from None
    listener.listen(2048)
    return listener


def _url(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _use_threads(threads: int) -> None:
    import faiss
    import torch

    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)


def _log_requests() -> None:
    """A line per request on stderr: time, method, path, status, milliseconds."""
    logger = logging.getLogger("cdml.serve")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
