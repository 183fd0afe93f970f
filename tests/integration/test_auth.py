"""Who may call the agent: every HTTP endpoint and gRPC method against every kind of
credential (none, a wrong key, a revoked key, a key of the wrong scope, the right key), on a
loopback listener (inference, chat and observe open; admin never) and on a listener beyond
loopback (nothing open), with keys made and revoked at run time through `outpost apikey`; the
official openai SDK and @grpc/grpc-js presenting keys; and the refusals that come before a body
is read."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

import numpy as np

from agent import BIN_DIR, Agent, copy_fixtures, grpc_modules
from chat_helpers import make_variant
from tls_certs import make_ca, make_cert

OUTPOST = os.path.join(BIN_DIR, "outpost")
HERE = os.path.dirname(os.path.abspath(__file__))
SCOPES = ("inference", "chat", "cloud", "admin", "observe")

INFER_BODY = json.dumps({"inputs": [{"name": n, "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
                                    for n in ("a", "b")]})
CHAT_BODY = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})

# (method, path, body, scopes the endpoint accepts, the status a caller it admits gets)
HTTP_ENDPOINTS = [
    ("GET", "/v2/health/live", None, {"observe", "inference"}, 200),
    ("GET", "/v2/health/ready", None, {"observe", "inference"}, 200),
    ("GET", "/v2/health", None, {"observe", "inference"}, 200),
    ("GET", "/v2", None, {"observe", "inference"}, 200),
    ("GET", "/v2/models/add_mul", None, {"inference"}, 200),
    ("GET", "/v2/models/add_mul/ready", None, {"inference"}, 200),
    ("GET", "/v2/models/add_mul/versions/1", None, {"inference"}, 200),
    ("POST", "/v2/models/add_mul/infer", INFER_BODY, {"inference"}, 200),
    ("POST", "/v2/models/add_mul/versions/1/infer", INFER_BODY, {"inference"}, 200),
    ("GET", "/v2/systemsharedmemory/status", None, {"inference"}, 200),
    ("POST", "/v2/systemsharedmemory/unregister", None, {"inference"}, 200),
    ("GET", "/v2/repository/index", None, {"observe"}, 200),
    ("POST", "/v2/repository/index", "{}", {"observe"}, 200),
    ("GET", "/v2/updates", None, {"observe"}, 200),
    ("GET", "/v2/logging", None, {"observe"}, 200),
    ("GET", "/metrics", None, {"observe"}, 200),
    ("GET", "/v1/models", None, {"chat"}, 200),
    ("POST", "/v1/chat/completions", CHAT_BODY, {"chat"}, 200),
    ("PUT", "/v2/logging", '{"level": "info"}', {"admin"}, 200),
    ("POST", "/v2/updates/check", None, {"admin"}, 409),       # admitted; updates are off
    ("POST", "/v2/repository/packages", "not a package", {"admin"}, 400),  # admitted; refused
    ("GET", "/v2/monitoring", None, {"admin"}, 200),
    ("GET", "/v2/auth/keys", None, {"admin"}, 200),
    ("POST", "/v2/auth/keys", '{"scopes": ["observe"], "name": "matrix"}', {"admin"}, 201),
    ("DELETE", "/v2/auth/keys/opk_000000000000", None, {"admin"}, 404),
]

GRPC_METHODS = [
    ("ServerLive", {"observe", "inference"}),
    ("ServerReady", {"observe", "inference"}),
    ("ServerMetadata", {"observe", "inference"}),
    ("ModelReady", {"inference"}),
    ("ModelMetadata", {"inference"}),
    ("ModelInfer", {"inference"}),
    ("SystemSharedMemoryStatus", {"inference"}),
]

LOOPBACK_OPEN = {"inference", "chat", "observe"}
GRPC_UNAUTHENTICATED, GRPC_PERMISSION_DENIED = 16, 7


def non_loopback_address():
    """An address of this machine other than loopback, if it has one (else None)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.254.254.254", 9))  # no packet is sent: this only picks a route
        address = s.getsockname()[0]
        return None if address.startswith("127.") else address
    except OSError:
        return None
    finally:
        s.close()


