#!/usr/bin/python3
"""The release pipeline's model stages: train, quantize, evaluate (and gate), manifest.

deploy/release/release.sh runs them in this order in one working directory, after dataset.py:

  train      trains MatNet (a small CNN) in float32 on the data set's train split.
             Writes fp32-state.pt (weights + the input normalisation) and fp32.pt (the float
             model as TorchScript, for the comparison).
  quantize   post-training static quantization to int8 for the QNNPACK engine
             (torch.ao.quantization, eager mode): fuse conv+bn+relu and linear+relu, prepare with
             the 'qnnpack' qconfig, calibrate on the calibration split, convert; then
             torch.jit.script and save as model.pt with the "modelfleet_input_shape" extra file
             ("1,1,16,16") that the agent's TorchRuntime checks inputs against.
  evaluate   runs fp32.pt and model.pt (both loaded back from disk, as shipped) on the held-out
             split: accuracy, per-class recall, confusion matrix, p50 latency per frame (batch 1,
             one thread, as on the mat), file size. Writes metrics.json. THE GATE: exits 3, with
             the reason on stderr, when the int8 accuracy is more than --margin points below the
             fp32 accuracy, or below --min-accuracy, or its p50 latency is over the budget.
  manifest   writes manifest.json: a modelfleet.v1.Manifest in proto3 JSON (what
             `modelfleet versions push --manifest` takes) with the metrics, class labels, input
             spec, labels, params, lineage from the CI environment, the anti-rollback counter and
             the agent's self-test (a held-out reference input, model.pt's own output on it as
             the runtime reports it, a tolerance and a latency budget). --broken-self-test
             writes a reference output that the model does NOT give (its outputs rotated by one
             class), for showing an automatic rollback.

Deterministic: the same data set, seed and options give the same weights and a byte-identical
model.pt (PYTHONHASHSEED is pinned, training runs on a fixed thread count); the latency
metrics are measurements and vary. Run with /usr/bin/python3 (Debian's python3-torch 1.13).
"""

import os
import sys

# TorchScript serialises some module constants in set order, i.e. by string hash: fix the hash
# seed so the same inputs give a byte-identical model.pt (and digest) on every run.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402
import torch.ao.quantization as tq  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402

INPUT_SHAPE = [1, 1, dataset.ROWS, dataset.COLS]
INPUT_SHAPE_EXTRA_FILE = "modelfleet_input_shape"   # agent/runtime/torch_runtime.h
ARCHITECTURE = "matnet-c8-c16-c32-fc32"
EXIT_GATE_REFUSED = 3


