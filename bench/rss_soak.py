#!/usr/bin/python3
"""RSS of outpostd serving the sample models before and after a long mixed load: every sample
model over HTTP binary, JSON and gRPC from several client threads, small requests (a 32 ms
audio chunk) and large ones (a 640x640 float image to ppocr_det, 4.9 MB), for --minutes; then the agent is left idle for 12 s (it gives
memory back 1 s after large requests stop and 10 s after all requests do) and its RSS compared
with the RSS it had idle before the load.

Usage: rss_soak.py --outpostd build/bin/outpostd --samples build/models --proto proto [--minutes 10]
"""
import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../tests/integration"))
from agent import free_port, rss_mb  # noqa: E402


def requests():
    """(model, {input: array}) pairs: what the load sends, chosen at random."""
    rng = np.random.default_rng(1)
    audio = rng.standard_normal((1, 512)).astype(np.float32)
    return [
        ("silero_vad", {"input": audio, "state": np.zeros((2, 1, 128), np.float32),
                        "sr": np.array(16000, np.int64)}),
        ("melspectrogram", {"input": rng.standard_normal((1, 1280)).astype(np.float32)}),
        ("ppocr_rec", {"x": rng.standard_normal((1, 3, 48, 320)).astype(np.float32)}),
        ("ppocr_det", {"x": rng.standard_normal((1, 3, 64, 64)).astype(np.float32)}),
        ("ppocr_det", {"x": rng.standard_normal((1, 3, 640, 640)).astype(np.float32)}),  # 4.9 MB
    ]


DTYPES = {np.float32: "FP32", np.int64: "INT64"}


def binary_body(inputs):
    header = {"inputs": [], "parameters": {"binary_data_output": True}}
    blobs = b""
    for name, a in inputs.items():
        raw = a.tobytes()
        header["inputs"].append({"name": name, "datatype": DTYPES[a.dtype.type], "shape": list(a.shape),
                                 "parameters": {"binary_data_size": len(raw)}})
        blobs += raw
    h = json.dumps(header).encode()
    return h + blobs, {"Inference-Header-Content-Length": str(len(h))}


def json_body(inputs):
    return json.dumps({"inputs": [{"name": n, "datatype": DTYPES[a.dtype.type], "shape": list(a.shape),
                                   "data": a.ravel().tolist()} for n, a in inputs.items()]}).encode(), {}


def rss_parts_mb(pid):
    """(anonymous, file-backed) resident MiB."""
    parts = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:")):
                parts[line.split(":")[0]] = int(line.split()[1]) / 1024
    return parts["RssAnon"], parts["RssFile"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--outpostd", required=True)
    ap.add_argument("--samples", required=True)
    ap.add_argument("--proto", required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--agent-arg", action="append", default=[], help="passed to outpostd (repeatable)")
    args = ap.parse_args()

    out = tempfile.mkdtemp(prefix="rss-soak-proto-")
    subprocess.run(["protoc", f"--proto_path={args.proto}", f"--python_out={out}", f"--grpc_out={out}",
                    "--plugin=protoc-gen-grpc=" + (shutil.which("grpc_python_plugin") or "/usr/bin/grpc_python_plugin"),
                    os.path.join(args.proto, "grpc_service.proto")], check=True)
    sys.path.insert(0, out)
    import grpc
    import grpc_service_pb2 as pb2
    import grpc_service_pb2_grpc as pb2_grpc

    # A copy of the samples: the agent writes its ORT-format copies beside each version.
    repo = os.path.join(out, "models")
    shutil.copytree(args.samples, repo)
    http_port, grpc_port = free_port(), free_port()
    log = open(os.path.join(out, "agent.log"), "w")
    agent = subprocess.Popen([args.outpostd, "--model-repository", repo, "--http-port", str(http_port),
                              "--grpc-port", str(grpc_port), "--log-level", "warn",
                              "--auth-dir", os.path.join(out, "auth"), *args.agent_arg], stdout=log, stderr=log)
    try:
        for _ in range(600):
            try:
                c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
                c.request("GET", "/v2/health/ready")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        work = requests()
        time.sleep(3)
        idle = rss_mb(agent.pid)
        idle_parts = rss_parts_mb(agent.pid)
        stop = time.time() + args.minutes * 60
        counts = {"ok": 0, "failed": 0}
        peak = [idle]
        lock = threading.Lock()

        def client(seed):
            rnd = random.Random(seed)
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
            stub = pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(
                f"127.0.0.1:{grpc_port}", options=[("grpc.max_send_message_length", 64 << 20),
                                                   ("grpc.max_receive_message_length", 64 << 20)]))
            while time.time() < stop:
                model, inputs = rnd.choice(work)
                mode = rnd.choice(["binary", "json", "grpc"])
                if mode == "json" and model == "ppocr_det" and inputs["x"].size > 100000:
                    mode = "binary"  # a 4.9 MB tensor as JSON text is not what anyone sends
                try:
                    if mode == "grpc":
                        req = pb2.ModelInferRequest(model_name=model)
                        for n, a in inputs.items():
                            req.inputs.add(name=n, datatype=DTYPES[a.dtype.type], shape=list(a.shape))
                            req.raw_input_contents.append(a.tobytes())
                        stub.ModelInfer(req, timeout=60)
                        ok = True
                    else:
                        body, headers = (binary_body if mode == "binary" else json_body)(inputs)
                        conn.request("POST", f"/v2/models/{model}/infer", body, headers)
                        r = conn.getresponse()
                        r.read()
                        ok = r.status == 200
                except Exception:
                    ok = False
                    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
                with lock:
                    counts["ok" if ok else "failed"] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.threads)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak[0] = max(peak[0], rss_mb(agent.pid))
            time.sleep(0.5)
        time.sleep(12)
        after = rss_mb(agent.pid)
        print(f"mixed load for {args.minutes:g} min, {args.threads} clients: {counts['ok']} requests served, "
              f"{counts['failed']} failed")
        print(f"RSS idle before {idle:.1f} MB, peak {peak[0]:.1f} MB, idle after {after:.1f} MB "
              f"({(after - idle) / idle * 100:+.1f} %) after 12 s idle")
        (a0, f0), (a1, f1) = idle_parts, rss_parts_mb(agent.pid)
        print(f"  anonymous {a0:.1f} -> {a1:.1f} MB, file-backed {f0:.1f} -> {f1:.1f} MB")
    finally:
        agent.terminate()
        agent.wait()
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
