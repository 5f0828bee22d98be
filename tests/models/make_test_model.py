#!/usr/bin/python3
"""Builds a tiny int8 person-detection model for the pressure mat, for tests.

Writes into --out DIR:
  model.pt       a TorchScript module (torch.jit.script) quantized to int8 for the QNNPACK
                 engine: input float32 [1, 1, 16, 16] (NCHW, already normalised by the
                 manifest's input_spec, as client/agent/sensor/preprocessor.h produces it),
                 output float32 [1, 4] logits over empty / sitting / lying_full / lying_partial.
  manifest.json  a fragment of a modelfleet.v1.Manifest in proto3 JSON (snake_case field
                 names, parseable with google::protobuf::util::JsonStringToMessage): format,
                 quantization, digest, size_bytes, input_spec, class_labels, params and the
                 self_test block (a reference input, the model's own softmaxed output on it,
                 tolerance, latency budget). The caller adds model, version, etc.
and prints the two absolute paths, one per line, model first.

The model: QuantStub -> Conv3x3(1->8)+ReLU -> MaxPool2 -> Conv3x3(8->16)+ReLU -> MaxPool2 ->
Linear(256->4) -> DeQuantStub, quantized with eager-mode post-training static quantization
(torch.ao.quantization, qconfig 'qnnpack': fuse conv+relu, prepare, calibrate on a few
synthetic frames, convert). The weights are RANDOM (seeded by --seed), not trained: the model
is only a real, loadable, deterministic int8 TorchScript artifact for the runtime, the self-test
and the fleet tests. Training on recorded mats is the release pipeline's job.

The model also carries a TorchScript extra file "modelfleet_input_shape" ("1,1,16,16") that
the agent's TorchRuntime uses to reject a wrongly shaped input with INVALID_ARGUMENT before
running the model (optional for models from elsewhere; --no-input-shape leaves it out).

Variants for tests:
  --broken  the manifest's reference_output is that of a model with another seed (at least
            --broken-min-diff away in some element), so the on-device self-test fails on the
            output comparison while the model itself loads and runs fine.
  --slow    forward() also runs a deliberately expensive loop whose result is multiplied by 0
            (the outputs are unchanged), calibrated to take about --slow-ms per inference on
            one thread here, far over the manifest's latency budget.
  --probabilities  the model ends with a softmax (outputs sum to 1) instead of logits.
  --live-fault slow|error
            the model behaves on the manifest's reference input (it passes the on-device
            self-test) but not on any other input, i.e. on live frames: `slow` runs the --slow
            loop (about --slow-ms per inference), `error` raises a RuntimeError. For the agent's
            local rollback after activation (its first inferences on real frames go wrong).
  --fp32    the same model (same seed, same weights) NOT quantized: float32 TorchScript, format
            "torchscript-fp32", for benchmarks against the int8 one (bench/agent_bench.cc).

Deterministic: the same options give a byte-identical model.pt and manifest.json. Runs in a
few seconds (most of it importing torch). Needs python3-torch (Debian, 1.13): run it with
/usr/bin/python3.
"""

import argparse
import hashlib
import json
import math
import os
import sys
import time

# TorchScript serialises some module constants in set order, i.e. by string hash: fix the hash
# seed so the same --seed gives a byte-identical model.pt (and digest) on every run.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import torch  # noqa: E402
from torch import nn  # noqa: E402
import torch.ao.quantization as tq  # noqa: E402

CLASS_LABELS = ["empty", "sitting", "lying_full", "lying_partial"]
ROWS, COLS = 16, 16
INPUT_SHAPE = [1, 1, ROWS, COLS]
INPUT_MEAN = 0.1   # x' = (v / 65535 - mean) / std, as the agent's Preprocessor computes it
INPUT_STD = 0.2
LATENCY_BUDGET_MS = 50.0   # generous: the good model takes well under 1 ms on one core
TOLERANCE = 0.01           # on softmaxed probabilities (one int8 step of a logit is ~0.01)


def waste(x: torch.Tensor, iters: int) -> torch.Tensor:
    """The deliberate waste of --slow and --live-fault slow: 0, after `iters` rounds of work that
    depend on the input (so nothing can fold them away), stay finite and away from denormals
    (cos converges to ~0.739)."""
    h = torch.zeros([128, 128]) + x.mean() * 0.0 + 0.5
    w = torch.full([128, 128], 1.0 / 128.0)
    for _ in range(iters):
        h = torch.cos(torch.mm(h, w))
    return h.sum() * 0.0


