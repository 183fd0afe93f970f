"""An update repository end to end: outpost repo builds it, a static HTTP server on loopback
serves it, and the outpost tuf client (the TUF conformance CLI) refreshes and downloads."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from agent import BIN_DIR, FIXTURES, free_port

OUTPOST = os.path.join(BIN_DIR, "outpost")


def outpost(*args):
    return subprocess.run([OUTPOST, *map(str, args)], capture_output=True, text=True, timeout=120)


class OtaTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="outpost-ota-")
        self.keys = {}
        for role in ("root", "targets", "snapshot", "timestamp"):
            self.assertEqual(outpost("key", "generate", role, "--dir", self.tmp).returncode, 0)
            self.keys[role] = os.path.join(self.tmp, role + ".key")
        self.repo = os.path.join(self.tmp, "repo")
        r = outpost("repo", "init", self.repo, "--root-key", self.keys["root"], "--targets-key", self.keys["targets"],
                    "--snapshot-key", self.keys["snapshot"], "--timestamp-key", self.keys["timestamp"])
        self.assertEqual(r.returncode, 0, r.stderr)
        src = os.path.join(self.tmp, "src")
        shutil.copytree(os.path.join(FIXTURES, "add_mul", "1"), src)
        with open(os.path.join(src, "manifest.json"), "w") as f:
            json.dump({"name": "add_mul", "version": "1.0.0"}, f)
        self.package = os.path.join(self.tmp, "add_mul-1.0.0.opkg")
        self.assertEqual(outpost("pack", src, "-o", self.package).returncode, 0)
        self.assertEqual(outpost("repo", "add", self.repo, self.package, "--targets-key", self.keys["targets"]).returncode, 0)
        self.publish()
        self.port = free_port()
        self.server = subprocess.Popen(["/usr/bin/python3", "-m", "http.server", str(self.port), "--bind", "127.0.0.1"],
                                       cwd=self.repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if subprocess.run(["curl", "-sf", "-o", "/dev/null", self.url("metadata/root.json")]).returncode == 0:
                break
            time.sleep(0.05)
        self.meta = os.path.join(self.tmp, "client-metadata")
        r = outpost("tuf", "--metadata-dir", self.meta, "init", os.path.join(self.repo, "metadata", "1.root.json"))
        self.assertEqual(r.returncode, 0, r.stderr)

    def tearDown(self):
        self.server.terminate()
        self.server.wait()
        shutil.rmtree(self.tmp)

    def url(self, path=""):
        return f"http://127.0.0.1:{self.port}/{path}"

    def publish(self, *extra):
        r = outpost("repo", "publish", self.repo, "--snapshot-key", self.keys["snapshot"],
                    "--timestamp-key", self.keys["timestamp"], *extra)
        self.assertEqual(r.returncode, 0, r.stderr)

    def client(self, command, *extra):
        return outpost("tuf", "--metadata-dir", self.meta, "--metadata-url", self.url("metadata"),
                       "--target-name", "add_mul-1.0.0.opkg", "--target-base-url", self.url("targets"),
                       "--target-dir", os.path.join(self.tmp, "downloads"), command, *extra)

    def test_refresh_and_download(self):
        r = self.client("refresh")
        self.assertEqual(r.returncode, 0, r.stderr)
        for role in ("root", "timestamp", "snapshot", "targets"):
            self.assertTrue(os.path.exists(os.path.join(self.meta, role + ".json")), role)
        r = self.client("download")
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(self.tmp, "downloads", "add_mul-1.0.0.opkg"), "rb") as a, open(self.package, "rb") as b:
            self.assertEqual(a.read(), b.read())
        # Downloaded and verified already: a second download makes no target request.
        before = os.stat(os.path.join(self.tmp, "downloads", "add_mul-1.0.0.opkg")).st_mtime_ns
        r = self.client("download")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(os.stat(os.path.join(self.tmp, "downloads", "add_mul-1.0.0.opkg")).st_mtime_ns, before)

    def test_tampered_target_is_refused(self):
        target = [n for n in os.listdir(os.path.join(self.repo, "targets"))][0]
        path = os.path.join(self.repo, "targets", target)
        with open(path, "rb") as f:
            data = bytearray(f.read())
        data[100] ^= 1
        with open(path, "wb") as f:
            f.write(data)
        r = self.client("download")
        self.assertEqual(r.returncode, 1)
        self.assertIn("sha256 differs from the one signed for it", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "downloads", "add_mul-1.0.0.opkg")))

    def test_rollback_and_freeze(self):
        self.assertEqual(self.client("refresh").returncode, 0)
        with open(os.path.join(self.repo, "metadata", "timestamp.json")) as f:
            old = f.read()
        self.publish()
        self.assertEqual(self.client("refresh").returncode, 0)
        with open(os.path.join(self.repo, "metadata", "timestamp.json")) as f:
            current = f.read()
        with open(os.path.join(self.repo, "metadata", "timestamp.json"), "w") as f:
            f.write(old)  # a mirror serving yesterday's (validly signed) timestamp
        r = self.client("refresh")
        self.assertEqual(r.returncode, 1)
        self.assertIn("(rollback)", r.stderr)
        with open(os.path.join(self.repo, "metadata", "timestamp.json"), "w") as f:
            f.write(current)  # the mirror fixed: the next publication numbers on from it
        self.publish("--expires-days", "0")  # a publication nobody refreshed: already expired
        r = self.client("refresh")
        self.assertEqual(r.returncode, 1)
        self.assertIn("(freeze)", r.stderr)


if __name__ == "__main__":
    unittest.main()