def apikey(agent, *args):
    url = f"https://localhost:{agent.http_port}" if agent.tls_ca else f"http://127.0.0.1:{agent.http_port}"
    env = {**agent.cli_env(), **({"OUTPOST_CA_FILE": agent.tls_ca} if agent.tls_ca else {})}
    return subprocess.run([OUTPOST, "apikey", *args, "--url", url], capture_output=True, text=True, timeout=60,
                          env=env)


class Credentials:
    """One key per scope, a revoked key with every scope, and a wrong one, made on `agent`
    through the CLI (as an operator would)."""

    def __init__(self, test, agent):
        self.by_scope = {}
        for scope in SCOPES:
            r = apikey(agent, "create", "--scope", scope, "--name", f"{scope} only")
            test.assertEqual(r.returncode, 0, r.stderr)
            self.by_scope[scope] = r.stdout.strip()
        r = apikey(agent, "create", *[a for s in SCOPES for a in ("--scope", s)], "--name", "to revoke")
        test.assertEqual(r.returncode, 0, r.stderr)
        self.revoked = r.stdout.strip()
        key_id = "_".join(self.revoked.split("_")[:2])
        r = apikey(agent, "revoke", key_id)
        test.assertEqual(r.returncode, 0, r.stderr)
        self.wrong = "opk_" + "0" * 12 + "_" + "0" * 64

    def cases(self, accepted):
        """(credential kind, key or None) for an endpoint accepting `accepted`."""
        right = self.by_scope[sorted(accepted)[0]]
        # The cloud scope alone opens no endpoint: the wrong scope for every one of them.
        return [("none", None), ("wrong", self.wrong), ("revoked", self.revoked),
                ("wrong scope", self.by_scope["cloud"]), ("right", right)]


def expected(kind, accepted, open_scopes, admitted):
    if kind == "right" or (kind == "none" and accepted & open_scopes):
        return admitted
    return 403 if kind == "wrong scope" else 401


class AuthMatrixTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.repos = []
        cls.agents = {}
        for name, args in (("loopback", []),
                           ("beyond loopback", ["--http-address", "0.0.0.0", "--grpc-address", "0.0.0.0",
                                                "--insecure-plaintext-beyond-loopback"])):
            repo = copy_fixtures(["add_mul"])
            make_variant(repo, "tiny", [])
            cls.repos.append(repo)
            cls.agents[name] = Agent(repo, args)

    @classmethod
    def tearDownClass(cls):
        for agent in cls.agents.values():
            agent.close()
        for repo in cls.repos:
            shutil.rmtree(repo, ignore_errors=True)

    def http_matrix(self, agent, open_scopes, host="127.0.0.1"):
        creds = Credentials(self, agent)
        for method, path, body, accepted, admitted in HTTP_ENDPOINTS:
            for kind, key in creds.cases(accepted):
                with self.subTest(host=host, endpoint=f"{method} {path}", credential=kind):
                    headers = {"Content-Type": "application/json"}
                    if key:
                        headers["Authorization"] = "Bearer " + key
                    import http.client
                    conn = http.client.HTTPConnection(host, agent.http_port, timeout=60)
                    try:
                        conn.request(method, path, body=body, headers=headers)
                        r = conn.getresponse()
                        status, raw = r.status, r.read()
                        challenge = r.getheader("WWW-Authenticate")
                    finally:
                        conn.close()
                    want = expected(kind, accepted, open_scopes, admitted)
                    self.assertEqual(status, want, raw[:300])
                    if status == 401:
                        self.assertEqual(challenge, 'Bearer realm="outpost"')
                    if status in (401, 403):
                        err = json.loads(raw)["error"]
                        message = err["message"] if isinstance(err, dict) else err  # OpenAI's shape on /v1
                        if path.startswith("/v1/"):
                            self.assertEqual(err["code"], "invalid_api_key" if status == 401 else "permission_denied")
                        if kind == "revoked":
                            self.assertIn("has been revoked", message)
                        if kind == "wrong scope":
                            self.assertIn("lacks", message)

    def grpc_matrix(self, agent, open_scopes, host="127.0.0.1"):
        import grpc as grpclib
        pb2, pb2_grpc = grpc_modules()
        creds = Credentials(self, agent)
        channel = grpclib.insecure_channel(f"{host}:{agent.grpc_port}")
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        a = np.array([[1, 2, 3, 4]], np.float32)
        infer = pb2.ModelInferRequest(model_name="add_mul")
        for n in ("a", "b"):
            infer.inputs.add(name=n, datatype="FP32", shape=[1, 4])
            infer.raw_input_contents.append(a.tobytes())
        requests = {"ServerLive": pb2.ServerLiveRequest(), "ServerReady": pb2.ServerReadyRequest(),
                    "ServerMetadata": pb2.ServerMetadataRequest(),
                    "ModelReady": pb2.ModelReadyRequest(name="add_mul"),
                    "ModelMetadata": pb2.ModelMetadataRequest(name="add_mul"), "ModelInfer": infer,
                    "SystemSharedMemoryStatus": pb2.SystemSharedMemoryStatusRequest()}
        try:
            for method, accepted in GRPC_METHODS:
                for kind, key in creds.cases(accepted):
                    with self.subTest(host=host, method=method, credential=kind):
                        # Bearer for some, x-api-key for the others: both are read.
                        metadata = [] if not key else [("authorization", "Bearer " + key)] \
                            if kind != "right" else [("x-api-key", key)]
                        want = expected(kind, accepted, open_scopes, 200)
                        try:
                            getattr(stub, method)(requests[method], metadata=metadata, timeout=30)
                            got = 200
                        except grpclib.RpcError as e:
                            got = {grpclib.StatusCode.UNAUTHENTICATED: 401,
                                   grpclib.StatusCode.PERMISSION_DENIED: 403}.get(e.code(), e.code())
                        self.assertEqual(got, want)
        finally:
            channel.close()

    def test_http_on_loopback(self):
        self.http_matrix(self.agents["loopback"], LOOPBACK_OPEN)

    def test_http_beyond_loopback(self):
        agent = self.agents["beyond loopback"]
        self.http_matrix(agent, set())
        if address := non_loopback_address():  # the same listener reached from the network side
            self.http_matrix(agent, set(), host=address)

    def test_grpc_on_loopback(self):
        self.grpc_matrix(self.agents["loopback"], LOOPBACK_OPEN)

    def test_grpc_beyond_loopback(self):
        agent = self.agents["beyond loopback"]
        self.grpc_matrix(agent, set())
        if address := non_loopback_address():
            self.grpc_matrix(agent, set(), host=address)

    def test_keys_are_stored_hashed_and_listed_without_secrets(self):
        agent = self.agents["loopback"]
        r = apikey(agent, "create", "--scope", "inference", "--scope", "chat", "--name", "hashed")
        self.assertEqual(r.returncode, 0, r.stderr)
        key = r.stdout.strip()
        secret = key.split("_")[2]
        with open(os.path.join(agent.auth_dir, "api_keys.json")) as f:
            self.assertNotIn(secret, f.read())
        self.assertEqual(os.stat(os.path.join(agent.auth_dir, "api_keys.json")).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(agent.key_file()).st_mode & 0o777, 0o600)
        r = apikey(agent, "list", "--json")
        listed = json.loads(r.stdout)
        self.assertNotIn(secret, r.stdout)
        mine = [k for k in listed if key.startswith(k["id"] + "_")]
        self.assertEqual(len(mine), 1)
        self.assertEqual(mine[0]["scopes"], ["inference", "chat"])
        self.assertNotIn(secret, agent.logs())
        # Revoked at once, no restart: the next request is refused.
        self.assertEqual(agent.request("GET", "/v2/models/add_mul", key=key)[0], 200)
        self.assertEqual(apikey(agent, "revoke", mine[0]["id"]).returncode, 0)
        self.assertEqual(agent.request("GET", "/v2/models/add_mul", key=key)[0], 401)
        # Without the console's key the CLI is refused admin work, and says why.
        r = subprocess.run([OUTPOST, "apikey", "list", "--url", f"http://127.0.0.1:{agent.http_port}"],
                           capture_output=True, text=True, env={**os.environ, "OUTPOST_API_KEY": key})
        self.assertEqual(r.returncode, 1)
        self.assertIn("401", r.stderr)

    def test_no_body_is_read_for_a_caller_without_the_scope(self):
        # 60 MiB declared to the package endpoint with no credential: refused from the head.
        agent = self.agents["loopback"]
        with socket.create_connection(("127.0.0.1", agent.http_port), timeout=10) as s:
            s.sendall(b"POST /v2/repository/packages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/octet-stream\r\nContent-Length: 62914560\r\n\r\n")
            head = s.recv(4096)
        self.assertTrue(head.startswith(b"HTTP/1.1 401 "), head)

    @unittest.skipUnless(os.environ.get("OUTPOST_NODE_MODULES"), "needs the openai npm package")
    def test_openai_sdk_with_keys(self):
        agent = self.agents["beyond loopback"]
        chat_key = apikey(agent, "create", "--scope", "chat").stdout.strip()
        node = lambda *args: subprocess.run(  # noqa: E731
            ["node", os.path.join(HERE, "openai_client.cjs"), f"http://127.0.0.1:{agent.http_port}/v1", "tiny", *args],
            env={**os.environ, "NODE_PATH": os.environ["OUTPOST_NODE_MODULES"]},
            capture_output=True, text=True, timeout=120)
        out = node(chat_key)
        self.assertEqual(out.returncode, 0, out.stderr)
        seen = json.loads(out.stdout)
        self.assertIn("tiny", seen["models"])
        self.assertTrue(seen["content"])
        # A placeholder key (what the SDK needs on loopback) is no key here.
        out = node()
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("AuthenticationError", out.stderr)
        self.assertIn("not an Outpost API key", out.stderr)

    @unittest.skipUnless(os.environ.get("OUTPOST_NODE_MODULES"), "needs @grpc/grpc-js")
    def test_grpc_js_with_keys(self):
        agent = self.agents["beyond loopback"]
        infer_key = apikey(agent, "create", "--scope", "inference").stdout.strip()
        observe_key = apikey(agent, "create", "--scope", "observe").stdout.strip()
        cases = [{"name": "live, none", "method": "ServerLive"},
                 {"name": "live, observe key", "method": "ServerLive", "metadata": {"x-api-key": observe_key}},
                 {"name": "infer, none", "method": "ModelInfer"},
                 {"name": "infer, observe key", "method": "ModelInfer",
                  "metadata": {"authorization": "Bearer " + observe_key}},
                 {"name": "infer, inference key", "method": "ModelInfer",
                  "metadata": {"authorization": "Bearer " + infer_key}}]
        out = subprocess.run(["node", os.path.join(HERE, "grpc_js_auth.cjs"), f"127.0.0.1:{agent.grpc_port}",
                              json.dumps(cases)],
                             env={**os.environ, "NODE_PATH": os.environ["OUTPOST_NODE_MODULES"]},
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout),
                         {"live, none": GRPC_UNAUTHENTICATED, "live, observe key": 0,
                          "infer, none": GRPC_UNAUTHENTICATED, "infer, observe key": GRPC_PERMISSION_DENIED,
                          "infer, inference key": 0})


