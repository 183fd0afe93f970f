"""PyTorch models made at test time with Debian's python3-torch, saved as TorchScript (.pt) and
for the lite interpreter (.ptl), each with the tensors its manifest declares."""
import torch
from torch import nn


class SmallCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(16, 10)

    def forward(self, image):
        return torch.softmax(self.head(self.features(image).flatten(1)), dim=1)


class Lstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.out = nn.Linear(16, 4)

    def forward(self, sequence):
        seq, (h, c) = self.lstm(sequence)
        return self.out(seq), h, c


class Dynamic(nn.Module):
    """Every dimension free: the output's shape follows the inputs'."""

    def forward(self, a, b):
        return a @ b.transpose(0, 1), (a * a).sum(dim=1, keepdim=True).sqrt()


CASES = {
    "small_cnn": (SmallCnn, [("image", "FP32", [-1, 3, 32, 32])], [("probabilities", "FP32", [-1, 10])],
                  lambda g: [torch.randn(2, 3, 32, 32, generator=g)]),
    "lstm": (Lstm, [("sequence", "FP32", [1, -1, 8])],
             [("scores", "FP32", [1, -1, 4]), ("h", "FP32", [1, 1, 16]), ("c", "FP32", [1, 1, 16])],
             lambda g: [torch.randn(1, 13, 8, generator=g)]),
    "dynamic": (Dynamic, [("a", "FP32", [-1, -1]), ("b", "FP32", [-1, -1])],
                [("product", "FP32", [-1, -1]), ("norms", "FP32", [-1, 1])],
                lambda g: [torch.randn(5, 7, generator=g), torch.randn(3, 7, generator=g)]),
}


def make(name, directory, lite=False):
    """Writes the model into `directory` (model.pt or model.ptl); returns the manifest fields
    and a function that gives PyTorch's own outputs for inputs."""
    torch.manual_seed(0)
    cls, inputs, outputs, _ = CASES[name]
    module = torch.jit.script(cls().eval())
    model_file = "model.ptl" if lite else "model.pt"
    path = f"{directory}/{model_file}"
    if lite:
        module._save_for_lite_interpreter(path)
    else:
        module.save(path)

    def reference(*arrays):
        with torch.no_grad():
            out = module(*[torch.from_numpy(a) for a in arrays])
        out = out if isinstance(out, tuple) else (out,)
        return [o.numpy() for o in out]

    fields = {"runtime": "torchscript", "model_file": model_file,
              "inputs": [{"name": n, "datatype": d, "shape": s} for n, d, s in inputs],
              "outputs": [{"name": n, "datatype": d, "shape": s} for n, d, s in outputs]}
    return fields, reference


def example_inputs(name, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [t.numpy() for t in CASES[name][3](g)]
