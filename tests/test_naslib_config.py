"""The ``energy`` section of NASLib configs: defaults, off values, validation naming the key."""

from __future__ import annotations

import pytest
import yaml

from ecnas_plugin.naslib.config import ConfigError, EnergyConfig, energy_of_config, parse_energy


@pytest.mark.parametrize("value", [None, False, {"enabled": False}])
def test_off_values_mean_no_energy(value):
    assert parse_energy(value) is None


def test_true_takes_the_defaults():
    assert parse_energy(True) == EnergyConfig()
    assert EnergyConfig().objective == "penalty" and EnergyConfig().missing == "error"


def test_mapping_is_parsed_from_yaml():
    text = """
    energy:
      objective: constraint
      limit_kwh: 0.02
      epochs: 4
      search_budget_kwh: 1.5
      reference_point: [1.0, 0.06]
    """
    cfg = energy_of_config(yaml.safe_load(text))
    assert (cfg.objective, cfg.limit_kwh, cfg.epochs, cfg.search_budget_kwh) == ("constraint", 0.02, 4, 1.5)
    assert cfg.reference_point == (1.0, 0.06)
    assert cfg.objective_params() == {"limit_kwh": 0.02}


def test_config_without_energy_key_is_off():
    assert energy_of_config({"optimizer": "rs"}) is None


@pytest.mark.parametrize("section,key", [
    ({"objectiv": "penalty"}, "energy.objectiv"),
    ({"objective": "pareto"}, "energy.objective"),
    ({"objective": "constraint"}, "energy.limit_kwh"),
    ({"objective": "constraint", "limit_kwh": 0}, "energy.limit_kwh"),
    ({"objective": "penalty", "limit_kwh": 0.1}, "energy.limit_kwh"),
    ({"objective": "soft", "weight": 0.1}, "energy.weight"),
    ({"weight": "heavy"}, "energy.weight"),
    ({"weight": -0.1}, "energy.weight"),
    ({"epochs": 0}, "energy.epochs"),
    ({"epochs": True}, "energy.epochs"),
    ({"column": "val_acc"}, "energy.column"),
    ({"missing": "zero"}, "energy.missing"),
    ({"search_budget_kwh": -1}, "energy.search_budget_kwh"),
    ({"reference_point": [1.0]}, "energy.reference_point"),
    ({"trace": "yes"}, "energy.trace"),
    ({"table": 5}, "energy.table"),
    ({"enabled": "no"}, "energy.enabled"),
])
def test_bad_values_name_their_key(section, key):
    with pytest.raises(ConfigError) as info:
        parse_energy(section)
    assert info.value.key == key and repr(key) in str(info.value)


def test_non_mapping_value_is_refused():
    with pytest.raises(ConfigError, match="'energy'"):
        parse_energy("yes")
