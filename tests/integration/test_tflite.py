"""TensorFlow Lite models served through signed packages, over KServe v2 HTTP and gRPC: every
openWakeWord .tflite agrees with its .onnx twin, the all-TFLite wake-word chain decides as the
ONNX chain does on espeak-ng speech, the MediaPipe models serve, and small written models check
int8 QDQ, IF/WHILE and sparse weights against numpy. Files the importer cannot take are refused
at pack time with the reason."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import numpy as np

import litert
import samples
import tflite_cases
from agent import BIN_DIR, SignedRepository, write_package_manifest

MODELS = os.environ.get("OUTPOST_TFLITE_MODELS", "")
OUTPOST = os.path.join(BIN_DIR, "outpost")

# name -> (file, input shape); the openWakeWord ones have an ONNX twin of the same stem.
WAKEWORD = {"melspectrogram": [1, 16000], "embedding_model": [1, 76, 32, 1], "hey_jarvis_v0.1": [1, 16, 96],
            "hey_mycroft_v0.1": [1, 16, 96], "hey_rhasspy_v0.1": [1, 16, 96], "alexa_v0.1": [1, 16, 96],
            "timer_v0.1": [1, 34, 96], "weather_v0.1": [1, 22, 96]}
MEDIAPIPE = {"face_detection_short_range": [1, 128, 128, 3], "face_detection_full_range": [1, 192, 192, 3],
             "face_detection_full_range_sparse": [1, 192, 192, 3], "selfie_segmentation": [1, 256, 256, 3],
             "selfie_segmentation_landscape": [1, 144, 256, 3]}


def outpost(*args):
    return subprocess.run([OUTPOST, *args], capture_output=True, text=True)


def model_name(stem, runtime):
    return ("tfl_" if runtime == "tflite" else "onnx_") + stem.replace(".", "_").replace("_v0_1", "")


def ramp(shape, lo, hi):
    n = int(np.prod(shape))
    return (lo + (hi - lo) * (np.sin(np.arange(n) * 0.37) * 0.5 + 0.5)).astype(np.float32).reshape(shape)


@unittest.skipUnless(MODELS and os.path.isdir(MODELS), "TFLite models not set up (scripts/setup.sh)")
class TfliteTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="outpost-tflite-")
        cls.signed = SignedRepository(cls.tmp)
        for stem in WAKEWORD:
            cls.install(model_name(stem, "tflite"), os.path.join(MODELS, stem + ".tflite"), "tflite")
            cls.install(model_name(stem, "onnx"), os.path.join(MODELS, stem + ".onnx"), "onnx")
        for stem in MEDIAPIPE:
            cls.install(model_name(stem, "tflite"), os.path.join(MODELS, stem + ".tflite"), "tflite")
        cls.quant_conv, quant_reference, cls.quant_step = tflite_cases.quant_conv()
        cls.control_flow, control_reference = tflite_cases.control_flow()
        cls.sparse_fc, sparse_reference = tflite_cases.sparse_fc()
        cls.reference = {"quant_conv": quant_reference, "control_flow": control_reference,
                         "sparse_fc": sparse_reference}
        for name, data in (("quant_conv", cls.quant_conv), ("control_flow", cls.control_flow),
                           ("sparse_fc", cls.sparse_fc)):
            path = os.path.join(cls.tmp, name + ".tflite")
            with open(path, "wb") as f:
                f.write(data)
            cls.install(name, path, "tflite")
        # A model that prefers accelerators this machine lacks: placed on the first provider
        # that starts a session, with the others' reasons reported.
        cls.install("placed", os.path.join(MODELS, "alexa_v0.1.tflite"), "tflite", serving={
            "execution_providers": [{"name": "TensorrtExecutionProvider", "options": {"trt_fp16_enable": "1"}},
                                    "CUDAExecutionProvider", "CPUExecutionProvider"]})
        cls.agent = cls.signed.agent()

    @classmethod
    def tearDownClass(cls):
        assert cls.agent.close() == 0
        shutil.rmtree(cls.tmp)

    @classmethod
    def source(cls, name, model_file, runtime, version="1.0.0", serving=None):
        """A package source directory holding `model_file` and its manifest template."""
        src = os.path.join(cls.tmp, "src-" + name)
        os.makedirs(src, exist_ok=True)
        target = "model.tflite" if runtime == "tflite" else "model.onnx"
        shutil.copyfile(model_file, os.path.join(src, target))
        write_package_manifest(src, name, version=version, runtime=runtime, **({"serving": serving} if serving else {}))
        return src, os.path.join(cls.tmp, f"{name}-{version}.opkg")

    @classmethod
    def pack(cls, name, model_file, runtime, serving=None):
        src, out = cls.source(name, model_file, runtime, serving=serving)
        return cls.signed.pack(src, out), out

    @classmethod
    def install(cls, name, model_file, runtime, serving=None):
        cls.signed.publish(*cls.source(name, model_file, runtime, serving=serving))

    def infer(self, model, inputs):
        status, out = self.agent.infer_binary(model, inputs)
        self.assertEqual(status, 200, out)
        return out

    def test_every_model_ready_as_tensorflow_lite(self):
        index = {e["name"]: e for e in self.agent.get_json("/v2/repository/index")[1]}
        for stem in list(WAKEWORD) + list(MEDIAPIPE):
            name = model_name(stem, "tflite")
            self.assertEqual(index[name]["state"], "READY", index[name])
            status, meta = self.agent.get_json(f"/v2/models/{name}")
            self.assertEqual(status, 200)
            self.assertEqual(meta["platform"], "tensorflow_lite")

    def test_wakeword_models_agree_with_their_onnx_twins_over_http_and_grpc(self):
        # hey_rhasspy's .onnx (32 hidden units) and .tflite (64) are different releases: no twin.
        for stem, shape in ((s, v) for s, v in WAKEWORD.items() if s != "hey_rhasspy_v0.1"):
            with self.subTest(model=stem):
                x = samples.speech("hey jarvis")[:16000][None] * 32767 if stem == "melspectrogram" \
                    else ramp(shape, -2, 3 if stem == "embedding_model" else 20)
                tfl, onnx = model_name(stem, "tflite"), model_name(stem, "onnx")
                meta_t = self.agent.get_json(f"/v2/models/{tfl}")[1]
                meta_o = self.agent.get_json(f"/v2/models/{onnx}")[1]
                a = self.infer(tfl, {meta_t["inputs"][0]["name"]: x})
                b = self.infer(onnx, {meta_o["inputs"][0]["name"]: x})
                out_a, out_b = a[meta_t["outputs"][0]["name"]], b[meta_o["outputs"][0]["name"]]
                self.assertEqual(out_a.shape, out_b.shape)
                diff = float(np.abs(out_a - out_b).max())
                scale = float(np.abs(out_b).max())
                print(f"{stem}: max abs difference {diff:.3g} (outputs up to {scale:.3g})")
                # Summation order (XNNPACK against MLAS) is all that differs: at most 2e-5 of the
                # output's scale, except the square selfie model (3e-4 on a probability: global
                # average pools of up to 128x128 values feed its squeeze-and-excitation gates).
                self.assertLessEqual(diff, 1e-3 * max(1.0, scale))
                g = self.agent.infer_grpc(tfl, {meta_t["inputs"][0]["name"]: x})
                np.testing.assert_array_equal(g[meta_t["outputs"][0]["name"]], out_a)

    def test_wake_word_through_the_all_tflite_chain(self):
        tflite_chain = {"mel": ("tfl_melspectrogram", "serving_default_input:0", "PartitionedCall:0"),
                        "embedding": ("tfl_embedding_model", "serving_default_input_1:0", "StatefulPartitionedCall:0"),
                        "detector": ("tfl_hey_jarvis", "serving_default_x.1:0", "PartitionedCall:0")}
        onnx_chain = {"mel": ("onnx_melspectrogram", "input", "output"),
                      "embedding": ("onnx_embedding_model", "input_1", "conv2d_19"),
                      "detector": ("onnx_hey_jarvis", "x.1", "53")}
        # A second of silence each side: the detector looks at the last 16 embeddings (1.28 s),
        # which must all come from audio, as they do in a stream.
        pad = np.zeros(16000, np.float32)
        for text, spoken in (("hey jarvis", True), ("good morning everyone", False)):
            # openWakeWord takes 16-bit sample values, not [-1, 1].
            audio = np.concatenate([pad, samples.speech(text), pad]) * 32767
            t = samples.wakeword_score(self.infer, audio, tflite_chain)
            o = samples.wakeword_score(self.infer, audio, onnx_chain)
            print(f"'{text}': tflite chain {t:.4f}, onnx chain {o:.4f}")
            self.assertEqual(t > 0.5, o > 0.5, f"'{text}': the chains decide differently ({t:.3f} vs {o:.3f})")
            self.assertEqual(t > 0.5, spoken, f"'{text}' scored {t:.3f}")
            self.assertAlmostEqual(t, o, delta=1e-3)

    def test_mediapipe_models_serve_over_http_and_grpc(self):
        for stem, shape in MEDIAPIPE.items():
            with self.subTest(model=stem):
                name = model_name(stem, "tflite")
                meta = self.agent.get_json(f"/v2/models/{name}")[1]
                x = ramp(shape, -1, 1)
                a = self.infer(name, {meta["inputs"][0]["name"]: x})
                g = self.agent.infer_grpc(name, {meta["inputs"][0]["name"]: x})
                for out in meta["outputs"]:
                    self.assertEqual(list(a[out["name"]].shape), out["shape"])
                    self.assertTrue(np.isfinite(a[out["name"]]).all())
                    np.testing.assert_array_equal(g[out["name"]], a[out["name"]])
                if stem.startswith("selfie"):  # a sigmoid mask
                    mask = a[meta["outputs"][0]["name"]]
                    self.assertTrue(((mask >= 0) & (mask <= 1)).all())

    def real_inputs(self):
        """model stem -> inputs to compare on: the openWakeWord chain's own intermediate values for
        espeak-ng's "hey jarvis" (through the ONNX twins), and a drawn person for the vision models."""
        pad = np.zeros(16000, np.float32)
        audio = (np.concatenate([pad, samples.speech("hey jarvis"), pad]) * 32767)[None]
        frames = self.infer("onnx_melspectrogram", {"input": audio})["output"].reshape(-1, 32) / 10.0 + 2.0
        windows = [frames[i:i + 76][None, :, :, None] for i in range(0, len(frames) - 75, 8)]
        emb = np.array([self.infer("onnx_embedding_model", {"input_1": w})["conv2d_19"].reshape(96)
                        for w in windows], np.float32)
        cases = {"melspectrogram": [audio], "embedding_model": windows[::3]}
        for stem, (_, n, _) in ((s, v) for s, v in WAKEWORD.items() if s not in cases):
            padded = np.concatenate([np.zeros((max(0, n - len(emb)), 96), np.float32), emb])
            cases[stem] = [padded[end - n:end][None] for end in range(n, len(padded) + 1, 3)]
        for stem, (_, h, w, _) in MEDIAPIPE.items():
            img = samples.person_image(w, h).astype(np.float32) / 255.0
            img, other = (img * 2 - 1, img) if stem.startswith("face") else (img, img * 2 - 1)  # BlazeFace: [-1, 1]
            # The other range too: the square selfie model finds the drawn person only there.
            cases[stem] = [img[None], img[None, :, ::-1].copy(), other[None]]
        return cases

    @unittest.skipUnless(litert.available(), "needs LiteRT.js (tests/integration/node) and flatc")
    def test_every_model_agrees_with_the_tflite_interpreter(self):
        cases = self.real_inputs()
        static = tempfile.mkdtemp(dir=self.tmp)
        jobs, ours, twins = [], [], []
        for stem, inputs in cases.items():
            tfl, onnx = model_name(stem, "tflite"), model_name(stem, "onnx")
            meta = self.agent.get_json(f"/v2/models/{tfl}")[1]
            twin = self.agent.get_json(f"/v2/models/{onnx}")[1] if stem in WAKEWORD and stem != "hey_rhasspy_v0.1" else None
            model = os.path.join(MODELS, stem + ".tflite")
            for x in inputs:
                out = self.infer(tfl, {meta["inputs"][0]["name"]: x})
                ours.append((stem, [(o["name"], out[o["name"]]) for o in meta["outputs"]]))
                twins.append(self.infer(onnx, {twin["inputs"][0]["name"]: x})[twin["outputs"][0]["name"]] if twin else None)
                if stem == "melspectrogram":  # dynamic in the file: sized as the interpreter's resize would
                    model = litert.with_static_shapes(model, [x.shape], [ours[-1][1][0][1].shape], static)
                jobs.append((model, [x]))
        reference = litert.run(jobs)
        worst = {}  # (model, output) -> [vs interpreter, interpreter's largest |value|, vs twin]
        for (stem, outputs), ref, twin in zip(ours, reference, twins):
            for name, y in outputs:
                same = [r for _, r in ref if r.shape == y.shape]
                self.assertEqual(len(same), 1, f"{stem}: no single interpreter output shaped {y.shape}")
                row = worst.setdefault((stem, name), [0.0, 0.0, None])
                row[0] = max(row[0], float(np.abs(y - same[0]).max()))
                row[1] = max(row[1], float(np.abs(same[0]).max()))
                if twin is not None:
                    row[2] = max(row[2] or 0.0, float(np.abs(y - twin).max()))
        print(f"\n{'model':34} {'output':28} {'cases':>5} {'vs LiteRT':>10} {'|max|':>8} {'vs ONNX twin':>12}")
        for (stem, name), (diff, scale, twin_diff) in worst.items():
            print(f"{stem:34} {name:28} {len(cases[stem]):5} {diff:10.3g} {scale:8.3g} "
                  f"{'-' if twin_diff is None else f'{twin_diff:.3g}':>12}")
        for (stem, name), (diff, scale, _) in worst.items():
            with self.subTest(model=stem, output=name):
                # Summation order (XNNPACK against MLAS) is all that differs: at most 2e-5 of the
                # output's scale, except the square selfie model (3e-4 on a probability: global
                # average pools of up to 128x128 values feed its squeeze-and-excitation gates).
                self.assertLessEqual(diff, 1e-3 * max(1.0, scale))

    def test_int8_qdq_matches_the_quantized_arithmetic(self):
        x = np.random.default_rng(1).uniform(-3, 3, size=(1, 6, 6, 2)).astype(np.float32)
        y = self.infer("quant_conv", {"x": x})["y"]
        ref = self.reference["quant_conv"](x)
        # Integer kernels requantize in fixed point and round ties to even: a value may land one
        # step from the float reference (TFLite's own kernels allow the same), never further,
        # and on average far less.
        steps = np.abs(np.rint(y / self.quant_step) - np.rint(ref / self.quant_step))
        print(f"quant_conv: {float((steps == 0).mean()):.1%} of outputs on the reference's level, "
              f"at most {int(steps.max())} step(s) off")
        self.assertLessEqual(int(steps.max()), 1)
        self.assertGreater(float((steps == 0).mean()), 0.9)
        np.testing.assert_allclose(y, ref, atol=self.quant_step * 1.001)

    def test_if_and_while_subgraphs(self):
        x = np.array([1, -2, 3.5, 0], np.float32)
        for flag in (True, False):
            out = self.infer("control_flow", {"flag": np.array([flag]), "x": x})
            v, i = self.reference["control_flow"](flag, x)
            np.testing.assert_allclose(out["v_out"], v, rtol=1e-6)
            self.assertEqual(int(out["i_out"]), i)

    def test_block_sparse_fp16_weights(self):
        x = np.random.default_rng(2).normal(size=(2, 8)).astype(np.float32)
        np.testing.assert_allclose(self.infer("sparse_fc", {"x": x})["y"], self.reference["sparse_fc"](x), rtol=1e-5, atol=1e-5)

    def test_execution_providers_placed_per_model(self):
        index = {e["name"]: e for e in self.agent.get_json("/v2/repository/index")[1]}
        placed = index["placed"]
        self.assertEqual(placed["execution_provider"], "CPUExecutionProvider")
        skipped = {s["provider"]: s["reason"] for s in placed["providers_skipped"]}
        self.assertEqual(list(skipped), ["TensorrtExecutionProvider", "CUDAExecutionProvider"])
        for reason in skipped.values():  # the npm build lists them but ships no provider library
            self.assertIn("libonnxruntime_providers_shared.so", reason)
        self.assertEqual(index["tfl_alexa"]["execution_provider"], "CPUExecutionProvider")
        self.assertNotIn("providers_skipped", index["tfl_alexa"])
        metrics = self.agent.request("GET", "/metrics")[2].decode()
        self.assertIn('outpost_model_execution_provider{model="placed",version="1.0.0",provider="CPUExecutionProvider",'
                      'fell_back_from="TensorrtExecutionProvider,CUDAExecutionProvider"} 1', metrics)
        # And it serves, on CPU.
        x = ramp([1, 16, 96], -5, 20)
        self.assertEqual(self.infer("placed", {"serving_default_onnx_tf__tf_Flatten_0_79e3d279:0": x})["PartitionedCall:0"].shape,
                         (1, 1))
        r, _ = self.pack("bad_provider", os.path.join(MODELS, "alexa_v0.1.tflite"), "tflite",
                         serving={"execution_providers": ["cuda"]})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("execution provider 'cuda' is not a provider name", r.stderr)

    def test_outpost_bench_compares_the_runtimes(self):
        onnx, tfl = (os.path.join(MODELS, "alexa_v0.1" + ext) for ext in (".onnx", ".tflite"))
        r = outpost("bench", onnx, tfl, "--iterations", "20", "--seconds", "0.2", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = json.loads(r.stdout)
        cpu = [row for row in rows if row["provider"] == "CPUExecutionProvider"]
        self.assertEqual([(row["model"], row["runtime"]) for row in cpu],
                         [("alexa_v0.1.onnx", "onnx"), ("alexa_v0.1.tflite", "tflite")])
        for row in cpu:
            self.assertGreater(row["throughput_1"], 0)
            self.assertLessEqual(row["p50_ms"], row["p99_ms"])
        self.assertEqual(cpu[1]["max_abs_diff_vs_first"], 0)
        # Providers this build lists but cannot start are rows with the reason, not numbers.
        for row in rows:
            if row["provider"] != "CPUExecutionProvider":
                self.assertIn("error", row)

    def test_pack_refuses_what_the_importer_cannot_take(self):
        good = os.path.join(MODELS, "alexa_v0.1.tflite")
        with open(good, "rb") as f:
            data = f.read()
        cases = {"truncated": (data[: len(data) // 3], "does not verify"),
                 "not_tflite": (data[:4] + b"ONNX" + data[8:], "not a TensorFlow Lite model"),
                 "unsupported": (tflite_cases.unsupported(), "operator LSH_PROJECTION (subgraph 0, operator 0) has no ONNX translation"),
                 "custom": (tflite_cases.unsupported("MyCustomOp"), "operator CUSTOM:MyCustomOp"),
                 "recursive": (tflite_cases.self_calling(), "nest deeper")}
        for name, (blob, fragment) in cases.items():
            with self.subTest(case=name):
                path = os.path.join(self.tmp, name + ".tflite")
                with open(path, "wb") as f:
                    f.write(blob)
                r, _ = self.pack("bad_" + name, path, "tflite")
                self.assertNotEqual(r.returncode, 0)
                self.assertIn(fragment, r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


if __name__ == "__main__":
    unittest.main()
