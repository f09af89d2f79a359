"""Delta multi-provider under the chaos scenario of test_chaos.py (seeded writes on random nodes, kills,
partitions): every node of a delta-syncrepl mesh converges to the same content, and no acknowledged add that
was never touched again is lost. Several seeds; PYLDAPD_CHAOS_SEED adds one."""

from __future__ import annotations

import os

import pytest

from tests.replication.delta import delta_mesh_conf
from tests.replication.test_chaos import run_chaos

SEEDS = [4533, 20261125] + (
    [int(os.environ["PYLDAPD_CHAOS_SEED"])] if "PYLDAPD_CHAOS_SEED" in os.environ else []
)


def delta_node_conf(directory, index: int, ports: list[int], links) -> str:
    urls = {j: links[(index, j)].url for j in range(len(ports)) if j != index}
    return delta_mesh_conf(directory, index, ports, urls)


@pytest.mark.parametrize("seed", SEEDS)
def test_delta_chaos_converges(tmp_path, seed):
    run_chaos(tmp_path, delta_node_conf, seed)
