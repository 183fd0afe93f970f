"""Structured logs: with --log-format json every line the agent writes is one JSON object of the
one event schema; a request's id (the client's X-Request-Id / x-request-id, or a new one) is
sent back and follows the request through serving, the runtime and the chat router; the level
changes at run time."""
import json
import os
import shutil
import tempfile
import threading
import time
import unittest

import grpc
import numpy as np

from agent import Agent, copy_fixtures
from chat_helpers import make_variant

SCHEMA_KEYS = {"time", "level", "component", "event", "msg"}
LEVELS = {"trace", "debug", "info", "warn", "error"}


class StructuredLogTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.repo = copy_fixtures(["add_mul", "dense_batched"])
        make_variant(cls.repo, "tiny", [])
        cls.agent = Agent(cls.repo, ["--log-format", "json", "--log-level", "debug"])

    @classmethod
    def tearDownClass(cls):
        cls.agent.close()
        shutil.rmtree(cls.repo, ignore_errors=True)

    def events(self):
        out = []
        for n, line in enumerate(self.agent.logs().splitlines()):
            try:
                event = json.loads(line)
            except ValueError:
                self.fail(f"log line {n + 1} is not JSON: {line!r}")
            self.assertIsInstance(event, dict, line)
            self.assertLessEqual(SCHEMA_KEYS, set(event), line)
            self.assertIn(event["level"], LEVELS, line)
            self.assertRegex(event["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
            self.assertRegex(event["event"], r"^[a-z][a-z0-9_]*$", line)
            out.append(event)
        return out

    def wait_for(self, predicate, what):
        deadline = time.time() + 10
        while time.time() < deadline:
            found = [e for e in self.events() if predicate(e)]
            if found:
                return found
            time.sleep(0.05)
        self.fail(f"no log event {what}:\n{self.agent.logs()[-3000:]}")

    def test_http_request_id_reaches_serving_and_runtime_events(self):
        a = np.ones((1, 4), np.float32)
        body = json.dumps({"inputs": [
            {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": a.ravel().tolist()},
            {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": a.ravel().tolist()}]})
        status, headers, _ = self.agent.request("POST", "/v2/models/add_mul/infer", body,
                                                {"X-Request-Id": "trace-http-1"})
        self.assertEqual(status, 200)
        self.assertEqual(headers["X-Request-Id"], "trace-http-1")
        request = self.wait_for(lambda e: e["event"] == "request" and e.get("request_id") == "trace-http-1",
                                "for the HTTP request")[0]
        self.assertEqual((request["component"], request["status"], request["path"]),
                         ("serving", 200, "/v2/models/add_mul/infer"))
        run = self.wait_for(lambda e: e["event"] == "execution" and "trace-http-1" in e["request_ids"],
                            "from the runtime")[0]
        self.assertEqual((run["component"], run["model"], run["version"]), ("runtime", "add_mul", "1"))

    def test_unsafe_or_missing_ids_are_replaced(self):
        for sent in (None, "has spaces and \"quotes\"", "x" * 65, "line\\nbreak"):
            status, headers, _ = self.agent.request("GET", "/v2/health/live",
                                                    headers={} if sent is None else {"X-Request-Id": sent})
            self.assertEqual(status, 200)
            self.assertRegex(headers["X-Request-Id"], r"^[0-9a-f]{16}$", sent)
        _, h1, _ = self.agent.request("GET", "/v2/health/live")
        _, h2, _ = self.agent.request("GET", "/v2/health/live")
        self.assertNotEqual(h1["X-Request-Id"], h2["X-Request-Id"])

    def test_batched_execution_names_every_request(self):
        ids = [f"batch-{i}" for i in range(12)]
        statuses = {}

        def call(i):
            x = np.full((1, 64), i, np.float32)
            body = json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32",
                                           "data": x.ravel().tolist()}]})
            statuses[i] = self.agent.request("POST", "/v2/models/dense_batched/infer", body,
                                             {"X-Request-Id": ids[i]})[0]

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(ids))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(set(statuses.values()), {200})
        runs = self.wait_for(lambda e: e["event"] == "execution" and e["model"] == "dense_batched"
                             and any(i.startswith("batch-") for i in e["request_ids"]), "for the batch")
        named = [i for r in runs for i in r["request_ids"]]
        self.assertEqual(sorted(named), sorted(ids), "each request in exactly one execution")
        for r in runs:
            self.assertEqual(r["requests"], len(r["request_ids"]))

    def test_grpc_request_id_round_trip(self):
        stub, pb2 = self.agent.grpc()
        req = pb2.ModelInferRequest(model_name="add_mul")
        for name in ("a", "b"):
            t = req.inputs.add(name=name, datatype="FP32", shape=[1, 4])
            t.contents.fp32_contents.extend([1, 2, 3, 4])
        _, call = stub.ModelInfer.with_call(req, metadata=[("x-request-id", "trace-grpc-1")])
        self.assertIn(("x-request-id", "trace-grpc-1"), tuple(call.initial_metadata()))
        self.wait_for(lambda e: e["event"] == "request" and e.get("request_id") == "trace-grpc-1"
                      and e["protocol"] == "grpc" and e["status"] == 0, "for the gRPC call")
        self.wait_for(lambda e: e["event"] == "execution" and "trace-grpc-1" in e["request_ids"],
                      "from the runtime for the gRPC call")
        req.model_name = "nope"
        with self.assertRaises(grpc.RpcError) as ctx:
            stub.ModelInfer.with_call(req, metadata=[("x-request-id", "trace-grpc-2")])
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.wait_for(lambda e: e["event"] == "request" and e.get("request_id") == "trace-grpc-2"
                      and e["status"] == grpc.StatusCode.NOT_FOUND.value[0], "for the failed call")

    def test_chat_request_id_reaches_router_and_generation(self):
        body = json.dumps({"model": "tiny", "max_tokens": 4,
                           "messages": [{"role": "user", "content": "hello"}]})
        status, headers, raw = self.agent.request("POST", "/v1/chat/completions", body,
                                                  {"Content-Type": "application/json",
                                                   "X-Request-Id": "trace-chat-1"})
        self.assertEqual(status, 200, raw)
        completion = json.loads(raw)["id"]
        route = self.wait_for(lambda e: e["event"] == "route" and e.get("request_id") == "trace-chat-1",
                              "from the router")[0]
        self.assertEqual((route["component"], route["route"], route["reason"]),
                         ("router", "local", "routine"))
        gen = self.wait_for(lambda e: e["event"] == "generation" and e.get("request_id") == "trace-chat-1",
                            "for the generation")[0]
        self.assertEqual((gen["component"], gen["completion_id"]), ("runtime", completion))
        self.assertGreater(gen["completion_tokens"], 0)

    def test_log_level_changes_at_run_time(self):
        status, _, raw = self.agent.request("PUT", "/v2/logging", json.dumps({"level": "info"}))
        self.assertEqual(status, 200, raw)
        try:
            self.agent.request("GET", "/v2/health/live", headers={"X-Request-Id": "quiet-1"})
            changed = self.wait_for(lambda e: e["event"] == "log_level_changed", "for the change")[-1]
            self.assertEqual((changed["from"], changed["to"]), ("debug", "info"))
        finally:
            self.assertEqual(self.agent.request("PUT", "/v2/logging", json.dumps({"level": "debug"}))[0], 200)
        self.agent.request("GET", "/v2/health/live", headers={"X-Request-Id": "loud-1"})
        self.wait_for(lambda e: e.get("request_id") == "loud-1", "once debug is back")
        self.assertFalse([e for e in self.events() if e.get("request_id") == "quiet-1"],
                         "a debug event was written at level info")
        status, _, raw = self.agent.request("PUT", "/v2/logging", json.dumps({"level": "loud"}))
        self.assertEqual(status, 400)
        self.assertIn("unknown log level", json.loads(raw)["error"])


class TextLogTest(unittest.TestCase):
    def test_text_lines_carry_the_component_and_request_id(self):
        repo = copy_fixtures(["add_mul"])
        try:
            agent = Agent(repo, ["--log-level", "debug"], grpc=False)
            try:
                agent.request("GET", "/v2/health/live", headers={"X-Request-Id": "text-1"})
                deadline = time.time() + 10
                while time.time() < deadline and "text-1" not in agent.logs():
                    time.sleep(0.05)
                line = next(l for l in agent.logs().splitlines() if "text-1" in l)
                self.assertRegex(line, r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} debug \[serving\] "
                                       r"GET /v2/health/live 200 \(request text-1\)$")
            finally:
                agent.close()
        finally:
            shutil.rmtree(repo, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
