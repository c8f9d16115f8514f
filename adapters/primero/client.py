"""Thin httpx client for the Primero v2 API (the I/O half of the Primero adapter).

Auth: HTTP Basic for a service account (v2.11+, skips the CSRF check) or a bearer
token from the instance's identity provider. Lists are paginated with `page`/`per`
(`per` is capped at 1000 by Primero itself, so we never ask for more) and read
incrementally with a `last_updated_at=<cursor>..` range. Errors carry the HTTP status
and the API path only: Primero error bodies can name fields and values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

__all__ = ["PrimeroClient", "PrimeroError", "check_mapping_against_lookups"]

MAX_PER = 1000


class PrimeroError(Exception):
    def __init__(self, status: int, method: str, path: str) -> None:
        super().__init__(f"Primero {method} {path} -> HTTP {status}")
        self.status = status
        self.path = path


class PrimeroClient:
    def __init__(self, base_url: str, *, username: str | None = None,
                 password: str | None = None, token: str | None = None,
                 per: int = MAX_PER, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if (username is None) == (token is None):
            raise ValueError("give either username+password (Basic) or a bearer token")
        auth = httpx.BasicAuth(username, password or "") if username is not None else None
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.per = max(1, min(per, MAX_PER))
        self._http = httpx.Client(base_url=base_url.rstrip("/"), auth=auth, headers=headers,
                                  timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PrimeroClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        resp = self._http.request(method, path, **kw)
        if resp.status_code >= 400:
            raise PrimeroError(resp.status_code, method, path)
        if resp.status_code == 204 or not resp.content:
            return {}
        return resp.json()

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            body = self._call("GET", path, params={**params, "page": page, "per": self.per})
            data = body.get("data") or []
            yield from data
            total = (body.get("metadata") or {}).get("total")
            if not data or (total is not None and page * self.per >= int(total)) \
                    or len(data) < self.per:
                return
            page += 1

    # cases ----------------------------------------------------------------------------------
    def iter_cases(self, updated_since: str | None = None) -> Iterator[dict[str, Any]]:
        """Cases in ascending last_updated_at order, from `updated_since` (inclusive)."""
        params: dict[str, Any] = {"order_by": "last_updated_at", "order": "asc"}
        if updated_since:
            params["last_updated_at"] = f"{updated_since}.."
        return self._pages("/api/v2/cases", params)

    def find_cases(self, field: str, value: str) -> list[dict[str, Any]]:
        return list(self._pages("/api/v2/cases", {field: value}))

    def get_case(self, case_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/api/v2/cases/{case_id}")["data"])

    def create_case(self, data: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "/api/v2/cases", json={"data": data}).get("data") or {})

    def update_case(self, case_id: str, data: dict[str, Any]) -> dict[str, Any]:
        body = self._call("PATCH", f"/api/v2/cases/{case_id}", json={"data": data})
        return dict(body.get("data") or {})

    # referrals ------------------------------------------------------------------------------
    def referrals(self, case_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/api/v2/cases/{case_id}/referrals").get("data") or [])

    def create_referral(self, case_id: str, data: dict[str, Any]) -> dict[str, Any]:
        body = self._call("POST", f"/api/v2/cases/{case_id}/referrals", json={"data": data})
        return dict(body.get("data") or {})

    def update_referral(self, case_id: str, referral_id: str,
                        body: dict[str, Any]) -> dict[str, Any]:
        out = self._call("PATCH", f"/api/v2/cases/{case_id}/referrals/{referral_id}", json=body)
        return dict(out.get("data") or {})

    # lookups --------------------------------------------------------------------------------
    def lookups(self) -> list[dict[str, Any]]:
        return list(self._pages("/api/v2/lookups", {}))


#: mapping option table -> the Primero lookup that holds its ids
_LOOKUP_OF = {
    "sex": "lookup-gender",
    "service_type": "lookup-service-type",
    "protection_concerns": "lookup-protection-concerns",
    "risk_level": "lookup-risk-level",
}


def check_mapping_against_lookups(mapping: Any,
                                  lookups: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(errors, warnings): mapped ids the instance does not have; instance ids not mapped.

    Why at run time: lookups change when an administrator edits the instance; an id that
    disappeared means the mapping is stale, and a new id would otherwise be refused record
    by record without anyone knowing why.
    """
    by_id = {lk.get("unique_id"): {v.get("id") for v in lk.get("values") or []} for lk in lookups}
    errors: list[str] = []
    warnings: list[str] = []
    for table, lookup in _LOOKUP_OF.items():
        ids = by_id.get(lookup)
        if ids is None:
            warnings.append(f"instance has no {lookup}: options.{table} not checked")
            continue
        mapped = set(getattr(mapping.options, table))
        for k in sorted(mapped - ids):
            errors.append(f"options.{table}: {k!r} is not an option of {lookup} on this instance")
        for k in sorted(ids - mapped):
            warnings.append(f"options.{table}: instance option {k!r} of {lookup} is not mapped "
                            "(records using it will be refused)")
    return errors, warnings
