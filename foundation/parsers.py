"""The API's request body parser: JSON with a nesting limit. Its own module: DRF resolves its parser setting while
`foundation.api` is still being imported by its pagination setting."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from foundation import untrusted

MAX_BODY_DEPTH = untrusted.MAX_BODY_DEPTH


class BoundedJSONParser(JSONParser):
    """JSON bodies nested past MAX_BODY_DEPTH levels are a 400: no field of the API nests that deep, and a deeper body
    would reach code that walks it recursively (the interpreter's limit would make it a 500)."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - the body nests deeper than {MAX_BODY_DEPTH} levels.") from None
        if untrusted.too_deep(data, MAX_BODY_DEPTH):
            raise ParseError(f"JSON parse error - the body nests deeper than {MAX_BODY_DEPTH} levels.")
        return data