class MatNet(nn.Module):
    """QuantStub -> [Conv3x3 + BN + ReLU] x3 with 2x2 max-pools after the 2nd and 3rd
    (16x16 -> 8x8 -> 4x4) -> Linear(512 -> 32) + ReLU -> Linear(32 -> 4) -> DeQuantStub.
    No global pooling: where the pressure is (at an edge or not) tells lying fully from lying
    partially. About 22k parameters. Outputs logits (the runtime softmaxes them)."""

    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(32)
        self.relu3 = nn.ReLU()
        self.pool3 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * (dataset.ROWS // 4) * (dataset.COLS // 4), 32)
        self.relu4 = nn.ReLU()
        self.fc2 = nn.Linear(32, len(dataset.CLASS_LABELS))
        self.dequant = tq.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.quant(x)
        y = self.relu1(self.bn1(self.conv1(y)))
        y = self.pool2(self.relu2(self.bn2(self.conv2(y))))
        y = self.pool3(self.relu3(self.bn3(self.conv3(y))))
        y = torch.flatten(y, 1)
        y = self.fc2(self.relu4(self.fc1(y)))
        return self.dequant(y)


FUSE = [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["conv3", "bn3", "relu3"],
        ["fc1", "relu4"]]


def fail(message, code=1):
    print("pipeline: " + message, file=sys.stderr)
    sys.exit(code)


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def load_data(path):
    try:
        return dataset.load(path)
    except (OSError, ValueError, RuntimeError) as e:
        fail("cannot read the data set %s: %s" % (path, e))


def inputs(data, split, norm):
    return dataset.normalize(data[split]["frames"], norm["mean"], norm["std"])


# ---- train -----------------------------------------------------------------------------------

def normalisation(train_frames):
    """The input_spec mean/std: the train split's mean and standard deviation of v / 65535,
    rounded to 4 decimals (the manifest carries them; the agent's Preprocessor applies them)."""
    v = train_frames.to(torch.float64) / dataset.MAX_COUNT
    return {"mean": round(v.mean().item(), 4), "std": round(v.std().item(), 4)}


def cmd_train(args):
    torch.manual_seed(args.seed)
    data = load_data(args.data)
    norm = normalisation(data["train"]["frames"])
    x, y = inputs(data, "train", norm), data["train"]["labels"]
    model = MatNet()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, args.epochs))
    gen = torch.Generator().manual_seed(args.seed)
    loss_fn = nn.CrossEntropyLoss()
    start = time.monotonic()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(x.shape[0], generator=gen)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, x.shape[0], args.batch_size):
            idx = order[i:i + args.batch_size]
            opt.zero_grad()
            out = model(x[idx])
            loss = loss_fn(out, y[idx])
            loss.backward()
            opt.step()
            loss_sum += loss.item() * idx.numel()
            correct += int((out.argmax(1) == y[idx]).sum())
            total += idx.numel()
        sched.step()
        print("train: epoch %d/%d loss %.4f train accuracy %.4f (%.1f s)" % (
            epoch + 1, args.epochs, loss_sum / total, correct / total, time.monotonic() - start))
    model.eval()
    torch.save({"state_dict": model.state_dict(), "norm": norm, "epochs": args.epochs,
                "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
                "train_seconds": time.monotonic() - start},
               os.path.join(args.work, "fp32-state.pt"))
    torch.jit.save(torch.jit.script(model), os.path.join(args.work, "fp32.pt"),
                   _extra_files={INPUT_SHAPE_EXTRA_FILE: ",".join(map(str, INPUT_SHAPE))})
    print("train: input normalisation mean %.4f std %.4f; wrote fp32-state.pt, fp32.pt" % (
        norm["mean"], norm["std"]))


# ---- quantize --------------------------------------------------------------------------------

def cmd_quantize(args):
    torch.backends.quantized.engine = "qnnpack"
    data = load_data(args.data)
    state = torch.load(os.path.join(args.work, "fp32-state.pt"))
    model = MatNet()
    model.load_state_dict(state["state_dict"])
    model.eval()
    tq.fuse_modules(model, FUSE, inplace=True)
    model.qconfig = tq.get_default_qconfig("qnnpack")
    prepared = tq.prepare(model)
    calib = inputs(data, "calibration", state["norm"])
    with torch.no_grad():
        for i in range(0, calib.shape[0], 64):
            prepared(calib[i:i + 64])
    quantized = tq.convert(prepared)
    scripted = torch.jit.script(quantized)
    path = os.path.join(args.work, "model.pt")
    torch.jit.save(scripted, path,
                   _extra_files={INPUT_SHAPE_EXTRA_FILE: ",".join(map(str, INPUT_SHAPE))})
    print("quantize: int8 (QNNPACK) calibrated on %d frames; wrote model.pt (%d bytes)" % (
        calib.shape[0], os.path.getsize(path)))


# ---- evaluate --------------------------------------------------------------------------------

def scores(model, x):
    """The model's outputs as the agent's runtime reports them (agent/runtime/model_runtime.h,
    ResultFromOutputs): kept when already probabilities, else softmaxed in double."""
    with torch.no_grad():
        y = model(x).to(torch.float64)
    is_prob = bool(((y >= 0) & (y <= 1)).all()) and bool(((y.sum(1) - 1).abs() <= 1e-3).all())
    return (y if is_prob else torch.softmax(y, dim=1)).to(torch.float32)


