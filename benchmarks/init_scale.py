"""Initial kernel scale over the full grid: every network, bond_dim 1..8,
sizes up to 4096 x 4096. Prints std(generated) / std(glorot_uniform).

    python benchmarks/init_scale.py [--sizes 64 1024 4096]

The test suite checks a subset of this grid (tests/networks); this script
covers all of it, which takes minutes on 2 cores at 4096.
"""

import argparse
import time

import numpy as np

from keras_adntn import networks
from keras_adntn.networks import initialization as tn_init
from keras_adntn.networks.executors import numpy_ops
from keras_adntn.tensorize import Tensorization


def ratio(name, size, bond_dim):
    t = Tensorization((size, size))
    net = networks.get(name)(
        num_modes=t.num_modes,
        bond_dim=bond_dim,
        target_std=tn_init.glorot_std(size, size),
        valid_mask=t.valid_mask(),
        seed=0,
    )
    xp = numpy_ops(t.size)
    kernel = t.unfold(net._run(net.initial_values(), xp), xp)
    finite = bool(np.isfinite(kernel).all())
    return kernel.std() / tn_init.glorot_std(size, size), finite


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 4096])
    parser.add_argument(
        "--bond-dims", type=int, nargs="+", default=list(range(1, 9))
    )
    args = parser.parse_args()
    worst = (1.0, None)
    print(
        f"{'size':>6} {'network':<10} "
        + " ".join(f"{'chi=' + str(b):>7}" for b in args.bond_dims)
    )
    for size in args.sizes:
        for name in networks.NETWORKS:
            start, cells = time.perf_counter(), []
            for b in args.bond_dims:
                r, finite = ratio(name, size, b)
                cells.append(f"{r:>7.3f}" if finite else f"{'nan':>7}")
                if not finite or abs(np.log(r)) > abs(np.log(worst[0])):
                    worst = (r if finite else np.inf, (size, name, b))
            print(
                f"{size:>6} {name:<10} "
                + " ".join(cells)
                + f"   ({time.perf_counter() - start:.1f} s)",
                flush=True,
            )
    print(f"worst ratio {worst[0]:.3f} at {worst[1]} (bound: 0.5..2)")


if __name__ == "__main__":
    main()