# Requests over a Unix socket, run as whichever user the test starts it as: reads
# [[method, path, body, key-or-null], ...] on stdin, prints the statuses.
UNIX_CLIENT = r"""
import http.client, json, socket, sys
path, cases = sys.argv[1], json.load(sys.stdin)
class Conn(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(path)
out = []
for method, target, body, key in cases:
    c = Conn("localhost")
    c.request(method, target, body=body, headers={"Content-Type": "application/json",
                                                  **({"Authorization": "Bearer " + key} if key else {})})
    r = c.getresponse(); r.read(); c.close()
    out.append(r.status)
print(json.dumps(out))
"""


class OneAgentTest(unittest.TestCase):
    """A class's tests share one agent (cls.agent), its repository and a directory."""

    @classmethod
    def tearDownClass(cls):
        cls.agent.close()
        shutil.rmtree(cls.repo, ignore_errors=True)
        shutil.rmtree(cls.tmp, ignore_errors=True)


class UnixSocketTest(OneAgentTest):
    """Local programs on the Unix socket: root and `nobody` get what their uids are mapped to
    without a key, and keys work there as on TCP."""

    NOBODY = 65534

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="outpost-unix-")
        os.chmod(cls.tmp, 0o755)  # nobody must reach the socket
        cls.socket = os.path.join(cls.tmp, "outpost.sock")
        cls.repo = copy_fixtures(["add_mul"])
        make_variant(cls.repo, "tiny", [])
        cfg = os.path.join(cls.tmp, "agent.json")
        with open(cfg, "w") as f:
            json.dump({"unix_socket": cls.socket,
                       "unix_socket_peers": {"uid:0": ["inference", "admin", "observe"],
                                             f"uid:{cls.NOBODY}": ["observe"]}}, f)
        cls.agent = Agent(cls.repo, ["--config", cfg])

    def over_socket(self, uid, cases):
        r = subprocess.run(["python3", "-c", UNIX_CLIENT, self.socket], input=json.dumps(cases),
                           capture_output=True, text=True, timeout=120, user=uid)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_peers_by_uid_and_keys(self):
        self.assertEqual(os.stat(self.socket).st_mode & 0o777, 0o666)
        creds = Credentials(self, self.agent)
        granted = {0: {"inference", "admin", "observe"}, self.NOBODY: {"observe"}}
        for uid in (0, self.NOBODY):
            cases, want = [], []
            for method, path, body, accepted, admitted in HTTP_ENDPOINTS:
                if method == "POST" and path == "/v2/auth/keys":
                    continue  # makes keys: covered on TCP
                for kind, key in creds.cases(accepted):
                    cases.append([method, path, body, key])
                    want.append((f"{method} {path}", kind, expected(kind, accepted, granted[uid], admitted)))
            got = self.over_socket(uid, cases)
            self.assertEqual(len(got), len(want))
            for (endpoint, kind, status), seen in zip(want, got):
                with self.subTest(uid=uid, endpoint=endpoint, credential=kind):
                    self.assertEqual(seen, status)
        # The socket's peers are not loopback TCP callers: chat is open on TCP, not to uid 0 here.
        self.assertEqual(self.over_socket(0, [["GET", "/v1/models", None, None]]), [401])
        self.assertEqual(self.agent.request("GET", "/v1/models", key=None)[0], 200)