def measure(model_path, x, labels, latency_frames):
    model = torch.jit.load(model_path)
    model.eval()
    predicted = []
    for i in range(0, x.shape[0], 256):
        predicted.append(scores(model, x[i:i + 256]).argmax(1))
    predicted = torch.cat(predicted)
    n = len(dataset.CLASS_LABELS)
    confusion = [[int(((labels == t) & (predicted == p)).sum()) for p in range(n)] for t in range(n)]
    recall = {dataset.CLASS_LABELS[t]: confusion[t][t] / max(1, sum(confusion[t])) for t in range(n)}
    times = []
    with torch.no_grad():
        for i in range(10):  # warm-up: the TorchScript executor profiles its first runs
            model(x[i:i + 1])
        for i in range(latency_frames):
            frame = x[i % x.shape[0]:i % x.shape[0] + 1]
            t0 = time.perf_counter()
            model(frame)
            times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    return {
        "accuracy": int((predicted == labels).sum()) / labels.numel(),
        "recall": recall,
        "confusion": confusion,
        "latency_p50_ms": statistics.median(times),
        "latency_p95_ms": times[min(len(times) - 1, int(math.ceil(0.95 * len(times))) - 1)],
        "size_bytes": os.path.getsize(model_path),
    }


def cmd_evaluate(args):
    torch.set_num_threads(1)  # as on the mat
    torch.backends.quantized.engine = "qnnpack"
    data = load_data(args.data)
    state = torch.load(os.path.join(args.work, "fp32-state.pt"))
    x, labels = inputs(data, "heldout", state["norm"]), data["heldout"]["labels"]
    fp32 = measure(os.path.join(args.work, "fp32.pt"), x, labels, args.latency_frames)
    int8 = measure(os.path.join(args.work, "model.pt"), x, labels, args.latency_frames)
    drop_points = 100.0 * (fp32["accuracy"] - int8["accuracy"])

    reasons = []
    if drop_points > args.margin:
        reasons.append("int8 accuracy %.4f is %.2f points below fp32 %.4f (the margin allows %.2f)" % (
            int8["accuracy"], drop_points, fp32["accuracy"], args.margin))
    if int8["accuracy"] < args.min_accuracy:
        reasons.append("int8 accuracy %.4f is below the floor %.4f" % (int8["accuracy"], args.min_accuracy))
    if args.latency_budget_ms > 0 and int8["latency_p50_ms"] > args.latency_budget_ms:
        reasons.append("int8 p50 latency %.3f ms is over the budget of %.3f ms" % (
            int8["latency_p50_ms"], args.latency_budget_ms))

    meta = data["meta"]
    metrics = {
        "class_labels": dataset.CLASS_LABELS,
        "dataset": {"name": meta["name"], "seed": meta["seed"], "quick": meta["quick"],
                    "frames": {s: data[s]["labels"].numel() for s in ("train", "calibration", "heldout")}},
        "training": {k: state[k] for k in ("epochs", "lr", "batch_size", "seed", "train_seconds")},
        "input_normalisation": state["norm"],
        "fp32": fp32,
        "int8": int8,
        "accuracy_drop_points": drop_points,
        "compression_ratio": fp32["size_bytes"] / int8["size_bytes"],
        "gate": {"passed": not reasons, "margin_points": args.margin,
                 "min_accuracy": args.min_accuracy, "latency_budget_ms": args.latency_budget_ms,
                 "reasons": reasons},
        "torch_version": torch.__version__,
    }
    write_json(os.path.join(args.work, "metrics.json"), metrics)

    print("evaluate: held-out %d frames   %-10s %-10s" % (labels.numel(), "fp32", "int8"))
    print("  accuracy                 %-10.4f %-10.4f (drop %.2f points)" % (
        fp32["accuracy"], int8["accuracy"], drop_points))
    for c in dataset.CLASS_LABELS:
        print("  recall %-17s %-10.4f %-10.4f" % (c, fp32["recall"][c], int8["recall"][c]))
    print("  latency p50 (ms)         %-10.3f %-10.3f" % (fp32["latency_p50_ms"], int8["latency_p50_ms"]))
    print("  size (bytes)             %-10d %-10d" % (fp32["size_bytes"], int8["size_bytes"]))
    if reasons:
        fail("RELEASE REFUSED by the quality gate: " + "; ".join(reasons), EXIT_GATE_REFUSED)
    print("evaluate: gate passed (int8 within %.2f points of fp32, >= %.4f)" % (
        args.margin, args.min_accuracy))


