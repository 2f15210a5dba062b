"""Field-store files -> normalised torch tensors for the GAN: layout, conditions, splits.

Conventions shared with the model code (``surrogate.models``, ``surrogate.constraints``):

* **Channel layout.** A snapshot is a float32 tensor ``(C, N, N)`` (a batch
  ``(B, C, N, N)``), channels first, spatial axes ``[..., ix, iy]`` as in the store
  (axis -2 is x, axis -1 is y). Fields appear in schema order
  (``store.schema.fields``); a scalar field (rank 0) takes one channel, a vector field
  (rank 1) two, its x then y component. :func:`channel_layout` gives
  ``(name, rank, channel slice)`` per field; :func:`from_store_layout` /
  :func:`to_store_layout` convert between this and the store's ``(..., N, N)`` /
  ``(..., N, N, 2)`` arrays.
* **Condition vector** ``(B, P + 1)`` float32 (:class:`ConditionEncoder`): each declared
  parameter mapped affinely to ``[-1, 1]`` over its declared range (in ``log`` space
  when ``Parameter.log_scale``), then the snapshot time mapped to ``[-1, 1]`` over
  ``[times[0], times[-1]]`` (0 when there is a single time).
* **Normalisation** (:class:`FieldNormalizer`): a per-field transform, from the file's
  training-split statistics, under which the network sees O(1) values.
* **Splits** are by trajectory (the file's ``split`` dataset: 0 train, 1 valid, 2 test),
  so held-out trajectories are held-out parameter values (:func:`split_trajectories`).
* **Symmetry augmentation** (:func:`augment`) applies only the exact symmetries the
  simulator declares (``Simulator.symmetries``, vocabulary
  ``simulators.base.SYMMETRIES``).

Everything that goes into a checkpoint (normaliser, condition encoder) has
``to_dict``/``from_dict`` with plain JSON-able dicts; nothing is pickled.

The package, one idea per module, every public name re-exported here:

- :mod:`~surrogate.data.layout`: :func:`channel_layout`, :func:`n_channels`,
  :func:`from_store_layout`, :func:`to_store_layout`;
- :mod:`~surrogate.data.conditioning`: :class:`ConditionEncoder`, :func:`neighbour_groups`;
- :mod:`~surrogate.data.normalization`: :class:`FieldTransform`,
  :class:`FieldNormalizer`, :func:`declared_invariants` (the one reading of a field's
  declarations, shared with the output heads), :func:`pseudoscalar_fields`;
- :mod:`~surrogate.data.dataset`: :func:`open_store`, :func:`split_trajectories`,
  :func:`check_compatible`, :class:`SnapshotDataset`, :class:`EmptySplitWarning`;
- :mod:`~surrogate.data.symmetry`: :func:`point_group`, :func:`apply_symmetry`,
  :func:`augment`, :func:`symmetries_for`, :func:`zero_mean_axes`,
  :class:`SymmetryAugmentation`;
- :mod:`~surrogate.data.training`: :class:`TrainingData`, :func:`load_training_data`.

:func:`open_fields` (other people's layouts, :mod:`surrogate.interop`) is re-exported too.
"""

from surrogate.data.conditioning import ConditionEncoder, neighbour_groups
from surrogate.data.dataset import (
    DEFAULT_CACHE_BYTES,
    EmptySplitWarning,
    SnapshotDataset,
    check_compatible,
    open_store,
    split_trajectories,
)
from surrogate.data.layout import (
    ChannelLayout,
    channel_layout,
    from_store_layout,
    n_channels,
    to_store_layout,
)
from surrogate.data.normalization import (
    NORMALIZER_KINDS,
    FieldNormalizer,
    FieldTransform,
    declared_invariants,
    pseudoscalar_fields,
)
from surrogate.data.symmetry import (
    Matrix,
    SymmetryAugmentation,
    apply_symmetry,
    augment,
    point_group,
    symmetries_for,
    zero_mean_axes,
)
from surrogate.data.training import TrainingData, load_training_data
from surrogate.interop import open_fields  # re-export: other layouts

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "NORMALIZER_KINDS",
    "ChannelLayout",
    "ConditionEncoder",
    "EmptySplitWarning",
    "FieldNormalizer",
    "FieldTransform",
    "Matrix",
    "SnapshotDataset",
    "SymmetryAugmentation",
    "TrainingData",
    "apply_symmetry",
    "augment",
    "channel_layout",
    "check_compatible",
    "declared_invariants",
    "from_store_layout",
    "load_training_data",
    "n_channels",
    "neighbour_groups",
    "open_fields",
    "open_store",
    "point_group",
    "pseudoscalar_fields",
    "split_trajectories",
    "symmetries_for",
    "to_store_layout",
    "zero_mean_axes",
]
