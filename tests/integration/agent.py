"""Starts a real outpostd process for a test and talks to it over HTTP and gRPC."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

BIN_DIR = os.environ.get("OUTPOST_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/bin"))
PROTO_DIR = os.environ.get("OUTPOST_PROTO_DIR", os.path.join(os.path.dirname(__file__), "../../proto"))
FIXTURES = os.environ.get("OUTPOST_FIXTURES", "")
SAMPLES = os.environ.get("OUTPOST_SAMPLES", "")

NP_TO_KSERVE = {
    np.bool_: "BOOL", np.uint8: "UINT8", np.uint16: "UINT16", np.uint32: "UINT32", np.uint64: "UINT64",
    np.int8: "INT8", np.int16: "INT16", np.int32: "INT32", np.int64: "INT64", np.float16: "FP16",
    np.float32: "FP32", np.float64: "FP64", np.object_: "BYTES", np.bytes_: "BYTES", np.str_: "BYTES",
}
KSERVE_TO_NP = {v: k for k, v in NP_TO_KSERVE.items() if k not in (np.bytes_, np.str_)}


def kserve_dtype(arr):
    return NP_TO_KSERVE[arr.dtype.type]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    """A process's resident memory in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def to_raw(arr):
    """A numpy array in the KServe raw form (BYTES: 4-byte little-endian length prefixes)."""
    if kserve_dtype(arr) == "BYTES":
        out = bytearray()
        for e in arr.reshape(-1):
            b = e if isinstance(e, bytes) else str(e).encode()
            out += len(b).to_bytes(4, "little") + b
        return bytes(out)
    return np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def from_raw(data, dtype, shape):
    if dtype == "BYTES":
        items, pos = [], 0
        while pos < len(data):
            n = int.from_bytes(data[pos:pos + 4], "little")
            items.append(data[pos + 4:pos + 4 + n])
            pos += 4 + n
        return np.array(items, dtype=np.object_).reshape(shape)
    return np.frombuffer(data, dtype=KSERVE_TO_NP[dtype]).reshape(shape)


