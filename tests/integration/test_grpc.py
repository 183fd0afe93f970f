"""KServe v2 over gRPC against a real outpostd, with stubs generated from our proto by
protoc and Debian's grpcio: raw and typed contents, every datatype, and error statuses."""
import shutil
import threading
import unittest

import grpc
import numpy as np

from agent import KSERVE_TO_NP, Agent, copy_fixtures, to_raw, while_busy
from test_http import identity_inputs


class GrpcTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.repo = copy_fixtures(["add_mul", "identity", "identity_typed", "slow", "dense_batched"])
        cls.agent = Agent(cls.repo, ["--max-request-bytes", str(1 << 20)])
        cls.stub, cls.pb2 = cls.agent.grpc()

    @classmethod
    def tearDownClass(cls):
        rc = cls.agent.close()
        shutil.rmtree(cls.repo)
        assert rc == 0

    def assertStatus(self, call, code, fragment):
        with self.assertRaises(grpc.RpcError) as ctx:
            call()
        self.assertEqual(ctx.exception.code(), code, ctx.exception.details())
        self.assertIn(fragment, ctx.exception.details())

    def test_health_and_metadata(self):
        pb2 = self.pb2
        self.assertTrue(self.stub.ServerLive(pb2.ServerLiveRequest()).live)
        self.assertTrue(self.stub.ServerReady(pb2.ServerReadyRequest()).ready)
        self.assertTrue(self.stub.ModelReady(pb2.ModelReadyRequest(name="add_mul")).ready)
        self.assertTrue(self.stub.ModelReady(pb2.ModelReadyRequest(name="add_mul", version="1")).ready)
        self.assertFalse(self.stub.ModelReady(pb2.ModelReadyRequest(name="nope")).ready)
        meta = self.stub.ServerMetadata(pb2.ServerMetadataRequest())
        self.assertEqual(meta.name, "outpost")
        self.assertIn("binary_tensor_data", meta.extensions)
        m = self.stub.ModelMetadata(pb2.ModelMetadataRequest(name="add_mul"))
        self.assertEqual(m.platform, "onnxruntime_onnx")
        self.assertEqual(list(m.versions), ["1"])
        self.assertEqual([(t.name, t.datatype, list(t.shape)) for t in m.inputs],
                         [("a", "FP32", [-1, 4]), ("b", "FP32", [-1, 4])])
        self.assertStatus(lambda: self.stub.ModelMetadata(pb2.ModelMetadataRequest(name="nope")),
                          grpc.StatusCode.NOT_FOUND, "not in the repository")

    def test_raw_contents_every_datatype(self):
        inputs = identity_inputs()
        outs = self.agent.infer_grpc("identity", inputs)
        for name, arr in inputs.items():
            got = outs["out_" + name[3:]]
            np.testing.assert_array_equal(got, arr, err_msg=name)

    def test_typed_contents(self):
        pb2 = self.pb2
        req = pb2.ModelInferRequest(model_name="identity", id="typed-1")
        fields = {"BOOL": ("bool_contents", [True, False]), "UINT8": ("uint_contents", [0, 255]),
                  "UINT16": ("uint_contents", [1, 65535]), "UINT32": ("uint_contents", [2, 2**32 - 1]),
                  "UINT64": ("uint64_contents", [3, 2**64 - 1]), "INT8": ("int_contents", [-128, 127]),
                  "INT16": ("int_contents", [-32768, 32767]), "INT32": ("int_contents", [-2**31, 2**31 - 1]),
                  "INT64": ("int64_contents", [-2**63, 2**63 - 1]), "FP32": ("fp32_contents", [1.5, -2.25]),
                  "FP64": ("fp64_contents", [1e300, -1e-300]), "BYTES": ("bytes_contents", [b"ab", b""])}
        for dt, (field, values) in fields.items():
            t = req.inputs.add(name="in_" + dt, datatype=dt, shape=[2])
            getattr(t.contents, field).extend(values)
        res = self.stub.ModelInfer(req.__class__(model_name="identity_typed", id=req.id, inputs=req.inputs))
        self.assertEqual(res.id, "typed-1")
        outs = {o.name: (o.datatype, res.raw_output_contents[i]) for i, o in enumerate(res.outputs)}
        for dt, (field, values) in fields.items():
            datatype, raw = outs["out_" + dt]
            self.assertEqual(datatype, dt)
            if dt == "BYTES":
                self.assertEqual(raw, b"\x02\x00\x00\x00ab\x00\x00\x00\x00")
            else:
                np.testing.assert_array_equal(np.frombuffer(raw, KSERVE_TO_NP[dt]), values, err_msg=dt)
        # FP16 has no typed field: the protocol allows raw only, so the identity model (which has
        # an FP16 input) cannot be fed typed contents, and the server must say why.
        self.assertStatus(lambda: self.stub.ModelInfer(req), grpc.StatusCode.INVALID_ARGUMENT, "needs input 'in_FP16'")
        t = req.inputs.add(name="in_FP16", datatype="FP16", shape=[2])
        t.contents.fp32_contents.extend([1, 2])
        self.assertStatus(lambda: self.stub.ModelInfer(req), grpc.StatusCode.INVALID_ARGUMENT,
                          "must be sent as raw_input_contents")

    def test_typed_contents_infer(self):
        pb2 = self.pb2
        req = pb2.ModelInferRequest(model_name="add_mul", id="t-2")
        for n in "ab":
            t = req.inputs.add(name=n, datatype="FP32", shape=[1, 4])
            t.contents.fp32_contents.extend([1, 2, 3, 4])
        req.outputs.add(name="prod")
        res = self.stub.ModelInfer(req)
        self.assertEqual(res.id, "t-2")
        self.assertEqual(res.model_version, "1")
        self.assertEqual([o.name for o in res.outputs], ["prod"])
        np.testing.assert_array_equal(np.frombuffer(res.raw_output_contents[0], np.float32), [1, 4, 9, 16])

    def test_errors(self):
        pb2 = self.pb2
        a = np.ones((1, 4), np.float32)
        self.assertStatus(lambda: self.agent.infer_grpc("nope", {"a": a}), grpc.StatusCode.NOT_FOUND, "not in the repository")
        self.assertStatus(lambda: self.agent.infer_grpc("add_mul", {"a": a, "b": a}, version="9"),
                          grpc.StatusCode.NOT_FOUND, "version '9'")
        self.assertStatus(lambda: self.agent.infer_grpc("add_mul", {"a": a.astype(np.float64), "b": a}),
                          grpc.StatusCode.INVALID_ARGUMENT, "datatype FP64")
        req = pb2.ModelInferRequest(model_name="add_mul")
        req.inputs.add(name="a", datatype="FP32", shape=[1, 4])
        req.inputs.add(name="b", datatype="FP32", shape=[1, 4])
        req.raw_input_contents.append(to_raw(a))
        self.assertStatus(lambda: self.stub.ModelInfer(req), grpc.StatusCode.INVALID_ARGUMENT, "1 entries for 2 inputs")
        req.raw_input_contents.append(to_raw(a)[:12])
        self.assertStatus(lambda: self.stub.ModelInfer(req), grpc.StatusCode.INVALID_ARGUMENT, "needs 16 bytes, got 12")
        req = pb2.ModelInferRequest(model_name="identity")
        t = req.inputs.add(name="in_INT8", datatype="INT8", shape=[1])
        t.contents.int_contents.append(1000)
        self.assertStatus(lambda: self.stub.ModelInfer(req), grpc.StatusCode.INVALID_ARGUMENT, "out of range")
        big = np.zeros((1, 300000), np.float32)
        self.assertStatus(lambda: self.agent.infer_grpc("add_mul", {"a": big, "b": big}),
                          grpc.StatusCode.RESOURCE_EXHAUSTED, "")
        np.testing.assert_array_equal(self.agent.infer_grpc("add_mul", {"a": a, "b": a})["sum"], a + a)

    def grpc_code(self, call):
        try:
            call()
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()

    def test_queue_full_is_resource_exhausted(self):
        big, small = np.ones((128, 512), np.float32), np.ones((1, 512), np.float32)
        long, short = while_busy(lambda: self.grpc_code(lambda: self.agent.infer_grpc("slow", {"x": big})),
                                 lambda: self.grpc_code(lambda: self.agent.infer_grpc("slow", {"x": small})))
        self.assertEqual(long, grpc.StatusCode.OK)
        self.assertEqual(sorted(c.value[0] for c in short), [0, 0, 8, 8, 8, 8])  # OK x2, RESOURCE_EXHAUSTED x4

    def test_client_deadline(self):
        big, small = np.ones((128, 512), np.float32), np.ones((1, 512), np.float32)
        long, short = while_busy(
            lambda: self.grpc_code(lambda: self.agent.infer_grpc("slow", {"x": big})),
            lambda: self.grpc_code(lambda: self.agent.infer_grpc("slow", {"x": small}, timeout=0.05)), n_short=1)
        self.assertEqual(long, grpc.StatusCode.OK)
        self.assertEqual(short, [grpc.StatusCode.DEADLINE_EXCEEDED])

if __name__ == "__main__":
    unittest.main()