# ---- manifest --------------------------------------------------------------------------------

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def version_counter(version):
    """The anti-rollback counter of a semver: major * 1e6 + minor * 1e3 + patch (monotone for
    components below 1000; a pre-release shares its release's counter)."""
    m = SEMVER.match(version)
    major, minor, patch = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if minor >= 1000 or patch >= 1000:
        fail("--version %s: minor and patch must be < 1000 for the default --version-counter" % version, 2)
    return major * 1000000 + minor * 1000 + patch


def git_head():
    try:
        out = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def lineage(env, dataset_desc, parent_version):
    """Where this build came from, from whatever CI environment there is: MODELFLEET_* overrides,
    then Jenkins (GIT_COMMIT, BUILD_TAG, BUILD_URL), then GitHub Actions (GITHUB_SHA,
    GITHUB_RUN_ID/GITHUB_RUN_ATTEMPT, GITHUB_SERVER_URL/GITHUB_REPOSITORY), then `git rev-parse
    HEAD`. Missing values stay empty."""
    def first(*names):
        for n in names:
            if env.get(n):
                return env[n]
        return ""
    commit = first("MODELFLEET_GIT_COMMIT", "GIT_COMMIT", "GITHUB_SHA") or git_head()
    run_id = first("MODELFLEET_CI_RUN_ID", "BUILD_TAG")
    if not run_id and env.get("GITHUB_RUN_ID"):
        run_id = "github-%s-%s" % (env["GITHUB_RUN_ID"], env.get("GITHUB_RUN_ATTEMPT", "1"))
    url = first("MODELFLEET_CI_RUN_URL", "BUILD_URL")
    if not url and env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        url = "%s/%s/actions/runs/%s" % (env.get("GITHUB_SERVER_URL", "https://github.com"),
                                         env["GITHUB_REPOSITORY"], env["GITHUB_RUN_ID"])
    out = {"git_commit": commit[:64], "ci_run_id": run_id[:128], "ci_run_url": url[:2048],
           "dataset": dataset_desc}
    if parent_version:
        out["parent_version"] = parent_version
    return out


def metric_key(s):
    return re.sub(r"[^A-Za-z0-9._-]", "_", s)


