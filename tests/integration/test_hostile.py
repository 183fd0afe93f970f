"""Hostile input against real outpostd and outpost-fleet processes, sent without a credential:
JSON nested 10^5 deep at every entry point (a package manifest and a TUF root served by a
malicious mirror included), header floods, huge and lying bodies, concurrent large gRPC
messages, 200 slow connections, a connection flood and range abuse. For each attack the process
stays up, answers the precise 4xx/503, its RSS stays under a ceiling above its idle RSS, and a
well-behaved client measured alongside keeps being served (its p99 during the attack is printed
next to its p99 without one; no timing is asserted on these shared machines).

The agent runs on its defaults (64 MiB requests, 128 MiB in flight). Ceilings above idle RSS:
128 MB for every attack it refuses; for attacks made of maximum-size requests it accepts (60 MiB
JSON and gRPC bodies), 128 MiB of bodies in flight plus what decoding and ORT add while one runs,
256 MB. Set OUTPOST_HOSTILE_REPORT=FILE to get the table as JSON."""
import atexit
import http.client
import io
import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import unittest

import numpy as np

from agent import BIN_DIR, Agent, copy_fixtures, free_port, grpc_modules, rss_mb
from fleet import Device, FleetServer, make_token

CEILING_MB = 128
MAX_SIZE_CEILING_MB = 256
REPORT = []


def nested(depth):
    return "[" * depth + "]" * depth


class RssWatch:
    """The process's RSS every 10 ms while an attack runs."""

    def __init__(self, pid):
        self.pid = pid
        self.before = rss_mb(pid)
        self.peak = self.before
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except (OSError, RuntimeError):
                return
            time.sleep(0.01)

    def finish(self, settle=1.0):
        self.stop.set()
        self.thread.join()
        time.sleep(settle)  # freed memory goes back (large blocks are unmapped, arenas trimmed)
        self.after = rss_mb(self.pid)
        return self


class Bystander:
    """The well-behaved client (bystander.py), in a process of its own."""

    def __init__(self, port, method, path, body=None, headers=None, ca=None):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(os.path.dirname(__file__), "bystander.py"), str(port),
             method, path, body or "", ca or ""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        self.started = time.monotonic()

    def finish(self, at_least=1.0):
        # Long enough to say something even when the attack was quick.
        time.sleep(max(0.0, at_least - (time.monotonic() - self.started)))
        self.proc.stdin.close()
        result = json.loads(self.proc.stdout.read())
        self.proc.wait()
        self.latencies, self.failures = result["latencies"], result["failures"]
        return self

    def p99_ms(self):
        v = sorted(self.latencies)
        return 1000 * v[min(len(v) - 1, int(0.99 * len(v)))] if v else float("nan")


def report(name, statuses, watch, bystander, baseline_ms, ceiling):
    row = {"attack": name, "answers": statuses, "rss_idle_mb": round(watch.before, 1),
           "rss_peak_mb": round(watch.peak, 1), "rss_after_mb": round(watch.after, 1),
           "ceiling_above_idle_mb": ceiling, "client_p99_ms": round(bystander.p99_ms(), 1),
           "client_p99_quiet_ms": round(baseline_ms, 1), "client_requests": len(bystander.latencies)}
    REPORT.append(row)
    print(f"\n  {name}: answers {statuses}; RSS {watch.before:.0f} -> peak {watch.peak:.0f} -> "
          f"{watch.after:.0f} MB (ceiling +{ceiling}); client p99 {row['client_p99_ms']} ms "
          f"(quiet {row['client_p99_quiet_ms']} ms) over {row['client_requests']} requests",
          flush=True)


def print_report():
    if not REPORT:
        return
    print("\nattack | answers | RSS idle / peak / after (MB) | client p99 during / quiet (ms)")
    for r in REPORT:
        print(f"{r['attack']} | {r['answers']} | {r['rss_idle_mb']} / {r['rss_peak_mb']} / "
              f"{r['rss_after_mb']} | {r.get('client_p99_ms', '-')} / {r.get('client_p99_quiet_ms', '-')}")
    if os.environ.get("OUTPOST_HOSTILE_REPORT"):
        with open(os.environ["OUTPOST_HOSTILE_REPORT"], "w") as f:
            json.dump(REPORT, f, indent=1)


