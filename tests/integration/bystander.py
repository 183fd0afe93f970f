"""A well-behaved client in a process of its own (an attack's threads in the test process must
not slow it through the GIL): one request every 20 ms on a keep-alive connection, until its
standard input closes; then it prints {"latencies": [...], "failures": [...]} as JSON. Given a CA
file as its fifth argument, it speaks HTTPS (one handshake, then the same keep-alive connection).
Every non-200 answer or error is a failure, recorded and not retried away."""
import http.client
import json
import ssl
import sys
import threading
import time


def main():
    port, method, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    body = sys.argv[4].encode() if len(sys.argv) > 4 and sys.argv[4] else None
    headers = {"Content-Type": "application/json"} if body else {}
    tls = ssl.create_default_context(cafile=sys.argv[5]) if len(sys.argv) > 5 and sys.argv[5] else None
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    latencies, failures, conn = [], [], None
    print("ready", flush=True)
    while not stop.is_set():
        start = time.monotonic()
        try:
            if conn is None:
                conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=tls) if tls
                        else http.client.HTTPConnection("127.0.0.1", port, timeout=30))
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                failures.append([r.status, data[:200].decode(errors="replace")])
        except Exception as e:  # noqa: BLE001 - any failure of a normal request counts
            failures.append(repr(e))
            conn = None
        latencies.append(time.monotonic() - start)
        time.sleep(0.02)
    print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)


if __name__ == "__main__":
    main()
