"""PyTorch models (TorchScript .pt and lite-interpreter .ptl, made with python3-torch at test
time) served through signed packages over KServe v2 HTTP and gRPC, agreeing with PyTorch run in
Python: a small CNN, an LSTM with three outputs, and a model whose every dimension is free."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np

from agent import BIN_DIR, SignedRepository, write_package_manifest

OUTPOST = os.path.join(BIN_DIR, "outpost")

try:
    import torch_cases
except ImportError:  # python3-torch missing: setup.sh installs it
    torch_cases = None


def outpost(*args):
    return subprocess.run([OUTPOST, *args], capture_output=True, text=True)


@unittest.skipUnless(torch_cases, "python3-torch is not installed (scripts/setup.sh)")
class TorchTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="outpost-torch-")
        cls.signed = SignedRepository(cls.tmp)
        cls.reference = {}
        for name in torch_cases.CASES:
            for lite in (False, True):
                served = name + ("_lite" if lite else "")
                src = os.path.join(cls.tmp, "src-" + served)
                os.mkdir(src)
                fields, cls.reference[served] = torch_cases.make(name, src, lite)
                write_package_manifest(src, served, **fields)
                cls.signed.publish(src, os.path.join(cls.tmp, served + ".opkg"))
        cls.agent = cls.signed.agent()

    @classmethod
    def tearDownClass(cls):
        assert cls.agent.close() == 0
        shutil.rmtree(cls.tmp)

    def pack(self, name, src, fields):
        write_package_manifest(src, name, **fields)
        return self.signed.pack(src, os.path.join(self.tmp, name + ".opkg"))

    def test_models_agree_with_pytorch_over_http_and_grpc(self):
        for served, reference in self.reference.items():
            name = served.removesuffix("_lite")
            with self.subTest(model=served):
                meta = self.agent.get_json(f"/v2/models/{served}")[1]
                self.assertEqual(meta["platform"], "pytorch_libtorch")
                arrays = torch_cases.example_inputs(name)
                inputs = {t["name"]: a for t, a in zip(meta["inputs"], arrays)}
                expected = reference(*arrays)
                status, http = self.agent.infer_binary(served, inputs)
                self.assertEqual(status, 200, http)
                grpc = self.agent.infer_grpc(served, inputs)
                for spec, want in zip(meta["outputs"], expected):
                    np.testing.assert_allclose(http[spec["name"]], want, rtol=1e-5, atol=1e-6)
                    np.testing.assert_array_equal(grpc[spec["name"]], http[spec["name"]])

    def test_dynamic_shapes_follow_the_inputs(self):
        for rows, inner, cols in ((1, 1, 1), (4, 9, 2), (17, 3, 8)):
            a = np.random.default_rng(rows).normal(size=(rows, inner)).astype(np.float32)
            b = np.random.default_rng(cols).normal(size=(cols, inner)).astype(np.float32)
            status, out = self.agent.infer_binary("dynamic", {"a": a, "b": b})
            self.assertEqual(status, 200, out)
            self.assertEqual(out["product"].shape, (rows, cols))
            np.testing.assert_allclose(out["product"], a @ b.T, rtol=1e-5, atol=1e-5)

    def test_bad_requests_get_clear_errors(self):
        status, out = self.agent.infer_binary("dynamic", {"a": np.zeros((2, 3), np.float32),
                                                          "b": np.zeros((2, 4), np.float32)})
        self.assertEqual(status, 400, out)
        self.assertIn("libtorch", str(out))
        status, out = self.agent.infer_binary("small_cnn", {"image": np.zeros((1, 3, 32, 32), np.float64)})
        self.assertEqual(status, 400, out)

    def test_outpost_bench_runs_a_torchscript_package(self):
        r = outpost("bench", os.path.join(self.tmp, "src-small_cnn"), "--shape", "image=4x3x32x32",
                    "--iterations", "10", "--seconds", "0.2", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        [row] = json.loads(r.stdout)
        self.assertEqual((row["runtime"], row["provider"]), ("torchscript", "libtorch CPU"))
        self.assertGreater(row["throughput_1"], 0)

    def test_pack_refuses_models_it_cannot_serve(self):
        src = os.path.join(self.tmp, "src-unsigned-sig")
        os.mkdir(src)
        fields, _ = torch_cases.make("dynamic", src)
        r = self.pack("nosig", src, {"runtime": "torchscript", "model_file": "model.pt"})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("needs its inputs and outputs declared", r.stderr)
        with open(os.path.join(src, "model.pt"), "r+b") as f:
            f.truncate(200)
        r = self.pack("broken", src, fields)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("libtorch: cannot load", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


if __name__ == "__main__":
    unittest.main()
