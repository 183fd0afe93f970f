"""ONNX models kept in ORT format beside their version (<version>/.derived/), optimized once for
this CPU and read in place: the copy answers as the model does, a copy that fails its HMAC or no
longer matches its source is made again (never served), and --no-ort-format-models leaves the
repository as it was."""
import os
import shutil
import stat
import tempfile
import time
import unittest

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from agent import Agent


def write_dense(version_dir, seed):
    """y = x W + b, 256 wide: weights ORT pre-packs and weights it reads in place."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((256, 256)).astype(np.float32) / 16
    b = rng.standard_normal((256,)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 256])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    os.makedirs(version_dir, exist_ok=True)
    path = os.path.join(version_dir, "model.onnx")
    # Replace, never rewrite in place: the agent may be reading the old file.
    onnx.save(model, path + ".tmp")
    os.rename(path + ".tmp", path)
    return w, b


class DerivedModelsTest(unittest.TestCase):
    def setUp(self):
        self.repo = tempfile.mkdtemp(prefix="outpost-derived-")
        self.version = os.path.join(self.repo, "dense", "1")
        self.weights = write_dense(self.version, seed=1)
        self.copy = os.path.join(self.version, ".derived", "model.onnx.ort")
        self.x = np.random.default_rng(9).standard_normal((3, 256)).astype(np.float32)

    def tearDown(self):
        shutil.rmtree(self.repo)

    def check_answer(self, agent, weights):
        status, out = agent.infer_binary("dense", {"x": self.x})
        self.assertEqual(status, 200, out)
        w, b = weights
        np.testing.assert_allclose(out["y"], self.x @ w + b, rtol=1e-4, atol=1e-4)

    def test_a_model_is_served_from_a_private_authenticated_copy(self):
        agent = Agent(self.repo, ["--repository-poll-secs", "0"])
        try:
            self.check_answer(agent, self.weights)
            index = agent.get_json("/v2/repository/index")[1]
        finally:
            self.assertEqual(agent.close(), 0)
        self.assertTrue(os.path.isfile(self.copy))
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(self.copy)).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(self.copy + ".json").st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.repo, ".derived.key")).st_mode), 0o600)
        # The copy is the agent's, not the version's: its files are what was installed.
        self.assertEqual(index[0]["file_bytes"], os.path.getsize(os.path.join(self.version, "model.onnx")))
        # A second start uses the copy as it is.
        before = os.stat(self.copy).st_ino
        agent = Agent(self.repo, ["--repository-poll-secs", "0"])
        try:
            self.check_answer(agent, self.weights)
        finally:
            self.assertEqual(agent.close(), 0)
        self.assertEqual(os.stat(self.copy).st_ino, before)
        self.assertNotIn("ORT-format copy again", agent.logs())

    def test_a_tampered_copy_is_made_again_and_never_served(self):
        Agent(self.repo, ["--repository-poll-secs", "0"]).close()
        with open(self.copy, "rb") as f:
            good = f.read()
        # Every byte of the weights' region changed, as a writer of the repository could.
        bad = bytearray(good)
        for i in range(len(bad) // 4, 3 * len(bad) // 4):
            bad[i] ^= 0x5A
        with open(self.copy, "wb") as f:
            f.write(bad)
        agent = Agent(self.repo, ["--repository-poll-secs", "0"])
        try:
            self.check_answer(agent, self.weights)
        finally:
            self.assertEqual(agent.close(), 0)
        self.assertIn("making its ORT-format copy again: it failed verification", agent.logs())
        with open(self.copy, "rb") as f:
            self.assertEqual(f.read(), good)

    def test_a_changed_model_gets_a_new_copy(self):
        agent = Agent(self.repo, ["--repository-poll-secs", "0.2"])
        try:
            self.check_answer(agent, self.weights)
            first = os.stat(self.copy).st_ino
            new_weights = write_dense(self.version, seed=2)
            deadline = time.time() + 30
            while time.time() < deadline:
                status, out = agent.infer_binary("dense", {"x": self.x})
                if status == 200 and not np.allclose(out["y"], self.x @ self.weights[0] + self.weights[1],
                                                     rtol=1e-4, atol=1e-4):
                    break
                time.sleep(0.1)
            self.check_answer(agent, new_weights)
        finally:
            self.assertEqual(agent.close(), 0)
        self.assertNotEqual(os.stat(self.copy).st_ino, first)
        self.assertIn("making its ORT-format copy again: the model changed", agent.logs())

    def test_switched_off_the_repository_is_left_as_it_was(self):
        agent = Agent(self.repo, ["--repository-poll-secs", "0", "--no-ort-format-models"])
        try:
            self.check_answer(agent, self.weights)
        finally:
            self.assertEqual(agent.close(), 0)
        self.assertEqual(sorted(os.listdir(self.repo)), ["dense"])
        self.assertEqual(sorted(os.listdir(self.version)), ["model.onnx"])


if __name__ == "__main__":
    unittest.main()
