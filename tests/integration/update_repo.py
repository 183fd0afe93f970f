"""An update repository for tests: keys, signed model packages of a small model, the outpost
repo commands, an HTTP server with Range support and injectable misbehaviour, and a
fault-injecting TCP proxy."""
import http.server
import json
import os
import socket
import socketserver
import struct
import subprocess
import threading
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agent import BIN_DIR

OUTPOST = os.path.join(BIN_DIR, "outpost")
BALLAST = 256 * 1024  # random bytes in every model, so a download takes more than one read


def outpost(*args, timeout=300, env=None):
    return subprocess.run([OUTPOST, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def must(*args, timeout=300):
    r = outpost(*args, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"outpost {' '.join(map(str, args))} failed:\n{r.stdout}{r.stderr}")
    return r


def scaler_onnx(path, factor, mode="ok", ballast_seed=7, ballast_bytes=BALLAST):
    """y = x * factor over x: FP32 [N, 4], plus an unused initializer of random bytes.
    mode "fixed_batch": the result is reshaped to [1, 4], so any batch but 1 fails at run time;
    mode "renamed": the input is called "z" (a schema break a configured probe catches)."""
    rng = np.random.default_rng(ballast_seed)
    ballast = rng.standard_normal(ballast_bytes // 4).astype(np.float32)
    inp = "z" if mode == "renamed" else "x"
    nodes = [helper.make_node("Mul", [inp, "factor"], ["scaled" if mode == "fixed_batch" else "y"])]
    inits = [numpy_helper.from_array(np.full([4], factor, np.float32), "factor"),
             numpy_helper.from_array(ballast, "ballast")]
    if mode == "fixed_batch":
        nodes.append(helper.make_node("Reshape", ["scaled", "shape"], ["y"]))
        inits.append(numpy_helper.from_array(np.array([1, 4], np.int64), "shape"))
    g = helper.make_graph(nodes, "scaler", [helper.make_tensor_value_info(inp, TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="outpost-tests")
    model.ir_version = 8
    onnx.save(model, path)


class UpdateRepo:
    """Keys, a trust file for model signers and a TUF repository in `tmp`."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.keys = {}
        for name in ("root", "targets", "snapshot", "timestamp", "signer", "stranger"):
            must("key", "generate", name, "--dir", tmp)
            self.keys[name] = os.path.join(tmp, name + ".key")
        self.trust = os.path.join(tmp, "trust.json")
        must("key", "trust", os.path.join(tmp, "signer.pub"), "-o", self.trust)
        self.dir = os.path.join(tmp, "repo")
        must("repo", "init", self.dir, "--root-key", self.keys["root"], "--targets-key", self.keys["targets"],
             "--snapshot-key", self.keys["snapshot"], "--timestamp-key", self.keys["timestamp"])
        self.root = os.path.join(self.dir, "metadata", "1.root.json")

    def package(self, version, factor, mode="ok", signer="signer", name="scaler", ballast_bytes=BALLAST):
        src = os.path.join(self.tmp, f"src-{name}-{version}-{mode}")
        os.makedirs(src, exist_ok=True)
        scaler_onnx(os.path.join(src, "model.onnx"), factor, mode, ballast_bytes=ballast_bytes)
        with open(os.path.join(src, "manifest.json"), "w") as f:
            json.dump({"name": name, "version": version, "description": f"x * {factor}"}, f)
        out = os.path.join(self.tmp, f"{name}-{version}-{mode}.opkg")
        must("pack", src, "-o", out)
        if signer:
            must("sign", out, "--key", self.keys[signer])
        return out

    def add(self, package, delta_from=None, publish=True):
        args = ["repo", "add", self.dir, package, "--targets-key", self.keys["targets"]]
        if delta_from:
            args += ["--delta-from", delta_from]
        r = must(*args)
        if publish:
            self.publish()
        return r

    def publish(self, *extra, timestamp_key=None, snapshot_key=None):
        must("repo", "publish", self.dir, "--snapshot-key", snapshot_key or self.keys["snapshot"],
             "--timestamp-key", timestamp_key or self.keys["timestamp"], *extra)

    def target_files(self):
        return {n: os.path.join(self.dir, "targets", n) for n in os.listdir(os.path.join(self.dir, "targets"))}


class RepoServer:
    """Serves a directory over HTTP/1.1 with Range requests. `faults` maps a path suffix to
    "endless" (streams past the declared length forever) or ("trickle", bytes_per_second).
    Every request is logged as (path, range header, bytes sent)."""

    def __init__(self, root):
        self.root = root
        self.faults = {}
        self.log = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = os.path.join(server.root, self.path.lstrip("/").split("?")[0])
                fault = next((f for suffix, f in server.faults.items() if self.path.endswith(suffix)), None)
                if not os.path.isfile(path):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    server.log.append((self.path, None, 0))
                    return
                with open(path, "rb") as f:
                    data = f.read()
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                body = data[start:]
                sent = 0
                try:
                    if fault == "endless":
                        self.send_response(200)
                        self.end_headers()  # no length: the body runs until the client stops it
                        chunk = b"{" * 65536
                        while sent < 64 << 20:
                            self.wfile.write(chunk)
                            sent += len(chunk)
                        return
                    self.send_response(206 if start else 200)
                    if start:
                        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if isinstance(fault, tuple) and fault[0] == "trickle":
                        for i in range(len(body)):
                            self.wfile.write(body[i:i + 1])
                            self.wfile.flush()
                            sent += 1
                            time.sleep(1.0 / fault[1])
                    else:
                        self.wfile.write(body)
                        sent = len(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    server.log.append((self.path, rng, sent))

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                pass  # clients that hang up (cut links, refused downloads) are the point

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class FaultProxy:
    """A TCP proxy on loopback that degrades the link: `latency` seconds before each forwarded
    chunk, and the first `cuts` connections whose response runs past `cut_after` bytes are cut
    there, every other one with a TCP reset instead of a close. Counts the response bytes it
    delivered."""

    def __init__(self, upstream_port, latency=0.0, cut_after=None, cuts=0):
        self.upstream = upstream_port
        self.latency = latency
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.cuts = 0
        self.delivered = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        upstream = socket.create_connection(("127.0.0.1", self.upstream))

        def up():
            try:
                while True:
                    data = client.recv(65536)
                    if not data:
                        break
                    upstream.sendall(data)
            except OSError:
                pass

        threading.Thread(target=up, daemon=True).start()
        sent = 0
        try:
            while True:
                data = upstream.recv(16384)
                if not data:
                    break
                if self.latency:
                    time.sleep(self.latency)
                if self.cut_after is not None and sent + len(data) > self.cut_after:
                    with self.lock:
                        cut = self.cuts_left > 0
                        if cut:
                            self.cuts_left -= 1
                            self.cuts += 1
                            reset = self.cuts % 2 == 0
                    if cut:
                        data = data[:self.cut_after - sent]
                        client.sendall(data)
                        with self.lock:
                            self.delivered += len(data)
                        if reset:
                            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        break
                client.sendall(data)
                sent += len(data)
                with self.lock:
                    self.delivered += len(data)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()

    def close(self):
        self.closed = True
        self.sock.close()


def tree(path):
    """{relative path: (size, mtime_ns)} of every file under `path`: equal before and after means
    nothing on disk changed."""
    out = {}
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            out[os.path.relpath(p, path)] = (st.st_size, st.st_mtime_ns)
    return out
