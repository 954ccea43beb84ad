"""
JSON as the server writes it everywhere (policies, callback tokens,
answers): compact UTF-8 bytes, non-ASCII text unescaped.

orjson rather than the standard library: a grant is three JSON documents,
and json.dumps made them cost more than the grant's HMACs; the output is
byte for byte what json.dumps(..., separators=(",", ":"),
ensure_ascii=False) writes.
"""

from orjson import dumps as compact_json
from orjson import loads as parse_json

__all__ = ["compact_json", "parse_json"]
