"""Experiment files (experiments/*.yml) as small overrides of config.yml; no training."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from faqbot.core.paths import PROJECT_DIR
from faqbot.tools.evaluate import VariantError, main, resolve_config

CONFIG = yaml.safe_load((PROJECT_DIR / "config.yml").read_text(encoding="utf-8"))
EXPERIMENTS = sorted((PROJECT_DIR / "experiments").glob("*.yml"))


def one(config: dict, test) -> dict:
    [component] = [item for item in config["pipeline"] if test(item)]
    return component


def char_ngrams(item: dict) -> bool:
    return item.get("analyzer") == "char_wb"


def words(item: dict) -> bool:
    return item["name"] == "CountVectorsFeaturizer" and "analyzer" not in item


def diet(item: dict) -> bool:
    return item["name"] == "DIETClassifier"


def ranker(item: dict) -> bool:
    return item["name"] == "faqbot.nlu.faq_ranker.FaqKnowledgeRanker"


def expected(name: str) -> dict:
    """config.yml with the one change the experiment is about, spelled out by hand."""
    config = copy.deepcopy(CONFIG)
    if name == "char_1_4":
        one(config, char_ngrams).update(min_ngram=1, max_ngram=4)
    elif name == "epochs_100":
        one(config, diet)["epochs"] = 100
    elif name == "no_lemma":
        one(config, words)["use_lemma"] = False
    elif name == "transformer_1":
        one(config, diet)["number_of_transformer_layers"] = 1
    elif name == "no_near_miss":
        one(config, ranker)["near_miss_share"] = 0.0
    elif name == "no_knowledge_ranker":
        config["pipeline"].remove(one(config, ranker))
    elif name == "ranker_without_answers":
        one(config, ranker)["use_answers"] = False
    elif name == "words_only":
        config["pipeline"].remove(one(config, char_ngrams))
    else:
        pytest.fail(f"experiments/{name}.yml: expected change not described in this test")
    return config


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda path: path.stem)
def test_experiment_is_config_yml_with_one_change(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Variant of config.yml: ")  # says what the variant is
    assert set(yaml.safe_load(text)) == {"variant_of", "pipeline"}  # an override, not a copy
    resolved = resolve_config(path)
    assert resolved == expected(path.stem)
    assert resolved != CONFIG


def test_all_experiments_are_there():
    assert [path.stem for path in EXPERIMENTS] == [
        "char_1_4",
        "epochs_100",
        "no_knowledge_ranker",
        "no_lemma",
        "no_near_miss",
        "ranker_without_answers",
        "transformer_1",
        "words_only",
    ]


def test_full_config_is_taken_as_it_is():
    assert resolve_config(PROJECT_DIR / "config.yml") == CONFIG


def variant(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "variant.yml"
    path.write_text("variant_of: config.yml\n" + text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "pipeline:\n  - match: {name: CountVectorsFeaturizer, analyzer: char}\n    remove: true\n",
            "passt auf keine Komponente unter pipeline",
        ),
        (
            "pipeline:\n  - match: {name: CountVectorsFeaturizer}\n    set: {min_ngram: 1}\n",
            "passt auf 2 Komponenten unter pipeline",
        ),
        (
            "policies:\n  - match: {name: TEDPolicy}\n    set: {epochs: 5}\n",
            "passt auf keine Komponente unter policies",
        ),
        (
            "pipeline:\n  - match: {name: DIETClassifier}\n    set: {epoch: 100}\n",
            "kennt die Schlüssel ['epoch'] nicht",
        ),
        ("pipeline:\n  - match: {name: DIETClassifier}\n", "entweder `set: {...}` oder `remove: true`"),
        ("pipeline:\n  - match: {analyzer: char_wb}\n    remove: true\n", "braucht `match` mit `name`"),
        ("language: en\n", "unbekannte Schlüssel ['language']"),
    ],
)
def test_bad_override_fails_clearly(tmp_path, text, message):
    with pytest.raises(VariantError, match=r"variant\.yml: .*" + message.replace("[", r"\[").replace("{", r"\{")):
        resolve_config(variant(tmp_path, text))


def test_cli_stops_before_training_on_a_bad_override(tmp_path, capsys):
    path = variant(tmp_path, "pipeline:\n  - match: {name: CountVectorsFeaturizer}\n    remove: true\n")
    with pytest.raises(SystemExit) as stop:
        main(["--config", str(path)])
    assert stop.value.code == 2
    assert "passt auf 2 Komponenten" in capsys.readouterr().err


def rasa_check(config: dict, tmp_path: Path) -> None:
    """What `rasa train` checks before it trains: the config schema, the graph, its validation."""
    from rasa.engine import validation
    from rasa.engine.recipes.recipe import Recipe
    from rasa.shared.utils.io import read_model_configuration

    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    config = read_model_configuration(path)
    recipe = Recipe.recipe_for_name(config.get("recipe"))
    config, _, _ = recipe.auto_configure(str(path), config)
    validation.validate(recipe.graph_config_for_recipe(config, {}))


def test_resolved_experiments_are_valid_rasa_configs(tmp_path):
    from rasa.shared.exceptions import InvalidConfigException

    for path in EXPERIMENTS:
        rasa_check(resolve_config(path), tmp_path)
    broken = copy.deepcopy(CONFIG)
    broken["pipeline"][-1]["name"] = "FallbackClassifer"  # the check itself can fail
    with pytest.raises(InvalidConfigException):
        rasa_check(broken, tmp_path)
