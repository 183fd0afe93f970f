"""Store-and-forward: the telemetry outbox (SQLite, WAL) and its OTLP/HTTP shipper against an
OTLP receiver on loopback that remembers batch ids.

Every event a producer stored must reach the receiver exactly once and in order, or be
counted as dropped: through SIGKILLs at random moments, answers lost on the way back (the
batch is sent again under the same id), a long outage with more events than the store holds
(the oldest low-priority ones go first, counted), and a disk that fills up.
"""
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent import BIN_DIR

HARNESS = os.path.join(BIN_DIR, "outbox_harness")


class OtlpReceiver:
    """Accepts OTLP/JSON logs; counts each batch id once. `down`: refuses with 503;
    `lose_answers`: a fraction of accepted batches get no answer (the connection drops)."""

    def __init__(self, seed=1):
        self.events = {}  # device -> [k, ...] in arrival order
        self.records = []  # (device, attributes, body) of every record, once
        self.hooks = []  # webhook bodies
        self.priorities = {}
        self.seen = set()
        self.duplicates = 0
        self.down = False
        self.refused = 0  # requests answered 503 while down
        self.lose_answers = 0.0
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        rx = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if rx.down:
                    with rx.lock:
                        rx.refused += 1
                    return self.answer(503)
                if self.path == "/hook":  # a plain webhook
                    with rx.lock:
                        rx.hooks.append(json.loads(body))
                    return self.answer(200)
                assert self.path == "/v1/logs", self.path
                req = json.loads(body)
                rl = req["resourceLogs"][0]
                attrs = {a["key"]: a["value"] for a in rl["resource"]["attributes"]}
                batch = attrs["outpost.batch.id"]["stringValue"]
                device = attrs["device.id"]["stringValue"]
                assert self.headers["Idempotency-Key"] == batch
                with rx.lock:
                    if batch in rx.seen:
                        rx.duplicates += 1
                    else:
                        rx.seen.add(batch)
                        for rec in rl["scopeLogs"][0]["logRecords"]:
                            ra = {a["key"]: a["value"] for a in rec["attributes"]}
                            rx.records.append((device, ra, rec["body"].get("stringValue", "")))
                            if "k" in ra:
                                k = int(ra["k"]["intValue"])
                                rx.events.setdefault(device, []).append(k)
                                rx.priorities[k] = int(ra["outpost.priority"]["intValue"])
                    lose = rx.rng.random() < rx.lose_answers
                if lose:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.answer(200, b'{"partialSuccess":{}}')

            def answer(self, status, data=b"{}"):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the connections it drops on purpose are not errors

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


class OutboxTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="outpost-outbox-")
        self.db = os.path.join(self.tmp, "outbox.db")
        self.rx = OtlpReceiver()

    def tearDown(self):
        self.rx.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def harness(self, *args, check=True):
        out = subprocess.run([HARNESS, "--db", self.db, "--url", self.rx.url, *args],
                             capture_output=True, text=True, timeout=300)
        if check:
            self.assertEqual(out.returncode, 0, out.stderr)
        return json.loads(out.stdout) if out.stdout.strip() else None

    def integrity(self):
        with sqlite3.connect(self.db) as c:
            return c.execute("PRAGMA integrity_check").fetchone()[0]

    def test_sigkill_at_random_moments_loses_and_repeats_nothing(self):
        n = 4000
        self.rx.lose_answers = 0.1
        rng = random.Random(20261125)
        for kill in range(8):
            p = subprocess.Popen([HARNESS, "--db", self.db, "--url", self.rx.url, "--events", str(n),
                                  "--rate", "4000", "--ship"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0.05, 0.4))
            p.send_signal(signal.SIGKILL)
            p.wait()
            self.assertEqual(self.integrity(), "ok", f"after kill {kill}")
        st = self.harness("--events", str(n), "--ship")
        self.assertEqual(st["items"], 0)
        self.assertEqual(st["dropped"], {})
        self.assertEqual(self.rx.events["dev-1"], list(range(1, n + 1)))
        self.assertGreater(self.rx.duplicates, 0, "no answer was lost: the retry path went untested")

    def test_long_outage_then_everything_once_in_order_or_counted(self):
        # Six hours at one event per 5 s = 4,320 events while the receiver is down; the store
        # holds ~2,000 of them, every 10th is high priority.
        n = 4320
        self.rx.down = True
        # The shipper runs through the outage: every attempt is refused, nothing is lost.
        st = self.harness("--events", str(n), "--max-bytes", "600000", "--payload-bytes", "200",
                          "--high-every", "10", "--ship", "--drain-secs", "1", check=False)
        self.assertEqual(st["shipped_items"], 0)
        self.assertGreater(st["send_failures"], 0)
        self.assertGreater(self.rx.refused, 0, "the shipper never met the outage")
        self.assertEqual(self.rx.seen, set())
        dropped = sum(st["dropped"].values())
        self.assertGreater(dropped, 0)
        self.assertEqual(set(st["dropped"]), {"full_p0"}, "only low-priority items may go")
        self.rx.down = False
        st = self.harness("--events", str(n), "--ship")
        self.assertEqual(st["items"], 0)
        got = self.rx.events["dev-1"]
        self.assertEqual(got, sorted(got), "out of order")
        self.assertEqual(len(got), len(set(got)), "counted twice")
        self.assertEqual(len(got) + dropped, n)
        high = [k for k in range(1, n + 1) if k % 10 == 0]
        self.assertTrue(set(high) <= set(got), "a high-priority event was dropped")
        self.assertEqual(got[-1], n)  # the newest survive

    def test_full_disk_is_counted_and_the_store_stays_whole(self):
        # The disk fills while nothing ships (the outage is the test above; here a shipper could
        # not even take a batch from a database that cannot be written).
        n = 3000
        st = self.harness("--events", str(n), "--file-size-limit", "1000000", "--payload-bytes", "200")
        self.assertEqual(self.rx.seen, set())
        self.assertGreater(st["dropped"].get("disk_full", 0), 0)
        self.assertEqual(st["failed_appends"], st["dropped"]["disk_full"])
        stored = st["produced"]
        self.assertLess(stored, n)
        self.assertEqual(self.integrity(), "ok")
        # Space again: the producer resumes after what it stored, and all of it arrives once.
        self.rx.down = False
        st = self.harness("--events", str(n), "--ship")
        self.assertEqual(st["items"], 0)
        self.assertEqual(self.rx.events["dev-1"], list(range(1, n + 1)))


if __name__ == "__main__":
    unittest.main()
