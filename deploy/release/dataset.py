#!/usr/bin/python3
"""The synthetic pressure-mat data set the release pipeline trains, calibrates and evaluates on.

Writes one file (torch.save of a dict, see `save`) holding three splits of labelled frames of the
mat's 16 x 16 bladder grid in raw 16-bit counts (0..65535, what the STM32 sends and what the
agent's sensor sources produce):

  train        the network is trained on it;
  calibration  post-training quantization observes activation ranges on it (never trained on);
  heldout      accuracy, recall and latency are measured on it (never trained or calibrated on).

Each split is drawn from its OWN set of simulated mats (every mat has its own bladder offsets,
gains and dead bladders), so the held-out numbers are those of mats the model has never seen.

The classes, in the order of the model's outputs and of the manifest's class_labels (the order of
client/agent/sensor/synthetic.h's Situation): empty, sitting, lying_full, lying_partial.

The generative model is documented in deploy/release/README.md ("The data set"). It is the body
and sensor model of the agent's synthetic source (client/agent/sensor/synthetic.cc: the same
elliptical contact regions with a Hertz-like sqrt(1 - d^2) profile averaged over 3 x 3
sub-samples of each bladder, the same mat aspect) with WIDER variation than the agent's defaults
(body size and build, position, tilt, peak pressure, per-mat offset range, per-bladder gain,
noise level, dead-bladder fraction), so that a model trained here also classifies the agent's
synthetic frames, and is not tuned to one simulated mat.

Deterministic: the same --seed and sizes give the same frames (torch.Generator streams only).
Run with /usr/bin/python3 (Debian's python3-torch).

  /usr/bin/python3 deploy/release/dataset.py --out /tmp/mat.pt [--seed 1] [--quick]
"""

import argparse
import math
import os
import sys
import time

import torch

CLASS_LABELS = ["empty", "sitting", "lying_full", "lying_partial"]
ROWS, COLS = 16, 16
MAT_ASPECT = 0.5          # physical width / length of the mat (95 x 190 cm)
MAX_COUNT = 65535.0
DATASET_NAME = "synthetic-mat-v1"

# Contact regions in body heights: (u along the body from the top of the head, v across from the
# midline, half-extent along, half-extent across, share of the peak pressure). The same numbers as
# client/agent/sensor/synthetic.cc.
LYING_SEGMENTS = [
    (0.070, 0.000, 0.060, 0.050, 0.60),   # head
    (0.255, 0.000, 0.110, 0.125, 0.75),   # shoulders and upper back
    (0.455, 0.000, 0.100, 0.115, 1.00),   # pelvis and sacrum
    (0.640, -0.060, 0.110, 0.055, 0.70),  # thighs
    (0.640, 0.060, 0.110, 0.055, 0.70),
    (0.840, -0.065, 0.110, 0.045, 0.60),  # calves
    (0.840, 0.065, 0.110, 0.045, 0.60),
    (0.960, -0.070, 0.035, 0.035, 0.85),  # heels
    (0.960, 0.070, 0.035, 0.035, 0.85),
]
SITTING_SEGMENTS = [
    (0.500, -0.070, 0.075, 0.065, 1.00),  # ischial regions
    (0.500, 0.070, 0.075, 0.065, 1.00),
    (0.470, 0.000, 0.050, 0.040, 0.80),   # coccyx
    (0.570, -0.065, 0.060, 0.055, 0.60),  # back of the thighs
    (0.570, 0.065, 0.060, 0.055, 0.60),
]
# Not in the agent's synthetic source (wider variation here):
# sitting up with the legs stretched out on the mat ("long sitting"): the pelvis carries most of
# the weight, the legs little; no head or shoulders on the mat.
LONG_SITTING_SEGMENTS = [
    (0.455, -0.065, 0.080, 0.070, 1.00),  # ischial regions
    (0.455, 0.065, 0.080, 0.070, 1.00),
    (0.640, -0.060, 0.110, 0.055, 0.30),  # thighs
    (0.640, 0.060, 0.110, 0.055, 0.30),
    (0.840, -0.065, 0.110, 0.045, 0.25),  # calves
    (0.840, 0.065, 0.110, 0.045, 0.25),
    (0.960, -0.070, 0.035, 0.035, 0.40),  # heels
    (0.960, 0.070, 0.035, 0.035, 0.40),
]
# lying on the side: narrower, with the pressure on the shoulder and the hip.
SIDE_LYING_SEGMENTS = [
    (0.070, 0.000, 0.060, 0.040, 0.70),   # head
    (0.230, 0.000, 0.060, 0.060, 1.00),   # shoulder
    (0.470, 0.000, 0.070, 0.070, 1.00),   # hip
    (0.640, 0.000, 0.110, 0.050, 0.60),   # thighs
    (0.840, 0.000, 0.110, 0.040, 0.50),   # calves
    (0.960, 0.000, 0.040, 0.030, 0.60),   # feet
]
# Postures: which contact regions a frame's body has.
POSTURE_SEGMENTS = {1: SITTING_SEGMENTS, 2: LONG_SITTING_SEGMENTS, 3: LYING_SEGMENTS,
                    4: SIDE_LYING_SEGMENTS}

