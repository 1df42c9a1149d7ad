"""``here-batch-emulator --help``: every option says what it does and what it defaults to."""

from __future__ import annotations

import argparse
import re

import pytest

from airflow_here_batch.emulator.cli import build_parser

PARSER = build_parser()
OPTIONS = [a for a in PARSER._actions if not isinstance(a, argparse._HelpAction)]


def test_the_parser_has_its_options() -> None:
    """The parametrised test below cannot pass by finding nothing."""
    flags = {f for a in OPTIONS for f in a.option_strings}
    assert {"--host", "--port", "--data-dir", "--api-key", "--records-per-second", "--workers"} <= flags


@pytest.mark.parametrize("action", OPTIONS, ids=[a.option_strings[0] for a in OPTIONS])
def test_every_option_has_a_description_and_its_default(action: argparse.Action) -> None:
    text = PARSER.format_help()
    flag = action.option_strings[0]
    help_text = (action.help or "") % {"default": action.default, "prog": PARSER.prog}
    description = re.sub(r"\(default:[^)]*\)", "", help_text).strip(" ;,")
    assert len(description) >= 8, f"{flag}: no description in --help"
    match = re.search(r"\(default: ([^)]*)\)", help_text)
    assert match and match[1].strip(), f"{flag}: --help does not name the default: {help_text!r}"
    if action.default not in (None, False):
        shown = match[1].split(",")[0].split(";")[0].strip()
        value = action.default
        expected = f"{value:g}" if isinstance(value, float) else str(value)
        assert shown == expected, f"{flag}: --help says the default is {shown!r}, the parser {expected!r}"
    assert flag in text
