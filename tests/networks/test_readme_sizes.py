"""The parameter counts README.md states ("Sizes with the defaults") are
the ones the package builds: every network, at 4096x4096 and 1024x1024."""

import os

import pytest

from keras_adntn import TNDense
from keras_adntn import networks

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
NETWORKS = ("ttn", "attn", "mera", "brickwall", "mpo")


def _readme_table() -> dict:
    """`{network: (count at 4096x4096, count at 1024x1024)}` read from the
    README's table of sizes with the defaults."""
    with open(README) as f:
        text = f.read()
    section = text.split("### Sizes with the defaults")[1].split("\n\n")[2]
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] in NETWORKS:
            table[cells[0]] = (int(cells[1]), int(cells[3]))
    return table


def test_the_readme_lists_every_network():
    assert set(_readme_table()) == set(NETWORKS)


@pytest.mark.parametrize("network", NETWORKS)
def test_readme_parameter_counts_are_what_the_package_builds(network):
    # planted: a changed default (latent order, bond, read-out cores)
    # changes one of these counts and the README would lie
    at_4096, at_1024 = _readme_table()[network]
    built = networks.get(network)(num_modes=24, bond_dim=2, seed=0)
    assert built.num_params == at_4096
    layer = TNDense(1024, network=network, seed=0)
    layer.build((None, 1024))
    assert layer.generated_kernels[0].network.num_params == at_1024
    assert layer.count_params() == at_1024 + 1024  # and the bias
