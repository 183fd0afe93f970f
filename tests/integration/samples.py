"""Inputs for the bundled sample models, made here: speech from espeak-ng, text drawn with PIL.
Shared by the sample tests and the README's examples (see main())."""
import json
import os
import subprocess
import sys
import tempfile
import wave

import numpy as np

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


def speech(text, rate=16000):
    """espeak-ng speaks `text`; returns float32 mono samples at `rate` Hz in [-1, 1]."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-s", "150", "-w", f.name, text], check=True)
        with wave.open(f.name) as w:
            src_rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
    n = int(len(pcm) * rate / src_rate)
    return np.interp(np.arange(n) * src_rate / rate, np.arange(len(pcm)), pcm).astype(np.float32)


def text_image(text, width, height, size):
    """Black text on white, RGB uint8 [H, W, 3]; returns the image and the text's bounding box."""
    from PIL import Image, ImageDraw, ImageFont
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(FONT, size)
    box = draw.textbbox((0, 0), text, font=font)
    x, y = (width - (box[2] - box[0])) // 2 - box[0], (height - (box[3] - box[1])) // 2 - box[1]
    draw.text((x, y), text, fill="black", font=font)
    return np.asarray(img), (x + box[0], y + box[1], x + box[2], y + box[3])


def person_image(width, height):
    """A drawn head and shoulders on a shaded wall, RGB uint8 [H, W, 3]: a face and a person for
    the MediaPipe vision models, made without a photograph."""
    from PIL import Image, ImageDraw
    y, x = np.mgrid[0:height, 0:width]
    wall = np.stack([90 + 60 * x / width, 110 + 40 * y / height, 140 + 0 * x], -1).astype(np.uint8)
    img = Image.fromarray(wall)
    d = ImageDraw.Draw(img)
    s = min(width, height) / 100.0

    def box(cx, cy, rx, ry):
        return [width / 2 + (cx - rx) * s, height * 0.45 + (cy - ry) * s,
                width / 2 + (cx + rx) * s, height * 0.45 + (cy + ry) * s]
    d.ellipse(box(0, 70, 45, 30), fill=(40, 60, 120))  # shoulders in a blue top
    d.rectangle(box(0, 32, 9, 10), fill=(205, 160, 130))  # neck
    d.ellipse(box(0, 0, 24, 30), fill=(222, 178, 146))  # face
    d.chord(box(0, -12, 26, 22), 180, 360, fill=(60, 40, 25))  # hair
    for side in (-1, 1):
        d.ellipse(box(side * 9, -3, 5, 3), fill="white")
        d.ellipse(box(side * 9, -3, 2, 2.2), fill=(50, 35, 20))
        d.line(box(side * 9, -9, 5, 0.1), fill=(60, 40, 25), width=max(1, int(1.5 * s)))
    d.polygon([(width / 2, height * 0.45), (width / 2 - 3 * s, height * 0.45 + 9 * s),
               (width / 2 + 3 * s, height * 0.45 + 9 * s)], fill=(200, 150, 120))
    d.chord(box(0, 14, 9, 5), 0, 180, fill=(170, 70, 70))  # mouth
    return np.asarray(img)