atexit.register(print_report)


def raw_request(port, data, read=True, timeout=30, shut=False):
    """Sends bytes as they are; returns what came back until the server closed (or timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        if not read:
            return b""
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def trickle(port, prefix, trickled):
    """Sends `prefix` whole, then `trickled` a byte a second until an answer comes (or 30 s after
    the last byte); returns the answer's status, 0 for none."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    got = b""
    try:
        s.sendall(prefix)
        for b in trickled:
            s.sendall(bytes([b]))
            s.settimeout(1.0)
            try:
                got = s.recv(4096)
                break
            except socket.timeout:
                continue
        if not got:
            s.settimeout(30)
            got = s.recv(4096)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    finally:
        s.close()
    return status_of(got)


def status_of(response):
    return int(response[9:12]) if response.startswith(b"HTTP/1.") else 0


def body_of(response):
    return response.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in response else b""


class HostileBase(unittest.TestCase):
    port = 0
    bystander_request = ("GET", "/", None, None)
    bystander_ca = None  # set: the bystander speaks HTTPS

    def process_pid(self):
        raise NotImplementedError

    def attack(self, name, run, ceiling=CEILING_MB, quiet_secs=1.5):
        """Measures a quiet baseline, then runs `run()` (which returns the statuses it saw) with
        the RSS watched and the bystander alongside; checks the process, the RSS and the
        bystander."""
        quiet = Bystander(self.port, *self.bystander_request, ca=self.bystander_ca)
        baseline = quiet.finish(at_least=quiet_secs).p99_ms()
        self.assertEqual(quiet.failures, [])
        watch = RssWatch(self.process_pid())
        client = Bystander(self.port, *self.bystander_request, ca=self.bystander_ca)
        try:
            statuses = run()
        finally:
            client.finish()
            watch.finish()
        report(name, statuses, watch, client, baseline, ceiling)
        self.assertIsNone(self.proc().poll(), f"the process died under: {name}")
        self.assertLess(watch.peak - watch.before, ceiling, f"RSS under: {name}")
        self.assertEqual(client.failures, [], f"the well-behaved client under: {name}")
        self.assertGreater(len(client.latencies), 5, "the well-behaved client was not served")
        return statuses

    def slow_connections_attack(self, request_of):
        """200 connections at once, the i-th sending request_of(i) = (prefix, trickled): every
        one must be answered 408 when its deadline passes."""
        def run():
            out = []
            threads = [threading.Thread(target=lambda i=i: out.append(trickle(self.port, *request_of(i))))
                       for i in range(200)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(sorted(set(out)), [408], out)
            return {"408": len(out)}

        self.attack("200 connections trickling a byte a second", run)


# --- the agent ----------------------------------------------------------------------------


class AgentBase(HostileBase):
    """An outpostd in cls.agent serving cls.repo (set up by the subclass)."""

    @classmethod
    def tearDownClass(cls):
        rc = cls.agent.close()
        shutil.rmtree(cls.repo, ignore_errors=True)
        assert rc == 0, f"outpostd exited with {rc}"

    def process_pid(self):
        return self.agent.proc.pid

    def proc(self):
        return self.agent.proc


class AgentUnderAttack(AgentBase):
    @classmethod
    def setUpClass(cls):
        cls.repo = copy_fixtures(["add_mul"])
        cls.agent = Agent(cls.repo)
        cls.port = cls.agent.http_port
        body = json.dumps({"inputs": [{"name": n, "datatype": "FP32", "shape": [1, 4],
                                       "data": [1, 2, 3, 4]} for n in ("a", "b")]})
        cls.bystander_request = ("POST", "/v2/models/add_mul/infer", body,
                                 {"Content-Type": "application/json"})


    def post(self, path, body, headers=None):
        return self.agent.request("POST", path, body, headers or {"Content-Type": "application/json"})

    def test_deep_nesting_at_every_json_entry_point(self):
        deep = nested(100000)

        def package_with_nested_manifest():
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
                data = ('{"name": "m", "version": "1.0.0", "provenance": ' + deep + "}").encode()
                info = tarfile.TarInfo("manifest.json")
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            return buf.getvalue()

        def run():
            seen = {}
            status, _, body = self.post("/v1/chat/completions", json.dumps(
                {"model": "x", "messages": [{"role": "user", "content": "hi"}]})[:-1] + ', "metadata": {"a": ' + deep + "}}")
            self.assertEqual(status, 400, body)
            self.assertIn("nested deeper than 32 levels", json.loads(body)["error"]["message"])
            seen["chat"] = status
            status, _, body = self.post("/v2/models/add_mul/infer",
                                        '{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": ' + deep + "}]}")
            self.assertEqual(status, 400, body)
            self.assertIn("nested too deeply", json.loads(body)["error"])
            seen["infer data"] = status
            status, _, body = self.post("/v2/models/add_mul/infer",
                                        '{"inputs": [], "parameters": {"x": ' + deep + "}}")
            self.assertEqual(status, 400, body)
            self.assertIn("nested deeper than 64 levels", json.loads(body)["error"])
            seen["infer parameters"] = status
            status, _, body = self.agent.request("PUT", "/v2/logging", '{"level": ' + nested(20000) + "}")
            self.assertEqual(status, 400, body)
            self.assertIn("nested deeper than 16 levels", json.loads(body)["error"])
            seen["logging"] = status
            status, _, body = self.post("/v2/repository/packages", package_with_nested_manifest(),
                                        {"Content-Type": "application/octet-stream"})
            self.assertEqual(status, 400, body)
            self.assertIn("package manifest: nested deeper than 64 levels", json.loads(body)["error"])
            seen["package manifest"] = status
            return seen

        self.attack("JSON nested 10^5 deep (chat, infer, logging, package manifest)", run)
        # The refused upload left nothing behind in the repository.
        self.assertEqual([n for n in os.listdir(self.repo) if n.startswith(".incoming")], [])

    def test_header_floods(self):
        def endless_headers():
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
            line = b"X-Flood: " + b"a" * 100 + b"\r\n"
            deadline = time.time() + 5
            answer = b""
            try:
                while time.time() < deadline:
                    s.sendall(line * 100)
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                answer = s.recv(4096)
            except OSError:
                pass
            s.close()
            return answer

        def run():
            results = [None] * 10
            threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, endless_headers()))
                       for i in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            statuses = sorted({status_of(r) for r in results})
            self.assertEqual(statuses, [431], results[0][:200])
            many = b"GET /v2/health/live HTTP/1.1\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(150)) + b"\r\n"
            self.assertEqual(status_of(raw_request(self.port, many)), 431)
            long_line = b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\n\r\n"
            self.assertIn(status_of(raw_request(self.port, long_line)), (414, 431))
            return {"10 endless header streams": 431, "150 headers": 431, "100 KB request line": "414/431"}

        self.attack("header floods", run)

    def test_huge_and_lying_bodies(self):
        # With a Host and the admin key: the size limits are what is under test, not the browser
        # guard or the credential check (which come first, from the head: 400 or 401).
        key = f"Host: 127.0.0.1\r\nAuthorization: Bearer {self.agent.admin_key}\r\n"

        def run():
            seen = {}
            for path, limit in (("/v2/models/add_mul/infer", 64 << 20), ("/v2/logging", 64 << 10),
                                ("/v1/chat/completions", 8 << 20), ("/v2/repository/index", 64 << 10)):
                method = "PUT" if path == "/v2/logging" else "POST"
                r = raw_request(self.port, f"{method} {path} HTTP/1.1\r\n{key}Content-Length: 2147483648\r\n\r\n".encode())
                self.assertEqual(status_of(r), 413, r[:300])
                self.assertIn(str(limit).encode(), body_of(r))
                seen[f"{path} Content-Length 2 GiB"] = 413
            # 60 MiB actually sent to a control endpoint: refused from the header, never read.
            r = raw_request(self.port, f"PUT /v2/logging HTTP/1.1\r\n{key}Content-Length: 62914560\r\n\r\n".encode() + b"{" * (1 << 20))
            self.assertEqual(status_of(r), 413)
            seen["60 MiB to /v2/logging"] = 413
            # A length that lies short: the rest is read as the next request, which is refused.
            r = raw_request(self.port, f"PUT /v2/logging HTTP/1.1\r\n{key}Content-Length: 2\r\n\r\n{{}}".encode() +
                                       b"GARBAGE / HTTP/1.1\r\nConnection: close\r\n\r\n")
            self.assertEqual(re.findall(rb"HTTP/1.1 (\d{3})", r), [b"400", b"404"], r)
            seen["Content-Length lying short"] = "400 then 404"
            # Chunks that claim more than the route takes.
            r = raw_request(self.port, f"PUT /v2/logging HTTP/1.1\r\n{key}Transfer-Encoding: chunked\r\n\r\nffffffff\r\n".encode())
            self.assertEqual(status_of(r), 413)
            seen["chunk of 4 GiB"] = 413
            return seen

        self.attack("huge and lying bodies (declared, sent, chunked)", run)

    def test_max_size_json_bodies_four_at_once(self):
        # 60 MiB of JSON numbers, four at once: the bodies that fit the bytes-in-flight budget
        # are read and decoded as they stream (no document tree), the others are refused with
        # 503 at their heads; at the default budget the 120 MiB tensor a body declares does not
        # fit beside them either, so a 503 for every one is the usual answer.
        rows = (60 << 20) // 2 // 4  # "1," per element
        data = "[" + ",".join(["1"] * (rows * 4)) + "]"
        body = ('{"inputs": [{"name": "a", "datatype": "FP32", "shape": [%d, 4], "data": %s}]}' % (rows, data)).encode()

        def run():
            statuses = []

            def one():
                status, _, b = self.agent.request("POST", "/v2/models/add_mul/infer", body,
                                                  {"Content-Type": "application/json"}, timeout=120)
                statuses.append((status, json.loads(b)["error"][:60] if status != 200 else ""))

            threads = [threading.Thread(target=one) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            # Input 'b' is missing: decoded, then refused; or refused for the budget, with 503.
            for status, why in statuses:
                self.assertIn(status, (400, 503), why)
                if status == 400:
                    self.assertIn("needs input 'b'", why)
            self.assertIn(503, [s for s, _ in statuses])
            return sorted(s for s, _ in statuses)

        self.attack("four 60 MiB JSON bodies at once", run, ceiling=MAX_SIZE_CEILING_MB)

    def test_concurrent_large_grpc_messages(self):
        import grpc
        pb2, pb2_grpc = grpc_modules()
        payload = b"\0" * (60 << 20)
        details = []  # what each refusal said, for the failure message

        def send(size, results):
            channel = grpc.insecure_channel(f"127.0.0.1:{self.agent.grpc_port}",
                                            options=[("grpc.max_send_message_length", 128 << 20)])
            stub = pb2_grpc.GRPCInferenceServiceStub(channel)
            req = pb2.ModelInferRequest(model_name="add_mul")
            req.inputs.add(name="a", datatype="FP32", shape=[size // 16, 4])
            req.raw_input_contents.append(payload if size == len(payload) else b"\0" * size)
            try:
                stub.ModelInfer(req, timeout=120)
                results.append("OK")
            except grpc.RpcError as e:
                results.append(e.code().name)
                details.append(f"{e.code().name}: {e.details()}")
            channel.close()

        def run():
            results = []
            threads = [threading.Thread(target=send, args=(60 << 20, results)) for _ in range(16)]
            threads += [threading.Thread(target=send, args=(80 << 20, results)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            # Over the message limit: refused from the frame's length. Under it: decoded and
            # refused for the missing input, or refused by the memory quota.
            self.assertEqual(len(results), 20)
            self.assertTrue(set(results) <= {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"}, details)
            self.assertGreaterEqual(results.count("RESOURCE_EXHAUSTED"), 4, results)
            return {k: results.count(k) for k in sorted(set(results))}

        self.attack("20 concurrent gRPC messages of 60 and 80 MiB", run, ceiling=MAX_SIZE_CEILING_MB)

    def test_two_hundred_slow_connections(self):
        # Each gets its whole-request deadline (10 s for a head; 10 s plus what 256 KiB/s needs
        # for a body), however slowly it trickles.
        self.slow_connections_attack(
            lambda i: (b"", b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n") if i % 4 else
            (b"POST /v2/models/add_mul/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n",
             b"{" * 100))

    def test_connection_flood_past_the_cap(self):
        def run():
            socks = []
            for _ in range(700):
                try:
                    socks.append(socket.create_connection(("127.0.0.1", self.port), timeout=5))
                except OSError:
                    break
            time.sleep(1)
            # Health answers however many idle connections are held.
            status, _, _ = self.agent.request("GET", "/v2/health/ready")
            self.assertEqual(status, 200)
            closed = 0
            for s in socks:
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        closed += 1
                except BlockingIOError:
                    pass
                except OSError:
                    closed += 1
                s.close()
            self.assertGreaterEqual(closed, 700 - 512, "idle connections past the cap were kept")
            return {"idle connections closed to make room": closed}

        self.attack("700 idle connections (cap 512)", run)


class TlsAgentUnderAttack(AgentBase):
    """The agent speaking HTTPS: handshakes run off the event loop, so a flood of them does not
    hold up a client whose connection is already established, and a handshake that never
    finishes is dropped when a request head would be (10 s)."""

    @classmethod
    def setUpClass(cls):
        from tls_certs import make_ca, make_cert
        cls.tmp = tempfile.mkdtemp(prefix="outpost-hostile-tls-")
        make_ca(cls.tmp, "ca")
        make_cert(cls.tmp, "server", "ca", "localhost", server=True)
        cfg = os.path.join(cls.tmp, "agent.json")
        with open(cfg, "w") as f:
            json.dump({"tls_cert_file": os.path.join(cls.tmp, "server.pem"),
                       "tls_key_file": os.path.join(cls.tmp, "server.key")}, f)
        cls.repo = copy_fixtures(["add_mul"])
        cls.bystander_ca = os.path.join(cls.tmp, "ca.pem")
        cls.agent = Agent(cls.repo, ["--config", cfg], grpc=False, tls_ca=cls.bystander_ca)
        cls.port = cls.agent.http_port
        cls.bystander_request = ("GET", "/v2/models/add_mul/ready", None, None)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def test_handshake_flood(self):
        import ssl
        ctx = ssl.create_default_context(cafile=self.bystander_ca)

        def run():
            done, errors = [], []
            stop = time.monotonic() + 5

            def flood():
                n = 0
                while time.monotonic() < stop:
                    try:
                        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as raw:
                            with ctx.wrap_socket(raw, server_hostname="localhost"):
                                n += 1  # a full handshake, then gone without a request
                    except OSError as e:
                        errors.append(repr(e))
                done.append(n)

            threads = [threading.Thread(target=flood) for _ in range(32)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            # Every handshake completes: none is refused or dropped for the flood's sake.
            self.assertEqual(errors, [])
            self.assertGreater(sum(done), 32)
            return {"full handshakes": sum(done)}

        self.attack("32 clients doing nothing but TLS handshakes for 5 s", run)

    def test_two_hundred_stalled_handshakes(self):
        hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"  # a ClientHello's start

        def stall(out):
            # A byte a second for 30 s: the handshake must be dropped at its 10 s deadline.
            s = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            try:
                s.sendall(hello[:5])
                s.settimeout(1.0)
                for i in range(30):
                    s.sendall(hello[5 + i % 6:6 + i % 6])
                    try:
                        if s.recv(4096) == b"":
                            out.append("dropped")
                            return
                    except socket.timeout:
                        continue
                out.append("still open after 30 s")
            except (BrokenPipeError, ConnectionResetError):
                out.append("dropped")
            finally:
                s.close()

        def run():
            out = []
            threads = [threading.Thread(target=stall, args=(out,)) for _ in range(200)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(sorted(set(out)), ["dropped"], out)
            return {"dropped": len(out)}

        self.attack("200 TLS handshakes trickling a byte a second", run)


class MaliciousMirror(unittest.TestCase):
    """A mirror that serves an unsigned root nested 250,000 deep: the update check fails with
    the limit named, the agent stays up, and it stays up across restarts (update checks on
    start are on by default: a crash here would be a crash loop)."""

    def test_nested_root_from_the_mirror(self):
        from update_repo import RepoServer, UpdateRepo
        tmp = tempfile.mkdtemp(prefix="outpost-mirror-")
        self.addCleanup(shutil.rmtree, tmp, True)
        repo = UpdateRepo(tmp)
        with open(os.path.join(repo.dir, "metadata", "2.root.json"), "w") as f:
            f.write('{"signed": ' + nested(250000) + ', "signatures": []}')
        server = RepoServer(repo.dir)
        self.addCleanup(server.close)
        models = tempfile.mkdtemp(prefix="outpost-mirror-models-", dir=tmp)
        args = ["--update-url", server.url, "--update-root", repo.root]
        for run in range(2):
            agent = Agent(models, args)
            try:
                watch = RssWatch(agent.proc.pid)
                status, _, body = agent.request("POST", "/v2/updates/check")
                watch.finish(settle=0)
                self.assertEqual(status, 200, body)
                st = json.loads(body)
                self.assertNotEqual(st["last_result"], "ok")
                self.assertIn("tuf: root: nested deeper than 64 levels", st["last_error"])
                self.assertIsNone(agent.proc.poll())
                self.assertLess(watch.peak - watch.before, CEILING_MB)
                self.assertEqual(agent.request("GET", "/v2/health/live")[0], 200)
                REPORT.append({"attack": f"TUF root nested 250,000 deep from a mirror (start {run + 1})",
                               "answers": st["last_result"], "rss_idle_mb": round(watch.before, 1),
                               "rss_peak_mb": round(watch.peak, 1), "rss_after_mb": round(rss_mb(agent.proc.pid), 1)})
            finally:
                self.assertEqual(agent.close(), 0)


class NothingPhonesHome(unittest.TestCase):
    """ONNX Runtime's own telemetry is off from the start: no event queue or device id appears
    in the home directory and the agent connects nowhere while it loads and serves a model."""

    def test_no_telemetry_directory_and_no_connection(self):
        strace = shutil.which("strace")
        self.assertIsNotNone(strace, "strace is installed by scripts/setup.sh")
        home = tempfile.mkdtemp(prefix="outpost-home-")
        self.addCleanup(shutil.rmtree, home, True)
        repo = copy_fixtures(["add_mul"])
        self.addCleanup(shutil.rmtree, repo, True)
        trace = os.path.join(home, "trace")
        auth_dir = tempfile.mkdtemp(prefix="outpost-auth-")  # outside $HOME, which must stay empty
        self.addCleanup(shutil.rmtree, auth_dir, True)
        port = free_port()
        proc = subprocess.Popen([strace, "-f", "-qq", "-e", "trace=connect", "-o", trace,
                                 os.path.join(BIN_DIR, "outpostd"), "--model-repository", repo,
                                 "--allow-unsigned-models", "--http-port", str(port), "--grpc-port", "0",
                                 "--auth-dir", auth_dir],
                                env={**os.environ, "HOME": home}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 60
            body = json.dumps({"inputs": [{"name": n, "datatype": "FP32", "shape": [1, 4],
                                           "data": [1, 2, 3, 4]} for n in ("a", "b")]})
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    conn.request("POST", "/v2/models/add_mul/infer", body)
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    pass
                self.assertLess(time.time(), deadline, "outpostd did not serve")
                time.sleep(0.1)
            time.sleep(2)  # ORT's telemetry would have written its queue by now
        finally:
            # strace's child is the agent: it gets the signal, and strace ends with it.
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                for child in f.read().split():
                    os.kill(int(child), signal.SIGTERM)
            proc.wait(timeout=60)
        found = [os.path.relpath(os.path.join(d, f), home) for d, _, files in os.walk(home)
                 for f in files if f != "trace"]
        self.assertEqual(found, [], "files appeared in $HOME")
        with open(trace) as f:
            connects = [line for line in f if "connect(" in line and ("AF_INET" in line or "AF_INET6" in line)]
        self.assertEqual(connects, [])


# --- the fleet server ----------------------------------------------------------------------


class FleetUnderAttack(HostileBase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="outpost-fleet-hostile-")
        cls.db = "sqlite:" + os.path.join(cls.tmp, "fleet.db")
        key = os.path.join(cls.tmp, "online")
        subprocess.run([os.path.join(BIN_DIR, "outpost"), "key", "generate", "online", "--dir", cls.tmp],
                       check=True, capture_output=True)
        cls.repo_dir = os.path.join(cls.tmp, "repository")
        cls.admin = make_token(cls.db)
        cls.server = FleetServer(cls.db, ["--repository-dir", cls.repo_dir, "--online-key", key + ".key"])
        cls.port = cls.server.port
        cls.bystander_request = ("GET", "/healthz", None, None)
        # A 1 MiB target file, as a publication would leave it.
        os.makedirs(os.path.join(cls.repo_dir, "targets"), exist_ok=True)
        cls.target = np.random.default_rng(1).integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
        with open(os.path.join(cls.repo_dir, "targets", "model.opkg"), "wb") as f:
            f.write(cls.target)

    @classmethod
    def tearDownClass(cls):
        cls.server.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def process_pid(self):
        return self.server.proc.pid

    def proc(self):
        return self.server.proc

    def test_nested_enrollment_and_report(self):
        def run():
            status, body, _ = self.server.request("POST", "/api/v1/enroll", (
                '{"token": "x", "public_key": "00", "signature": "00", "capabilities": ' + nested(20000) + "}").encode())
            self.assertEqual(status, 400, body)
            self.assertIn("nested deeper than 16 levels", body["error"])
            big = ('{"capabilities": ' + nested(100000) + "}").encode()
            status, body, _ = self.server.request("POST", "/api/v1/enroll", big)
            self.assertEqual(status, 413, body)  # 200 KB to an endpoint that takes 64 KiB
            device = Device(self.server)
            token = self.server.op(self.admin, "POST", "/api/v1/enrollment-tokens", {"uses": 1})[1]["token"]
            self.assertEqual(device.enroll(token)[0], 201)
            status, body = device.request("POST", "/api/v1/device/report",
                                          ('{"health": ' + nested(100000) + "}").encode())
            self.assertEqual(status, 400, body)
            self.assertIn("nested deeper than 16 levels", body["error"])
            return {"enroll": 400, "enroll 200 KB": 413, "report": 400}

        self.attack("JSON nested 10^5 deep (enrollment, device report)", run)

    def test_range_abuse_on_repository_targets(self):
        def run():
            ranges = "bytes=0-" + ",0-" * 2500
            r = raw_request(self.port, f"GET /repo/targets/model.opkg HTTP/1.1\r\nRange: {ranges}\r\nConnection: close\r\n\r\n".encode())
            self.assertEqual(status_of(r), 200)
            self.assertEqual(body_of(r), self.target)  # the file once, not 2,500 times
            r = raw_request(self.port, b"GET /repo/targets/model.opkg HTTP/1.1\r\nRange: bytes=100-199\r\nConnection: close\r\n\r\n")
            self.assertEqual(status_of(r), 206)
            self.assertEqual(body_of(r), self.target[100:200])
            r = raw_request(self.port, b"GET /repo/targets/model.opkg HTTP/1.1\r\nRange: bytes=2000000-\r\nConnection: close\r\n\r\n")
            self.assertEqual(status_of(r), 416)
            r = raw_request(self.port, b"GET /repo/targets/..%2Ffleet.db HTTP/1.1\r\nConnection: close\r\n\r\n")
            self.assertEqual(status_of(r), 404)
            # 50 of those multi-range requests at once.
            outs = []
            threads = [threading.Thread(target=lambda: outs.append(len(raw_request(self.port, (
                f"GET /repo/targets/model.opkg HTTP/1.1\r\nRange: {ranges}\r\nConnection: close\r\n\r\n").encode()))))
                for _ in range(50)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertTrue(all(n < (1 << 20) + 1024 for n in outs))
            return {"2,500 ranges": 200, "one range": 206, "past the end": 416, "path escape": 404}

        self.attack("2,500 overlapping ranges on a 1 MiB target, 50 at once", run)

    def test_two_hundred_slow_connections(self):
        self.slow_connections_attack(lambda i: (b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))

    def test_huge_bodies_and_headers(self):
        def run():
            r = raw_request(self.port, b"POST /api/v1/enroll HTTP/1.1\r\nContent-Length: 2147483648\r\n\r\n")
            self.assertEqual(status_of(r), 413)
            flood = b"GET /healthz HTTP/1.1\r\n" + b"X-A: " + b"a" * 100000 + b"\r\n\r\n"
            self.assertEqual(status_of(raw_request(self.port, flood)), 431)
            return {"2 GiB enrollment": 413, "100 KB header": 431}

        self.attack("huge bodies and headers", run)


if __name__ == "__main__":
    unittest.main()
