"""Custom field mappings a template can name (`field_mapping.callable`), as the seed's
`custom_field_mapping` example does. Deployments add their own in a `coze_mappings` module."""

from __future__ import annotations

from typing import Any


def customer_name_code(record: dict[str, Any]) -> dict[str, Any]:
    """The seed's example: send a customer as {name, code}."""
    mapped: dict[str, Any] = {}
    if "customer_name" in record:
        mapped["name"] = record["customer_name"]
    if "customer_code" in record:
        mapped["code"] = record["customer_code"]
    return mapped
