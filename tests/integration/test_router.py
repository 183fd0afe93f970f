"""The chat router against a fake OpenAI-compatible cloud on loopback.

Each routing reason, the redaction round trip (the cloud sees placeholders, the client the
original values), cloud outage before and in the middle of a stream (local fallback with a
notice), retries on 429/5xx, budget exhaustion, and the circuit breaker opening and closing
again after its half-open trial. The API key comes from the encrypted secret store.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent import BIN_DIR, Agent
from openai_schema import OpenAiSchemas
from chat_helpers import ChatClientMixin, make_variant

OUTPOST = os.path.join(BIN_DIR, "outpost")
API_KEY = "sk-test-0123456789abcdef"


class FakeCloud:
    """An OpenAI-compatible server whose behaviour each test sets: `plan` is a list of modes
    consumed one request at a time (the last one repeats)."""

    def __init__(self):
        self.requests = []
        self.plan = ["ok"]
        self.lock = threading.Lock()
        cloud = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with cloud.lock:
                    cloud.requests.append({"body": body, "auth": self.headers.get("Authorization"),
                                           "extra": self.headers.get("X-Team")})
                    mode = cloud.plan.pop(0) if len(cloud.plan) > 1 else cloud.plan[0]
                if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                    return self.error(401, "bad key")
                if mode == "500":
                    return self.error(500, "overloaded")
                if mode == "429":
                    return self.error(429, "slow down", retry_after="0")
                user = [m["content"] for m in body["messages"] if m["role"] == "user"][-1]
                answer = f"Cloud says: {user}"
                if not body.get("stream"):
                    return self.send(200, {
                        "id": "cmpl-fake", "object": "chat.completion", "created": 1, "model": body["model"],
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer,
                                                             "refusal": None},
                                     "logprobs": None, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                pieces = [answer[i:i + 3] for i in range(0, len(answer), 3)]
                for i, piece in enumerate(pieces):
                    if mode == "cut" and i == 4:
                        self.wfile.flush()
                        self.connection.shutdown(2)
                        return
                    self.event({"id": "c", "object": "chat.completion.chunk", "created": 1,
                                "model": body["model"], "choices": [
                                    {"index": 0, "delta": {"content": piece}, "logprobs": None,
                                     "finish_reason": None}]})
                self.event({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                            "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
                self.event({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                            "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 7,
                                                     "total_tokens": 17}})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def event(self, obj):
                self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
                self.wfile.flush()

            def send(self, status, obj, retry_after=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(data)

            def error(self, status, message, retry_after=None):
                self.send(status, {"error": {"message": message, "type": "x", "param": None, "code": None}},
                          retry_after)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


class RouterTest(ChatClientMixin, unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="outpost-router-")
        self.repo = os.path.join(self.tmp, "repo")
        make_variant(self.repo, "tiny", [])
        self.secrets = os.path.join(self.tmp, "secrets")
        subprocess.run([OUTPOST, "secret", "--store", self.secrets, "set", "cloudkey"],
                       input=API_KEY.encode(), check=True, capture_output=True)
        self.cloud = FakeCloud()
        self.schemas = OpenAiSchemas()
        self.agent = None

    def tearDown(self):
        if self.agent:
            self.agent.close()
            with open(self.agent.log_path) as f:
                self.assertNotIn(API_KEY, f.read(), "the API key reached the log")
        self.cloud.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, router=None, cloud=None):
        config = {"secrets_dir": self.secrets,
                  "chat_router": {"state_dir": os.path.join(self.tmp, "state"), **(router or {})},
                  "chat_cloud": {"url": f"http://127.0.0.1:{self.cloud.port}/v1", "model": "big-cloud",
                                 "api_key_secret": "cloudkey", "headers": {"X-Team": "edge"},
                                 "backoff_ms": 10, "breaker_failures": 2, "breaker_cooldown_secs": 1.5,
                                 **(cloud or {})}}
        path = os.path.join(self.tmp, "config.json")
        with open(path, "w") as f:
            json.dump(config, f)
        self.agent = Agent(self.repo, extra_args=["--config", path], grpc=False)

    def metric(self, pattern, missing=None):
        """A sample's value; a series that is not there fails the test unless `missing` says
        what it stands for (a counter not yet created is 0)."""
        _, _, raw = self.agent.request("GET", "/metrics")
        m = re.search(r"(?m)^" + re.escape(pattern) + r" (\S+)$", raw.decode())
        if m:
            return float(m.group(1))
        if missing is None:
            self.fail(f"no sample {pattern} in /metrics")
        return missing

    # --- routing reasons ---------------------------------------------------------------
    def test_each_routing_reason(self):
        self.start(router={"difficulty_threshold": 0.5})
        user = lambda text: [{"role": "user", "content": text}]  # noqa: E731
        cases = [
            ({"model": "outpost", "messages": user("hi there")}, "local", "routine"),
            ({"model": "outpost", "messages": user(
                "Step by step, first, prove the theorem: solve for x in x^2 = 4 * y / 2 and "
                "compare the integral ... then explain why. Finally plan the design?")},
             "cloud", "difficult"),
            ({"model": "outpost", "messages": user("word " * 2500)}, "cloud", "context_exceeds_local"),
            ({"model": "outpost", "messages": user("hi"), "max_tokens": 2040}, "cloud",
             "max_tokens_exceeds_local"),
            ({"model": "outpost", "messages": user("hi"), "metadata": {"route": "cloud"}}, "cloud",
             "forced_cloud"),
            ({"model": "tiny", "messages": user("prove the theorem step by step, then compare"),
              "metadata": {"route": "local"}}, "local", "forced_local"),
            ({"model": "big-cloud", "messages": user("hi")}, "cloud", "forced_cloud"),
            ({"model": "outpost", "messages": user("prove this theorem step by step, then compare"),
              "metadata": {"privacy": "private"}}, "local", "private"),
        ]
        for body, route, reason in cases:
            with self.subTest(reason=reason):
                before = self.metric(f'outpost_router_decisions_total{{route="{route}",reason="{reason}"}}',
                                     missing=0.0)
                _, h = self.chat({**body, "max_tokens": body.get("max_tokens", 4)})
                self.assertEqual((h["X-Outpost-Route"], h["X-Outpost-Route-Reason"]), (route, reason))
                after = self.metric(f'outpost_router_decisions_total{{route="{route}",reason="{reason}"}}')
                self.assertEqual(after, before + 1)
        self.assertEqual(self.cloud.requests[0]["auth"], f"Bearer {API_KEY}")
        self.assertEqual(self.cloud.requests[0]["extra"], "edge")
        self.assertEqual(self.cloud.requests[0]["body"]["model"], "big-cloud")

    def test_private_requests_never_leave_and_refuse_when_too_big(self):
        self.start()
        err, _ = self.chat({"model": "outpost", "messages": [{"role": "user", "content": "word " * 2500}]},
                           expect=400, headers={"X-Outpost-Privacy": "private"})
        self.assertIn("private", err["error"]["message"])
        self.assertEqual(self.cloud.requests, [])

    def test_redaction_round_trip(self):
        self.start()
        secret = ("Mail jane.doe@example.com or call +44 20 7946 0958 about card "
                  "4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32, host 10.1.2.3, ticket TCK-981")
        self.agent.close()
        self.start(router={"redaction_rules": [{"kind": "TICKET", "pattern": r"TCK-\d+"}]})
        messages = [{"role": "system", "content": "Reply to jane.doe@example.com."},
                    {"role": "user", "content": secret}]
        body, h = self.chat({"model": "outpost", "messages": messages, "metadata": {"route": "cloud"}})
        self.assertEqual(h["X-Outpost-Route"], "cloud")
        self.assertEqual(body["choices"][0]["message"]["content"], "Cloud says: " + secret)
        sent = json.dumps(self.cloud.requests[-1]["body"])
        for value in ("jane.doe@example.com", "7946 0958", "4111 1111", "GB82", "10.1.2.3", "TCK-981"):
            self.assertNotIn(value, sent)
        self.assertIn("[EMAIL_1]", sent)
        self.assertIn("[TICKET_1]", sent)
        # the same address is the same placeholder in both messages
        self.assertEqual(sent.count("[EMAIL_1]"), 2)
        chunks, _, _ = self.stream({"model": "outpost", "messages": messages, "metadata": {"route": "cloud"}})
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        self.assertEqual(text, "Cloud says: " + secret)
        for c in chunks:
            self.schemas.validate(c, "CreateChatCompletionStreamResponse")
        self.assertGreaterEqual(self.metric('outpost_router_redactions_total{kind="EMAIL"}'), 4)
        with open(self.agent.log_path) as f:
            log = f.read()
        self.assertNotIn("jane.doe@example.com", log)
        self.assertNotIn("4111 1111 1111 1111", log)

    def test_retries_then_success(self):
        self.start()
        self.cloud.plan = ["429", "500", "ok"]
        body, h = self.chat({"model": "outpost", "messages": [{"role": "user", "content": "hi"}],
                             "metadata": {"route": "cloud"}})
        self.assertEqual(h["X-Outpost-Route"], "cloud")
        self.assertEqual(body["choices"][0]["message"]["content"], "Cloud says: hi")
        self.assertEqual(len(self.cloud.requests), 3)

    def test_outage_falls_back_to_local_with_a_notice(self):
        self.start(cloud={"retries": 1})
        self.cloud.plan = ["500"]
        body, h = self.chat({"model": "outpost", "messages": [{"role": "user", "content": "hi"}],
                             "max_tokens": 5, "metadata": {"route": "cloud"}})
        self.assertEqual(h["X-Outpost-Route"], "local")
        self.assertEqual(h["X-Outpost-Route-Reason"], "cloud_failed_fallback")
        self.assertIn("could not answer", body["outpost"]["notice"])
        self.assertEqual(body["usage"]["completion_tokens"], 5)
        self.assertEqual(len(self.cloud.requests), 2)  # one retry

    def test_outage_mid_stream_continues_locally(self):
        self.start()
        self.cloud.plan = ["cut"]
        chunks, h, events = self.stream({"model": "outpost", "messages": [{"role": "user", "content": "hello"}],
                                         "max_tokens": 6, "metadata": {"route": "cloud"}})
        self.assertEqual(h["X-Outpost-Route"], "cloud")
        self.assertEqual(events[-1], "[DONE]")
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        self.assertTrue(text.startswith("Cloud says: hello"[:12]), text)  # four pieces arrived
        self.assertEqual(chunks[-1].get("outpost", {}).get("reason"), "cloud_failed_fallback", chunks)
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "length")
        self.assertEqual(len(self.cloud.requests), 1)  # nothing retried once output had flowed

    def test_budget_exhaustion(self):
        self.start(router={"daily_cloud_tokens": 30})
        ask = {"model": "outpost", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
               "metadata": {"route": "cloud"}}
        for _ in range(2):  # 17 tokens each: 34 > 30 after the second
            _, h = self.chat(ask)
            self.assertEqual(h["X-Outpost-Route"], "cloud")
        _, h = self.chat(ask)
        self.assertEqual((h["X-Outpost-Route"], h["X-Outpost-Route-Reason"]), ("local", "cloud_budget_exhausted"))
        err, _ = self.chat({**ask, "messages": [{"role": "user", "content": "word " * 2500}]}, expect=429)
        self.assertIn("cloud_budget_exhausted", err["error"]["message"])
        self.assertEqual(len(self.cloud.requests), 2)
        # the day's spending survives a restart
        self.agent.close()
        self.start(router={"daily_cloud_tokens": 30})
        _, h = self.chat(ask)
        self.assertEqual(h["X-Outpost-Route-Reason"], "cloud_budget_exhausted")

    def test_cloud_scope_and_per_key_budgets(self):
        """Only callers whose credential has the cloud scope reach the cloud (anonymous loopback
        callers do not), and each key spends its own daily budget."""
        self.start()
        keys = {}
        for name, scopes, budget in (("chat", ["chat"], 0), ("a", ["chat", "cloud"], 30), ("b", ["chat", "cloud"], 30)):
            status, _, raw = self.agent.request("POST", "/v2/auth/keys", json.dumps(
                {"name": name, "scopes": scopes, **({"budget_tokens": budget} if budget else {})}),
                {"Content-Type": "application/json"})
            self.assertEqual(status, 201, raw)
            keys[name] = json.loads(raw)["key"]
        ask = {"model": "outpost", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
               "metadata": {"route": "cloud"}}
        for key in (None, keys["chat"]):
            _, h = self.chat(ask, key=key)
            self.assertEqual((h["X-Outpost-Route"], h["X-Outpost-Route-Reason"]), ("local", "cloud_not_permitted"))
            # What only the cloud could answer is refused, and says why.
            err, _ = self.chat({**ask, "messages": [{"role": "user", "content": "word " * 2500}]}, expect=403,
                               key=key)
            self.assertIn("cloud_not_permitted", err["error"]["message"])
        self.assertEqual(self.cloud.requests, [])
        for _ in range(2):  # 17 tokens each: 34 > 30 after the second
            _, h = self.chat(ask, key=keys["a"])
            self.assertEqual(h["X-Outpost-Route"], "cloud")
        _, h = self.chat(ask, key=keys["a"])
        self.assertEqual((h["X-Outpost-Route"], h["X-Outpost-Route-Reason"]), ("local", "key_budget_exhausted"))
        err, _ = self.chat({**ask, "messages": [{"role": "user", "content": "word " * 2500}]}, expect=429,
                           key=keys["a"])
        self.assertIn("key_budget_exhausted", err["error"]["message"])
        _, h = self.chat(ask, key=keys["b"])  # another key's budget is its own
        self.assertEqual(h["X-Outpost-Route"], "cloud")
        self.assertEqual(len(self.cloud.requests), 3)
        status, _, raw = self.agent.request("GET", "/v2/auth/keys")
        spent = {k["name"]: k.get("spent_tokens_today") for k in json.loads(raw)}
        self.assertEqual((spent["a"], spent["b"], spent["chat"]), (34, 17, None))

    def test_circuit_breaker_opens_and_half_opens(self):
        self.start(cloud={"retries": 0})
        ask = {"model": "outpost", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
               "metadata": {"route": "cloud"}}
        self.cloud.plan = ["500"]
        for _ in range(2):  # breaker_failures = 2
            _, h = self.chat(ask)
            self.assertEqual(h["X-Outpost-Route-Reason"], "cloud_failed_fallback")
        self.assertEqual(self.metric("outpost_router_cloud_circuit_state"), 2)
        _, h = self.chat(ask)  # open: not even tried
        self.assertEqual((h["X-Outpost-Route"], h["X-Outpost-Route-Reason"]), ("local", "cloud_unavailable"))
        self.assertEqual(len(self.cloud.requests), 2)
        time.sleep(1.7)  # cooldown over: half-open, one trial
        self.assertEqual(self.metric("outpost_router_cloud_circuit_state"), 1)
        _, h = self.chat(ask)  # the trial fails: open again
        self.assertEqual(h["X-Outpost-Route-Reason"], "cloud_failed_fallback")
        self.assertEqual(self.metric("outpost_router_cloud_circuit_state"), 2)
        time.sleep(1.7)
        self.cloud.plan = ["ok"]
        body, h = self.chat(ask)  # the trial succeeds: closed
        self.assertEqual(h["X-Outpost-Route"], "cloud")
        self.assertEqual(self.metric("outpost_router_cloud_circuit_state"), 0)
        self.assertEqual(len(self.cloud.requests), 4)

    def test_bad_router_config_is_refused_at_start(self):
        path = os.path.join(self.tmp, "bad.json")
        for bad, message in (({"chat_cloud": {"url": "x", "model": "m", "headers": {"Authorization": "k"}}},
                              "credentials do not belong"),
                             ({"chat_router": {"prefer": "moon"}}, "prefer"),
                             ({"chat_router": {"redaction_rules": [{"kind": "X", "pattern": "("}]}}, "pattern")):
            with open(path, "w") as f:
                json.dump(bad, f)
            out = subprocess.run([os.path.join(BIN_DIR, "outpostd"), "--config", path, "--print-config"],
                                 capture_output=True, text=True)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn(message, out.stderr)


if __name__ == "__main__":
    unittest.main()
