"""KServe v2 over HTTP against a real outpostd: endpoints, every datatype, the binary
extension, and bad input of every kind answered with a precise error while serving goes on."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import numpy as np

from agent import Agent, copy_fixtures, while_busy

NODE_MODULES = os.environ.get("OUTPOST_NODE_MODULES", "")
CHROMIUM = os.environ.get("OUTPOST_CHROMIUM", "/usr/bin/chromium")

RNG = np.random.default_rng(11)


def identity_inputs(n=3):
    return {
        "in_BOOL": np.array([True, False, True][:n]),
        "in_UINT8": np.array([0, 7, 255][:n], np.uint8),
        "in_UINT16": np.array([0, 7, 65535][:n], np.uint16),
        "in_UINT32": np.array([0, 7, 2**32 - 1][:n], np.uint32),
        "in_UINT64": np.array([0, 7, 2**64 - 1][:n], np.uint64),
        "in_INT8": np.array([-128, 0, 127][:n], np.int8),
        "in_INT16": np.array([-32768, 0, 32767][:n], np.int16),
        "in_INT32": np.array([-2**31, 0, 2**31 - 1][:n], np.int32),
        "in_INT64": np.array([-2**63, 0, 2**63 - 1][:n], np.int64),
        "in_FP16": np.array([-1.5, 0.0, 65504.0][:n], np.float16),
        "in_FP32": np.array([-1.25, 0.0, 3.4e38][:n], np.float32),
        "in_FP64": np.array([-1e300, 0.0, 1.0 / 3][:n], np.float64),
        "in_BYTES": np.array([b"", b"hello", "h\u00e9llo \u2603".encode()][:n], np.object_),
    }


class HttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.repo = copy_fixtures(["add_mul", "identity", "slow", "dense_batched"])
        os.makedirs(os.path.join(cls.repo, "broken", "1"))
        with open(os.path.join(cls.repo, "broken", "1", "model.onnx"), "wb") as f:
            f.write(b"this is not an onnx model")
        os.makedirs(os.path.join(cls.repo, "Bad Name", "1"))
        cls.agent = Agent(cls.repo, ["--max-request-bytes", str(1 << 20), "--http-thread-count", "8"])

    @classmethod
    def tearDownClass(cls):
        rc = cls.agent.close()
        shutil.rmtree(cls.repo)
        assert rc == 0, f"outpostd exited with {rc}"

    def assertError(self, status, body, expected_status, fragment):
        self.assertEqual(status, expected_status, body)
        self.assertIn("error", body)
        self.assertIn(fragment, body["error"])

    def assertServing(self):
        a = np.ones((1, 4), np.float32)
        status, out = self.agent.infer_binary("add_mul", {"a": a, "b": a})
        self.assertEqual(status, 200)
        np.testing.assert_array_equal(out["sum"], a + a)

    # --- endpoints ----------------------------------------------------------------------
    def test_health_and_server_metadata(self):
        self.assertEqual(self.agent.get_json("/v2/health/live"), (200, {"live": True}))
        self.assertEqual(self.agent.get_json("/v2/health/ready"), (200, {"ready": True}))
        status, meta = self.agent.get_json("/v2")
        self.assertEqual(status, 200)
        self.assertEqual(meta["name"], "outpost")
        self.assertIn("binary_tensor_data", meta["extensions"])
        self.assertGreater(meta["device"]["cpu"]["logical_cores"], 0)
        self.assertIn("CPUExecutionProvider", meta["device"]["onnxruntime"]["execution_providers"])

    def test_model_metadata_and_ready(self):
        status, meta = self.agent.get_json("/v2/models/add_mul")
        self.assertEqual(status, 200)
        self.assertEqual(meta["versions"], ["1"])
        self.assertEqual(meta["platform"], "onnxruntime_onnx")
        self.assertEqual(meta["inputs"], [{"name": "a", "datatype": "FP32", "shape": [-1, 4]},
                                          {"name": "b", "datatype": "FP32", "shape": [-1, 4]}])
        self.assertEqual(self.agent.get_json("/v2/models/add_mul/versions/1")[0], 200)
        self.assertEqual(self.agent.get_json("/v2/models/add_mul/ready")[0], 200)
        self.assertEqual(self.agent.get_json("/v2/models/add_mul/versions/1/ready")[0], 200)
        status, meta = self.agent.get_json("/v2/models/dense_batched")
        self.assertEqual(meta["max_batch_size"], 16)

    def test_unknown_model_and_version(self):
        status, body = self.agent.get_json("/v2/models/nope")
        self.assertError(status, body, 404, "model 'nope' is not in the repository")
        status, body = self.agent.get_json("/v2/models/add_mul/versions/7")
        self.assertError(status, body, 404, "version '7'")
        status, body = self.agent.infer_json("nope", {"a": np.ones((1, 4), np.float32)})
        self.assertError(status, body, 404, "not in the repository")
        status, body = self.agent.get_json("/v2/models/nope/ready")
        self.assertEqual(status, 404)

    def test_repository_index_says_why(self):
        status, index = self.agent.get_json("/v2/repository/index")
        self.assertEqual(status, 200)
        by_name = {e["name"]: e for e in index}
        self.assertEqual(by_name["add_mul"]["state"], "READY")
        self.assertEqual(by_name["broken"]["state"], "UNAVAILABLE")
        self.assertIn("cannot load", by_name["broken"]["reason"])
        self.assertIn("model.onnx", by_name["broken"]["reason"])
        self.assertIn("invalid model name", by_name["Bad Name"]["reason"])
        status, body = self.agent.get_json("/v2/models/broken")
        self.assertError(status, body, 503, "not ready")

    # --- inference ----------------------------------------------------------------------
    def test_json_infer(self):
        a = RNG.standard_normal((3, 4)).astype(np.float32)
        b = RNG.standard_normal((3, 4)).astype(np.float32)
        status, body = self.agent.infer_json("add_mul", {"a": a, "b": b})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["model_name"], "add_mul")
        self.assertEqual(body["model_version"], "1")
        outs = {o["name"]: o for o in body["outputs"]}
        self.assertEqual(outs["sum"]["shape"], [3, 4])
        np.testing.assert_array_equal(np.array(outs["sum"]["data"], np.float32).reshape(3, 4), a + b)
        np.testing.assert_array_equal(np.array(outs["prod"]["data"], np.float32).reshape(3, 4), a * b)

    def test_nested_json_data_and_requested_outputs(self):
        req = {"id": "r-17", "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [2, 4], "data": [[1, 2, 3, 4], [5, 6, 7, 8]]},
            {"name": "b", "datatype": "FP32", "shape": [2, 4], "data": [1, 1, 1, 1, 2, 2, 2, 2]}],
            "outputs": [{"name": "prod"}]}
        status, _, body = self.agent.request("POST", "/v2/models/add_mul/infer", json.dumps(req))
        body = json.loads(body)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["id"], "r-17")
        self.assertEqual([o["name"] for o in body["outputs"]], ["prod"])
        self.assertEqual(body["outputs"][0]["data"], [1, 2, 3, 4, 10, 12, 14, 16])

    def test_every_datatype_json_and_binary(self):
        inputs = identity_inputs()
        status, body = self.agent.infer_json("identity", inputs)
        self.assertEqual(status, 200, body)
        outs = {o["name"]: o for o in body["outputs"]}
        for name, arr in inputs.items():
            out = outs["out_" + name[3:]]
            self.assertEqual(out["datatype"], name[3:])
            self.assertEqual(out["shape"], [3])
            if arr.dtype == np.object_:
                self.assertEqual([x.encode() for x in out["data"]], list(arr))
            else:
                np.testing.assert_array_equal(np.array(out["data"], dtype=arr.dtype), arr, err_msg=name)
        status, outs = self.agent.infer_binary("identity", inputs)
        self.assertEqual(status, 200, outs)
        for name, arr in inputs.items():
            got = outs["out_" + name[3:]]
            self.assertEqual(got.dtype, arr.dtype, name)
            np.testing.assert_array_equal(got, arr, err_msg=name)

    def test_mixed_binary_and_json_outputs(self):
        a = np.arange(8, dtype=np.float32).reshape(2, 4)
        raw = a.tobytes()
        header = json.dumps({"inputs": [
            {"name": "a", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": len(raw)}},
            {"name": "b", "datatype": "FP32", "shape": [2, 4], "data": [0] * 8}],
            "outputs": [{"name": "sum", "parameters": {"binary_data": True}}, {"name": "prod"}]}).encode()
        status, headers, body = self.agent.request("POST", "/v2/models/add_mul/infer", header + raw,
                                                   {"Inference-Header-Content-Length": str(len(header))})
        self.assertEqual(status, 200, body)
        hl = int(headers["Inference-Header-Content-Length"])
        meta = json.loads(body[:hl])
        self.assertEqual(meta["outputs"][0]["parameters"]["binary_data_size"], 32)
        self.assertNotIn("data", meta["outputs"][0])
        self.assertEqual(meta["outputs"][1]["data"], [0.0] * 8)
        np.testing.assert_array_equal(np.frombuffer(body[hl:], np.float32).reshape(2, 4), a)

    # --- bad input ----------------------------------------------------------------------
    def post(self, body, model="add_mul", headers=None):
        status, _, raw = self.agent.request("POST", f"/v2/models/{model}/infer", body, headers)
        return status, json.loads(raw)

    def test_malformed_json(self):
        for body, fragment in [(b"{", "not valid JSON"), (b"[]", "must be a JSON object"),
                               (b'{"inputs": 3}', "'inputs' must be an array"),
                               (b'{"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}', "missing 'name'"),
                               (b'{"inputs": [{"name": "a", "datatype": "FP99", "shape": [1], "data": [1]}]}',
                                "unknown datatype 'FP99'"),
                               (b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [-1], "data": [1]}]}',
                                "non-negative integers"),
                               (b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1, 4]}]}', "missing 'data'")]:
            status, err = self.post(body)
            self.assertError(status, err, 400, fragment)
        self.assertServing()

    def test_wrong_datatype_shape_and_counts(self):
        a = np.ones((1, 4), np.float32)
        status, err = self.agent.infer_json("add_mul", {"a": a.astype(np.float64), "b": a})
        self.assertError(status, err, 400, "datatype FP64 does not match the model's FP32")
        status, err = self.agent.infer_json("add_mul", {"a": np.ones((1, 5), np.float32), "b": a})
        self.assertError(status, err, 400, "shape [1,5] does not match the model's [-1,4]")
        status, err = self.agent.infer_json("add_mul", {"a": a})
        self.assertError(status, err, 400, "needs input 'b'")
        status, err = self.agent.infer_json("add_mul", {"a": a, "b": a, "c": a})
        self.assertError(status, err, 400, "has no input 'c'")
        status, err = self.agent.infer_json("add_mul", {"a": a, "b": a}, outputs=["nope"])
        self.assertError(status, err, 400, "has no output 'nope'")
        req = {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3]},
                          {"name": "b", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
        status, err = self.post(json.dumps(req))
        self.assertError(status, err, 400, "needs 4 elements, 'data' has 3")
        req["inputs"][0]["data"] = ["x", 1, 2, 3]
        status, err = self.post(json.dumps(req))
        self.assertError(status, err, 400, "expected a number, got string")
        req = {"inputs": [{"name": "in_INT8", "datatype": "INT8", "shape": [1], "data": [300]}]}
        status, err = self.post(json.dumps(req), model="identity")
        self.assertError(status, err, 400, "300 is out of range")
        self.assertServing()

    def test_binary_byte_counts_that_do_not_match(self):
        a = np.ones((1, 4), np.float32).tobytes()

        def send(sizes, payload, header_length=None):
            h = json.dumps({"inputs": [
                {"name": n, "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": s}}
                for n, s in zip("ab", sizes)]}).encode()
            hl = str(len(h)) if header_length is None else header_length
            return self.post(h + payload, headers={"Inference-Header-Content-Length": hl})

        self.assertError(*send([16, 12], a + a[:12]), 400, "needs 16 bytes, got 12")
        self.assertError(*send([16, 16], a + a[:8]), 400, "runs past the end of the body")
        self.assertError(*send([16, 16], a + a + b"xx"), 400, "2 bytes after the JSON header")
        self.assertError(*send([16, 16], a + a, header_length="999999"), 400, "exceeds the body")
        self.assertError(*send([16, 16], a + a, header_length="abc"), 400, "not a number")
        # BYTES elements whose length prefixes lie.
        bad = (100).to_bytes(4, "little") + b"abc"
        h = json.dumps({"inputs": [{"name": "in_BYTES", "datatype": "BYTES", "shape": [1],
                                    "parameters": {"binary_data_size": len(bad)}}]}).encode()
        self.assertError(*self.post(h + bad, model="identity", headers={"Inference-Header-Content-Length": str(len(h))}),
                         400, "runs past the end of the data")
        self.assertServing()

    def test_oversized_body(self):
        big = b'{"inputs": [' + b" " * (2 << 20) + b"]}"
        status, _, body = self.agent.request("POST", "/v2/models/add_mul/infer", big)
        self.assertEqual(status, 413)
        self.assertIn("larger than 1048576 bytes", json.loads(body)["error"])
        self.assertServing()

    def test_form_encoded_content_type_is_served(self):
        # curl -d sends application/x-www-form-urlencoded: the body is still a KServe request.
        a = np.ones((1000, 4), np.float32)
        body = json.dumps({"inputs": [{"name": n, "datatype": "FP32", "shape": [1000, 4], "data": a.reshape(-1).tolist()}
                                      for n in ("a", "b")]})
        status, _, raw = self.agent.request("POST", "/v2/models/add_mul/infer", body,
                                            {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 200, raw)
        outputs = {o["name"]: o for o in json.loads(raw)["outputs"]}
        self.assertEqual(outputs["sum"]["data"][:3], [2.0, 2.0, 2.0])

    def test_huge_declared_shape(self):
        req = {"inputs": [{"name": "a", "datatype": "FP32", "shape": [2**40, 2**40], "data": [1]}]}
        status, err = self.post(json.dumps(req))
        self.assertError(status, err, 400, "too large")
        req = {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1 << 30, 4], "data": [1]}]}
        status, err = self.post(json.dumps(req))
        self.assertError(status, err, 400, "'data' has 1")
        self.assertServing()

    def test_slow_and_dropped_clients(self):
        # A client that sends half a body and vanishes, one that stalls, one that never reads.
        body = json.dumps({"inputs": [{"name": "a", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", self.agent.http_port))
            s.sendall(f"POST /v2/models/add_mul/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
                      .encode() + body[:10].encode())
            s.close()
        stalled = [socket.create_connection(("127.0.0.1", self.agent.http_port)) for _ in range(3)]
        for s in stalled:
            s.sendall(b"POST /v2/models/add_mul/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        self.assertServing()
        for s in stalled:
            s.close()
        self.assertServing()

    def test_queue_full_gives_503_with_retry_after(self):
        big, small = np.ones((128, 512), np.float32), np.ones((1, 512), np.float32)
        h = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 512],
                                    "parameters": {"binary_data_size": small.nbytes}}]}).encode()
        long, short = while_busy(
            lambda: self.agent.infer_binary("slow", {"x": big}),
            lambda: self.agent.request("POST", "/v2/models/slow/infer", h + small.tobytes(),
                                       {"Inference-Header-Content-Length": str(len(h))}))
        self.assertEqual(long[0], 200, long[1])
        codes = sorted(s for s, _, _ in short)
        # One instance busy, a queue of 2: two short requests wait and succeed, the rest are refused.
        self.assertEqual(codes, [200, 200, 503, 503, 503, 503], codes)
        for status, headers, body in short:
            if status == 503:
                self.assertEqual(headers.get("Retry-After"), "1")
                self.assertIn("queue is full (2 requests waiting)", json.loads(body)["error"])
        self.assertServing()

    def test_request_timeout(self):
        big, small = np.ones((128, 512), np.float32), np.ones((1, 512), np.float32)
        h = json.dumps({"parameters": {"timeout": 50000}, "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 512], "parameters": {"binary_data_size": small.nbytes}}]})
        long, short = while_busy(
            lambda: self.agent.infer_binary("slow", {"x": big}),
            lambda: self.agent.request("POST", "/v2/models/slow/infer", h.encode() + small.tobytes(),
                                       {"Inference-Header-Content-Length": str(len(h))}), n_short=1)
        self.assertEqual(long[0], 200)
        status, _, body = short[0]
        self.assertEqual(status, 504, body)
        self.assertIn("timed out", json.loads(body)["error"])
        status, _, body = self.agent.request("GET", "/metrics")
        self.assertIn('outpost_inference_request_failure_total{model="slow",version="1",reason="timeout"}', body.decode())

    def test_dynamic_batching_splits_outputs_exactly(self):
        xs = [RNG.standard_normal((1 + i % 3, 64)).astype(np.float32) for i in range(24)]
        results = [None] * len(xs)

        def call(i):
            results[i] = self.agent.infer_binary("dense_batched", {"x": xs[i]})

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(xs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Reference: every request alone (no batching partner can be in flight now).
        for i, x in enumerate(xs):
            status, out = results[i]
            self.assertEqual(status, 200, out)
            self.assertEqual(out["y"].shape, x.shape)
            status, alone = self.agent.infer_binary("dense_batched", {"x": x})
            np.testing.assert_allclose(out["y"], alone["y"], rtol=1e-5, atol=1e-6)
        status, _, metrics = self.agent.request("GET", "/metrics")
        text = metrics.decode()
        execs = [l for l in text.splitlines() if l.startswith('outpost_inference_exec_count_total{model="dense_batched"')]
        infers = [l for l in text.splitlines() if l.startswith('outpost_inference_count_total{model="dense_batched"')]
        self.assertLess(float(execs[0].split()[-1]), float(infers[0].split()[-1]),
                        "concurrent requests were never batched together")
        status, err = self.agent.infer_json("dense_batched", {"x": np.ones((17, 64), np.float32)})
        self.assertError(status, err, 400, "batch dimension must be 1..16")

    # --- metrics ------------------------------------------------------------------------
    def test_metrics_pass_promtool(self):
        self.assertServing()
        status, headers, body = self.agent.request("GET", "/metrics")
        self.assertEqual(status, 200)
        text = body.decode()
        for name in ["outpost_inference_request_success_total", "outpost_inference_request_failure_total",
                     "outpost_inference_queue_duration_seconds_bucket", "outpost_inference_compute_duration_seconds_bucket",
                     "outpost_inference_request_duration_seconds_bucket", "outpost_inference_batch_size_bucket",
                     "process_resident_memory_bytes", 'outpost_inference_pending_requests{model="add_mul",version="1"} 0']:
            self.assertIn(name, text)
        self.assertRegex(text, r'outpost_inference_request_success_total\{model="add_mul",version="1"\} [1-9]')
        check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)


class BrowserTest(unittest.TestCase):
    """What a browser could be made to send (http/browser_guard.h), against a real agent: a
    DNS-rebinding Host, a page on another origin, a preflight-free form post; and what an
    allowed origin gets (CORS headers, preflights). Programs are unaffected."""

    @classmethod
    def setUpClass(cls):
        cls.repo = copy_fixtures(["add_mul"])
        cls.agent = Agent(cls.repo, ["--http-cors-origins", "https://app.example",
                                     "--http-allowed-hosts", "device.example"])
        cls.body = json.dumps({"inputs": [{"name": n, "datatype": "FP32", "shape": [1, 4],
                                           "data": [1, 2, 3, 4]} for n in ("a", "b")]})

    @classmethod
    def tearDownClass(cls):
        rc = cls.agent.close()
        shutil.rmtree(cls.repo)
        assert rc == 0, f"outpostd exited with {rc}"

    def infer(self, headers):
        status, h, raw = self.agent.request("POST", "/v2/models/add_mul/infer", self.body, headers)
        return status, h, json.loads(raw) if raw else None

    def test_rebinding_hosts_are_refused(self):
        for host in ("attacker.example", "attacker.example:8000", "127.0.0.1.nip.io"):
            status, _, body = self.infer({"Host": host, "Content-Type": "application/json"})
            self.assertEqual(status, 403, body)
            self.assertIn("http_allowed_hosts", body["error"])
            status, _, _ = self.agent.request("GET", "/v2/models/add_mul", headers={"Host": host})
            self.assertEqual(status, 403)
        for host in ("device.example:8000", "localhost", f"127.0.0.1:{self.agent.http_port}", "[::1]"):
            self.assertEqual(self.infer({"Host": host, "Content-Type": "application/json"})[0], 200, host)

    def test_pages_on_other_origins_are_refused(self):
        for origin in ("https://evil.example", "null", "https://app.example:444"):
            status, headers, body = self.infer({"Origin": origin, "Content-Type": "application/json"})
            self.assertEqual(status, 403, body)
            self.assertIn("http_cors_origins", body["error"])
            self.assertNotIn("Access-Control-Allow-Origin", headers)
        status, headers, body = self.infer({"Origin": "https://app.example",
                                            "Content-Type": "application/json"})
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["Access-Control-Allow-Origin"], "https://app.example")
        # No CORS headers for programs, which send no Origin.
        status, headers, _ = self.infer({"Content-Type": "application/json"})
        self.assertEqual(status, 200)
        self.assertNotIn("Access-Control-Allow-Origin", headers)

    def test_preflight_free_posts_from_browsers_are_refused(self):
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            status, _, body = self.infer({"Origin": "https://app.example", "Content-Type": ctype})
            self.assertEqual(status, 415, body)
            status, _, body = self.infer({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors",
                                          "Content-Type": ctype})
            self.assertEqual(status, 415, body)
        status, _, body = self.infer({"Sec-Fetch-Mode": "no-cors"})  # a Blob without a type
        self.assertEqual(status, 415, body)
        # curl -d: a program's form post is served.
        self.assertEqual(self.infer({"Content-Type": "application/x-www-form-urlencoded"})[0], 200)

    def test_preflights_answer_allowed_origins_only(self):
        ask = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type"}
        status, headers, _ = self.agent.request("OPTIONS", "/v2/models/add_mul/infer", headers=ask)
        self.assertEqual(status, 204)
        self.assertEqual(headers["Access-Control-Allow-Origin"], "https://app.example")
        self.assertIn("POST", headers["Access-Control-Allow-Methods"])
        self.assertIn("Content-Type", headers["Access-Control-Allow-Headers"])
        status, headers, _ = self.agent.request("OPTIONS", "/v2/models/add_mul/infer",
                                                headers=dict(ask, Origin="https://evil.example"))
        self.assertEqual(status, 403)
        self.assertNotIn("Access-Control-Allow-Origin", headers)
        self.assertEqual(self.agent.request("OPTIONS", "/nowhere", headers=ask)[0], 404)

    def served_infers(self):
        _, _, raw = self.agent.request("GET", "/metrics")
        for line in raw.decode().splitlines():
            if line.startswith('outpost_inference_request_success_total{model="add_mul"'):
                return float(line.split()[-1])
        return 0.0

    @unittest.skipUnless(NODE_MODULES and os.path.exists(CHROMIUM), "needs playwright-core and chromium (setup.sh)")
    def test_a_real_browser_cannot_drive_it(self):
        before = self.served_infers()
        _, _, index_before = self.agent.request("POST", "/v2/repository/index", b"{}",
                                                {"Content-Type": "application/json"})
        out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "browser_attack.cjs")],
                             env={**os.environ, "NODE_PATH": NODE_MODULES, "CHROMIUM": CHROMIUM,
                                  "AGENT_PORT": str(self.agent.http_port)},
                             capture_output=True, text=True, timeout=240)
        self.assertEqual(out.returncode, 0, out.stderr)
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        self.assertEqual(len(seen["cross"]), 10, seen["cross"])  # every no-cors request was sent
        # The rebinding page read every answer: each is the Host refusal, or the 404 of a route
        # this agent does not have (as a program gets it too: "no such endpoint").
        for key, status in seen["rebound"].items():
            method, path = key.split(" ", 1)
            direct = self.agent.request(method, path, b"{}" if method != "GET" else None,
                                        {"Content-Type": "application/json"})
            absent = direct[0] == 404 and b"no such endpoint" in direct[2]
            with self.subTest(request=key):
                self.assertEqual(status, 404 if absent else 403, f"a program gets {direct[0]}")
        self.assertIn("GET /v2/models/add_mul", seen["rebound"])
        self.assertEqual(seen["rebound_page"], 403)  # the navigation under that name, too
        # Nothing the page sent took effect.
        self.assertEqual(self.agent.get_json("/v2/logging")[1]["level"], "info")
        self.assertEqual(self.served_infers(), before)
        self.assertEqual(self.agent.request("POST", "/v2/repository/index", b"{}",
                                            {"Content-Type": "application/json"})[2], index_before)


if __name__ == "__main__":
    unittest.main()
