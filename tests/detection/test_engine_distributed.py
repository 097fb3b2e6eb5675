"""DDP through ODE blocks in 2 CPU (gloo) processes: gradients, adjoint included, are non-zero,
identical on both ranks and equal to the single-process gradient of the whole batch."""
import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from odedet.ode import ConvODEFunc, ODEBlock, SolverOptions

WORLD = 2
BATCH = 4  # 2 images per rank


def _model(adjoint: bool) -> nn.Module:
    torch.manual_seed(0)
    solver = SolverOptions(method="rk4", step_size=0.5, adjoint=adjoint)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        ODEBlock(ConvODEFunc(8, gn_groups=4, zero_init=False), train_solver=solver),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2),
    )


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 3, 8, 8, generator=g), torch.randn(BATCH, 2, generator=g)


def _grads(model, x, y, forward=None):
    """Gradients of ``model``'s parameters for the mean loss on (x, y), run through ``forward``
    (a DDP wrapper of ``model``) when given."""
    model.zero_grad()
    nn.functional.mse_loss((forward or model)(x), y).backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _worker(rank, init_file, out_dir):
    import torch.distributed as dist

    from odedet.engine.launch import create_ddp_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    x, y = _batch()
    shard = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
    result = {}
    for adjoint in (True, False):
        model = _model(adjoint)
        ddp = create_ddp_model(model, broadcast_buffers=False)  # odedet's CPU-aware wrapper
        assert isinstance(ddp, nn.parallel.DistributedDataParallel)
        result[adjoint] = _grads(model, x[shard], y[shard], forward=ddp)
        result[f"nfe_backward_{adjoint}"] = model[1].nfe_backward
    torch.save(result, os.path.join(out_dir, f"grads{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ddp_gradients_through_ode_blocks_match_full_batch(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"grads{r}.pt", weights_only=True) for r in range(WORLD)]
    x, y = _batch()
    for adjoint in (True, False):
        full = _grads(_model(adjoint), x, y)
        half = _grads(_model(adjoint), x[: BATCH // WORLD], y[: BATCH // WORLD])
        for name, expected in full.items():
            g0, g1 = ranks[0][adjoint][name], ranks[1][adjoint][name]
            assert g0.abs().sum() > 0, f"zero gradient for {name} (adjoint={adjoint})"
            torch.testing.assert_close(g0, g1, rtol=0, atol=0)  # synchronised across ranks
            torch.testing.assert_close(g0, expected, rtol=1e-4, atol=1e-6)
        # the shards' own gradients differ from the full batch: equality above is the all-reduce
        dyn = "1.dynamics.conv1.conv.weight"
        assert not torch.allclose(half[dyn], full[dyn], rtol=1e-3)
        # the adjoint really ran its backward solve in the workers (rk4, 2 steps: 8 NFE)
        assert (ranks[0][f"nfe_backward_{adjoint}"] > 0) == adjoint