# Sizes (frames per class) of the splits; --quick is for CI and tests.
SIZES = {"full": {"train": 3000, "calibration": 128, "heldout": 1000},
         "quick": {"train": 300, "calibration": 32, "heldout": 150}}
MATS = {"train": 48, "calibration": 8, "heldout": 16}
SPLIT_STREAM = {"train": 1, "calibration": 2, "heldout": 3}


def uniform(gen, n, lo, hi):
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)


def make_mats(gen, count):
    """`count` simulated mats: per-bladder offsets (counts), gains and a dead mask, and a noise
    level each. Offsets: uniform in [lo, hi] with lo ~ U(150, 500), hi ~ U(1500, 3500) per mat;
    gains U(0.9, 1.1); each bladder dead with the mat's probability U(0, 0.03); noise standard
    deviation U(60, 250) counts."""
    n = ROWS * COLS
    lo = uniform(gen, count, 150, 500).view(count, 1)
    hi = uniform(gen, count, 1500, 3500).view(count, 1)
    offsets = lo + (hi - lo) * torch.rand(count, n, generator=gen, dtype=torch.float64)
    gains = uniform(gen, count * n, 0.9, 1.1).view(count, n)
    dead_p = uniform(gen, count, 0.0, 0.03).view(count, 1)
    dead = torch.rand(count, n, generator=gen, dtype=torch.float64) < dead_p
    noise = uniform(gen, count, 60, 250)
    return {"offsets": offsets.view(count, ROWS, COLS), "gains": gains.view(count, ROWS, COLS),
            "dead": dead.view(count, ROWS, COLS), "noise": noise}


def draw_bodies(gen, labels):
    """Per-frame body parameters for `labels` (a LongTensor of class indices). Positions in mat
    lengths (y along the mat, x across, 0..MAT_ASPECT), height in mat lengths, angle in radians
    (0 = head towards row 0), peak in counts, width = the body's build (scales it across),
    posture = the key of POSTURE_SEGMENTS (0 = no body)."""
    n = labels.numel()
    u = lambda lo, hi: uniform(gen, n, lo, hi)  # noqa: E731
    coin = lambda p: torch.rand(n, generator=gen, dtype=torch.float64) < p  # noqa: E731
    sitting = labels == 1
    partial = labels == 3
    lying = (labels == 2) | partial
    long_sit = sitting & coin(0.25)
    side = lying & coin(0.3)
    posture = torch.zeros(n, dtype=torch.long)
    posture[sitting] = 1
    posture[long_sit] = 2
    posture[lying] = 3
    posture[side] = 4

    b = {"posture": posture, "has_body": posture > 0}
    # Adults and children: lying bodies 55..97 % of the mat's length.
    b["height"] = torch.where(sitting, u(0.70, 1.05), u(0.55, 0.97))
    b["width"] = torch.where(side, u(0.80, 1.00), u(0.85, 1.20))
    peak = torch.where(sitting, u(30000, 62000), u(15000, 34000))
    b["peak"] = torch.where(side, u(25000, 45000), torch.where(long_sit, u(28000, 50000), peak))
    flip = torch.where(coin(0.5), 0.0, math.pi).to(torch.float64)
    tilt = torch.where(sitting & ~long_sit, u(-math.pi / 6, math.pi / 6), u(-8.0, 8.0) * math.pi / 180)
    b["angle"] = tilt + flip

    # Across the mat: anywhere in the middle 40 %; a quarter of the compact sitters sit near a
    # long edge (on the side of the bed).
    x = u(0.30, 0.70)
    edge_sit = sitting & ~long_sit & coin(0.25)
    x = torch.where(edge_sit, torch.where(coin(0.5), u(0.15, 0.25), u(0.75, 0.85)), x)
    b["x"] = MAT_ASPECT * x

    # Along the mat. Compact sitting: 35..65 %. Long sitting: pelvis to heels (u 0.35..1.0 of the
    # body) on the mat. Lying fully: both ends on the mat (allowing for the tilt). Lying
    # partially: 30..75 % of the body's length on the mat, over either end.
    h = b["height"]
    between = lambda lo, hi: lo + u(0, 1) * torch.clamp(hi - lo, min=0)  # noqa: E731
    half = 0.5 * h * math.cos(8 * math.pi / 180)
    full_y = between(half + 0.01, 1 - half - 0.01)
    head_up = flip == 0
    long_lo = torch.where(head_up, 0.01 + 0.15 * h, 0.01 + 0.5 * h)
    long_hi = torch.where(head_up, 0.99 - 0.5 * h, 0.99 - 0.15 * h)
    long_y = between(long_lo, long_hi)
    visible = u(0.30, 0.75) * h
    partial_y = torch.where(coin(0.5), visible - h / 2, 1 - visible + h / 2)
    y = torch.where(partial, partial_y, full_y)
    y = torch.where(sitting, torch.where(long_sit, long_y, u(0.35, 0.65)), y)
    b["y"] = y
    b["breath"] = 1 + 0.02 * torch.randn(n, generator=gen, dtype=torch.float64)
    b["jitter_y"] = 0.002 * torch.randn(n, generator=gen, dtype=torch.float64)
    b["jitter_x"] = 0.002 * torch.randn(n, generator=gen, dtype=torch.float64)
    return b


