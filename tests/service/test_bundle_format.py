"""The bundle format module: its rules, and that every side takes them from it."""

from __future__ import annotations

import json
import re

import pytest

from service import bundle_format as fmt


@pytest.mark.parametrize(("name", "valid"), [
    ("borehole", True), ("a", True), ("A-1_b.c", True), ("x" * fmt.NAME_MAX_LENGTH, True),
    ("x" * (fmt.NAME_MAX_LENGTH + 1), False), ("", False), (".hidden", False), ("-x", False),
    ("a/b", False), ("a:b", False), ("a b", False), ("é", False), (7, False), (None, False),
])
def test_names(name, valid):
    assert fmt.is_valid_name(name) is valid
    if valid:
        assert fmt.check_name(name) == name
    else:
        with pytest.raises(fmt.BundleFormatError, match="invalid model name"):
            fmt.check_name(name)


@pytest.mark.parametrize(("text", "version"), [
    ("1", 1), ("12", 12), ("9" * fmt.VERSION_MAX_DIGITS, int("9" * fmt.VERSION_MAX_DIGITS)),
    ("0", None), ("01", None), ("-1", None), ("v2", None), ("1.0", None), ("٣", None),
    ("9" * (fmt.VERSION_MAX_DIGITS + 1), None), ("", None),
])
def test_versions(text, version):
    assert fmt.parse_version(text) == version


def test_a_model_directory_lists_only_its_versions(tmp_path):
    model = tmp_path / "m"
    for entry in ("1", "3", "10", "01", ".tmp-4", "v5"):
        (model / entry).mkdir(parents=True)
    (model / "7").write_text("a file, not a version")
    assert fmt.versions(model) == [1, 3, 10]
    assert fmt.latest_version(tmp_path, "m") == 10
    assert fmt.version_dir(tmp_path, "m") == model / "10"
    assert fmt.version_dir(tmp_path, "m", 3) == model / "3"
    with pytest.raises(fmt.BundleFormatError, match="has no version 2 .latest is 10."):
        fmt.version_dir(tmp_path, "m", 2)
    with pytest.raises(fmt.BundleFormatError, match="no model 'nope'"):
        fmt.version_dir(tmp_path, "nope")


@pytest.mark.parametrize(("data", "message"), [
    (b"{", "not valid JSON"),
    (b"\xff", "not valid JSON"),
    (b"[1]", "must hold a JSON object"),
    (json.dumps({"format": "other/2", "inputs": [{"name": "a"}],
                 "outputs": [{"name": "y"}]}), "format 'other/2'"),
    (json.dumps({"inputs": [], "outputs": [{"name": "y"}]}), "'inputs' must be a non-empty"),
    (json.dumps({"inputs": [{"name": "a"}, {"name": "a"}], "outputs": [{"name": "y"}]}),
     "'inputs' entries need unique"),
    (json.dumps({"inputs": [{"name": "a"}], "outputs": [{"unit": "K"}]}),
     "'outputs' entries need unique non-empty names"),
])
def test_cards_that_are_refused(data, message):
    with pytest.raises(fmt.BundleFormatError, match=message):
        fmt.parse_card(data)


def test_a_card_and_its_training_range():
    card = fmt.parse_card(json.dumps({
        "inputs": [{"name": "a", "min": 0, "max": 2.5}, {"name": "b", "min": "?"}],
        "outputs": [{"name": "y"}]}))
    assert fmt.names(card, "inputs") == ("a", "b")
    assert fmt.training_range(card) == ([0.0, float("-inf")], [2.5, float("inf")])


def test_every_side_takes_the_rules_from_the_format():
    from service import codec_v1, openapi, repository
    from training import bundle, export, formula

    assert openapi.NAME_PATTERN == f"^{fmt.NAME_PATTERN}$"
    assert re.fullmatch(openapi.NAME_PATTERN[1:-1], "x" * fmt.NAME_MAX_LENGTH)
    assert repository.is_valid_name is fmt.is_valid_name
    assert repository.parse_version is fmt.parse_version
    assert bundle.check_name is fmt.check_name and bundle.read_card is fmt.read_card
    assert bundle.CARD_FORMAT == fmt.CARD_FORMAT and bundle.CARD_KEY == fmt.CARD_KEY
    assert codec_v1.MAIN_OUTPUT == fmt.OUTPUT_TENSOR
    assert export.INPUT_TENSOR == fmt.INPUT_TENSOR and formula.MODEL_FILE == fmt.MODEL_FILE
    # The OpenAPI version pattern and the directory rule accept the same versions.
    assert openapi.VERSION_PATTERN == f"^{fmt.VERSION_PATTERN}$"
    longest = "9" * fmt.VERSION_MAX_DIGITS
    for text in ("1", "10", longest, longest + "9", "01", "0", "-1", "v2", "١"):
        matches = re.fullmatch(fmt.VERSION_PATTERN, text) is not None
        assert matches == (fmt.parse_version(text) is not None), text
