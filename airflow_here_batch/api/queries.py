"""When two HERE requests ask the same question: the query key (issue 24), sans I/O.

HERE bills per record sent. Records whose *requests* are the same question get the same answer, so a run
sends each question once and gives its answer to every record that asked (each under its own recId), and
a stored answer serves a new record asking the same question. :func:`query_key` is the one rule of "the
same question": the request without its ``recId``, each value normalised by :data:`FIELD_RULES`, with the
service and the job's output columns (what HERE is asked to return).

The rules, one per HERE input column, beside the code that applies them (:func:`normalised`):

==============  ============  ====================================================================
column          rule          why
==============  ============  ====================================================================
``q``           ``text``      free text: HERE's geocoder matches words, not letter case (GS7's
                              free-form search); the case of letters is folded (``str.lower``,
                              not ``casefold``: ``ß`` stays ``ß``), blanks collapsed
``qq``          ``qualified`` ``field=value;...`` pairs: each value as ``text``; the field names and
                              their order kept exactly (HERE names are case-sensitive, [PARAMS])
anything else   ``exact``     ``in``, ``at``, ``id``, ``lang``, ``limit``, ``types``, ...: codes,
                              numbers, ids and options HERE reads as they are (a lookup id is
                              case-sensitive; ``countryCode:DEU`` is a code); only Unicode NFC and
                              blanks collapsed, as the fingerprint does
==============  ============  ====================================================================

HERE's documents never say that free-text matching ignores letter case (shared doc §8 lists the
columns, not how they are matched). Folding case in ``q``/``qq`` values is the one assumption made here;
punctuation, word order, abbreviations and spelling variants are never folded: such requests may be
answered differently and are sent apart (the safe side: at worst a question is paid twice). Two
requests differing in any ``exact`` column, in the set of columns, in the service or in the output
columns are never the same question.

Every value first gets :func:`normalise_value` (Unicode NFC, blanks collapsed, stripped): the
normalisation the record fingerprint applies (:mod:`airflow_here_batch.tables.records`).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence

from airflow_here_batch.api.models import ServiceType

__all__ = [
    "FIELD_RULES",
    "QUERY_KEY_LENGTH",
    "normalise_value",
    "normalised",
    "output_scope",
    "query_key",
]

#: Hex characters of a query key (a 128-bit hash: two different questions share a key about once in
#: 10^20 pairs of 10^9 records, never in practice; a wrong answer copied is worse than a paid record).
QUERY_KEY_LENGTH = 32

#: How each HERE input column's value is normalised for :func:`query_key` (the table in the module doc).
#: A column not named here is ``exact``.
FIELD_RULES: Mapping[str, str] = {"q": "text", "qq": "qualified"}

_WHITESPACE = re.compile(r"\s+")


def normalise_value(value: str) -> str:
    """The form of a request value that the fingerprint and the query key see: Unicode NFC, blanks
    collapsed, stripped."""
    if not value:
        return ""
    if not value.isascii():
        value = unicodedata.normalize("NFC", value)
    if value.isprintable() and "  " not in value:  # the common case: nothing to do but strip
        return value.strip()
    return _WHITESPACE.sub(" ", value).strip()


def _text(value: str) -> str:
    return normalise_value(value).lower()


def _qualified(value: str) -> str:
    parts = []
    for part in normalise_value(value).split(";"):
        name, sep, text = part.partition("=")
        parts.append(f"{name.strip()}{sep}{_text(text)}" if sep else _text(part))
    return ";".join(parts)


_RULES = {"text": _text, "qualified": _qualified, "exact": normalise_value}


def normalised(column: str, value: str | None) -> str:
    """``value`` of HERE input column ``column`` as :func:`query_key` sees it (:data:`FIELD_RULES`).

    >>> normalised("q", "  Jungfernstieg  7,  HAMBURG ")
    'jungfernstieg 7, hamburg'
    >>> normalised("in", "countryCode:DEU")
    'countryCode:DEU'
    """
    return _RULES[FIELD_RULES.get(column, "exact")](value or "")


def output_scope(output_columns: Sequence[str]) -> list[str]:
    """The output columns as HERE matches them (case and order ignored, shared doc §9), sorted."""
    return sorted({c.strip().lower() for c in output_columns if c.strip()})


def query_key(
    service: ServiceType | str, request: Mapping[str, str | None], output_columns: Sequence[str] = ()
) -> str:
    """The query key of a HERE request: :data:`QUERY_KEY_LENGTH` hex characters, the same for two
    requests exactly when they ask HERE the same question (the module doc's rules).

    :param service: ``geocode``, ``revgeocode`` or ``lookup`` (or a :class:`ServiceType`).
    :param request: the record's values by HERE input column name (``recId`` is left out; ``None`` is an
        empty value; a column with an empty value is still a column of the request).
    :param output_columns: the job's ``outputColumns``.
    """
    svc = service.value if isinstance(service, ServiceType) else ServiceType.from_name(service).value
    fields = sorted(
        (name, normalised(name, value))
        for name, value in request.items()
        if name.lower() != "recid"
    )
    text = json.dumps([svc, fields, output_scope(output_columns)], ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=QUERY_KEY_LENGTH // 2).hexdigest()
