"""Triton's system shared-memory extension, as its clients use it: the client creates a POSIX
shared-memory object, registers it as a region (POST /v2/systemsharedmemory/region/NAME/register
or SystemSharedMemoryRegister), then passes inputs and outputs by region, offset and byte size.
Regions are checked when registered (the object exists, the range lies inside it, it is the
caller's own and no other user may write it) and when used (the range, the size the tensor
needs, that the object still holds it); they are private to the caller that registered them;
unregistering one that a request is using lets that request finish."""
import json
import os
import threading
import time
import unittest
from multiprocessing import shared_memory

import grpc
import numpy as np

from agent import Agent, copy_fixtures


class Region:
    """A shared-memory object made as Triton's client utilities make one (mode 0600)."""

    def __init__(self, size):
        self.shm = shared_memory.SharedMemory(create=True, size=size)
        self.key = "/" + self.shm.name
        self.size = size

    def put(self, offset, arr):
        raw = np.ascontiguousarray(arr).tobytes()
        self.shm.buf[offset:offset + len(raw)] = raw

    def get(self, offset, dtype, shape):
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.frombuffer(bytes(self.shm.buf[offset:offset + n]), dtype).reshape(shape)

    def close(self):
        self.shm.close()
        self.shm.unlink()


def shm_params(region, size, offset=0):
    p = {"shared_memory_region": region, "shared_memory_byte_size": size}
    if offset:
        p["shared_memory_offset"] = offset
    return p


class SharedMemoryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.repo = copy_fixtures(["add_mul", "slow", "frame_mean"])
        cls.agent = Agent(cls.repo)
        cls.stub, cls.pb2 = cls.agent.grpc()

    @classmethod
    def tearDownClass(cls):
        rc = cls.agent.close()
        import shutil
        shutil.rmtree(cls.repo)
        assert rc == 0, cls.agent.logs()

    def setUp(self):
        self.regions = []

    def tearDown(self):
        # Every caller's regions go, whatever the test left.
        self.post("/v2/systemsharedmemory/unregister")
        self.post("/v2/systemsharedmemory/unregister", key=None)
        for r in self.regions:
            r.close()

    def region(self, size):
        r = Region(size)
        self.regions.append(r)
        return r

    def post(self, path, body=None, key="admin"):
        status, _, raw = self.agent.request("POST", path, json.dumps(body) if body is not None else None,
                                            {"Content-Type": "application/json"}, key=key)
        return status, json.loads(raw) if raw else None

    def register(self, name, key, byte_size, offset=0, api_key="admin"):
        return self.post(f"/v2/systemsharedmemory/region/{name}/register",
                         {"key": key, "offset": offset, "byte_size": byte_size}, key=api_key)

    def infer(self, model, body, key="admin"):
        return self.post(f"/v2/models/{model}/infer", body, key=key)

    def status(self, name=None, key="admin"):
        path = "/v2/systemsharedmemory" + (f"/region/{name}" if name else "") + "/status"
        status, _, raw = self.agent.request("GET", path, key=key)
        return status, json.loads(raw)

    def test_inputs_and_outputs_by_region_over_http(self):
        a = np.arange(8, dtype=np.float32).reshape(2, 4)
        b = np.full((2, 4), 3, np.float32)
        shm = self.region(4096)
        shm.put(0, a)
        shm.put(32, b)
        # The region starts 1024 bytes into the object; offsets below are the region's own.
        self.assertEqual(self.register("work", shm.key, 2048, offset=1024)[0], 200)
        shm.put(1024, a)
        shm.put(1024 + 32, b)
        status, out = self.infer("add_mul", {
            "inputs": [
                {"name": "a", "datatype": "FP32", "shape": [2, 4], "parameters": shm_params("work", 32)},
                {"name": "b", "datatype": "FP32", "shape": [2, 4], "parameters": shm_params("work", 32, 32)},
            ],
            "outputs": [{"name": "sum", "parameters": shm_params("work", 64, 256)}, {"name": "prod"}],
        })
        self.assertEqual(status, 200, out)
        outputs = {o["name"]: o for o in out["outputs"]}
        # The output sent to the region comes back as its place, without data.
        self.assertEqual(outputs["sum"]["parameters"],
                         {"shared_memory_region": "work", "shared_memory_byte_size": 32,
                          "shared_memory_offset": 256})
        self.assertNotIn("data", outputs["sum"])
        self.assertEqual(outputs["sum"]["shape"], [2, 4])
        np.testing.assert_array_equal(shm.get(1024 + 256, np.float32, (2, 4)), a + b)
        np.testing.assert_array_equal(np.array(outputs["prod"]["data"], np.float32).reshape(2, 4), a * b)

        status, regions = self.status()
        self.assertEqual(status, 200)
        self.assertEqual(regions, [{"name": "work", "key": shm.key, "offset": 1024, "byte_size": 2048}])
        self.assertEqual(self.status("work")[1], regions)
        self.assertIn("system_shared_memory", self.agent.get_json("/v2")[1]["extensions"])

        self.assertEqual(self.post("/v2/systemsharedmemory/region/work/unregister"), (200, {}))
        self.assertEqual(self.status()[1], [])
        self.assertEqual(self.status("work")[0], 404)
        status, out = self.infer("add_mul", {"inputs": [
            {"name": "a", "datatype": "FP32", "shape": [2, 4], "parameters": shm_params("work", 32)},
            {"name": "b", "datatype": "FP32", "shape": [2, 4], "data": b.ravel().tolist()}]})
        self.assertEqual(status, 400)
        self.assertIn("no shared-memory region named 'work'", out["error"])

    def test_grpc_flow_with_raw_contents_for_the_other_inputs(self):
        stub, pb2 = self.stub, self.pb2
        shm = self.region(1 << 20)
        frame = np.random.default_rng(1).integers(0, 255, (1, 480, 640, 3), dtype=np.uint8)
        shm.put(0, frame)
        stub.SystemSharedMemoryRegister(pb2.SystemSharedMemoryRegisterRequest(
            name="frames", key=shm.key, offset=0, byte_size=shm.size))
        status = stub.SystemSharedMemoryStatus(pb2.SystemSharedMemoryStatusRequest())
        self.assertEqual(list(status.regions), ["frames"])
        self.assertEqual((status.regions["frames"].key, status.regions["frames"].byte_size), (shm.key, shm.size))

        def params(msg, region, size, offset=0):
            msg.parameters["shared_memory_region"].string_param = region
            msg.parameters["shared_memory_byte_size"].int64_param = size
            if offset:
                msg.parameters["shared_memory_offset"].int64_param = offset

        req = pb2.ModelInferRequest(model_name="frame_mean")
        params(req.inputs.add(name="frame", datatype="UINT8", shape=frame.shape), "frames", frame.nbytes)
        params(req.outputs.add(name="mean"), "frames", 12, offset=frame.nbytes)
        res = stub.ModelInfer(req)
        self.assertEqual(res.outputs[0].parameters["shared_memory_byte_size"].int64_param, 12)
        self.assertEqual(res.raw_output_contents[0], b"")
        expected = frame.astype(np.float32).mean(axis=(1, 2))
        np.testing.assert_allclose(shm.get(frame.nbytes, np.float32, (1, 3)), expected, rtol=1e-5)

        # Mixed: a from the region, b in raw_input_contents (one entry: Triton's clients send
        # none for inputs in shared memory); both outputs in the response.
        a = np.arange(4, dtype=np.float32).reshape(1, 4)
        shm.put(0, a)
        req = pb2.ModelInferRequest(model_name="add_mul")
        params(req.inputs.add(name="a", datatype="FP32", shape=[1, 4]), "frames", 16)
        req.inputs.add(name="b", datatype="FP32", shape=[1, 4])
        req.raw_input_contents.append(np.ones((1, 4), np.float32).tobytes())
        res = stub.ModelInfer(req)
        got = {o.name: np.frombuffer(res.raw_output_contents[i], np.float32) for i, o in enumerate(res.outputs)}
        np.testing.assert_array_equal(got["sum"], a.ravel() + 1)

        stub.SystemSharedMemoryUnregister(pb2.SystemSharedMemoryUnregisterRequest(name="frames"))
        with self.assertRaises(grpc.RpcError) as e:
            stub.ModelInfer(req)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("no shared-memory region named 'frames'", e.exception.details())
        with self.assertRaises(grpc.RpcError) as e:
            stub.SystemSharedMemoryUnregister(pb2.SystemSharedMemoryUnregisterRequest(name="frames"))
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_registration_checks(self):
        shm = self.region(1000)
        cases = [
            ({"key": "/outpost-no-such-object-" + str(os.getpid()), "byte_size": 10},
             "cannot open shared-memory object"),
            ({"key": shm.key, "byte_size": 1001}, "lies past the end"),
            ({"key": shm.key, "offset": 999, "byte_size": 2}, "lies past the end"),
            ({"key": shm.key, "offset": 2**64 - 1, "byte_size": 2}, "'offset' must be an integer"),
            ({"key": shm.key, "byte_size": 0}, "byte_size must be positive"),
            ({"key": "/../etc/passwd", "byte_size": 10}, "without '/'"),
            ({"key": "no-slash", "byte_size": 10}, "must be '/'"),
            ({"key": shm.key}, "byte_size"),
            ({"key": shm.key, "byte_size": 10, "extra": 1}, "unknown field"),
        ]
        for body, message in cases:
            with self.subTest(body=body):
                status, out = self.post("/v2/systemsharedmemory/region/r/register", body)
                self.assertEqual(status, 400, out)
                self.assertIn(message, out["error"])
        self.assertEqual(self.register("bad!name", shm.key, 10)[0], 400)
        self.assertEqual(self.status()[1], [])

        # An object any user may write is refused: its tensors could change under the agent.
        os.fchmod(shm.shm._fd, 0o666)
        status, out = self.register("r", shm.key, 10)
        self.assertEqual(status, 400)
        self.assertIn("may be written by every user", out["error"])
        os.fchmod(shm.shm._fd, 0o600)
        if os.getuid() == 0:
            # Over TCP the caller's user is unknown: the object must be the agent's user's.
            os.fchown(shm.shm._fd, 65534, 65534)
            status, out = self.register("r", shm.key, 10)
            self.assertEqual(status, 400)
            self.assertIn("belongs to uid 65534, not the agent's uid 0", out["error"])
            os.fchown(shm.shm._fd, 0, 0)
        self.assertEqual(self.register("r", shm.key, 10)[0], 200)
        status, out = self.register("r", shm.key, 10)
        self.assertEqual(status, 400)
        self.assertIn("registered already", out["error"])

    def test_use_checks(self):
        shm = self.region(256)
        self.assertEqual(self.register("r", shm.key, 128, offset=64)[0], 200)
        b = {"name": "b", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}

        def with_a(params, **extra):
            return self.infer("add_mul", {"inputs": [
                {"name": "a", "datatype": "FP32", "shape": [1, 4], "parameters": params, **extra}, b]})

        cases = [
            (shm_params("r", 16, 120), "run past the end of region 'r'"),
            (shm_params("r", 12), "takes 16 bytes, shared_memory_byte_size is 12"),
            ({"shared_memory_region": "r"}, "without shared_memory_byte_size"),
            ({"shared_memory_byte_size": 16}, "without shared_memory_region"),
            ({"shared_memory_region": 5, "shared_memory_byte_size": 16}, "must be a string"),
            ({"shared_memory_region": "r", "shared_memory_byte_size": -1}, "non-negative"),
        ]
        for params, message in cases:
            with self.subTest(params=params):
                status, out = with_a(params)
                self.assertEqual(status, 400, out)
                self.assertIn(message, out["error"])
        status, out = with_a(shm_params("r", 16), data=[1, 2, 3, 4])
        self.assertEqual(status, 400)
        self.assertIn("has shared_memory_region and also 'data'", out["error"])

        # An output larger than the place given for it is refused, and nothing is written past it.
        shm.put(64, np.ones((1, 4), np.float32))
        status, out = self.infer("add_mul", {
            "inputs": [{"name": "a", "datatype": "FP32", "shape": [1, 4], "parameters": shm_params("r", 16)}, b],
            "outputs": [{"name": "sum", "parameters": shm_params("r", 8, 32)}]})
        self.assertEqual(status, 400)
        self.assertIn("16 bytes do not fit the 8 bytes given in region 'r'", out["error"])
        self.assertEqual(bytes(shm.shm.buf[96:112]), bytes(16))

    def test_regions_are_private_to_their_caller(self):
        shm = self.region(64)
        self.assertEqual(self.register("mine", shm.key, 64)[0], 200)
        # A caller without the admin key neither sees nor uses the admin key's region...
        self.assertEqual(self.status(key=None), (200, []))
        self.assertEqual(self.status("mine", key=None)[0], 404)
        status, out = self.infer("add_mul", {"inputs": [
            {"name": "a", "datatype": "FP32", "shape": [1, 4], "parameters": shm_params("mine", 16)},
            {"name": "b", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}, key=None)
        self.assertEqual(status, 400)
        self.assertIn("no shared-memory region named 'mine'", out["error"])
        self.assertEqual(self.post("/v2/systemsharedmemory/region/mine/unregister", key=None)[0], 404)
        # ...and may use the same name for a region of its own.
        self.assertEqual(self.register("mine", shm.key, 32, api_key=None)[0], 200)
        self.assertEqual(self.status(key=None)[1][0]["byte_size"], 32)
        self.assertEqual(self.status()[1][0]["byte_size"], 64)
        # Unregistering everything is everything of the caller's.
        self.assertEqual(self.post("/v2/systemsharedmemory/unregister", key=None)[0], 200)
        self.assertEqual(self.status(key=None)[1], [])
        self.assertEqual(len(self.status()[1]), 1)

    def test_a_truncated_object_fails_the_request_not_the_agent(self):
        shm = self.region(4096)
        self.assertEqual(self.register("t", shm.key, 4096)[0], 200)
        os.ftruncate(shm.shm._fd, 8)
        body = {"inputs": [
            {"name": "a", "datatype": "FP32", "shape": [1, 4], "parameters": shm_params("t", 16, 1024)},
            {"name": "b", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}],
            "outputs": [{"name": "sum"}]}
        status, out = self.infer("add_mul", body)
        self.assertEqual(status, 400)
        self.assertIn("truncated", out["error"])
        body["inputs"][0] = {"name": "a", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}
        body["outputs"] = [{"name": "sum", "parameters": shm_params("t", 16, 2048)}]
        status, out = self.infer("add_mul", body)
        self.assertEqual(status, 400)
        self.assertIn("truncated", out["error"])
        self.assertEqual(os.fstat(shm.shm._fd).st_size, 8)  # not grown by the agent
        self.assertEqual(self.agent.get_json("/v2/health/ready")[0], 200)

    def test_unregister_while_in_use_lets_the_request_finish(self):
        x = np.random.default_rng(2).standard_normal((128, 512)).astype(np.float32)
        shm = self.region(x.nbytes + 2048)
        shm.put(0, x)
        self.assertEqual(self.register("busy", shm.key, shm.size)[0], 200)
        result = {}

        def slow():
            result["r"] = self.infer("slow", {
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [128, 512],
                            "parameters": shm_params("busy", x.nbytes)}],
                "outputs": [{"name": "y", "parameters": shm_params("busy", 2048, x.nbytes)}]})

        t = threading.Thread(target=slow)
        t.start()
        # Unregistered once the request holds it (it is in the model within a few ms; the model
        # takes most of a second), or, if the request is slower to start, before: then it must
        # fail cleanly instead.
        time.sleep(0.3)
        self.assertEqual(self.post("/v2/systemsharedmemory/region/busy/unregister"), (200, {}))
        t.join(60)
        status, out = result["r"]
        if status == 200:
            self.assertEqual(out["outputs"][0]["parameters"]["shared_memory_region"], "busy")
            self.assertTrue(np.any(shm.get(x.nbytes, np.float32, (1, 512)) != 0))
        else:
            self.assertEqual(status, 400, out)
            self.assertIn("no shared-memory region named 'busy'", out["error"])
        self.assertEqual(self.status()[1], [])


