"""Model versions appearing, changing and leaving a watched repository while requests flow:
a swap under load fails no request, and what cannot be served says why."""
import os
import shutil
import signal
import tempfile
import threading
import time
import unittest

import grpc
import numpy as np

from agent import FIXTURES, Agent, add_version, copy_fixtures


def wait_for(predicate, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class LifecycleTest(unittest.TestCase):
    def setUp(self):
        self.repo = copy_fixtures(["add_mul"])
        self.agent = Agent(self.repo, ["--repository-poll-secs", "0.1"])

    def tearDown(self):
        rc = self.agent.close()
        shutil.rmtree(self.repo)
        self.assertEqual(rc, 0)

    def index(self):
        return {(e["name"], e.get("version", "")): e for e in self.agent.get_json("/v2/repository/index")[1]}

    def versions(self):
        status, meta = self.agent.get_json("/v2/models/add_mul")
        return meta["versions"] if status == 200 else []

    def test_swap_under_load_fails_nothing(self):
        a = np.arange(8, dtype=np.float32).reshape(2, 4)
        stop = threading.Event()
        failures, served_by, lock = [], {}, threading.Lock()
        finished = []  # load threads that ran until told to stop

        def count(protocol, version):
            with lock:
                served_by[(protocol, version)] = served_by.get((protocol, version), 0) + 1

        def http_load():
            while not stop.is_set():
                try:  # a reset or a body that is not JSON is a failure too, not a lost thread
                    status, body = self.agent.infer_json("add_mul", {"a": a, "b": a})
                except Exception as e:
                    with lock:
                        failures.append(("http", type(e).__name__, str(e)))
                    continue
                if status != 200:
                    with lock:
                        failures.append(("http", status, body))
                    continue
                if body["outputs"][0]["data"] != (a + a).reshape(-1).tolist():
                    with lock:
                        failures.append(("http", "wrong answer", body))
                count("http", body["model_version"])
            finished.append("http")

        def grpc_load():
            stub, pb2 = self.agent.grpc()
            req = pb2.ModelInferRequest(model_name="add_mul")
            for name in ("a", "b"):
                req.inputs.add(name=name, datatype="FP32", shape=[2, 4])
                req.raw_input_contents.append(a.tobytes())
            while not stop.is_set():
                try:
                    res = stub.ModelInfer(req, timeout=30)
                    out = {o.name: np.frombuffer(res.raw_output_contents[i], np.float32).reshape(2, 4)
                           for i, o in enumerate(res.outputs)}
                    if not np.array_equal(out["sum"], a + a):
                        with lock:
                            failures.append(("grpc", "wrong answer", res.model_version))
                    count("grpc", res.model_version)
                except grpc.RpcError as e:
                    with lock:
                        failures.append(("grpc", e.code(), e.details()))
                except Exception as e:
                    with lock:
                        failures.append(("grpc", type(e).__name__, str(e)))
            finished.append("grpc")

        def on(version, protocol="http"):
            return served_by.get((protocol, version), 0)

        threads = [threading.Thread(target=http_load) for _ in range(3)] + [threading.Thread(target=grpc_load) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            add_version(self.repo, "add_mul", "2", os.path.join(FIXTURES, "add_mul", "1"))
            wait_for(lambda: self.versions() == ["1", "2"], what="version 2 to load")
            wait_for(lambda: on("2") > 20 and on("2", "grpc") > 20, what="traffic on version 2")
            shutil.rmtree(os.path.join(self.repo, "add_mul", "1"))
            wait_for(lambda: self.versions() == ["2"], what="version 1 to unload")
            add_version(self.repo, "add_mul", "10", os.path.join(FIXTURES, "add_mul", "1"))
            wait_for(lambda: on("10") > 20 and on("10", "grpc") > 20,
                     what="traffic on version 10 (numeric order, not text)")
            shutil.rmtree(os.path.join(self.repo, "add_mul", "10"))
            wait_for(lambda: self.versions() == ["2"], what="version 10 to unload")
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(failures, [])
        self.assertEqual(sorted(finished), ["grpc"] * 2 + ["http"] * 3, "a load thread died")
        for protocol in ("http", "grpc"):
            for version in ("1", "2", "10"):
                self.assertGreater(on(version, protocol), 0, (protocol, version, served_by))

    def test_half_written_and_broken_versions(self):
        # A model file written in two halves, slower than the poll interval.
        d = os.path.join(self.repo, "add_mul", "3")
        os.makedirs(d)
        with open(os.path.join(FIXTURES, "add_mul", "1", "model.onnx"), "rb") as f:
            data = f.read()
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(0.5)
            f.write(data[len(data) // 2:])
        wait_for(lambda: self.index().get(("add_mul", "3"), {}).get("state") == "READY", what="version 3 READY")
        # New files for a served version that do not load: the old ones keep serving.
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(b"garbage")
        entry = wait_for(lambda: (e := self.index().get(("add_mul", "3"))) and e.get("reason") and e, what="reason")
        self.assertEqual(entry["state"], "READY")
        self.assertIn("kept the previous files", entry["reason"])
        a = np.ones((1, 4), np.float32)
        status, body = self.agent.infer_json("add_mul", {"a": a, "b": a}, version="3")
        self.assertEqual(status, 200, body)
        # A manifest that contradicts the model is refused with the field named.
        m = os.path.join(self.repo, "add_mul", "4")
        shutil.copytree(os.path.join(FIXTURES, "add_mul", "1"), m)
        with open(os.path.join(m, "manifest.json"), "w") as f:
            f.write('{"inputs": [{"name": "a", "datatype": "INT32"}]}')
        entry = wait_for(lambda: self.index().get(("add_mul", "4"), {}).get("state") == "UNAVAILABLE"
                         and self.index()[("add_mul", "4")], what="version 4 refused")
        self.assertIn("input 'a' is INT32 in the manifest but FP32 in the model", entry["reason"])

    def test_path_escapes_are_refused(self):
        outside = tempfile.mkdtemp(prefix="outside-")
        shutil.copytree(os.path.join(FIXTURES, "add_mul"), os.path.join(outside, "add_mul"))
        os.symlink(os.path.join(outside, "add_mul"), os.path.join(self.repo, "escaper"))
        os.makedirs(os.path.join(self.repo, "linked", "1"))
        os.symlink(os.path.join(outside, "add_mul", "1", "model.onnx"), os.path.join(self.repo, "linked", "1", "model.onnx"))
        os.makedirs(os.path.join(self.repo, "manifested", "1"))
        with open(os.path.join(self.repo, "manifested", "1", "manifest.json"), "w") as f:
            f.write('{"model_file": "../../escaper/1/model.onnx"}')
        try:
            keys = [("escaper", ""), ("linked", "1"), ("manifested", "1")]
            wait_for(lambda: all(self.index().get(k, {}).get("state") == "UNAVAILABLE" for k in keys), what="scan")
            idx = self.index()
            self.assertIn("resolves outside the repository", idx[("escaper", "")]["reason"])
            self.assertIn("resolves outside its version directory", idx[("linked", "1")]["reason"])
            self.assertIn("model_file must be a plain file name", idx[("manifested", "1")]["reason"])
            self.assertEqual(self.agent.get_json("/v2/models/escaper")[0], 404)
        finally:
            shutil.rmtree(outside)

    def test_sigterm_finishes_requests_in_flight(self):
        shutil.copytree(os.path.join(FIXTURES, "slow"), os.path.join(self.repo, "slow"))
        wait_for(lambda: self.agent.get_json("/v2/models/slow")[0] == 200, what="slow model")
        result = []
        t = threading.Thread(target=lambda: result.append(self.agent.infer_binary("slow", {"x": np.ones((128, 512), np.float32)})))
        t.start()
        # SIGTERM once the agent holds the whole request (its 256 KiB body counts in the bytes
        # requests hold), not after a guessed pause.
        wait_for(lambda: self.agent.inflight_bytes() >= 128 * 512 * 4, timeout=10, what="the request in flight")
        self.agent.proc.send_signal(signal.SIGTERM)
        t.join()
        self.assertEqual(self.agent.proc.wait(timeout=30), 0)
        self.assertEqual(result[0][0], 200, result)
        self.assertEqual(result[0][1]["y"].shape, (1, 512))

    def test_model_removed_entirely(self):
        shutil.rmtree(os.path.join(self.repo, "add_mul"))
        wait_for(lambda: self.agent.get_json("/v2/models/add_mul")[0] == 404, what="unload")
        self.assertEqual(self.index(), {})


if __name__ == "__main__":
    unittest.main()