class Agent:
    """outpostd on free loopback ports, stopped (and checked to have exited cleanly) at close()."""

    def __init__(self, repository, extra_args=(), grpc=True, signed_only=False, env=None, auth_dir=None,
                 tls_ca=None):
        """signed_only: production mode; otherwise development mode, for plain fixture directories.
        Each agent keeps its API keys in a directory of its own (auth_dir, else a new one), never
        the system's; self.admin_key is the console key it made there."""
        self.repository = repository
        self.tls_ca = tls_ca  # set: the agent speaks HTTPS, with a certificate from this CA file
        self.http_port = free_port()
        self.grpc_port = free_port() if grpc else 0
        self.log_path = tempfile.mktemp(prefix="outpostd-", suffix=".log")
        self.auth_dir = auth_dir or tempfile.mkdtemp(prefix="outpost-auth-")
        self.admin_key = None
        args = [os.path.join(BIN_DIR, "outpostd"), "--model-repository", repository,
                "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                "--auth-dir", self.auth_dir, *extra_args]
        if not signed_only:
            args.append("--allow-unsigned-models")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=None if env is None else {**os.environ, **env})
        self.wait_ready()
        self._grpc = None

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"outpostd exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                # The key file is made before the listeners open; health needs it beyond loopback.
                # Read again after an answer: the agent may have made it (and opened its port)
                # between the check and the request.
                if self.admin_key is None and os.path.exists(self.key_file()):
                    with open(self.key_file()) as f:
                        self.admin_key = f.read().strip()
                status, _, _ = self.request("GET", "/v2/health/ready")
                if status == 200 and self.admin_key is None:
                    continue
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("outpostd did not become ready:\n" + self.logs())

    def logs(self):
        with open(self.log_path) as f:
            return f.read()

    def close(self):
        if self._grpc:
            self._grpc[0].close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise
        self.log.close()
        return self.proc.returncode

    # --- HTTP -------------------------------------------------------------------------
    def connection(self, timeout=60, cert=None):
        """An HTTP(S) connection to the agent; `cert` (a (certfile, keyfile) pair) is a client
        certificate."""
        if not self.tls_ca:
            return http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        import ssl
        ctx = ssl.create_default_context(cafile=self.tls_ca)
        if cert:
            ctx.load_cert_chain(*cert)
        return http.client.HTTPSConnection("localhost", self.http_port, timeout=timeout, context=ctx)

    def key_file(self):
        """The console's admin key file, for the outpost CLI (OUTPOST_API_KEY_FILE)."""
        return os.path.join(self.auth_dir, "admin.key")

    def cli_env(self):
        """The environment of an `outpost` command run against this agent, as at its console."""
        return {**os.environ, "OUTPOST_API_KEY_FILE": self.key_file()}

    def request(self, method, path, body=None, headers=None, timeout=60, key="admin"):
        """key: "admin" sends the console's admin key (as the CLI does), None no credential,
        anything else that key."""
        headers = dict(headers or {})
        if key == "admin":
            key = self.admin_key
        if key and "Authorization" not in headers and "X-Api-Key" not in headers:
            headers["Authorization"] = "Bearer " + key
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def inflight_bytes(self):
        """Request and response bytes the agent holds now (outpost_inflight_bytes)."""
        _, _, raw = self.request("GET", "/metrics")
        for line in raw.decode().splitlines():
            if line.startswith("outpost_inflight_bytes "):
                return float(line.split()[1])
        raise AssertionError("no outpost_inflight_bytes in /metrics")

    def get_json(self, path):
        status, _, body = self.request("GET", path)
        return status, json.loads(body) if body else None

    def infer_json(self, model, inputs, outputs=None, version=None, params=None):
        """inputs: {name: np.array}; returns (status, parsed body)."""
        req = {"inputs": [{"name": n, "datatype": kserve_dtype(a), "shape": list(a.shape),
                           "data": [x.decode() if isinstance(x, bytes) else x for x in a.reshape(-1).tolist()]}
                          for n, a in inputs.items()]}
        if outputs:
            req["outputs"] = [{"name": o} for o in outputs]
        if params:
            req["parameters"] = params
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        status, _, body = self.request("POST", path, json.dumps(req), {"Content-Type": "application/json"})
        return status, json.loads(body)

    def infer_binary(self, model, inputs, outputs=None, version=None):
        """Binary tensor extension both ways; returns (status, {name: np.array} or error body)."""
        header = {"inputs": [], "parameters": {"binary_data_output": True}}
        blobs = []
        for n, a in inputs.items():
            raw = to_raw(a)
            blobs.append(raw)
            header["inputs"].append({"name": n, "datatype": kserve_dtype(a), "shape": list(a.shape),
                                     "parameters": {"binary_data_size": len(raw)}})
        if outputs:
            header["outputs"] = [{"name": o, "parameters": {"binary_data": True}} for o in outputs]
        h = json.dumps(header).encode()
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        status, headers, body = self.request("POST", path, h + b"".join(blobs),
                                             {"Inference-Header-Content-Length": str(len(h)),
                                              "Content-Type": "application/octet-stream"})
        if status != 200:
            return status, json.loads(body)
        hl = int(headers["Inference-Header-Content-Length"])
        meta = json.loads(body[:hl])
        pos, result = hl, {}
        for o in meta["outputs"]:
            size = o["parameters"]["binary_data_size"]
            result[o["name"]] = from_raw(body[pos:pos + size], o["datatype"], o["shape"])
            pos += size
        assert pos == len(body), "response has trailing bytes"
        return status, result

    # --- gRPC -------------------------------------------------------------------------
    def grpc(self):
        if self._grpc is None:
            import grpc as grpclib
            pb2, pb2_grpc = grpc_modules()
            channel = grpclib.insecure_channel(f"127.0.0.1:{self.grpc_port}",
                                               options=[("grpc.max_receive_message_length", 128 << 20),
                                                        ("grpc.max_send_message_length", 128 << 20)])
            self._grpc = (channel, pb2_grpc.GRPCInferenceServiceStub(channel), pb2)
        return self._grpc[1], self._grpc[2]

    def infer_grpc(self, model, inputs, outputs=None, version="", timeout=60):
        stub, pb2 = self.grpc()
        req = pb2.ModelInferRequest(model_name=model, model_version=version)
        for n, a in inputs.items():
            req.inputs.add(name=n, datatype=kserve_dtype(a), shape=list(a.shape))
            req.raw_input_contents.append(to_raw(a))
        for o in outputs or []:
            req.outputs.add(name=o)
        res = stub.ModelInfer(req, timeout=timeout)
        return {o.name: from_raw(res.raw_output_contents[i], o.datatype, list(o.shape))
                for i, o in enumerate(res.outputs)}


