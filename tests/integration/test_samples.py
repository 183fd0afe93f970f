"""The bundled sample models give real answers through the agent: speech is found in audio,
a spoken wake word scores above other speech, and text drawn in an image is detected and read."""
import os
import unittest

import numpy as np

import samples
from agent import SAMPLES, Agent


@unittest.skipUnless(SAMPLES and os.path.isdir(SAMPLES), "sample models not set up (scripts/setup.sh)")
class SamplesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Production mode: the samples are signed packages, trusted through build/trust.json.
        cls.agent = Agent(SAMPLES, ["--repository-poll-secs", "0"], signed_only=True)

    @classmethod
    def tearDownClass(cls):
        assert cls.agent.close() == 0

    def infer(self, model, inputs):
        status, out = self.agent.infer_binary(model, inputs)
        self.assertEqual(status, 200, out)
        return out

    def test_all_samples_ready(self):
        status, index = self.agent.get_json("/v2/repository/index")
        self.assertEqual({e["name"]: e["state"] for e in index},
                         {m: "READY" for m in ["silero_vad", "melspectrogram", "wakeword_embedding", "hey_jarvis",
                                               "ppocr_det", "ppocr_rec"]})

    def test_vad_finds_speech(self):
        silence = np.zeros(16000, np.float32)
        audio = np.concatenate([silence, samples.speech("The quick brown fox jumps over the lazy dog."), silence])
        p = samples.vad_probabilities(self.infer, audio)
        lead = p[: 16000 // 512 - 1]
        self.assertLess(lead.max(), 0.2, f"silence scored {lead.max():.2f}")
        self.assertGreater(p.max(), 0.8, f"speech scored at most {p.max():.2f}")
        # Over the spoken part most chunks are speech.
        voiced = p[16000 // 512 + 2: -16000 // 512 - 2]
        self.assertGreater((voiced > 0.5).mean(), 0.5)

    def test_wake_word(self):
        jarvis = samples.wakeword_score(self.infer, np.concatenate([np.zeros(8000, np.float32),
                                                                    samples.speech("hey jarvis"),
                                                                    np.zeros(8000, np.float32)]))
        other = samples.wakeword_score(self.infer, np.concatenate([np.zeros(8000, np.float32),
                                                                   samples.speech("good morning everyone"),
                                                                   np.zeros(8000, np.float32)]))
        self.assertGreater(jarvis, other)
        self.assertLess(other, 0.2)

    def test_ocr_detects_and_reads_text(self):
        x, (x0, y0, x1, y1) = samples.det_input("EDGE 42")
        prob = self.infer("ppocr_det", {"x": x})["sigmoid_0.tmp_0"][0, 0]
        self.assertEqual(prob.shape, (160, 640))
        # DB detection marks a shrunk kernel of each text region (post-processing grows it back):
        # every text pixel found lies within the drawn text, and together they span most of it.
        ys, xs = np.nonzero(prob > 0.3)
        self.assertGreater(len(xs), 0, "no text detected")
        self.assertTrue(x0 - 4 <= xs.min() and xs.max() <= x1 + 4 and y0 - 4 <= ys.min() and ys.max() <= y1 + 4,
                        f"detected {xs.min()},{ys.min()}..{xs.max()},{ys.max()} outside the text {x0},{y0}..{x1},{y1}")
        self.assertGreater((xs.max() - xs.min()) / (x1 - x0), 0.8)
        self.assertGreater((ys.max() - ys.min()) / (y1 - y0), 0.3)
        keys = samples.load_keys(os.path.join(SAMPLES, "ppocr_rec", "4.0.0", "ppocr_keys_v1.txt"))
        for text in ["OUTPOST 2026", "hello world"]:
            probs = self.infer("ppocr_rec", {"x": samples.rec_input(text)})["softmax_11.tmp_0"][0]
            self.assertEqual(samples.ctc_decode(probs, keys).strip(), text)


if __name__ == "__main__":
    unittest.main()
