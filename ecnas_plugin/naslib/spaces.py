"""EC-NAS's 4-/5-vertex spaces as NASLib search spaces (imports NASLib: only call after ``compat.apply``).

:func:`search_space` returns an instance of ``EcnasNasBench101SearchSpace``, a subclass of
NASLib's ``NasBench101SearchSpace`` (so NASLib's encodings, predictors and the ``query`` wrapper
treat it as NB101) whose sampling, mutation and neighbours stay inside the subspace; pair it
with :func:`ecnas_plugin.naslib.subspace.build_dataset_api`.
"""

from __future__ import annotations

import random
from functools import lru_cache

from ecnas_plugin.naslib.subspace import SPACES, Subspace, load_subspace

SPACE_NAMES = tuple(SPACES)


@lru_cache(maxsize=1)
def space_class() -> type:
    """The NASLib search-space class (built once, on first use)."""
    import torch
    from naslib.search_spaces import NasBench101SearchSpace

    class EcnasNasBench101SearchSpace(NasBench101SearchSpace):
        """NAS-Bench-101 restricted to the cells of an EC-NAS table (module-hash canonical specs)."""

        QUERYABLE = True

        def __init__(self, subspace: Subspace, n_classes: int = 10):
            super().__init__(n_classes=n_classes)
            self.subspace = subspace  # shared by clones (Subspace.__deepcopy__ returns itself)
            self.ecnas_space = subspace.name
            self.instantiate_model = False  # tabular: no torch model per sampled cell

        def _key(self) -> str:
            key = self.subspace.key_of(self.get_spec())
            if key is None:
                raise ValueError(f"spec is not a cell of {self.ecnas_space}")
            return key

        def set_spec(self, spec, dataset_api=None) -> None:
            if isinstance(spec, str):  # a module hash
                spec = self.subspace.spec(spec)
            super().set_spec(spec, dataset_api)

        def sample_random_architecture(self, dataset_api=None, load_labeled: bool = False) -> None:
            if load_labeled:
                raise NotImplementedError("load_labeled (zero-cost benchmark samples) is not available "
                                          f"for {self.ecnas_space}")
            self.set_spec(self.subspace.spec(self.subspace.sample()))

        def mutate(self, parent, dataset_api=None, edits: int = 1) -> None:
            key = self.subspace.key_of(parent.get_spec())
            if key is None:
                raise ValueError(f"parent is not a cell of {self.ecnas_space}")
            for _ in range(edits):
                key = self.subspace.mutate(key)
            self.set_spec(self.subspace.spec(key))

        def get_nbhd(self, dataset_api=None) -> list:
            nbhd = []
            for key in self.subspace.neighbours(self._key()):
                nbr = type(self)(self.subspace, self.num_classes)
                nbr.set_spec(self.subspace.spec(key))
                model = torch.nn.Module()
                model.arch = nbr
                nbhd.append(model)
            random.shuffle(nbhd)
            return nbhd

        def get_arch_iterator(self, dataset_api=None):
            return iter(self.subspace.keys)

    return EcnasNasBench101SearchSpace


def search_space(name: str, n_classes: int = 10) -> object:
    """A fresh NASLib search space for EC-NAS space ``name`` ("ecnas-4v" or "ecnas-5v")."""
    return space_class()(load_subspace(name), n_classes=n_classes)