_GRPC_MODULES = None


def grpc_modules():
    """Generates the Python stubs from our proto with protoc and Debian's grpc_python_plugin."""
    global _GRPC_MODULES
    if _GRPC_MODULES is None:
        out = tempfile.mkdtemp(prefix="outpost-proto-")
        plugin = shutil.which("grpc_python_plugin") or "/usr/bin/grpc_python_plugin"
        subprocess.run(["protoc", f"--proto_path={PROTO_DIR}", f"--python_out={out}", f"--grpc_out={out}",
                        f"--plugin=protoc-gen-grpc={plugin}", os.path.join(PROTO_DIR, "grpc_service.proto")],
                       check=True)
        sys.path.insert(0, out)
        import grpc_service_pb2
        import grpc_service_pb2_grpc
        _GRPC_MODULES = (grpc_service_pb2, grpc_service_pb2_grpc)
    return _GRPC_MODULES


def copy_fixtures(names, dest=None):
    """A fresh repository holding copies of the named fixture models."""
    dest = dest or tempfile.mkdtemp(prefix="outpost-repo-")
    for n in names:
        shutil.copytree(os.path.join(FIXTURES, n), os.path.join(dest, n))
    return dest


def add_version(repo, model, version, source):
    """Stage under a dot-name (ignored by the scanner), then rename into place atomically."""
    staging = os.path.join(repo, model, "." + version + ".staging")
    shutil.copytree(source, staging)
    os.rename(staging, os.path.join(repo, model, version))


def while_busy(long_call, short_call, n_short=6, head_start=0.3):
    """Runs long_call (one request of about 0.8 s on the `slow` fixture) in the background and,
    once it holds the model's only instance, n_short short_calls at once. Returns (long result,
    short results)."""
    import threading
    long_result, short_results, lock = [], [], threading.Lock()
    t = threading.Thread(target=lambda: long_result.append(long_call()))
    t.start()
    time.sleep(head_start)

    def one():
        r = short_call()
        with lock:
            short_results.append(r)

    threads = [threading.Thread(target=one) for _ in range(n_short)]
    for th in threads:
        th.start()
    for th in threads + [t]:
        th.join()
    return long_result[0], short_results


def write_package_manifest(src, name, **fields):
    """A package source's manifest.json: `name` at 1.0.0 with test provenance, plus `fields`."""
    manifest = {"name": name, "version": "1.0.0", "description": name,
                "provenance": {"author": "tests", "license": "Apache-2.0", "training_data": "upstream",
                               "intended_use": "tests"}, **fields}
    with open(os.path.join(src, "manifest.json"), "w") as f:
        json.dump(manifest, f)


class SignedRepository:
    """A model repository filled the production way: a publisher key and a trust file made
    here, then `outpost pack`, `outpost sign` and `outpost install` for each package."""

    def __init__(self, tmp):
        outpost = os.path.join(BIN_DIR, "outpost")
        self._outpost = outpost
        r = subprocess.run([outpost, "key", "generate", "publisher", "--dir", tmp], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        with open(os.path.join(tmp, "publisher.pub")) as f:
            pub = json.load(f)["public"]
        self.key = os.path.join(tmp, "publisher.key")
        self.trust = os.path.join(tmp, "trust.json")
        with open(self.trust, "w") as f:
            json.dump({"threshold": 1, "keys": [{"public": pub, "name": "publisher"}], "revoked": []}, f)
        self.path = os.path.join(tmp, "repo")
        os.mkdir(self.path)

    def pack(self, src, out):
        """`outpost pack`; returns the CompletedProcess (a refusal is a result to check)."""
        return subprocess.run([self._outpost, "pack", src, "-o", out], capture_output=True, text=True)

    def publish(self, src, out):
        """Packs, signs and installs the package source directory `src`."""
        for args in (["pack", src, "-o", out], ["sign", out, "--key", self.key],
                     ["install", out, "--repository", self.path, "--trust", self.trust]):
            r = subprocess.run([self._outpost, *args], capture_output=True, text=True)
            assert r.returncode == 0, f"outpost {args[0]}: {r.stderr}"

    def agent(self):
        return Agent(self.path, ["--trust-file", self.trust, "--repository-poll-secs", "0"], signed_only=True)
