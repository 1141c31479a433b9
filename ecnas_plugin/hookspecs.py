"""Every hook a plugin can implement: the whole extension contract, in one file.

A plugin is a module (or object) exposed through the ``ecnas_plugin`` entry-point group::

    [project.entry-points.ecnas_plugin]
    my_tables = "my_package.ecnas_tables"

and implements some of the hooks below, each marked with ``hookimpl``::

    from ecnas_plugin.hookspecs import hookimpl

    @hookimpl
    def ecnas_tables():
        return [TableSpec(...)]

All hooks here are *collectors*: every plugin's answer is gathered, and names must be unique
across plugins (a second plugin that registers a name already taken is reported and skipped).
A hook implementation that raises is reported with its distribution and entry point; the other
plugins keep working. Hook names are checked: a ``hookimpl`` whose name is not specified here
makes its plugin fail to load, so a typo cannot pass silently.
"""

from __future__ import annotations

import pluggy

PROJECT = "ecnas_plugin"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def ecnas_search_spaces():
    """Return a list of :class:`ecnas_plugin.adapters.base.SearchSpace` instances.

    A space's ``name`` (e.g. ``"nasbench201"``) is how users, tables (their ``space`` column) and
    configs refer to it; every flow (``ecnas measure``, search, studies, surrogates, the NASLib
    bridge, ``ecnas query``, ``ecnas contribute``) takes the space from here, so a new space is
    its own module plus one entry point. The manual, in short (``adapters/base.py`` has it all):

    - ``dimensions``: one architecture dimension, hyperparameters and fidelities
      (:class:`~ecnas_plugin.adapters.base.Dimension`: typed, bounded, log-scaled or a grid). A
      configuration's key is ``config_key(arch, values)``: the arch key, then the
      hyperparameters in declaration order, then ``@name=value`` for each fidelity a whole run
      is fixed at (resolution); epochs, the fidelity along a run's checkpoints, is where a key
      is evaluated, never part of it. ``training_settings(arch)`` returns what a configuration
      fixes about its own training (lr, optimizer, ...), overriding a campaign's defaults.
    - required: ``canonical_key(arch)`` and ``parse_arch(text)``, raising ``InvalidArchitecture``
      with the rule broken; ``describe(arch)`` (text that ``parse_arch`` reads back into a
      buildable architecture) and ``decode(key)`` where the key alone cannot rebuild it.
    - capabilities, each optional, each offered by overriding its method: ``enumerate()``,
      ``sample(rng)``, ``neighbours(arch, subset)`` / ``mutate(arch, rng, subset)`` (``subset``:
      the canonical keys a search may visit, e.g. a table's), ``stratum(arch)`` (stratified
      measurement samples), ``build_network(arch, num_classes, **settings)`` with
      ``network_defaults`` (``ecnas measure``), ``features(archs)`` with a ``feature_set`` label
      changed whenever the computation changes (surrogates), ``design(n, seed)`` (a
      space-filling sample for campaigns) and ``naslib``
      (a :class:`~ecnas_plugin.adapters.base.NaslibMapping`, for the NASLib bridge). A flow calls
      ``space.require(capability, flow=...)`` before it starts, so a missing one is refused by
      name (``MissingCapability``) before anything runs.
    """


@hookspec
def ecnas_tables():
    """Return a list of :class:`ecnas_plugin.table.TableSpec` describing energy tables.

    A spec names the table, its search space, the data files it is built from (names in the
    data registry, see ``ecnas_data_files``) and a ``build(paths)`` callable that receives a
    mapping from those names to verified local paths and returns an
    :class:`ecnas_plugin.table.EnergyTable`. Building runs once; the result is cached as
    parquet + JSON manifest in the user cache.
    """


@hookspec
def ecnas_data_files():
    """Return a list of :class:`ecnas_plugin.datasets.DataFile` entries.

    Each entry names an upstream file with its URL, size, sha256, license and citation, and the
    relative path it has inside an offline mirror. Files are only ever used after their sha256
    has been verified.
    """


@hookspec
def ecnas_meters():
    """Return a list of :class:`ecnas_plugin.energy.meters.Meter` subclasses (classes, not instances).

    Each class has a unique ``name`` (e.g. ``"nvml"``), the ``components`` it measures
    (``"gpu"``, ``"cpu"``, ``"ram"``), the ``methods`` it reads them by (counter, sampled or
    estimated; ``expected_methods()`` says what it would deliver on this machine) and a
    ``probe()`` classmethod saying whether it works here and, if not, why. ``ecnas meters`` lists
    them; ``--meter auto`` picks among every registered meter by what it would deliver (no
    estimate where anything measures, then the most counters) and combines meters whose
    components do not overlap. ``Meter.start``/``stop`` synchronise CUDA themselves.
    """


@hookspec
def ecnas_surrogates():
    """Return a list of surrogate model classes (subclasses of
    :class:`ecnas_plugin.energy.surrogates.Surrogate`), each with a unique ``name``.

    A surrogate fits on a measured table's features and predicts energy with a standard deviation;
    its predictions are always labelled ``source = "predicted"``.
    """


@hookspec
def ecnas_curve_surrogates():
    """Return a list of learning-curve surrogate classes (subclasses of
    :class:`ecnas_plugin.energy.surrogates.base.CurveSurrogate`), each with a unique ``name``.

    A curve surrogate fits on a table measured along epochs (its checkpoints) and predicts the
    validation-accuracy curve and the energy to any epoch of a configuration, with σ; its
    predictions are labelled ``source = "predicted"``.
    """