def object_pressure(gen, labels):
    """Things that are not a person: with probability 0.35 on an empty mat and 0.1 under a body,
    one or two objects anywhere on the mat: a pillow (broad, 1500..6000 counts) or a bag
    (compact, 6000..20000 counts), with the same sqrt(1 - d^2) profile. [N, ROWS, COLS]."""
    n = labels.numel()
    p = torch.where(labels == 0, 0.35, 0.10).to(torch.float64)
    count = (torch.rand(n, generator=gen, dtype=torch.float64) < p).long() * (
        1 + (torch.rand(n, generator=gen) < 0.3).long())
    ys = ((torch.arange(ROWS, dtype=torch.float64) + 0.5) / ROWS).view(1, ROWS, 1)
    xs = ((torch.arange(COLS, dtype=torch.float64) + 0.5) / COLS * MAT_ASPECT).view(1, 1, COLS)
    out = torch.zeros(n, ROWS, COLS, dtype=torch.float64)
    for k in range(2):
        has = (count > k).to(torch.float64).view(n, 1, 1)
        pillow = torch.rand(n, generator=gen) < 0.5
        half_y = torch.where(pillow, uniform(gen, n, 0.06, 0.10), uniform(gen, n, 0.03, 0.06))
        half_x = torch.where(pillow, uniform(gen, n, 0.10, 0.16), uniform(gen, n, 0.03, 0.06))
        peak = torch.where(pillow, uniform(gen, n, 1500, 6000), uniform(gen, n, 6000, 20000))
        cy, cx = uniform(gen, n, 0, 1), MAT_ASPECT * uniform(gen, n, 0, 1)
        d2 = (((ys - cy.view(n, 1, 1)) / half_y.view(n, 1, 1)) ** 2
              + ((xs - cx.view(n, 1, 1)) / half_x.view(n, 1, 1)) ** 2)
        out += has * peak.view(n, 1, 1) * torch.sqrt(torch.clamp(1 - d2, min=0))
    return out


def body_pressure(bodies, idx, segments):
    """Pressure (counts, before the sensor) of the bodies at `idx` made of `segments`, averaged
    over 3 x 3 sub-samples of each bladder: [len(idx), ROWS, COLS]."""
    sub = (1 + 2 * torch.arange(3, dtype=torch.float64)) / 6.0
    ys = ((torch.arange(ROWS, dtype=torch.float64).view(ROWS, 1) + sub.view(1, 3)) / ROWS).reshape(-1)
    xs = ((torch.arange(COLS, dtype=torch.float64).view(COLS, 1) + sub.view(1, 3)) / COLS
          * MAT_ASPECT).reshape(-1)
    seg = torch.tensor(segments, dtype=torch.float64)  # [S, 5]
    out = []
    for chunk in torch.split(idx, 128):
        k = chunk.numel()
        def g(name):
            return bodies[name][chunk].view(k, 1, 1)
        dy = ys.view(1, -1, 1) - (g("y") + g("jitter_y"))
        dx = xs.view(1, 1, -1) - (g("x") + g("jitter_x"))
        cos_a, sin_a = torch.cos(g("angle")), torch.sin(g("angle"))
        u = (dy * cos_a + dx * sin_a) / g("height") + 0.5
        v = (-dy * sin_a + dx * cos_a) / (g("height") * g("width"))
        du = (u.unsqueeze(1) - seg[:, 0].view(1, -1, 1, 1)) / seg[:, 2].view(1, -1, 1, 1)
        dv = (v.unsqueeze(1) - seg[:, 1].view(1, -1, 1, 1)) / seg[:, 3].view(1, -1, 1, 1)
        profile = seg[:, 4].view(1, -1, 1, 1) * torch.sqrt(torch.clamp(1 - du * du - dv * dv, min=0))
        best = profile.max(dim=1).values                      # [k, 3*ROWS, 3*COLS]
        mean = best.view(k, ROWS, 3, COLS, 3).mean(dim=(2, 4))
        out.append(mean * (g("peak") * g("breath")))
    return torch.cat(out) if out else torch.zeros(0, ROWS, COLS, dtype=torch.float64)