def rec_input(text):
    """PP-OCR recognition input: a 48-pixel-high line, scaled to [-1, 1], NCHW."""
    img, _ = text_image(text, 320, 48, 30)
    return ((img.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]


def det_input(text):
    img, box = text_image(text, 640, 160, 48)
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    return ((img.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)[None].astype(np.float32), box


def ctc_decode(probs, keys):
    """Greedy CTC: best class per step, repeats merged, blanks (0) dropped; index k is keys[k-1]."""
    best = probs.argmax(-1)
    out, prev = [], 0
    for k in best:
        if k != prev and k != 0:
            out.append(keys[k - 1] if k - 1 < len(keys) else " ")
        prev = k
    return "".join(out)


def load_keys(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f] + [" "]


def vad_probabilities(infer, audio):
    """Silero VAD over 512-sample chunks at 16 kHz, carrying the state between calls."""
    state = np.zeros((2, 1, 128), np.float32)
    probs = []
    for i in range(0, len(audio) - 511, 512):
        out = infer("silero_vad", {"input": audio[i:i + 512][None], "state": state,
                                   "sr": np.array(16000, np.int64)})
        probs.append(float(out["output"][0, 0]))
        state = out["stateN"]
    return np.array(probs)


ONNX_WAKEWORD = {"mel": ("melspectrogram", "input", "output"),
                 "embedding": ("wakeword_embedding", "input_1", "conv2d_19"),
                 "detector": ("hey_jarvis", "x.1", "53")}


def wakeword_score(infer, audio, models=ONNX_WAKEWORD):
    """openWakeWord: melspectrogram -> embeddings of 76-frame windows -> hey_jarvis on the last 16.
    `models` names each stage's (model, input, output)."""
    (mel_m, mel_in, mel_out), (emb_m, emb_in, emb_out), (det_m, det_in, det_out) = (
        models["mel"], models["embedding"], models["detector"])
    mel = infer(mel_m, {mel_in: audio[None]})[mel_out]  # [frames, 1, ?, 32]
    mel = mel.reshape(-1, 32) / 10.0 + 2.0
    windows = [mel[i:i + 76] for i in range(0, len(mel) - 75, 8)]
    emb = [infer(emb_m, {emb_in: w[None, :, :, None].astype(np.float32)})[emb_out].reshape(96)
           for w in windows]
    emb = np.array(emb, np.float32)
    if len(emb) < 16:
        emb = np.concatenate([np.zeros((16 - len(emb), 96), np.float32), emb])
    scores = [float(infer(det_m, {det_in: emb[i - 16:i][None]})[det_out].reshape(-1)[0])
              for i in range(16, len(emb) + 1)]
    return max(scores)


def read_wav(path, rate=16000):
    """A mono 16-bit WAV file as float32 samples at `rate` Hz."""
    with wave.open(path) as w:
        src_rate, channels = w.getframerate(), w.getnchannels()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
    pcm = pcm.reshape(-1, channels).mean(axis=1)
    n = int(len(pcm) * rate / src_rate)
    return np.interp(np.arange(n) * src_rate / rate, np.arange(len(pcm)), pcm).astype(np.float32)


def http_infer(url):
    """An infer(model, inputs) over KServe v2 HTTP/JSON, for the command-line helpers."""
    import urllib.request

    def infer(model, inputs):
        body = {"inputs": [{"name": n, "datatype": "INT64" if a.dtype == np.int64 else "FP32",
                            "shape": list(a.shape), "data": a.reshape(-1).tolist()} for n, a in inputs.items()]}
        req = urllib.request.Request(f"{url}/v2/models/{model}/infer", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            out = json.load(r)["outputs"]
        return {o["name"]: np.array(o["data"], np.float32).reshape(o["shape"]) for o in out}
    return infer


def png_to_rec_input(path):
    """Any image file, scaled to 48 pixels high (width kept in proportion, at most 960)."""
    from PIL import Image
    img = Image.open(path).convert("RGB")
    width = min(960, max(16, round(img.width * 48 / img.height)))
    img = np.asarray(img.resize((width, 48)))
    return ((img.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]


def main():
    """Command-line helpers for the README's curl examples:
      samples.py wav-request FILE.wav     KServe v2 JSON for silero_vad: the loudest 512-sample chunk
      samples.py text-png TEXT FILE.png   draws TEXT into a PNG
      samples.py png-request FILE.png     KServe v2 JSON for ppocr_rec
      samples.py ocr-text KEYS_FILE       reads a ppocr_rec response on stdin, prints the text
      samples.py vad-segments FILE.wav [URL]  streams the file through silero_vad on the agent at
                                          URL (default http://127.0.0.1:8000), prints speech segments
    """
    args = sys.argv[1:]
    if args[:1] == ["wav-request"] and len(args) == 2:
        audio = read_wav(args[1])
        energy = [float(np.square(audio[i:i + 512]).sum()) for i in range(0, len(audio) - 511, 256)]
        start = int(np.argmax(energy)) * 256
        body = {"inputs": [
            {"name": "input", "datatype": "FP32", "shape": [1, 512], "data": audio[start:start + 512].tolist()},
            {"name": "state", "datatype": "FP32", "shape": [2, 1, 128], "data": [0.0] * 256},
            {"name": "sr", "datatype": "INT64", "shape": [], "data": [16000]}]}
        json.dump(body, sys.stdout)
    elif args[:1] == ["text-png"] and len(args) == 3:
        from PIL import Image
        img, _ = text_image(args[1], 40 + 28 * len(args[1]), 64, 40)
        Image.fromarray(img).save(args[2])
    elif args[:1] == ["png-request"] and len(args) == 2:
        x = png_to_rec_input(args[1])
        json.dump({"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape),
                               "data": x.reshape(-1).tolist()}]}, sys.stdout)
    elif args[:1] == ["ocr-text"] and len(args) == 2:
        out = json.load(sys.stdin)["outputs"][0]
        probs = np.array(out["data"], np.float32).reshape(out["shape"])[0]
        print(ctc_decode(probs, load_keys(args[1])).strip())
    elif args[:1] == ["vad-segments"] and len(args) in (2, 3):
        probs = vad_probabilities(http_infer(args[2] if len(args) == 3 else "http://127.0.0.1:8000"), read_wav(args[1]))
        speaking, start = False, 0
        for i, p in enumerate(list(probs) + [0.0]):
            if not speaking and p > 0.5:
                speaking, start = True, i
            elif speaking and p < 0.35:
                speaking = False
                print(f"speech {start * 0.032:.2f}s - {i * 0.032:.2f}s (peak {probs[start:i].max():.2f})")
    else:
        raise SystemExit(main.__doc__)


if __name__ == "__main__":
    main()
