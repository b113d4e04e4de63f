"""JSON Schema corpus for the coverage probe: small schemas whose constraints a backend that drops a
keyword would likely break (tight bounds, fixed values, exact counts), and the keywords each one uses.

Keywords are read off the schemas themselves (`keywords_of`), so a schema's tags cannot drift from it.
Every `format` used here has a checker in the installed `jsonschema` (tests/test_schema_corpus.py).

"Unparsable" schemas are valid JSON Schema that TabbyAPI's backends cannot compile: llguidance (ExLlamaV3) reports
'Unimplemented keys: ["not"]' / '["contains"]', formatron (ExLlamaV2) refuses integer bounds ("int metadata
{'ge': 1, 'le': 3} is not supported"). TabbyAPI then logs "Skipping because the JSON schema couldn't be parsed"
and generates unconstrained (backends/exllamav{2,3}/grammar.py): such an answer is "ignored", a refusal
"rejected", so GPU runs measure the fail-open; any other engine is judged the same way.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

# The keywords the coverage table breaks down by; "nested" marks an object or array inside another.
KEYWORDS = (
    "enum",
    "const",
    "pattern",
    "format",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "uniqueItems",
    "prefixItems",
    "contains",
    "not",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "$defs",
    "additionalProperties",
    "minProperties",
    "maxProperties",
    "required",
    "nested",
)


def _obj(properties: dict[str, Schema], required: list[str] | None = None, **extra: Any) -> Schema:
    """A closed object whose listed properties are all required unless `required` says otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
        **extra,
    }


def _str(**constraints: Any) -> Schema:
    return {"type": "string", **constraints}


def _int(**constraints: Any) -> Schema:
    return {"type": "integer", **constraints}


def _arr(items: Schema, **constraints: Any) -> Schema:
    return {"type": "array", "items": items, **constraints}


_POINT = _obj({"x": _int(minimum=0, maximum=9), "y": _int(minimum=0, maximum=9)})

