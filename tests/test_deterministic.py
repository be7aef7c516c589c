"""training.trainer.deterministic_cpu: torch's deterministic algorithms for the span of a CPU fit, and
torch's global flag as it was afterwards (a later fit with trainer.deterministic_cpu=false, or the user's own
code in the same process, is not left in deterministic mode). The bit-for-bit repeat of a real fit is the
slow test tests/test_cmmm_transfer.py::test_two_cpu_fits_of_one_seed_end_at_the_same_weights."""
from __future__ import annotations

import pytest
import torch

from hm_talker.training.trainer import deterministic_cpu


@pytest.fixture(autouse=True)
def restore_flag():
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


@pytest.mark.parametrize("accelerator", ["cpu", "auto"])
def test_on_within_a_cpu_fit_and_restored_after(accelerator):
    torch.use_deterministic_algorithms(False)
    with deterministic_cpu(True, accelerator) as on:
        assert on and torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()  # a kernel without one raises
    assert not torch.are_deterministic_algorithms_enabled()


def test_restored_after_an_exception_and_a_users_own_setting_kept():
    torch.use_deterministic_algorithms(True, warn_only=True)  # the user's own choice before the fit
    with pytest.raises(RuntimeError, match="boom"):
        with deterministic_cpu(True, "cpu"):
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
            raise RuntimeError("boom")
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()


@pytest.mark.parametrize("enabled, accelerator", [(False, "cpu"), (True, "gpu"), (True, "cuda")])
def test_left_alone_when_off_or_on_a_gpu(enabled, accelerator):
    torch.use_deterministic_algorithms(False)
    with deterministic_cpu(enabled, accelerator) as on:
        assert not on and not torch.are_deterministic_algorithms_enabled()
    assert not torch.are_deterministic_algorithms_enabled()
