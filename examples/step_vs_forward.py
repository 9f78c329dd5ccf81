"""Step-by-step decoding against the convolution/scan forward, for every layer and variant.

    .venv/bin/python examples/step_vs_forward.py [--L 1000]

Prints the relative error ||y_step - y_forward|| / ||y_forward|| in float64 and float32 (batch 2,
d_model 3, d_state 16, random input), the figures the closing note and README quote.
"""
import argparse

import torch

from dssm_kernels.nn import DSS, LRU, S4, S4D, S5

VARIANTS = {
    "S4D s4d-lin zoh": lambda **kw: S4D(init="s4d-lin", disc="zoh", **kw),
    "S4D s4d-inv zoh": lambda **kw: S4D(init="s4d-inv", disc="zoh", **kw),
    "S4D s4d-legs bilinear": lambda **kw: S4D(init="s4d-legs", disc="bilinear", **kw),
    "S4D s4d-real bilinear": lambda **kw: S4D(init="s4d-real", disc="bilinear", **kw),
    "DSS exp (skew-hippo)": lambda **kw: DSS(variant="exp", **kw),
    "DSS softmax l_max=256 (skew-hippo)": lambda **kw: DSS(variant="softmax", l_max=256, **kw),
    "S4 legs (C learned)": lambda **kw: S4(init="legs", **kw),
    "S4 legs l_max=256 (C~ trick)": lambda **kw: S4(init="legs", l_max=256, **kw),
    "S4 legt l_max=256": lambda **kw: S4(init="legt", l_max=256, **kw),
    "S4 fout": lambda **kw: S4(init="fout", **kw),
    "S5 legs zoh": lambda **kw: S5(init="legs", disc="zoh", **kw),
    "S5 ptd bilinear": lambda **kw: S5(init="ptd", disc="bilinear", **kw),
    "LRU (r in [0.9, 0.999])": lambda **kw: LRU(r_min=0.9, r_max=0.999, **kw),
    "S4D, channels keeping 1, 8, 4 modes (flat layout)":
        lambda **kw: S4D(channel_modes=[1, 8, 4], **{k: v for k, v in kw.items() if k != "d_state"},
                         d_state=10),
}


@torch.no_grad()
def error(make, dtype, L):
    m = make(d_model=3, d_state=16, dtype=dtype, seed=1)
    u = torch.randn(2, L, 3, dtype=dtype, generator=torch.Generator().manual_seed(2))
    y = m(u)
    state, ys = m.default_state(2), []
    for t in range(L):
        y_t, state = m.step(u[:, t], state)
        ys.append(y_t)
    return ((torch.stack(ys, 1) - y).norm() / y.norm()).item()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--L", type=int, default=1000)
    a = p.parse_args()
    print(f"| layer | float64 | float32 |   (L = {a.L})")
    print("|---|---|---|")
    for name, make in VARIANTS.items():
        print(f"| {name} | {error(make, torch.float64, a.L):.1e} | {error(make, torch.float32, a.L):.1e} |")


if __name__ == "__main__":
    main()
