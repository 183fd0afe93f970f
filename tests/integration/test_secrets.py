"""`outpost secret`: values go in through standard input only, are stored encrypted with
private file modes, and are refused when altered."""
import os
import shutil
import stat
import subprocess
import tempfile
import unittest

from agent import BIN_DIR
from swtpm import SoftwareTpm

OUTPOST = os.path.join(BIN_DIR, "outpost")


class SecretCliTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="outpost-secrets-")
        self.store = os.path.join(self.tmp, "store")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def run_cli(self, *args, stdin="", env=None, store=None):
        return subprocess.run([OUTPOST, "secret", "--store", store or self.store, *args], input=stdin,
                              capture_output=True, text=True, timeout=60, env=env)

    def test_sealed_by_the_tpm_and_useless_elsewhere(self):
        value = "sk-live-Sealed-7"
        with SoftwareTpm(os.path.join(self.tmp, "tpm1")) as device, \
                SoftwareTpm(os.path.join(self.tmp, "tpm2")) as other:
            r = self.run_cli("set", "cloud_key", stdin=value, env=device.env())
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(sorted(os.listdir(self.store)), ["cloud_key.secret", "store.key.tpm"])
            copy = os.path.join(self.tmp, "copy")
            shutil.copytree(self.store, copy)
            r = self.run_cli("check", "cloud_key", env=other.env(), store=copy)
            self.assertEqual(r.returncode, 1)
            self.assertIn("another TPM", r.stderr)
            no_tpm = {k: v for k, v in os.environ.items() if k != "OUTPOST_TPM_TCTI"}
            r = self.run_cli("check", "cloud_key", env=no_tpm, store=copy)
            self.assertEqual(r.returncode, 1)
            self.assertIn("no TPM here", r.stderr)
            # The device's TPM restarts (a reboot): its store still opens.
            device.stop()
            device.start()
            r = self.run_cli("check", "cloud_key", env=device.env())
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(f"{len(value)} bytes", r.stdout)

    def test_set_list_check_rm(self):
        value = "sk-live-DoNotLeak-42"
        r = self.run_cli("set", "cloud_key", stdin=value + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(value, r.stdout + r.stderr)
        self.assertEqual(stat.S_IMODE(os.stat(self.store).st_mode), 0o700)
        for name in os.listdir(self.store):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.store, name)).st_mode), 0o600, name)
            with open(os.path.join(self.store, name), "rb") as f:
                self.assertNotIn(value.encode(), f.read())
        r = self.run_cli("list")
        self.assertEqual((r.returncode, r.stdout), (0, "cloud_key\n"))
        r = self.run_cli("check", "cloud_key")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"{len(value)} bytes", r.stdout)
        self.assertNotIn(value, r.stdout)
        self.assertEqual(self.run_cli("rm", "cloud_key").returncode, 0)
        r = self.run_cli("check", "cloud_key")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no secret named 'cloud_key'", r.stderr)

    def test_refusals(self):
        self.assertEqual(self.run_cli("set", "k", stdin="v").returncode, 0)
        path = os.path.join(self.store, "k.secret")
        with open(path, "r+b") as f:
            data = bytearray(f.read())
            data[-1] ^= 1
            f.seek(0)
            f.write(data)
        r = self.run_cli("check", "k")
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not decrypt", r.stderr)
        r = self.run_cli("set", "empty", stdin="")
        self.assertEqual(r.returncode, 1)
        self.assertIn("empty value", r.stderr)
        os.chmod(os.path.join(self.store, "store.key"), 0o644)
        r = self.run_cli("list")
        self.assertEqual(r.returncode, 1)
        self.assertIn("chmod 600", r.stderr)


if __name__ == "__main__":
    unittest.main()
