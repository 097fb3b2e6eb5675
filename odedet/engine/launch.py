"""Multi-process launch that also runs on CPU (gloo), and DDP wrapping that respects the device.

detectron2 v0.6's ``launch`` asserts CUDA and always uses NCCL, and its ``create_ddp_model``
always passes ``device_ids=[local_rank]``, which ``DistributedDataParallel`` rejects for a CPU
model. Here the backend follows the device: ``launch(..., backend="gloo")`` starts
``num_processes_per_machine`` CPU processes (``tools/train_net.py --num-gpus N`` with
``MODEL.DEVICE cpu``), ``backend="nccl"`` is detectron2's one-GPU-per-process path unchanged.
The rest of detectron2's distributed machinery (``comm``, samplers, evaluators' gather) is used
as is; only process-group creation and the DDP wrapper differ.
"""
from __future__ import annotations

import contextlib
import logging
import os
from datetime import timedelta
from unittest import mock

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import defaults as d2_defaults
from detectron2.engine.launch import _find_free_port
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

__all__ = ["launch", "resolve_backend", "create_ddp_model", "device_aware_ddp"]

DEFAULT_TIMEOUT = timedelta(minutes=30)
_d2_create_ddp_model = d2_defaults.create_ddp_model


def resolve_backend(backend: str, device: str) -> str:
    """"gloo" or "nccl" for a requested backend ("auto", "gloo", "nccl") and ``MODEL.DEVICE``.
    "auto" is NCCL for CUDA devices and gloo otherwise."""
    is_cuda = str(device).startswith("cuda")
    if backend == "auto":
        return "nccl" if is_cuda else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"--dist-backend must be auto, gloo or nccl, got {backend!r}")
    if backend == "nccl" and not is_cuda:
        raise ValueError(f"--dist-backend nccl needs a CUDA MODEL.DEVICE, got {device!r}; "
                         "use gloo (or auto) for CPU processes")
    return backend


def launch(main_func, num_processes_per_machine: int, num_machines: int = 1,
           machine_rank: int = 0, dist_url: str | None = None, args=(), backend: str = "gloo",
           timeout: timedelta = DEFAULT_TIMEOUT):
    """Run ``main_func(*args)`` in ``num_processes_per_machine * num_machines`` processes (one
    process: run it here). ``dist_url`` "auto" picks a free localhost port (single machine)."""
    world_size = num_machines * num_processes_per_machine
    if world_size <= 1:
        return main_func(*args)
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError("--dist-url auto works on one machine only; give tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    if backend == "nccl" and num_processes_per_machine > torch.cuda.device_count():
        raise ValueError(f"{num_processes_per_machine} NCCL processes per machine but only "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    mp.spawn(
        _distributed_worker,
        nprocs=num_processes_per_machine,
        args=(main_func, world_size, num_processes_per_machine, machine_rank, dist_url, args,
              backend, timeout),
        daemon=False,
    )


def _distributed_worker(local_rank, main_func, world_size, nprocs, machine_rank, dist_url, args,
                        backend, timeout):
    global_rank = machine_rank * nprocs + local_rank
    try:
        dist.init_process_group(backend=backend, init_method=dist_url, world_size=world_size,
                                rank=global_rank, timeout=timeout)
    except Exception:
        logging.getLogger(__name__).error(f"process group URL: {dist_url}")
        raise
    # detectron2's comm.get_local_rank()/get_local_size() read this per-machine group.
    for i in range(world_size // nprocs):
        group = dist.new_group(list(range(i * nprocs, (i + 1) * nprocs)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    if torch.cuda.is_available() and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(local_rank)  # "cuda" in MODEL.DEVICE means this rank's GPU
    if backend == "gloo":
        # CPU processes share the machine's cores; oversubscribing threads slows every rank.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nprocs))
    comm.synchronize()
    main_func(*args)
    # A failing rank is not waited for: mp.spawn stops the others when one raises.
    comm.synchronize()
    dist.destroy_process_group()


def create_ddp_model(model, **kwargs):
    """detectron2's ``create_ddp_model``, except that a model whose parameters live on the CPU
    is wrapped without ``device_ids`` (the gloo path)."""
    if comm.get_world_size() == 1:
        return model
    param = next(model.parameters(), None)
    if param is not None and param.device.type == "cpu":
        kwargs.pop("device_ids", None)
        return DistributedDataParallel(model, **kwargs)
    return _d2_create_ddp_model(model, **kwargs)


@contextlib.contextmanager
def device_aware_ddp():
    """While active, ``DefaultTrainer.__init__`` wraps models with :func:`create_ddp_model`."""
    with mock.patch.object(d2_defaults, "create_ddp_model", create_ddp_model):
        yield