def cmd_manifest(args):
    if not MODEL_NAME.match(args.model_name):
        fail("--model %r: must match [a-z0-9][a-z0-9._-]{0,62}" % args.model_name, 2)
    for flag, v in (("--version", args.version), ("--parent-version", args.parent_version)):
        if v and not SEMVER.match(v):
            fail("%s %r is not a semantic version (e.g. 1.4.0)" % (flag, v), 2)
    torch.set_num_threads(1)
    torch.backends.quantized.engine = "qnnpack"
    data = load_data(args.data)
    state = torch.load(os.path.join(args.work, "fp32-state.pt"))
    with open(os.path.join(args.work, "metrics.json")) as f:
        metrics = json.load(f)
    if not metrics["gate"]["passed"]:
        fail("metrics.json says the gate refused this model; no manifest", EXIT_GATE_REFUSED)
    model_path = os.path.join(args.work, "model.pt")
    with open(model_path, "rb") as f:
        blob = f.read()
    model = torch.jit.load(model_path)
    model.eval()

    # The self-test's reference: the first held-out frame of each class in turn (lying_full
    # first: the whole body model) that the int8 model gets right with a clear margin, so a
    # device's output differs from it only by rounding, and a wrong reference is far off.
    x, labels = inputs(data, "heldout", state["norm"]), data["heldout"]["labels"]
    probs = scores(model, x)
    top2 = probs.topk(2, dim=1).values
    chosen = None
    for cls in (2, 1, 3, 0):
        ok = (labels == cls) & (probs.argmax(1) == cls) & (top2[:, 0] - top2[:, 1] >= 0.5)
        hits = torch.nonzero(ok).view(-1)
        if hits.numel():
            chosen = int(hits[0])
            break
    if chosen is None:
        fail("no held-out frame is classified with a clear margin; cannot build a self-test")
    ref_in = x[chosen:chosen + 1]
    ref_out = scores(model, ref_in)[0]
    # Once more from a fresh load, as the device will do it: the reference must be reproducible.
    again = scores(torch.jit.load(model_path), ref_in)[0]
    if (again - ref_out).abs().max().item() > args.tolerance / 10:
        fail("model.pt does not give a reproducible output on the reference input")
    if args.broken_self_test:
        ref_out = torch.roll(ref_out, 1)
        if (ref_out - again).abs().max().item() < 10 * args.tolerance:
            fail("--broken-self-test: the rotated reference is not far enough from the real output")

    m_fp32, m_int8 = metrics["fp32"], metrics["int8"]
    mvals = {
        "accuracy": m_int8["accuracy"],
        "accuracy_int8": m_int8["accuracy"],
        "accuracy_fp32": m_fp32["accuracy"],
        "accuracy_drop_points": metrics["accuracy_drop_points"],
        "latency_ms": m_int8["latency_p50_ms"],
        "latency_p50_ms_int8": m_int8["latency_p50_ms"],
        "latency_p50_ms_fp32": m_fp32["latency_p50_ms"],
        "size_bytes_int8": m_int8["size_bytes"],
        "size_bytes_fp32": m_fp32["size_bytes"],
        "heldout_frames": metrics["dataset"]["frames"]["heldout"],
    }
    for c in dataset.CLASS_LABELS:
        mvals[metric_key("recall_" + c)] = m_int8["recall"][c]
        mvals[metric_key("recall_fp32_" + c)] = m_fp32["recall"][c]
    frames = metrics["dataset"]["frames"]
    dataset_desc = "%s seed=%d%s train=%d calibration=%d heldout=%d" % (
        metrics["dataset"]["name"], metrics["dataset"]["seed"],
        " quick" if metrics["dataset"]["quick"] else "", frames["train"], frames["calibration"],
        frames["heldout"])
    training = metrics["training"]
    manifest = {
        "model": args.model_name,
        "version": args.version,
        "format": "torchscript-int8",
        "quantization": "ptq-static-qnnpack",
        "digest": hashlib.sha256(blob).hexdigest(),
        "size_bytes": len(blob),
        "input_spec": {"shape": INPUT_SHAPE, "dtype": "float32", "layout": "NCHW",
                       "mean": [state["norm"]["mean"]], "std": [state["norm"]["std"]]},
        "class_labels": dataset.CLASS_LABELS,
        "metrics": mvals,
        "params": {
            "architecture": ARCHITECTURE,
            "epochs": str(training["epochs"]),
            "learning_rate": str(training["lr"]),
            "batch_size": str(training["batch_size"]),
            "seed": str(training["seed"]),
            "calibration_frames": str(frames["calibration"]),
            "qconfig": "qnnpack-default",
            "gate_margin_points": str(metrics["gate"]["margin_points"]),
            "gate_min_accuracy": str(metrics["gate"]["min_accuracy"]),
            "torch": metrics["torch_version"],
            "output": "logits",
        },
        "labels": {
            "pipeline": "deploy-release",
            "task": "person-detection",
            "dataset": metrics["dataset"]["name"],
            "variant": "broken-self-test" if args.broken_self_test else "good",
            "quick": "true" if metrics["dataset"]["quick"] else "false",
        },
        "lineage": lineage(os.environ, dataset_desc, args.parent_version),
        "self_test": {
            # float32 values as the shortest double repr: they read back exactly.
            "reference_input": [float(v) for v in ref_in.reshape(-1).tolist()],
            "reference_output": [float(v) for v in ref_out.tolist()],
            "tolerance": args.tolerance,
            "latency_budget_ms": args.latency_budget_ms,
        },
        "version_counter": args.version_counter if args.version_counter is not None
        else version_counter(args.version),
    }
    write_json(os.path.join(args.work, "manifest.json"), manifest)
    print("manifest: %s %s, self-test on a held-out %s frame (tolerance %g, budget %g ms)%s" % (
        args.model_name, args.version, dataset.CLASS_LABELS[int(labels[chosen])], args.tolerance,
        args.latency_budget_ms, ", reference output deliberately WRONG" if args.broken_self_test else ""))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="stage", required=True)

    def stage(name, help_text, fn):
        s = sub.add_parser(name, help=help_text)
        s.add_argument("--data", required=True, help="the data set file (dataset.py --out)")
        s.add_argument("--work", required=True, help="the working directory of the stages")
        s.set_defaults(fn=fn)
        return s

    t = stage("train", "train MatNet in float32", cmd_train)
    t.add_argument("--epochs", type=int, default=12)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--threads", type=int, default=1, help="torch threads for training")
    stage("quantize", "post-training static quantization to int8 (QNNPACK)", cmd_quantize)
    e = stage("evaluate", "fp32 vs int8 on the held-out split, and the release gate", cmd_evaluate)
    e.add_argument("--margin", type=float, default=2.0,
                   help="the most int8 accuracy may be below fp32, in percentage points")
    e.add_argument("--min-accuracy", type=float, default=0.9, help="the int8 accuracy floor (0..1)")
    e.add_argument("--latency-budget-ms", type=float, default=20.0,
                   help="the int8 p50 latency per frame must be within it (0 = no limit)")
    e.add_argument("--latency-frames", type=int, default=300, help="single-frame runs timed")
    m = stage("manifest", "write manifest.json", cmd_manifest)
    m.add_argument("--model-name", required=True)
    m.add_argument("--version", required=True)
    m.add_argument("--parent-version", default="")
    m.add_argument("--version-counter", type=int, default=None,
                   help="anti-rollback counter (default: from the version)")
    m.add_argument("--tolerance", type=float, default=0.02,
                   help="self-test tolerance per output probability")
    m.add_argument("--latency-budget-ms", type=float, default=20.0)
    m.add_argument("--broken-self-test", action="store_true",
                   help="write a reference output the model does not give")
    args = p.parse_args()
    if args.stage == "train":
        if args.epochs < 1 or args.batch_size < 1 or not args.lr > 0 or args.threads < 1:
            p.error("--epochs, --batch-size, --threads must be >= 1 and --lr > 0")
        torch.set_num_threads(args.threads)
    if args.stage == "evaluate":
        if not -100 <= args.margin <= 100:
            p.error("--margin must be in [-100, 100] points")
        if not 0 <= args.min_accuracy <= 1:
            p.error("--min-accuracy must be in [0, 1]")
        if args.latency_frames < 1:
            p.error("--latency-frames must be >= 1")
    if args.stage == "manifest":
        if not (math.isfinite(args.tolerance) and args.tolerance > 0):
            p.error("--tolerance must be > 0")
        if not (math.isfinite(args.latency_budget_ms) and args.latency_budget_ms >= 0):
            p.error("--latency-budget-ms must be >= 0")
        if args.version_counter is not None and args.version_counter < 0:
            p.error("--version-counter must be >= 0")
    args.fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