class TinyMatNet(nn.Module):
    def __init__(self, slow_iters: int = 0, probabilities: bool = False):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * (ROWS // 4) * (COLS // 4), len(CLASS_LABELS))
        self.dequant = tq.DeQuantStub()
        self.slow_iters = slow_iters
        self.probabilities = probabilities

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.quant(x)
        y = self.pool1(self.relu1(self.conv1(y)))
        y = self.pool2(self.relu2(self.conv2(y)))
        y = torch.flatten(y, 1)
        y = self.dequant(self.fc(y))
        if self.slow_iters > 0:
            y = y + waste(x, self.slow_iters)
        if self.probabilities:
            y = torch.softmax(y, dim=1)
        return y


class LiveFault(nn.Module):
    """--live-fault: `inner` unchanged on the reference input, slow (mode 1) or failing (mode 2)
    on every other input."""

    def __init__(self, inner: nn.Module, reference: torch.Tensor, mode: int, slow_iters: int):
        super().__init__()
        self.inner = inner
        self.register_buffer("reference", reference.clone())
        self.mode = mode
        self.slow_iters = slow_iters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        if x.shape != self.reference.shape or bool((x - self.reference).abs().max() > 1e-5):
            if self.mode == 2:
                raise RuntimeError("make_test_model --live-fault error: this input is not the reference input")
            y = y + waste(x, self.slow_iters)
        return y


def synthetic_frame(kind: int, gen: torch.Generator, offsets: torch.Tensor) -> torch.Tensor:
    """A rough synthetic pressure frame (raw counts 0..65535) of class `kind`, normalised like
    the agent's Preprocessor. Cruder than client/agent/sensor/synthetic.h, but in the same value
    ranges, which is all calibration needs."""
    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(1, generator=gen).item()

    rows = torch.arange(ROWS, dtype=torch.float32).view(ROWS, 1) + 0.5
    cols = torch.arange(COLS, dtype=torch.float32).view(1, COLS) + 0.5
    counts = offsets + 120.0 * torch.randn(ROWS, COLS, generator=gen)
    if kind == 1:  # sitting: two ischial blobs around the middle
        cy, cx, peak = u(6, 10), u(6, 10), u(35000, 60000)
        for dx in (-1.5, 1.5):
            d2 = ((rows - cy) / 1.6) ** 2 + ((cols - cx - dx) / 1.3) ** 2
            counts = counts + peak * torch.clamp(1 - d2, min=0) ** 1.5
    elif kind in (2, 3):  # lying: a long ellipse along the rows, shifted off the mat if partial
        length, peak = u(12.5, 15), u(18000, 32000)
        cy = ROWS / 2 + (u(0.35, 0.65) * length * (1 if u(0, 1) < 0.5 else -1) if kind == 3 else 0)
        cx = u(6.5, 9.5)
        d2 = ((rows - cy) / (length / 2)) ** 2 + ((cols - cx) / 2.2) ** 2
        counts = counts + peak * torch.clamp(1 - d2, min=0) ** 1.5
    counts = torch.clamp(counts, 0, 65535)
    return ((counts / 65535.0 - INPUT_MEAN) / INPUT_STD).to(torch.float32).view(*INPUT_SHAPE)


def build(seed: int, slow_iters: int, probabilities: bool, fp32: bool = False,
          live_fault: int = 0, live_fault_iters: int = 0):
    """The quantized (or, with fp32, float), scripted model of `seed`, and the reference input."""
    torch.manual_seed(seed)
    model = TinyMatNet(slow_iters=slow_iters, probabilities=probabilities).eval()
    # Untrained random weights give near-uniform outputs; spread the last layer so the
    # probabilities differ visibly between classes (and between seeds).
    with torch.no_grad():
        model.fc.weight.mul_(8.0)
    if fp32:
        # The same weights as the int8 model of this seed (the quantization below only reads
        # them), the Quant/DeQuant stubs being identities in float.
        gen = torch.Generator().manual_seed(seed)
        offsets = 300 + 2200 * torch.rand(ROWS, COLS, generator=gen)
        reference_input = synthetic_frame(2, torch.Generator().manual_seed(seed + 7919), offsets)
        return torch.jit.script(model), reference_input
    model.qconfig = tq.get_default_qconfig("qnnpack")
    tq.fuse_modules(model, [["conv1", "relu1"], ["conv2", "relu2"]], inplace=True)
    prepared = tq.prepare(model)
    gen = torch.Generator().manual_seed(seed)
    offsets = 300 + 2200 * torch.rand(ROWS, COLS, generator=gen)
    slow, prepared.slow_iters = prepared.slow_iters, 0  # calibrate without the waste
    with torch.no_grad():
        for i in range(32):
            prepared(synthetic_frame(i % 4, gen, offsets))
    prepared.slow_iters = slow
    quantized = tq.convert(prepared)
    reference_input = synthetic_frame(2, torch.Generator().manual_seed(seed + 7919), offsets)
    if live_fault:
        quantized = LiveFault(quantized, reference_input, live_fault, live_fault_iters)
    scripted = torch.jit.script(quantized)
    return scripted, reference_input


def run(model, x: torch.Tensor) -> torch.Tensor:
    """The model's output as the agent's runtime reports it: softmaxed unless it already is."""
    with torch.no_grad():
        y = model(x).reshape(-1).to(torch.float32)
    if torch.all(y >= 0) and torch.all(y <= 1) and abs(y.sum().item() - 1.0) <= 1e-3:
        return y
    return torch.softmax(y, dim=0)


def calibrate_slow_iters(target_ms: float) -> int:
    """Iterations of the --slow loop that take about target_ms here. The fastest of a few
    timings, so a busy machine makes the loop longer, never shorter than intended."""
    h = torch.full([128, 128], 0.5)
    w = torch.full([128, 128], 1.0 / 128.0)
    n, best = 10, float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            h = torch.cos(torch.mm(h, w))
        best = min(best, (time.perf_counter() - start) * 1000.0 / n)
    return max(1, int(math.ceil(target_ms / max(best, 1e-4))))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    p.add_argument("--seed", type=int, default=1, help="seed of the weights and the reference input")
    p.add_argument("--broken", action="store_true",
                   help="write the reference output of another seed's model (self-test fails)")
    p.add_argument("--broken-min-diff", type=float, default=0.1,
                   help="--broken: the least max-abs difference of the wrong reference")
    p.add_argument("--slow", action="store_true",
                   help="add an expensive no-op loop so the latency budget is exceeded")
    p.add_argument("--slow-ms", type=float, default=6 * LATENCY_BUDGET_MS,
                   help="--slow: the time the loop should take per inference, ms")
    p.add_argument("--probabilities", action="store_true",
                   help="end the model with a softmax (outputs are probabilities)")
    p.add_argument("--live-fault", choices=["slow", "error"],
                   help="pass the self-test but be slow / fail on every other input (live frames)")
    p.add_argument("--fp32", action="store_true",
                   help="the same model not quantized (float32), for benchmarks")
    p.add_argument("--no-input-shape", action="store_true",
                   help="do not embed the modelfleet_input_shape extra file")
    args = p.parse_args()

    torch.set_num_threads(1)  # as on the device; also what --slow calibrates for
    torch.backends.quantized.engine = "qnnpack"
    if args.fp32 and (args.slow or args.live_fault or args.broken):
        print("--fp32 makes the plain model only (no --slow, --live-fault, --broken)", file=sys.stderr)
        return 2
    slow_iters = calibrate_slow_iters(args.slow_ms) if args.slow else 0
    live_fault = {None: 0, "slow": 1, "error": 2}[args.live_fault]
    live_fault_iters = calibrate_slow_iters(args.slow_ms) if args.live_fault == "slow" else 0

    model, reference_input = build(args.seed, slow_iters, args.probabilities, args.fp32, live_fault,
                                   live_fault_iters)
    reference_output = run(model, reference_input)

    if args.broken:
        for other in range(args.seed + 1, args.seed + 1001):
            other_model, _ = build(other, 0, args.probabilities)
            wrong = run(other_model, reference_input)
            if (wrong - reference_output).abs().max().item() >= args.broken_min_diff:
                reference_output = wrong
                break
        else:
            print("no other seed gives a different enough output", file=sys.stderr)
            return 1

    os.makedirs(args.out, exist_ok=True)
    model_path = os.path.abspath(os.path.join(args.out, "model.pt"))
    manifest_path = os.path.abspath(os.path.join(args.out, "manifest.json"))
    extra = {} if args.no_input_shape else {"modelfleet_input_shape": ",".join(map(str, INPUT_SHAPE))}
    torch.jit.save(model, model_path, _extra_files=extra)
    with open(model_path, "rb") as f:
        data = f.read()

    variant = ("broken" if args.broken else "slow" if args.slow else
               "live-" + args.live_fault if args.live_fault else "good")
    manifest = {
        "format": "torchscript-fp32" if args.fp32 else "torchscript-int8",
        "quantization": "none" if args.fp32 else "ptq-static-qnnpack",
        "digest": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "input_spec": {
            "shape": INPUT_SHAPE,
            "dtype": "float32",
            "layout": "NCHW",
            "mean": [INPUT_MEAN],
            "std": [INPUT_STD],
        },
        "class_labels": CLASS_LABELS,
        "params": {
            "seed": str(args.seed),
            "weights": "random-untrained",
            "variant": variant,
            "output": "probabilities" if args.probabilities else "logits",
        },
        "self_test": {
            # float32 values written as the shortest double repr: they read back exactly.
            "reference_input": [float(v) for v in reference_input.reshape(-1).tolist()],
            "reference_output": [float(v) for v in reference_output.tolist()],
            "tolerance": TOLERANCE,
            "latency_budget_ms": LATENCY_BUDGET_MS,
        },
    }
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(model_path)
    print(manifest_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
