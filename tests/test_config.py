from pathlib import Path

import pytest
import yaml

from daskcluster.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_default_yaml_matches_packaged_defaults():
    assert yaml.safe_load((ROOT / "configs" / "default.yaml").read_text()) == Config().to_dict()


def test_required_keys_exist():
    cfg = load_config(environ={})
    assert 0 < cfg.assign.threshold < 1 and 0 < cfg.cluster.threshold < 1
    assert cfg.cluster.k >= 1 and cfg.search.exact is False


def test_precedence_file_env_set(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("assign:\n  threshold: 0.7\ncluster:\n  threshold: 0.65\n  k: 5\n")
    env = {"DASKCLUSTER_CLUSTER__K": "7", "DASKCLUSTER_ASSIGN__THRESHOLD": "0.71"}
    cfg = load_config(f, ["assign.threshold=0.72", "search.exact=true"], environ=env)
    assert (cfg.assign.threshold, cfg.cluster.threshold, cfg.cluster.k, cfg.search.exact) == (0.72, 0.65, 7, True)


@pytest.mark.parametrize(
    "override, field",
    [
        ("assign.threshold=2", "assign.threshold"),
        ("cluster.k=zero", "cluster.k"),
        ("cluster.nope=1", "cluster.nope"),
        ("ingest.on_bad_row=ignore", "ingest.on_bad_row"),
        ("dask.protocol=udp", "dask.protocol"),
        ("search.codec=lz4", "search.codec"),
        ("search.rerank=0", "search.rerank"),
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(None, [override], environ={})


def test_set_syntax_and_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["assign.threshold"], environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad, environ={})


def test_digest_is_stable_and_sensitive():
    a, b = load_config(environ={}), load_config(None, ["cluster.k=11"], environ={})
    assert a.digest() == load_config(environ={}).digest() != b.digest()
