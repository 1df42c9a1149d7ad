"""The emulator answers bare-CR input as HERE does: 400 after the upload (issue 10 §1)."""

from __future__ import annotations

import pytest

from tests.emulator.conftest import Client


@pytest.mark.parametrize(
    ("body", "line"),
    [
        (b"recId|q\r1|Berlin\r2|Paris\r", 1),  # CR-only line endings: one long line
        (b"recId|q\n1|Ber\rlin\n", 2),  # a CR inside a value
        (b"recId|q\n1|Berlin\n2|Paris\r", 3),  # a final CR
    ],
)
def test_a_cr_not_followed_by_lf_is_a_400_naming_the_line(client: Client, body: bytes, line: int) -> None:
    answer = client.create(body, expect=400)
    error = answer.json()
    assert error["code"] == "E6004004" and f"Line {line} holds a carriage return" in error["cause"]


def test_crlf_input_is_accepted_and_the_cr_is_not_part_of_the_record(client: Client) -> None:
    job_id = client.create(b"recId|q\r\n7|Berlin\r\n9|Paris\r\n").json()["id"]
    done = client.wait(job_id, "completed")
    assert done["records"]["total"] == 2
    lines = client.download(job_id).text.splitlines()
    assert [line.split("|")[0] for line in lines[1:]] == ["7", "9"]
