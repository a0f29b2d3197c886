"""A real Open Inference Protocol server for the remote backend's tests: MLServer (Seldon's, from PyPI) on
127.0.0.1, serving ONNX files with onnxruntime (oip_runtime.py), as its own process group.

This module does not import MLServer: its protocol messages and tritonclient's share protobuf names, which
one process cannot hold twice.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

START_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """MLServer serving `models` (name -> ONNX file, served as version 1) from `folder`; start() / stop() may
    repeat, on the same ports."""

    def __init__(self, folder: Path, models: dict[str, Path], required_header: str = ""):
        from vision_factory.tools.workspace import source_checkout

        self.folder, self.grpc_port, self.http_port = folder, free_port(), free_port()
        self._env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent),
                                                                  str(source_checkout()),
                                                                  os.environ.get("PYTHONPATH", "")]),
                     "OIP_TEST_REQUIRED_HEADER": required_header}
        folder.mkdir(parents=True, exist_ok=True)
        # No worker processes (parallel_workers 0): the server is one process the test can stop for good.
        settings = {"host": "127.0.0.1", "http_port": self.http_port, "grpc_port": self.grpc_port,
                    "metrics_endpoint": None, "parallel_workers": 0, "debug": False,
                    "grpc_max_message_length": 64 * 2**20}  # gRPC's 4 MB default is smaller than an image
        (folder / "settings.json").write_text(json.dumps(settings))
        for name, onnx in models.items():
            (folder / name).mkdir(exist_ok=True)
            (folder / name / "model-settings.json").write_text(json.dumps({
                "name": name, "implementation": "oip_runtime.OnnxRuntimeModel",
                "parameters": {"uri": str(onnx), "version": "1"}}))
        self.log = folder / "server.log"
        self.process: subprocess.Popen | None = None

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        """Start the server and wait until it says it is ready."""
        from vision_factory.tools.workspace import start_process

        with open(self.log, "a") as out:
            command = [str(Path(sys.executable).with_name("mlserver")), "start", str(self.folder)]
            self.process = start_process(command, self._env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"MLServer did not become ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        from vision_factory.tools.workspace import stop

        if self.process is not None:
            stop(self.process)
            self.process = None


class TlsProxy:
    """TLS in front of a server's plain port, as a load balancer terminates it: a certificate for 127.0.0.1
    made with the openssl command (`certificate`: the one file a client must trust), bytes relayed both ways
    on a thread of its own. Offers h2 (gRPC) and http/1.1 by ALPN."""

    def __init__(self, target_port: int, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.certificate, key = folder / "server.pem", folder / "server.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(self.certificate)], check=True, capture_output=True)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certificate, key)
        context.set_alpn_protocols(["h2", "http/1.1"])
        self.port, self._target = free_port(), target_port
        self._writers: set[asyncio.StreamWriter] = set()  # of open connections, closed with the proxy
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._relay, "127.0.0.1", self.port, ssl=context))
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            client_writer.close()
            return

        self._writers |= {client_writer, server_writer}

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(1 << 16):
                    writer.write(data)
                    await writer.drain()
            except (OSError, ssl.SSLError):
                pass
            finally:
                writer.close()

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

    def close(self) -> None:
        """Stop listening, close every connection and the event loop."""
        async def shut() -> None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
