"""Meshes, logical-axis rule sets and shardings of the train state and batches (pjit).

The model names every parameter and activation dimension with a logical axis
(`batch`, `length`, `embed`, `heads`, `head_dim`, `mlp`, `vocab`, `syn_len`,
`syn_rank`). A rule set maps these names to the mesh axes `data`, `fsdp` and
`tensor`:

- `dp`: pure data parallelism; the batch is split over every device, parameters
  and optimizer state are replicated.
- `fsdp`: ZeRO-3 style; the batch is split over `data` x `fsdp`, and every
  parameter (and its optimizer moments) is split over `fsdp` along its first
  dimension named `embed`, else `syn_len`, `mlp` or `vocab`.
- `fsdp_tp`: `fsdp` plus tensor parallelism: `heads`, `mlp` and `vocab` split over
  `tensor` (Megatron-style heads / MLP split; synthetic attention tables
  [heads, syn_len, ...] split over heads, then over `fsdp` along `syn_len`).

Rules are tried in order; a mesh axis is used at most once per array, and an axis
whose size does not divide the dimension is skipped (the dimension then tries the
next rule), so any mesh works for any model size. Framework calls that churn (mesh
creation, sharding contexts) live here only.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from synthesizer_jax.config import RULE_SET_NAMES, MeshConfig

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

Rules = tuple[tuple[str, Any], ...]

RULE_SETS: dict[str, Rules] = {
    "dp": (("batch", BATCH_AXES),),
    "fsdp": (
        ("batch", BATCH_AXES),
        ("embed", "fsdp"), ("syn_len", "fsdp"), ("mlp", "fsdp"), ("vocab", "fsdp"),
    ),
    "fsdp_tp": (
        ("batch", BATCH_AXES),
        ("heads", "tensor"), ("mlp", "tensor"), ("vocab", "tensor"),
        ("embed", "fsdp"), ("syn_len", "fsdp"), ("mlp", "fsdp"), ("vocab", "fsdp"),
    ),
}
assert tuple(RULE_SETS) == RULE_SET_NAMES, "config.RULE_SET_NAMES must list RULE_SETS"


def mesh_shapes(cfg: MeshConfig, num_devices: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """(ici_shape, dcn_shape) with -1 resolved; raises if the sizes do not tile the devices."""
  dcn = (cfg.dcn_data, cfg.dcn_fsdp, cfg.dcn_tensor)
  if num_devices % math.prod(dcn):
    raise ValueError(f"DCN mesh {dcn} does not divide the {num_devices} devices")
  per_slice = num_devices // math.prod(dcn)
  ici = [cfg.data, cfg.fsdp, cfg.tensor]
  known = math.prod(s for s in ici if s != -1)
  if -1 in ici:
    if per_slice % known:
      raise ValueError(f"mesh sizes {tuple(ici)} do not divide {per_slice} devices per slice")
    ici[ici.index(-1)] = per_slice // known
  if math.prod(ici) != per_slice:
    raise ValueError(f"mesh (data, fsdp, tensor) = {tuple(ici)} x DCN {dcn} needs "
                     f"{math.prod(ici) * math.prod(dcn)} devices, but {num_devices} exist; "
                     "set one size to -1 to fill the rest")
  return tuple(ici), dcn


def make_mesh(cfg: MeshConfig | None = None, devices: Sequence[Any] | None = None) -> Mesh:
  """A Mesh with axes (data, fsdp, tensor) over `devices` (default: all, every process)."""
  cfg = cfg or MeshConfig()
  if devices is None:
    devices = jax.devices()[:cfg.num_devices] if cfg.num_devices else jax.devices()
  devices = list(devices)
  ici, dcn = mesh_shapes(cfg, len(devices))
  if math.prod(dcn) > 1:
    from jax.experimental import mesh_utils

    # Multi-slice TPUs: one DCN granule per slice; elsewhere (GPU / CPU hosts) per process.
    slices = {getattr(d, "slice_index", 0) for d in devices}
    by_process = len(slices) != math.prod(dcn)
    grid = mesh_utils.create_hybrid_device_mesh(
        ici, dcn, devices, process_is_granule=by_process, allow_split_physical_axes=True)
  elif devices[0].platform == "tpu":
    from jax.experimental import mesh_utils

    grid = mesh_utils.create_device_mesh(ici, devices, allow_split_physical_axes=True)
  else:
    grid = np.array(devices).reshape(tuple(a * b for a, b in zip(ici, dcn, strict=False)))
  return Mesh(grid, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def logical_to_spec(names: Sequence[str | None], rules: Rules, mesh: Mesh,
                    shape: Sequence[int] | None = None) -> P:
  """PartitionSpec for dims named `names`: first fitting rule wins, mesh axes used once.

  Unlike flax's helper this accepts a repeated name (random tables are
  [heads, syn_len, syn_len]): only its first dim is sharded.
  """
  result: list = [None] * len(names)
  used: set = set()
  for logical, mesh_axes in rules:
    axes = (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)
    axes = tuple(a for a in axes if mesh.shape[a] > 1 and a not in used)
    if not axes:
      continue
    for dim, name in enumerate(names):
      if name != logical or result[dim] is not None:
        continue
      if shape is not None and shape[dim] % math.prod(mesh.shape[a] for a in axes):
        continue
      result[dim] = axes[0] if len(axes) == 1 else axes
      used.update(axes)
      break
  return P(*result)


def _names(leaf) -> tuple[str | None, ...] | None:
  return tuple(leaf.names) if isinstance(leaf, nn.LogicallyPartitioned) else None


def variable_shardings(boxed_tree, mesh: Mesh, rules: Rules):
  """NamedSharding per leaf of a (possibly abstract) tree of boxed variables; unboxed structure."""

  def one(leaf):
    names = _names(leaf)
    value = leaf.value if names is not None else leaf
    if names is None:
      return NamedSharding(mesh, P())
    return NamedSharding(mesh, logical_to_spec(names, rules, mesh, value.shape))

  return jax.tree.map(one, boxed_tree, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))


def _dict_path(path) -> tuple[str, ...]:
  return tuple(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def opt_state_shardings(abstract_opt_state, abstract_params, param_shardings, mesh: Mesh):
  """Optimizer-state shardings: a leaf shaped like the parameter it belongs to shares its sharding.

  The parameter is found by the trailing dict keys of the leaf's path (optax states
  nest a params-shaped tree under tuple / namedtuple fields). Leaves of another
  shape (step counts, Adafactor's factored row / column moments) are replicated.
  """
  by_path = {}
  for (path, p), (_, s) in zip(jax.tree_util.tree_leaves_with_path(abstract_params),
                               jax.tree_util.tree_leaves_with_path(param_shardings), strict=False):
    by_path[_dict_path(path)] = (p.shape, s)

  def one(path, leaf):
    keys = _dict_path(path)
    for start in range(len(keys)):
      hit = by_path.get(keys[start:])
      if hit is not None and tuple(hit[0]) == tuple(leaf.shape):
        return hit[1]
    return NamedSharding(mesh, P())

  return jax.tree_util.tree_map_with_path(one, abstract_opt_state)


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
  """Batch arrays split over data x fsdp along their first dim."""
  axes = tuple(a for a in BATCH_AXES if mesh.shape[a] > 1)
  first = None if not axes else (axes[0] if len(axes) == 1 else axes)
  return NamedSharding(mesh, P(first, *([None] * (ndim - 1))))


def batch_shards(mesh: Mesh) -> int:
  """How many ways the batch is split (global batch must be a multiple)."""
  return mesh.shape["data"] * mesh.shape["fsdp"]


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Per-process NumPy batch -> global jax.Arrays (each host passes its own rows)."""
  return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(v)), v)
          for k, v in local_batch.items()}


