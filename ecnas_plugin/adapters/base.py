"""What a search-space adapter is: the contract the registry and the query API rely on."""

from __future__ import annotations

from abc import ABC, abstractmethod


class SearchSpaceAdapter(ABC):
    """One search space: turns any accepted architecture form into its canonical key.

    Subclasses set ``name`` (e.g. ``"nasbench101"``) and ``key_description`` (what the key is,
    shown by ``ecnas plugins``).
    """

    name: str
    key_description: str

    @abstractmethod
    def canonical_key(self, arch: object) -> str:
        """Canonical key of ``arch`` (any form this space accepts); raises InvalidArchitecture."""

    @abstractmethod
    def parse_arch(self, text: str) -> object:
        """Parse architecture text given on the command line into a form ``canonical_key`` takes."""