def generate_split(seed, split, per_class):
    """`per_class` frames of each class for `split`, shuffled: (frames float32 [N, ROWS, COLS] in
    raw counts, labels int64 [N])."""
    gen = torch.Generator().manual_seed(seed * 1000 + SPLIT_STREAM[split])
    mats = make_mats(gen, MATS[split])
    n = per_class * len(CLASS_LABELS)
    labels = torch.arange(len(CLASS_LABELS)).repeat_interleave(per_class)
    labels = labels[torch.randperm(n, generator=gen)]
    bodies = draw_bodies(gen, labels)
    mat = torch.randint(0, MATS[split], (n,), generator=gen)

    pressure = torch.zeros(n, ROWS, COLS, dtype=torch.float64)
    for posture, segments in POSTURE_SEGMENTS.items():
        idx = torch.nonzero(bodies["posture"] == posture).view(-1)
        pressure[idx] = body_pressure(bodies, idx, segments)
    pressure += object_pressure(gen, labels)

    # Sensor: the mat's offsets, its bladders' gains, noise at the mat's level (bounded to +-6
    # standard deviations), a slow drift of the whole mat (+-80 counts per frame), dead bladders.
    noise = torch.randn(n, ROWS, COLS, generator=gen, dtype=torch.float64).clamp(-6, 6)
    drift = 80 * torch.randn(n, 1, 1, generator=gen, dtype=torch.float64)
    counts = (mats["offsets"][mat] + drift + pressure * mats["gains"][mat]
              + noise * mats["noise"][mat].view(n, 1, 1))
    counts = torch.round(counts).clamp(0, MAX_COUNT)
    counts[mats["dead"][mat]] = 0
    return counts.to(torch.float32), labels


def generate(seed, quick=False):
    """All three splits: {split: {"frames", "labels"}} plus "meta"."""
    sizes = SIZES["quick" if quick else "full"]
    data = {"meta": {"name": DATASET_NAME, "seed": seed, "quick": quick, "rows": ROWS,
                     "cols": COLS, "class_labels": CLASS_LABELS, "mat_aspect": MAT_ASPECT,
                     "per_class": dict(sizes), "mats": dict(MATS)}}
    for split, per_class in sizes.items():
        frames, labels = generate_split(seed, split, per_class)
        data[split] = {"frames": frames, "labels": labels}
    return data


def normalize(raw, mean, std):
    """Raw counts -> the model's input, exactly as the agent's Preprocessor computes it:
    x = ((v / 65535) - mean) / std in double, rounded once to float. [N, ROWS, COLS] ->
    [N, 1, ROWS, COLS] (NCHW)."""
    x = (raw.to(torch.float64) / MAX_COUNT - mean) / std
    return x.to(torch.float32).unsqueeze(1)


def describe(data):
    """One line per split: frames per class and the mean raw count, for the log."""
    lines = []
    for split in ("train", "calibration", "heldout"):
        labels = data[split]["labels"]
        counts = [int((labels == k).sum()) for k in range(len(CLASS_LABELS))]
        lines.append("  %-11s %5d frames (%s), mean count %.0f" % (
            split, labels.numel(), ", ".join("%s %d" % (c, k) for c, k in zip(CLASS_LABELS, counts)),
            data[split]["frames"].mean().item()))
    return "\n".join(lines)


def save(data, path):
    tmp = path + ".tmp"
    torch.save(data, tmp)
    os.replace(tmp, path)


def load(path):
    data = torch.load(path)
    if data.get("meta", {}).get("name") != DATASET_NAME:
        raise ValueError("%s is not a %s data set" % (path, DATASET_NAME))
    return data


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the data set file to write (torch.save)")
    p.add_argument("--seed", type=int, default=1, help="seed of every draw (default 1)")
    p.add_argument("--quick", action="store_true", help="small splits, for CI and tests")
    args = p.parse_args()
    if args.seed < 0:
        p.error("--seed must be >= 0")
    torch.set_num_threads(1)
    start = time.monotonic()
    data = generate(args.seed, args.quick)
    save(data, args.out)
    print("dataset: %s seed %d%s in %.1f s -> %s" % (DATASET_NAME, args.seed,
          " (quick)" if args.quick else "", time.monotonic() - start, args.out))
    print(describe(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
