"""How accurate are the DIS flow priors? Compare them with the exact flow of the built-in scene.

The built-in scene is a mesh, so the true 2D flow between any two training frames (different cameras and
times) is known: cast each pixel's ray at frame i, move the hit surface point to frame j's time, project it
with camera j, and keep it where nothing covers it there. This tool selects the flow pairs the trainer would
use, computes their DIS priors with the given settings and prints the error of the flow the forward-backward
check keeps (end-point error in pixels on pixels valid in both the prior and the truth) and how many pixels
are kept.

    python tools/check_flow_prior.py                       # default settings vs no enlargement
    python tools/check_flow_prior.py --upsample 1 0 2 --fb-tau 1.0 0.5 --pairs 40
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dyngauss.config import load_config  # noqa: E402
from dyngauss.data import synthetic as S  # noqa: E402
from dyngauss.data.dnerf import load_dnerf  # noqa: E402
from dyngauss.data.flow import FlowParams, compute_flow_pair, select_flow_pairs  # noqa: E402
from dyngauss.data.loaders import resolve_dataset  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-angle", type=float, default=30.0, help="pair selection: camera change, degrees")
    ap.add_argument("--max-dt", type=float, default=0.1, help="pair selection: time difference")
    ap.add_argument("--pairs", type=int, default=40, help="random subset of the selected pairs to check")
    ap.add_argument("--preset", default="medium")
    ap.add_argument("--upsample", type=int, nargs="+", default=[1, 0], help="factors to compare (0 = auto)")
    ap.add_argument("--fb-tau", type=float, nargs="+", default=[0.5])
    ap.add_argument("--fb-rel", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    # the main job's built-in scene (configs/default.yaml; generated once into the cache)
    run_cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "default.yaml", [])
    cfg = S.SyntheticConfig(resolution=run_cfg.data.synthetic_resolution, seed=run_cfg.data.synthetic_seed,
                            n_train=run_cfg.data.synthetic_train_frames)
    root = resolve_dataset(run_cfg.data)
    mesh = S.rest_mesh(cfg)
    split = load_dnerf(root, "train")
    cams = split.cameras
    pairs = select_flow_pairs(cams, [float(c.time) for c in cams], args.max_angle, args.max_dt, 2)
    if not pairs:
        raise SystemExit("no pairs within these limits")
    rng = np.random.default_rng(args.seed)
    sub = [pairs[i] for i in rng.choice(len(pairs), min(args.pairs, len(pairs)), replace=False)]
    truth = {}
    for i, j in sub:
        for a, b in ((i, j), (j, i)):
            ca, cb = cams[a], cams[b]
            Va, Ka, Vb, Kb = (x.numpy().astype(np.float64) for x in (ca.viewmat, ca.K, cb.viewmat, cb.K))
            truth[(a, b)] = S.exact_flow(ca.time, Va, Ka, cb.time, Vb, Kb, ca.width, ca.height, cfg, mesh)
    imgs = split.images.numpy()
    alphas = None if split.alphas is None else split.alphas.numpy()[..., 0]
    H, W = imgs.shape[1:3]
    print(f"built-in scene {W}x{H}: {len(pairs)} pairs within {args.max_angle} deg / {args.max_dt}; "
          f"{len(sub)} checked (both directions)")
    for up, tau in itertools.product(args.upsample, args.fb_tau):
        p = FlowParams(preset=args.preset, upsample=up, fb_tau=tau, fb_rel=args.fb_rel)
        errs, kept = [], 0
        for i, j in sub:
            r = compute_flow_pair(imgs[i], imgs[j], p, None if alphas is None else alphas[i],
                                  None if alphas is None else alphas[j])
            for key, (a, b) in (("fwd", (i, j)), ("bwd", (j, i))):
                gt, gv = truth[(a, b)]
                sel = r[f"valid_{key}"] & gv
                errs.append(np.linalg.norm(r[key][sel] - gt[sel], axis=-1))
                kept += int(sel.sum())
        e = np.concatenate(errs) if errs else np.zeros(1)
        print(f"upsample {up} (x{p.upsample_factor(H, W)}), fb_tau {tau}: EPE mean {e.mean():.2f} px, median "
              f"{np.median(e):.2f}, 90th pct {np.percentile(e, 90):.2f}, >3 px {100 * np.mean(e > 3):.1f}%, "
              f"{kept} valid px")


if __name__ == "__main__":
    main()
