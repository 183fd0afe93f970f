"""Local chat through the agent: /v1/chat/completions and /v1/models on tiny random decoders.

The decoders are built here (tests/fixtures/tiny_llm.py: a Llama-style network with random
weights in the Optimum ONNX layout) next to a numpy forward pass of the same network. Greedy
decoding through the agent must match the numpy reference token for token, with the KV cache
and without it. Every body and stream chunk is validated against the OpenAI OpenAPI schemas.
"""
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import numpy as np

from agent import BIN_DIR, Agent
from chat_helpers import ChatClientMixin, make_variant, tiny_llm
from openai_schema import OpenAiSchemas

OUTPOST = os.path.join(BIN_DIR, "outpost")
VARIANTS = {"tiny": [], "tiny-nocache": ["--no-past"], "tiny-fp16": ["--weights", "fp16"],
            "tiny-int8": ["--weights", "int8"], "tiny-int4": ["--weights", "int4"]}


class ChatTest(ChatClientMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="outpost-chat-")
        cls.repo = os.path.join(cls.tmp, "repo")
        for name, flags in VARIANTS.items():
            make_variant(cls.repo, name, flags)
        model_dir = os.path.join(cls.repo, "tiny", "1")
        with open(os.path.join(model_dir, "reference.json")) as f:
            cls.meta = json.load(f)
        cls.weights = tiny_llm.load_weights(cls.meta)
        with open(os.path.join(model_dir, "tokenizer.json")) as f:
            tok = json.load(f)
        unbyte = {c: b for b, c in tiny_llm.bytes_to_unicode().items()}
        cls.id_of_bytes = {}
        for token, i in tok["model"]["vocab"].items():
            cls.id_of_bytes[bytes(unbyte[c] for c in token)] = i
        with open(os.path.join(model_dir, "generation_config.json")) as f:
            cls.eos = set(json.load(f)["eos_token_id"])
        cls.model_dir = model_dir
        cls.schemas = OpenAiSchemas()
        cls.agent = Agent(cls.repo, grpc=False)

    @classmethod
    def tearDownClass(cls):
        cls.agent.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # --- helpers ---------------------------------------------------------------------
    def prompt_ids(self, messages):
        prompt = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        prompt += "<|im_start|>assistant\n"
        out = subprocess.run([OUTPOST, "tokenize", "--dir", self.model_dir, prompt],
                             capture_output=True, check=True)
        return json.loads(out.stdout)["ids"]

    def token_ids(self, logprobs):
        return [self.id_of_bytes[bytes(t["bytes"])] for t in logprobs["content"]]

    def reference(self, messages, n):
        return tiny_llm.reference_greedy(self.weights, self.meta, self.prompt_ids(messages), n,
                                         stop=self.eos)

    # --- correctness -----------------------------------------------------------------
    def test_greedy_matches_numpy_reference_with_and_without_cache(self):
        for messages in ([{"role": "user", "content": "hello world"}],
                         [{"role": "system", "content": "You are Outpost."},
                          {"role": "user", "content": "what is the answer, and why?"},
                          {"role": "assistant", "content": "the answer"},
                          {"role": "user", "content": "and you are?"}]):
            expected = self.reference(messages, 40)
            self.assertGreater(len(expected), 5, "the fixture should not stop at once")
            for model in ("tiny", "tiny-nocache"):
                with self.subTest(model=model, turns=len(messages)):
                    body, _ = self.chat({"model": model, "messages": messages, "max_tokens": 40,
                                         "temperature": 0, "logprobs": True, "top_logprobs": 3})
                    choice = body["choices"][0]
                    got = self.token_ids(choice["logprobs"])
                    self.assertEqual(got, expected)
                    self.assertEqual(choice["finish_reason"], "length" if len(expected) == 40 else "stop")
                    # The content leaves special tokens out; the logprobs list every token.
                    text = b"".join(bytes(t["bytes"]) for t in choice["logprobs"]["content"]
                                    if bytes(t["bytes"]).decode("latin-1") not in tiny_llm.SPECIALS)
                    self.assertEqual(choice["message"]["content"], text.decode("utf-8", "replace"))
                    self.assertEqual(body["usage"]["prompt_tokens"], len(self.prompt_ids(messages)))
                    self.assertEqual(body["usage"]["completion_tokens"], len(expected))
                    for t in choice["logprobs"]["content"]:  # greedy: the chosen one is the likeliest
                        self.assertAlmostEqual(t["logprob"], t["top_logprobs"][0]["logprob"], places=5)

    def test_stream_carries_the_same_tokens(self):
        messages = [{"role": "user", "content": "hello world"}]
        expected = self.reference(messages, 24)
        chunks, _, _ = self.stream({"model": "tiny", "messages": messages, "max_tokens": 24,
                              "temperature": 0, "logprobs": True,
                              "stream_options": {"include_usage": True}})
        self.assertEqual(chunks[0]["choices"][0]["delta"], {"role": "assistant", "content": ""})
        ids = []
        text = ""
        for c in chunks[1:-2]:
            ids += self.token_ids(c["choices"][0]["logprobs"])
            text += c["choices"][0]["delta"]["content"]
        self.assertEqual(ids, expected)
        self.assertEqual(len({c["id"] for c in chunks}), 1)
        self.assertEqual(chunks[-2]["choices"][0]["finish_reason"], "length")
        self.assertEqual(chunks[-1]["choices"], [])
        self.assertEqual(chunks[-1]["usage"]["completion_tokens"], 24)
        body, _ = self.chat({"model": "tiny", "messages": messages, "max_tokens": 24, "temperature": 0})
        self.assertEqual(text, body["choices"][0]["message"]["content"])

    def test_weight_variants_generate(self):
        messages = [{"role": "user", "content": "hello world"}]
        prompt = self.prompt_ids(messages)
        expected = self.reference(messages, 8)
        # The quantized variants against the reference on their own (dequantized) weights: each
        # step's log-probability of the token chosen, and the choice itself where int4's
        # weight-only quantization leaves nothing else to differ.
        tolerance = {"tiny-fp16": 0.02, "tiny-int8": 0.15, "tiny-int4": 0.02}
        weights = {"tiny-fp16": self.weights,
                   "tiny-int8": tiny_llm.dequantized(self.weights, "int8"),
                   "tiny-int4": tiny_llm.dequantized(self.weights, "int4")}
        for model in ("tiny-fp16", "tiny-int8", "tiny-int4"):
            with self.subTest(model=model):
                body, _ = self.chat({"model": model, "messages": messages, "max_tokens": 8,
                                     "temperature": 0, "logprobs": True})
                content = body["choices"][0]["logprobs"]["content"]
                got = self.token_ids(body["choices"][0]["logprobs"])
                self.assertEqual(len(got), len(expected))
                logits = tiny_llm.reference_logits(weights[model], self.meta, prompt + got)
                for step, (token, entry) in enumerate(zip(got, content)):
                    row = logits[len(prompt) + step - 1]
                    ref = row - np.log(np.sum(np.exp(row - row.max()))) - row.max()
                    self.assertAlmostEqual(entry["logprob"], ref[token], delta=tolerance[model],
                                           msg=f"step {step}")
                    # Greedy: what was chosen is (within the tolerance) the reference's best.
                    self.assertGreaterEqual(ref[token], ref.max() - tolerance[model], f"step {step}")
                if model in ("tiny-fp16", "tiny-int4"):
                    self.assertEqual(got, tiny_llm.reference_greedy(
                        weights[model], self.meta, prompt, 8, stop=self.eos))

    def test_sampling_is_reproducible_with_a_seed(self):
        base = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}],
                "max_tokens": 16, "temperature": 1.0, "top_p": 0.9, "top_k": 50, "min_p": 0.01,
                "repetition_penalty": 1.1}
        a, _ = self.chat({**base, "seed": 7})
        b, _ = self.chat({**base, "seed": 7})
        self.assertEqual(a["choices"][0]["message"]["content"], b["choices"][0]["message"]["content"])
        outs = {self.chat({**base, "seed": s})[0]["choices"][0]["message"]["content"] for s in range(6)}
        self.assertGreater(len(outs), 1, "six seeds gave one text: sampling does not sample")
        greedy = self.reference([{"role": "user", "content": "hello"}], 16)
        top1, _ = self.chat({**base, "seed": 3, "top_k": 1, "repetition_penalty": 1.0,
                             "logprobs": True})
        self.assertEqual(self.token_ids(top1["choices"][0]["logprobs"]), greedy)

    def test_stop_string_cuts_the_answer(self):
        messages = [{"role": "user", "content": "hello world"}]
        body, _ = self.chat({"model": "tiny", "messages": messages, "max_tokens": 40, "temperature": 0})
        full = body["choices"][0]["message"]["content"]
        clean = [m.start() for m in re.finditer(r"[A-Za-z]{2}", full)]
        self.assertTrue(clean, f"no ASCII pair to stop on in {full!r}")
        at = clean[len(clean) // 2]
        stop = full[at:at + 2]
        body, _ = self.chat({"model": "tiny", "messages": messages, "max_tokens": 40,
                             "temperature": 0, "stop": ["never appears", stop]})
        self.assertEqual(body["choices"][0]["message"]["content"], full[:full.index(stop)])
        self.assertEqual(body["choices"][0]["finish_reason"], "stop")
        chunks, _, _ = self.stream({"model": "tiny", "messages": messages, "max_tokens": 40,
                              "temperature": 0, "stop": stop})
        streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        self.assertEqual(streamed, full[:full.index(stop)])

    def test_concurrent_sequences_each_match_the_reference(self):
        prompts = [[{"role": "user", "content": f"hello {i}"}] for i in range(6)]
        expected = [self.reference(p, 12) for p in prompts]

        def run(p):
            body, _ = self.chat({"model": "tiny", "messages": p, "max_tokens": 12,
                                 "temperature": 0, "logprobs": True})
            return self.token_ids(body["choices"][0]["logprobs"])

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            got = list(pool.map(run, prompts))
        self.assertEqual(got, expected)

    def test_client_leaving_cancels_the_generation(self):
        def cancelled_count():
            _, _, raw = self.agent.request("GET", "/metrics")
            m = re.search(r'outpost_chat_requests_total\{model="tiny-nocache",finish_reason="cancelled"\} (\S+)',
                          raw.decode())
            return float(m.group(1)) if m else 0.0

        for stream in (True, False):
            with self.subTest(stream=stream):
                before = cancelled_count()
                conn = http.client.HTTPConnection("127.0.0.1", self.agent.http_port, timeout=30)
                conn.request("POST", "/v1/chat/completions", json.dumps(
                    {"model": "tiny-nocache", "messages": [{"role": "user", "content": "go on"}],
                     "max_tokens": 1900, "temperature": 0, "stream": stream}),
                    {"Content-Type": "application/json"})
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                r.fp.readline()  # the first bytes have arrived: generation is under way
                conn.sock.close()
                conn.close()
                deadline = time.time() + 60
                while time.time() < deadline and cancelled_count() == before:
                    time.sleep(0.1)
                self.assertEqual(cancelled_count(), before + 1)

    # --- the API surface -------------------------------------------------------------
    def test_models_lists_chat_models(self):
        status, _, raw = self.agent.request("GET", "/v1/models")
        body = json.loads(raw)
        self.assertEqual(status, 200)
        self.schemas.validate(body, "ListModelsResponse")
        # the device's chat models, and the router's alias that lets it pick
        self.assertEqual(sorted(m["id"] for m in body["data"]), sorted([*VARIANTS, "outpost"]))

    def test_errors_are_in_the_openai_shape(self):
        ok = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
        cases = [
            ({**ok, "model": "nope"}, 404, "model", "model_not_found"),
            ({**ok, "temperature": 3}, 400, "temperature", None),
            ({**ok, "messages": []}, 400, "messages", None),
            ({**ok, "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role", None),
            ({**ok, "max_tokens": 0}, 400, "max_tokens", None),
            ({**ok, "n": 2}, 400, "n", None),
            ({**ok, "top_logprobs": 2}, 400, "top_logprobs", None),
            ({**ok, "messages": [{"role": "user", "content": "word " * 3000}]}, 400, "messages",
             "context_length_exceeded"),
            ({**ok, "max_tokens": 5000}, 400, "max_tokens", "context_length_exceeded"),
        ]
        for body, status, param, code in cases:
            with self.subTest(param=param, status=status):
                err, _ = self.chat(body, expect=status)
                self.assertEqual(err["error"]["param"], param)
                self.assertEqual(err["error"]["code"], code)
                self.assertTrue(err["error"]["message"])
        status, _, raw = self.agent.request("POST", "/v1/chat/completions", b"{not json",
                                            {"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        self.schemas.validate(json.loads(raw), "ErrorResponse")
        status, _, raw = self.agent.request(
            "POST", "/v2/models/tiny/infer",
            json.dumps({"inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [1, 1], "data": [1]}]}))
        self.assertEqual(status, 400)
        self.assertIn("chat model", json.loads(raw)["error"])

    @unittest.skipUnless(os.environ.get("OUTPOST_NODE_MODULES"), "needs the openai npm package")
    def test_official_openai_sdk_works_unchanged(self):
        modules = os.environ["OUTPOST_NODE_MODULES"]
        out = subprocess.run(
            ["node", os.path.join(os.path.dirname(os.path.abspath(__file__)), "openai_client.cjs"),
             f"http://127.0.0.1:{self.agent.http_port}/v1", "tiny"],
            env={**os.environ, "NODE_PATH": modules}, capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        seen = json.loads(out.stdout)
        self.assertIn("tiny", seen["models"])
        body, _ = self.chat({"model": "tiny", "messages": [{"role": "user", "content": "hello world"}],
                             "max_tokens": 12, "temperature": 0})
        self.assertEqual(seen["content"], body["choices"][0]["message"]["content"])
        self.assertEqual(seen["streamed"], seen["content"])
        self.assertEqual(seen["usage"], body["usage"])
        self.assertEqual(seen["stream_usage"], body["usage"])
        self.assertEqual(seen["error"]["class"], "NotFoundError")
        self.assertEqual(seen["error"]["status"], 404)
        self.assertEqual(seen["error"]["code"], "model_not_found")

    def test_chat_metrics_are_exported(self):
        self.chat({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
                   "temperature": 0})
        _, _, raw = self.agent.request("GET", "/metrics")
        text = raw.decode()
        for name in ("outpost_chat_prompt_tokens_total", "outpost_chat_completion_tokens_total",
                     "outpost_chat_time_to_first_token_seconds_bucket",
                     "outpost_chat_time_per_output_token_seconds_bucket"):
            self.assertRegex(text, name + r'\{[^}]*model="tiny"')


class SignedChatPackageTest(unittest.TestCase):
    """A chat model as a signed package: tokenizer files are covered by the signature."""

    def test_signed_chat_package_serves_and_tampering_is_refused(self):
        tmp = tempfile.mkdtemp(prefix="outpost-chatpkg-")
        try:
            run = lambda *a: subprocess.run([OUTPOST, *a], capture_output=True, text=True)  # noqa: E731
            self.assertEqual(run("key", "generate", "alice", "--dir", tmp).returncode, 0)
            with open(os.path.join(tmp, "alice.pub")) as f:
                pub = json.load(f)["public"]
            trust = os.path.join(tmp, "trust.json")
            with open(trust, "w") as f:
                json.dump({"threshold": 1, "keys": [{"public": pub, "name": "alice"}], "revoked": []}, f)
            src = os.path.join(tmp, "src")
            make_variant(tmp, "src-build", [])
            shutil.copytree(os.path.join(tmp, "src-build", "1"), src)
            os.remove(os.path.join(src, "reference.json"))
            with open(os.path.join(src, "manifest.json"), "w") as f:
                json.dump({"format_version": 1, "name": "tinychat", "version": "1.0.0",
                           "model_file": "model.onnx",
                           "serving": {"context_length": 256, "max_sequences": 2}}, f)
            pkg = os.path.join(tmp, "tinychat.opkg")
            self.assertEqual(run("pack", src, "-o", pkg).returncode, 0)
            self.assertEqual(run("sign", pkg, "--key", os.path.join(tmp, "alice.key")).returncode, 0)
            repo = os.path.join(tmp, "repo")
            r = run("install", pkg, "--repository", repo, "--trust", trust)
            self.assertEqual(r.returncode, 0, r.stderr)
            agent = Agent(repo, ["--trust-file", trust, "--repository-poll-secs", "0.1"], grpc=False,
                          signed_only=True)
            try:
                status, _, raw = agent.request("POST", "/v1/chat/completions", json.dumps(
                    {"model": "tinychat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}))
                self.assertEqual(status, 200, raw)
                # the manifest's context_length (256) is what the router and the limits use
                status, _, raw = agent.request("POST", "/v1/chat/completions", json.dumps(
                    {"model": "tinychat", "messages": [{"role": "user", "content": "word " * 300}]}))
                self.assertEqual(status, 400, raw)
                self.assertIn("256", json.loads(raw)["error"]["message"])
                # a tokenizer edited after installation no longer matches the signature
                with open(os.path.join(repo, "tinychat", "1.0.0", "tokenizer.json"), "a") as f:
                    f.write(" ")
                deadline = time.time() + 30
                while time.time() < deadline:
                    _, index = agent.get_json("/v2/repository/index")
                    entry = [e for e in index if e["name"] == "tinychat"][0]
                    if "kept the previous files" in entry.get("reason", ""):
                        break
                    time.sleep(0.1)
                self.assertIn("tokenizer.json", entry["reason"])
            finally:
                agent.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