SCHEMAS: dict[str, Schema] = {
    # enum / const
    "enum_strings": _obj({"color": {"enum": ["red", "green", "blue"]}}),
    "enum_mixed_types": _obj({"value": {"enum": ["off", 7, True, None]}}),
    "enum_integers": _obj({"level": {"type": "integer", "enum": [101, 202, 303]}}),
    "enum_in_array": _obj({"days": _arr({"enum": ["mon", "tue", "wed"]}, minItems=2, maxItems=2)}),
    "const_string": _obj({"kind": {"const": "invoice-v2"}}),
    "const_number": _obj({"version": {"const": 42}}),
    "const_and_enum": _obj({"kind": {"const": "event"}, "state": {"enum": ["open", "closed"]}}),
    # pattern
    "pattern_code": _obj({"code": _str(pattern="^[A-Z]{3}-[0-9]{2}$")}),
    "pattern_hex": _obj({"hex": _str(pattern="^#[0-9a-f]{6}$")}),
    "pattern_digits": _obj({"pin": _str(pattern="^[0-9]{4}$")}),
    "pattern_alternation": _obj({"answer": _str(pattern="^(yes|no|maybe)$")}),
    "pattern_version": _obj({"semver": _str(pattern="^[0-9]\\.[0-9]{1,2}\\.[0-9]$")}),
    # format
    "format_date": _obj({"day": _str(format="date")}),
    "format_email": _obj({"email": _str(format="email")}),
    "format_uuid": _obj({"id": _str(format="uuid")}),
    "format_ipv4": _obj({"ip": _str(format="ipv4")}),
    "format_ipv6": _obj({"ip": _str(format="ipv6")}),
    "format_in_array": _obj({"dates": _arr(_str(format="date"), minItems=1, maxItems=2)}),
    # string lengths
    "min_length": _obj({"word": _str(minLength=12)}),
    "max_length": _obj({"word": _str(maxLength=2)}),
    "exact_length": _obj({"word": _str(minLength=5, maxLength=5)}),
    "length_range": _obj({"name": _str(minLength=3, maxLength=6), "note": _str(maxLength=1)}),
    # numbers
    "minimum_high": _obj({"n": _int(minimum=1000)}),
    "maximum_negative": _obj({"n": _int(maximum=-50)}),
    "integer_range": _obj({"n": _int(minimum=40, maximum=45)}),
    "number_range": _obj({"ratio": {"type": "number", "minimum": 0.25, "maximum": 0.5}}),
    "exclusive_bounds": _obj({"n": _int(exclusiveMinimum=10, exclusiveMaximum=13)}),
    "multiple_of": _obj({"n": _int(multipleOf=7, minimum=1, maximum=100)}),
    # arrays
    "min_items": _arr(_int(), minItems=4),
    "max_items": _obj({"tags": _arr(_str(maxLength=4), maxItems=1)}),
    "exact_items": _obj({"triple": _arr(_int(minimum=0, maximum=9), minItems=3, maxItems=3)}),
    "unique_items": _obj({"ids": _arr(_int(minimum=0, maximum=3), minItems=3, maxItems=3, uniqueItems=True)}),
    "tuple_prefix_items": _obj(
        {
            "pair": {
                "type": "array",
                "prefixItems": [_str(maxLength=3), _int(minimum=5, maximum=6)],
                "items": False,
                "minItems": 2,
            }
        }
    ),
    "array_of_objects": _obj({"points": _arr(_POINT, minItems=2, maxItems=2)}),
    # unparsable by TabbyAPI's llguidance and formatron (module docstring): fail open or refuse
    "unparsable_not": _obj({"n": _int(minimum=1, maximum=3, **{"not": {"const": 2}})}),
    "unparsable_contains": _obj(
        {"xs": _arr(_int(minimum=0, maximum=9), minItems=1, maxItems=2, contains={"const": 7})}
    ),
    # anyOf / oneOf / allOf
    "any_of_types": _obj({"value": {"anyOf": [_int(minimum=500, maximum=599), _str(pattern="^x{3}$")]}}),
    "any_of_objects": {"anyOf": [_obj({"cat": _str(maxLength=4)}), _obj({"dog": _int(minimum=1, maximum=2)})]},
    "one_of_disjoint": _obj({"id": {"oneOf": [_int(minimum=0, maximum=9), _str(pattern="^id-[a-z]{2}$")]}}),
    "one_of_tagged": {
        "oneOf": [
            _obj({"type": {"const": "a"}, "a": _int(minimum=1, maximum=1)}),
            _obj({"type": {"const": "b"}, "b": {"type": "boolean"}}),
        ]
    },
    "nullable_any_of": _obj({"maybe": {"anyOf": [{"type": "null"}, _int(minimum=77, maximum=77)]}}),
    "all_of_bounds": _obj({"n": {"allOf": [_int(minimum=20), _int(maximum=22)]}}),
    # $ref / $defs
    "ref_defs": {"$defs": {"point": _POINT}, **_obj({"a": {"$ref": "#/$defs/point"}, "b": {"$ref": "#/$defs/point"}})},
    "ref_in_array": {
        "$defs": {"tag": _str(pattern="^t[0-9]$")},
        **_obj({"tags": _arr({"$ref": "#/$defs/tag"}, minItems=2, maxItems=2)}),
    },
    "ref_chain": {
        "$defs": {"code": _str(pattern="^[a-c]{2}$"), "item": _obj({"code": {"$ref": "#/$defs/code"}})},
        **_obj({"item": {"$ref": "#/$defs/item"}}),
    },
    "ref_recursive": {
        "$defs": {"node": _obj({"v": _int(minimum=0, maximum=3), "kids": _arr({"$ref": "#/$defs/node"}, maxItems=1)})},
        "$ref": "#/$defs/node",
    },
    "ref_enum": {
        "$defs": {"unit": {"enum": ["kg", "lb"]}},
        **_obj({"unit": {"$ref": "#/$defs/unit"}, "amount": _int(minimum=1, maximum=5)}),
    },
    # nested objects and arrays
    "nested_objects": _obj(
        {
            "user": _obj(
                {
                    "name": _str(minLength=1, maxLength=8),
                    "admin": {"type": "boolean"},
                    "address": _obj({"zip": _str(pattern="^[0-9]{5}$")}),
                }
            )
        }
    ),
    "nested_arrays": _obj(
        {"grid": _arr(_arr(_int(minimum=0, maximum=1), minItems=2, maxItems=2), minItems=2, maxItems=2)}
    ),
    "deep_nesting": _obj({"a": _obj({"b": _obj({"c": _obj({"d": {"const": "deep"}})})})}),
    "array_in_object_in_array": _arr(
        _obj({"ks": _arr({"enum": ["k1", "k2"]}, minItems=1, maxItems=1)}), minItems=2, maxItems=2
    ),
    # additionalProperties and required
    "closed_object": _obj({"only": {"type": "boolean"}}),
    "typed_additional_properties": {
        "type": "object",
        "additionalProperties": _int(minimum=3, maximum=4),
        "minProperties": 1,
        "maxProperties": 2,
    },
    "optional_properties": _obj({"must": {"const": 1}, "may": _str(maxLength=2)}, required=["must"]),
    "required_many": _obj(
        {"a": {"type": "boolean"}, "b": {"type": "null"}, "c": {"const": "c"}, "d": _int(minimum=4, maximum=4)}
    ),
    # mixes that real schemas use
    "realistic_order": _obj(
        {
            "order_id": _str(pattern="^ORD-[0-9]{4}$"),
            "status": {"enum": ["new", "paid"]},
            "items": _arr(
                _obj({"sku": _str(minLength=3, maxLength=3), "qty": _int(minimum=1, maximum=3)}), minItems=1, maxItems=2
            ),
        }
    ),
    "realistic_contact": {
        "$defs": {"phone": _str(pattern="^\\+[0-9]{2} [0-9]{3}$")},
        **_obj(
            {
                "email": _str(format="email"),
                "phones": _arr({"$ref": "#/$defs/phone"}, minItems=1, maxItems=1),
                "role": {"anyOf": [{"const": "admin"}, {"const": "guest"}]},
            }
        ),
    },
}


_SUBSCHEMA_HOLDERS = ("properties", "items", "prefixItems", "additionalProperties", "$defs")


def keywords_of(schema: Any, inner: bool = False) -> set[str]:
    """The KEYWORDS a schema uses anywhere inside it (`inner`: this schema sits inside another's value)."""
    found: set[str] = set()
    if isinstance(schema, list):
        for item in schema:
            found |= keywords_of(item, inner)
    elif isinstance(schema, dict):
        if inner and schema.get("type") in ("object", "array"):
            found.add("nested")
        for key, value in schema.items():
            if key in KEYWORDS:
                found.add(key)
            children = list(value.values()) if key in ("properties", "$defs") else [value]
            for child in children:
                found |= keywords_of(child, inner or key in _SUBSCHEMA_HOLDERS)
    return found
