"""A throwaway HTTP server on 127.0.0.1 serving bytes from a dict, counting requests.

The data fetcher's tests download from it: no test reaches the internet.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tilesr.data.registry import Dataset, RemoteFile


@dataclass
class FileServer:
    base: str
    files: dict[str, bytes]
    hits: collections.Counter[str] = field(default_factory=collections.Counter)

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"


@contextlib.contextmanager
def serve(files: dict[str, bytes]) -> Iterator[FileServer]:
    """Serve ``files`` (path -> content; other paths 404) until the block ends."""
    state = FileServer("", files)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.lstrip("/")
            state.hits[path] += 1
            body = state.files.get(path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def remote(path: str, data: bytes, url: str) -> RemoteFile:
    """A registry entry for ``data`` served at ``url``, stored as ``path``."""
    return RemoteFile(path, len(data), sha256(data), url)


def dataset(name: str, *files: RemoteFile) -> dict[str, Dataset]:
    """A one-dataset registry."""
    return {name: Dataset(name, f"test dataset {name}", "CC0", "tests", tuple(files))}


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
