"""utils.train.launcher: the reference's --world_size/--init_method launch, checked
before any process starts (the launch itself is tested end to end in test_faults and
test_training)."""

from __future__ import annotations

import pytest

import budsam_train_multi as train
from utils.data.synthetic import generate_dataset
from utils.train.launcher import rendezvous_endpoint


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("launch_bsd")
    generate_dataset(root, {"train": 1, "valid": 1, "test": 1}, seed=2, workers=1, progress=False)
    return root


def test_init_method_gives_the_rendezvous_endpoint():
    assert rendezvous_endpoint("tcp://10.0.0.5:12345") == "10.0.0.5:12345"
    assert rendezvous_endpoint("tcp://localhost:29500") == "localhost:29500"
    for bad in ("env://", "tcp://hostonly", "file:///tmp/x", "10.0.0.5:12345"):
        with pytest.raises(ValueError, match="tcp://HOST:PORT"):
            rendezvous_endpoint(bad)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--world_size", "3", "--nproc_per_node", "2"], "not a multiple of --nproc_per_node 2"),
        (["--world_size", "2", "--init_method", "env://"], "--init_method must be tcp://"),
    ],
)
def test_a_launch_that_cannot_work_is_one_line(data_root, tmp_path, capsys, flags, message):
    args = ["-i", str(data_root), "-model_type", "vit_tiny", "--device", "cpu"]
    args += ["-work_dir", str(tmp_path), "-num_epochs", "1", *flags]
    assert train.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