PEER_CLIENT = r"""
import http.client, json, socket, sys
path, target, body = sys.argv[1], sys.argv[2], sys.stdin.read()
class Conn(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(path)
c = Conn("localhost")
c.request("POST", target, body=body, headers={"Content-Type": "application/json"})
r = c.getresponse()
print(json.dumps([r.status, json.loads(r.read() or b"null")]))
"""


@unittest.skipUnless(os.getuid() == 0, "needs root to act as another user")
class UnixSocketOwnerTest(unittest.TestCase):
    """On the Unix socket the kernel names the caller's user: the object must be that user's, so
    a local program cannot have the agent (root here) read or write another user's memory."""
    NOBODY = 65534

    def test_the_peer_must_own_the_object(self):
        import shutil
        import subprocess
        import tempfile
        tmp = tempfile.mkdtemp(prefix="outpost-shm-unix-")
        os.chmod(tmp, 0o755)  # nobody must reach the socket
        sock = os.path.join(tmp, "outpost.sock")
        cfg = os.path.join(tmp, "agent.json")
        with open(cfg, "w") as f:
            json.dump({"unix_socket": sock, "unix_socket_peers": {f"uid:{self.NOBODY}": ["inference"]}}, f)
        repo = copy_fixtures(["add_mul"])
        agent = Agent(repo, ["--config", cfg])
        shm = Region(64)
        try:
            def post(target, body):
                r = subprocess.run(["python3", "-c", PEER_CLIENT, sock, target], input=json.dumps(body),
                                   capture_output=True, text=True, timeout=120, user=self.NOBODY)
                self.assertEqual(r.returncode, 0, r.stderr)
                return tuple(json.loads(r.stdout))

            register = {"key": shm.key, "byte_size": 64}
            status, out = post("/v2/systemsharedmemory/region/u/register", register)
            self.assertEqual(status, 400, out)
            self.assertIn(f"belongs to uid 0, not the caller's uid {self.NOBODY}", out["error"])
            os.fchown(shm.shm._fd, self.NOBODY, self.NOBODY)
            self.assertEqual(post("/v2/systemsharedmemory/region/u/register", register), (200, {}))
            shm.put(0, np.ones((1, 4), np.float32))
            status, out = post("/v2/models/add_mul/infer", {"inputs": [
                {"name": "a", "datatype": "FP32", "shape": [1, 4], "parameters": shm_params("u", 16)},
                {"name": "b", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
            self.assertEqual(status, 200, out)
            self.assertEqual(out["outputs"][0]["data"], [2, 3, 4, 5])
            # The peer's regions are its own: a TCP caller without a key does not see them.
            self.assertEqual(json.loads(agent.request("GET", "/v2/systemsharedmemory/status", key=None)[2]), [])
        finally:
            shm.close()
            rc = agent.close()
            shutil.rmtree(repo)
            shutil.rmtree(tmp)
            self.assertEqual(rc, 0, agent.logs())


if __name__ == "__main__":
    unittest.main()
