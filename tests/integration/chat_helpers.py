"""What the chat tests share: tiny decoder fixtures and an OpenAI-shaped client that checks
every body and stream chunk against the OpenAI schemas."""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../fixtures"))
import tiny_llm  # noqa: E402


def make_variant(repo, name, flags):
    """A tiny random decoder (tests/fixtures/tiny_llm.py) as <repo>/<name>/1."""
    parser = argparse.ArgumentParser()
    for a in ("--hidden", "--layers", "--heads", "--ffn", "--vocab", "--seed"):
        parser.add_argument(a, type=int)
    parser.add_argument("--weights", default="fp32")
    parser.add_argument("--no-past", action="store_true")
    parser.add_argument("--save-weights", action="store_true")
    args = parser.parse_args(["--hidden", "32", "--layers", "2", "--heads", "4", "--ffn", "64",
                              "--vocab", "0", "--seed", "1", *flags])
    tiny_llm.write(os.path.join(repo, name, "1"), args)


def parse_sse(raw):
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        events.append(block[len("data: "):])
    return events


class ChatClientMixin:
    """For unittest.TestCase classes with `self.agent` and `self.schemas`."""

    def chat(self, body, expect=200, headers=None, key="admin"):
        status, h, raw = self.agent.request("POST", "/v1/chat/completions", json.dumps(body),
                                            {"Content-Type": "application/json", **(headers or {})},
                                            timeout=120, key=key)
        parsed = json.loads(raw)
        self.assertEqual(status, expect, parsed)
        self.schemas.validate(parsed, "CreateChatCompletionResponse" if status == 200 else "ErrorResponse")
        return parsed, h

    def stream(self, body):
        """Returns (chunks, headers, raw events); every chunk is schema-checked."""
        status, h, raw = self.agent.request("POST", "/v1/chat/completions",
                                            json.dumps({**body, "stream": True}),
                                            {"Content-Type": "application/json"}, timeout=120)
        self.assertEqual(status, 200, raw)
        self.assertTrue(h["Content-Type"].startswith("text/event-stream"))
        events = parse_sse(raw)
        self.assertEqual(events[-1], "[DONE]")
        chunks = [json.loads(e) for e in events if e != "[DONE]"]
        for c in chunks:
            if "error" not in c:
                self.schemas.validate(c, "CreateChatCompletionStreamResponse")
        return chunks, h, events
