"""moto's S3 over HTTPS, for pgBackRest (which speaks only HTTPS to S3): moto's WSGI application under gunicorn
with a self-signed certificate for 127.0.0.1 (werkzeug's own TLS drops connections pgBackRest keeps alive)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import urllib3

APP = (
    "from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app\n"
    "app = DomainDispatcherApplication(create_backend_app)\n"
)


@dataclass
class TlsS3:
    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cert, key = self.root / "cert.pem", self.root / "key.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )
        (self.root / "motoapp.py").write_text(APP)
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.process = subprocess.Popen(
            [
                str(gunicorn),
                "-b",
                f"127.0.0.1:{self.port}",
                "--certfile",
                str(cert),
                "--keyfile",
                str(key),
                "-w",
                "1",
                "--threads",
                "16",
                "--keep-alive",
                "30",
                "--chdir",
                str(self.root),
                "--control-socket",
                str(self.root / "gunicorn.ctl"),
                "motoapp:app",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "moto.log", "wb"),
            cwd=self.root,
            env={**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.client().list_buckets()
                return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError(f"moto over TLS did not answer; see {self.root / 'moto.log'}")

    def client(self):  # type: ignore[no-untyped-def]
        urllib3.disable_warnings()
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            verify=False,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
