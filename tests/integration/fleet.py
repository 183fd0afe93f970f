"""Starts real outpost-fleet servers (SQLite or a real PostgreSQL) and simulated devices that
sign their requests with Ed25519, as the agent does."""
import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent import BIN_DIR, free_port

PG_BIN = os.environ.get("OUTPOST_PG_BIN", "/usr/lib/postgresql/15/bin")


def fleet_cli(db_url, *args):
    return subprocess.run([os.path.join(BIN_DIR, "outpost-fleet"), "--db", db_url, *args],
                          capture_output=True, text=True, timeout=60)


def make_token(db_url, name="admin", scope="admin"):
    out = fleet_cli(db_url, "token", "create", "--name", name, "--scope", scope, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["token"]


class Postgres:
    """A throwaway PostgreSQL cluster on a free loopback port (run as the postgres user when
    the tests run as root, since PostgreSQL refuses root)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="outpost-pg-")
        self.port = free_port()
        self.as_user = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        data = os.path.join(self.dir, "data")
        self._run(os.path.join(PG_BIN, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        self.log = open(os.path.join(self.dir, "postgres.log"), "w")
        self.proc = subprocess.Popen(
            self.as_user + [os.path.join(PG_BIN, "postgres"), "-D", data, "-p", str(self.port),
                            "-k", self.dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                            "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            ready = subprocess.run([os.path.join(PG_BIN, "pg_isready"), "-h", "127.0.0.1", "-p",
                                    str(self.port)], capture_output=True)
            if ready.returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("PostgreSQL did not start")
        self.databases = 0
        self.url = self.new_database()

    def new_database(self):
        """A fresh empty database; returns its URL."""
        self.databases += 1
        name = f"fleet{self.databases}"
        self._run(os.path.join(PG_BIN, "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "postgres", name)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{name}"
        return self.url

    def _run(self, *args):
        out = subprocess.run(self.as_user + list(args), capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {out.stderr}")

    def psql(self, sql):
        out = subprocess.run([os.path.join(PG_BIN, "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                              "-U", "postgres", "-d", self.url.rsplit("/", 1)[1], "-At", "-c", sql],
                             capture_output=True, text=True)
        return out.returncode, out.stdout + out.stderr

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresCluster:
    """A test-class mixin: one PostgreSQL cluster for the class (self.pg)."""

    @classmethod
    def setUpClass(cls):
        cls.pg = Postgres()

    @classmethod
    def tearDownClass(cls):
        cls.pg.close()


class FleetServer:
    def __init__(self, db_url, extra_args=(), port=None):
        self.db_url = db_url
        self.port = port or free_port()
        self.log_path = tempfile.mktemp(prefix="outpost-fleet-", suffix=".log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [os.path.join(BIN_DIR, "outpost-fleet"), "--db", db_url, "serve", "--port",
             str(self.port), "--rollout-tick-ms", "100", *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("outpost-fleet exited:\n" + self.logs())
            time.sleep(0.05)
        raise RuntimeError("outpost-fleet did not start:\n" + self.logs())

    def logs(self):
        with open(self.log_path) as f:
            return f.read()

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers or {})
        r = conn.getresponse()
        raw = r.read()
        conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return r.status, parsed, dict(r.getheaders())

    def op(self, token, method, path, body=None):
        status, parsed, _ = self.request(method, path, body, {"Authorization": "Bearer " + token})
        return status, parsed

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def close(self):
        if self.log.closed:
            return
        self.log.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(timeout=30)
            assert code == 0, f"outpost-fleet exited with {code}:\n{self.logs()}"


class Device:
    """A simulated device: its own Ed25519 key, signed requests, monotonic request times."""

    def __init__(self, server):
        self.server = server
        self.key = Ed25519PrivateKey.generate()
        self.public_hex = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
        self.id = None
        self.last_ms = 0
        self.etag = None

    def enroll(self, token, capabilities=None, agent_version="0.1.0"):
        message = f"outpost-fleet-enroll-v1\n{token}\n{self.public_hex}".encode()
        status, body, _ = self.server.request("POST", "/api/v1/enroll", {
            "token": token, "public_key": self.public_hex, "signature": self.key.sign(message).hex(),
            "capabilities": capabilities or {"arch": "x86_64"}, "agent_version": agent_version})
        if status == 201:
            self.id = body["device_id"]
        return status, body

    def signed_headers(self, method, path, data, device_id=None, time_ms=None, key=None):
        now = int(time.time() * 1000)
        self.last_ms = max(now, self.last_ms + 1) if time_ms is None else time_ms
        device_id = device_id or self.id
        message = "\n".join(["outpost-fleet-request-v1", method, path, device_id, str(self.last_ms),
                             hashlib.sha256(data).hexdigest()]).encode()
        return {"X-Outpost-Device": device_id, "X-Outpost-Time": str(self.last_ms),
                "X-Outpost-Signature": (key or self.key).sign(message).hex()}

    def request_full(self, method, path, body=None, extra=None, **sign):
        """A connection lost mid-request is retried, signed afresh: the server may have
        accepted the first attempt, and would refuse its signature a second time."""
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        for attempt in range(3):
            headers = self.signed_headers(method, path, data, **sign)
            headers.update(extra or {})
            try:
                return self.server.request(method, path, data if body is not None else None, headers)
            except (ConnectionError, http.client.HTTPException):
                if attempt == 2:
                    raise
                time.sleep(0.2)

    def request(self, method, path, body=None, extra=None, **sign):
        status, parsed, _ = self.request_full(method, path, body, extra, **sign)
        return status, parsed

    def desired(self):
        extra = {"If-None-Match": self.etag} if self.etag else {}
        status, body, headers = self.request_full("GET", "/api/v1/device/desired-state", extra=extra)
        if status == 200:
            self.etag = headers.get("ETag")
        return status, body

    def report(self, deployments=None, healthy=True, models=None, **health):
        return self.request("POST", "/api/v1/device/report", {
            "agent_version": "0.1.0", "models": models or {},
            "health": {"ready": healthy, **health}, "deployments": deployments or {}})


class Balancer:
    """Spreads requests over replicas like a load balancer: round robin, skipping one that
    refuses connections."""

    def __init__(self, replicas):
        self.replicas = replicas
        self.next = 0
        self.lock = threading.Lock()

    def request(self, method, path, body=None, headers=None):
        with self.lock:
            start = self.next
            self.next += 1
        last = None
        for i in range(len(self.replicas)):
            replica = self.replicas[(start + i) % len(self.replicas)]
            try:
                return replica.request(method, path, body, headers)
            except ConnectionRefusedError as e:  # never sent: the next replica may take it
                last = e
        raise last


def rollout_key(deployment, device_id):
    """A device's place in a rollout's order (fleet/rollout.cc, RolloutKey)."""
    return int(hashlib.sha256(f"{deployment}\n{device_id}".encode()).hexdigest()[:16], 16) >> 1


def quote(s):
    return urllib.parse.quote(s, safe="")
