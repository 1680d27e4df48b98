"""``[log] format = json``: every record one line of JSON, extra fields and tracebacks kept."""

from __future__ import annotations

import io
import json
import logging

from gateways.logformat import JsonFormatter


def _logged(emit) -> list:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("haven.test.json")
    logger.propagate, logger.level = False, logging.DEBUG
    logger.handlers[:] = [handler]
    try:
        emit(logger)
    finally:
        logger.handlers[:] = []
    return stream.getvalue().splitlines()


def test_one_object_per_line_with_extra_fields_and_the_traceback():
    def emit(logger):
        logger.info("delivered to %s", "a@example.test", extra={"uid": 7, "peer": ("127.0.0.1", 25)})
        try:
            raise ValueError("line one\nline two")
        except ValueError:
            logger.exception("it failed")
    lines = _logged(emit)
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "delivered to a@example.test" and first["level"] == "INFO"
    assert first["logger"] == "haven.test.json" and first["uid"] == 7 and first["peer"] == ["127.0.0.1", 25]
    assert first["time"].endswith("Z") and len(first["time"]) == len("2026-12-05T20:22:01.123Z")
    assert "args" not in first and "msg" not in first and "levelno" not in first
    assert second["level"] == "ERROR" and "ValueError: line one\nline two" in second["exception"]


def test_values_json_cannot_hold_are_written_as_text():
    line = _logged(lambda logger: logger.warning("x", extra={"when": object, "data": b"\xff"}))[0]
    record = json.loads(line)
    assert record["when"] == str(object) and record["data"] == str(b"\xff")