@contextlib.contextmanager
def mesh_context(mesh: Mesh, rules: Rules):
  """Mesh + logical rules in scope, so the model's activation constraints apply when traced."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    yield


def maybe_initialize_distributed(coordinator: str = "", num_processes: int = 0,
                                 process_id: int = -1, heartbeat_timeout: int = 100) -> bool:
  """Calls jax.distributed.initialize when flags or env vars ask for several processes.

  Flags win over the env vars SJ_COORDINATOR, SJ_NUM_PROCESSES, SJ_PROCESS_ID. On
  TPU pods / SLURM / Open MPI, pass coordinator="auto" and JAX finds the rest. Must
  run before anything touches the devices. `heartbeat_timeout` (seconds) bounds how long
  the others wait for a process that died: the coordination service then declares it lost
  (`agreement.lost_process_error` names it). Returns whether it initialized.
  """
  coordinator = coordinator or os.environ.get("SJ_COORDINATOR", "")
  num_processes = num_processes or int(os.environ.get("SJ_NUM_PROCESSES", "0"))
  if process_id < 0:
    process_id = int(os.environ.get("SJ_PROCESS_ID", "-1"))
  if not coordinator:
    return False
  if coordinator == "auto":
    jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat_timeout)
    return True
  if num_processes < 1 or process_id < 0:
    raise ValueError("multi-process run: set num_processes and process_id (flags or env "
                     "SJ_NUM_PROCESSES / SJ_PROCESS_ID) along with the coordinator address")
  # CPU processes need a collectives backend to talk to each other (GPU/TPU ignore this).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id, heartbeat_timeout_seconds=heartbeat_timeout)
  return True