def read(d, name):
    with open(os.path.join(d, name), "rb") as f:
        return f.read()


class GrpcTlsTest(OneAgentTest):
    """gRPC over TLS beyond loopback (no insecure switch needed), API keys over it, client
    certificates mapped to scopes by subject, and the server certificate replaced on disk while
    clients keep connecting."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="outpost-tls-")
        d = cls.tmp
        for ca in ("ca", "ca2", "rogue"):
            make_ca(d, ca)
        make_cert(d, "server", "ca", "localhost", server=True)
        make_cert(d, "server2", "ca2", "localhost", server=True)
        make_cert(d, "camera", "ca", "camera-app")
        make_cert(d, "stranger", "ca", "stranger")
        make_cert(d, "rogue-camera", "rogue", "camera-app")
        shutil.copy(os.path.join(d, "server.pem"), os.path.join(d, "live.pem"))
        shutil.copy(os.path.join(d, "server.key"), os.path.join(d, "live.key"))
        cfg = os.path.join(d, "agent.json")
        with open(cfg, "w") as f:
            json.dump({"grpc_address": "0.0.0.0", "tls_cert_file": os.path.join(d, "live.pem"),
                       "tls_key_file": os.path.join(d, "live.key"), "tls_client_ca_file": os.path.join(d, "ca.pem"),
                       "tls_client_subjects": {"CN=camera-app": ["inference"]}, "tls_reload_secs": 1}, f)
        cls.repo = copy_fixtures(["add_mul"])
        # HTTP speaks TLS too (the same files): the harness trusts both CAs, across the rotation.
        with open(os.path.join(d, "both.pem"), "wb") as f:
            f.write(read(d, "ca.pem") + read(d, "ca2.pem"))
        cls.agent = Agent(cls.repo, ["--config", cfg, "--http-address", "0.0.0.0"],
                          tls_ca=os.path.join(d, "both.pem"))

    def https(self, method, path, body=None, key=None, cert=None):
        """One request over a new HTTPS connection: (status, body), or the TLS error's class."""
        import ssl
        try:
            conn = self.agent.connection(30, cert=(os.path.join(self.tmp, f"{cert}.pem"),
                                                   os.path.join(self.tmp, f"{cert}.key")) if cert else None)
            conn.request(method, path, body=body, headers={"Content-Type": "application/json",
                                                           **({"Authorization": "Bearer " + key} if key else {})})
            r = conn.getresponse()
            out = (r.status, r.read())
            conn.close()
            return out
        except (ssl.SSLError, ConnectionError) as e:
            return (type(e).__name__, b"")

    def test_https_keys_client_certificates_and_large_bodies(self):
        observe = apikey(self.agent, "create", "--scope", "observe")
        self.assertEqual(observe.returncode, 0, observe.stderr)
        observe = observe.stdout.strip()
        self.assertEqual(self.https("GET", "/v2/health/live")[0], 401)
        self.assertEqual(self.https("GET", "/v2/health/live", key=observe)[0], 200)
        self.assertEqual(self.https("GET", "/v2/models/add_mul", key=observe)[0], 403)
        self.assertEqual(self.https("GET", "/v2/models/add_mul", cert="camera")[0], 200)
        self.assertEqual(self.https("GET", "/v2/models/add_mul", cert="stranger")[0], 401)
        self.assertIn(self.https("GET", "/v2/models/add_mul", cert="rogue-camera")[0],
                      ("SSLError", "ConnectionResetError", "SSLEOFError"))
        # Plaintext to the TLS port gets no HTTP answer.
        with socket.create_connection(("127.0.0.1", self.agent.http_port), timeout=10) as s:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            try:
                answer = s.recv(100)
            except ConnectionResetError:
                answer = b""
        self.assertFalse(answer.startswith(b"HTTP/1.1 200"), answer)
        # 16 MiB each way through TLS records (binary tensors), and the sums are right.
        a = np.arange(1 << 22, dtype=np.float32).reshape(-1, 4)
        status, out = self.agent.infer_binary("add_mul", {"a": a, "b": a})
        self.assertEqual(status, 200, out)
        np.testing.assert_array_equal(out["sum"], a + a)
        # Two requests in one write (pipelined) over one TLS connection: two answers in order.
        import ssl
        ctx = ssl.create_default_context(cafile=self.agent.tls_ca)
        ctx.load_cert_chain(os.path.join(self.tmp, "camera.pem"), os.path.join(self.tmp, "camera.key"))
        with socket.create_connection(("127.0.0.1", self.agent.http_port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET /v2/models/add_mul HTTP/1.1\r\nHost: localhost\r\n\r\n"
                          b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        self.assertEqual(data.count(b"HTTP/1.1 200 OK"), 2, data[:400])
        self.assertIn(b'{"live":true}', data)

    def call(self, method, roots=b"", cert=None, key=None, plaintext=False):
        """A fresh channel; returns 200, 401, 403 or the gRPC status name."""
        import grpc as grpclib
        pb2, pb2_grpc = grpc_modules()
        target = f"localhost:{self.agent.grpc_port}"
        if plaintext:
            channel = grpclib.insecure_channel(target)
        else:
            creds = grpclib.ssl_channel_credentials(
                # Both CAs unless told: the other test replaces the server's certificate.
                root_certificates=roots or read(self.tmp, "ca.pem") + read(self.tmp, "ca2.pem"),
                private_key=read(self.tmp, f"{cert}.key") if cert else None,
                certificate_chain=read(self.tmp, f"{cert}.pem") if cert else None)
            channel = grpclib.secure_channel(target, creds)
        request = {"ServerLive": pb2.ServerLiveRequest(),
                   "ModelMetadata": pb2.ModelMetadataRequest(name="add_mul")}[method]
        try:
            getattr(pb2_grpc.GRPCInferenceServiceStub(channel), method)(
                request, metadata=[("authorization", "Bearer " + key)] if key else [], timeout=10)
            return 200
        except grpclib.RpcError as e:
            return {grpclib.StatusCode.UNAUTHENTICATED: 401,
                    grpclib.StatusCode.PERMISSION_DENIED: 403}.get(e.code(), e.code().name)
        finally:
            channel.close()

    def test_keys_and_client_certificates(self):
        observe = apikey(self.agent, "create", "--scope", "observe").stdout.strip()
        # Beyond loopback nothing is open; a key works over TLS.
        self.assertEqual(self.call("ServerLive"), 401)
        self.assertEqual(self.call("ServerLive", key=observe), 200)
        self.assertEqual(self.call("ModelMetadata", key=observe), 403)
        # A certificate from the CA, with a mapped subject, is the credential itself.
        self.assertEqual(self.call("ModelMetadata", cert="camera"), 200)
        self.assertEqual(self.call("ServerLive", cert="camera"), 200)
        # From the CA but no mapped subject: a TLS client like any other.
        self.assertEqual(self.call("ModelMetadata", cert="stranger"), 401)
        # The same subject from another CA does not even finish the handshake.
        self.assertEqual(self.call("ModelMetadata", cert="rogue-camera"), "UNAVAILABLE")
        # Plaintext to the TLS port fails.
        self.assertEqual(self.call("ServerLive", plaintext=True), "UNAVAILABLE")

    def test_certificate_replaced_while_clients_keep_connecting(self):
        import threading
        both = read(self.tmp, "ca.pem") + read(self.tmp, "ca2.pem")
        results, stop = [], threading.Event()

        def client():
            while not stop.is_set():
                results.append(self.call("ModelMetadata", roots=both, cert="camera"))
                results.append(self.https("GET", "/v2/models/add_mul", cert="camera")[0])

        t = threading.Thread(target=client)
        t.start()
        try:
            time.sleep(1)
            # Replaced as a deployment tool would: new files renamed over the old ones.
            for ext in ("key", "pem"):
                shutil.copy(os.path.join(self.tmp, f"server2.{ext}"), os.path.join(self.tmp, f"next.{ext}"))
            os.chmod(os.path.join(self.tmp, "next.key"), 0o600)
            os.rename(os.path.join(self.tmp, "next.key"), os.path.join(self.tmp, "live.key"))
            os.rename(os.path.join(self.tmp, "next.pem"), os.path.join(self.tmp, "live.pem"))
            deadline = time.time() + 20
            while time.time() < deadline and self.call("ServerLive", roots=read(self.tmp, "ca2.pem"),
                                                       cert="camera") != 200:
                time.sleep(0.2)
            time.sleep(1)
        finally:
            stop.set()
            t.join()
        self.assertGreater(len(results), 10)
        self.assertEqual(set(results), {200}, "a client failed while the certificate was replaced")
        self.assertEqual(self.call("ServerLive", roots=read(self.tmp, "ca2.pem"), cert="camera"), 200)
        self.assertEqual(self.call("ServerLive", roots=read(self.tmp, "ca.pem"), cert="camera"),
                         "UNAVAILABLE")  # trusting the old CA only


class ListenerPolicyTest(unittest.TestCase):
    def test_beyond_loopback_without_tls_needs_the_insecure_switch(self):
        tmp = tempfile.mkdtemp(prefix="outpost-auth-cfg-")
        self.addCleanup(shutil.rmtree, tmp, True)
        for flags, key in ((["--http-address", "0.0.0.0"], "http_address"),
                           (["--grpc-address", "::"], "grpc_address"),
                           (["--metrics-port", "9", "--metrics-address", "10.1.2.3"], "metrics_address")):
            r = subprocess.run([os.path.join(BIN_DIR, "outpostd"), "--model-repository", tmp, "--auth-dir", tmp,
                                *flags, "--print-config"], capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(f"{key}", r.stderr)
            self.assertIn("--insecure-plaintext-beyond-loopback", r.stderr)
        r = subprocess.run([os.path.join(BIN_DIR, "outpostd"), "--model-repository", tmp, "--auth-dir", tmp,
                            "--auth-open-scopes", "inference", "admin", "--print-config"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("admin always needs a credential", r.stderr)
        cfg = os.path.join(tmp, "peers.json")
        with open(cfg, "w") as f:
            json.dump({"unix_socket_peers": {"uid:0": ["root"]}}, f)
        r = subprocess.run([os.path.join(BIN_DIR, "outpostd"), "--model-repository", tmp, "--auth-dir", tmp,
                            "--config", cfg, "--print-config"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown scope 'root'", r.stderr)


if __name__ == "__main__":
    unittest.main()
