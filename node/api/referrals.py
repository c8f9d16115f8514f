"""Referrals: what a partner's case system or staff create, receive and answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field

from common.problems import ProblemHTTPException
from node.api.deps import AuthDep, NodeDep
from node.runtime import NotFound

router = APIRouter(prefix="/api/v1/referrals", tags=["referrals"])


class CreateReferral(BaseModel):
    to: str = Field(description="Recipient node id (see GET /api/v1/directory)")
    referral: dict[str, Any] = Field(description="Referral document v1 (protocol/documents.py)")


class StatusRequest(BaseModel):
    status: Literal["accepted", "declined", "in_progress", "completed", "cancelled"]
    note: str | None = Field(default=None, max_length=2000)
    reason_code: str | None = Field(default=None, max_length=64)


class WithdrawRequest(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


def _not_found(referral_id: str) -> ProblemHTTPException:
    return ProblemHTTPException(404, "not_found", "No referral with this id on this node")


@router.post("", status_code=202, summary="Send a referral (queued; delivered by the outbox)")
async def create_referral(body: CreateReferral, node: NodeDep, _key: AuthDep) -> dict[str, Any]:
    return await node.create_referral_async(body.to, body.referral)


@router.get("", summary="List referrals")
def list_referrals(
    node: NodeDep,
    _key: AuthDep,
    direction: Literal["inbound", "outbound"] | None = None,
    status: str | None = Query(default=None, description="one status or a comma-separated list"),
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
) -> dict[str, Any]:
    items = node.list_referrals(direction=direction, status=status, limit=limit, offset=offset)
    return {"items": items, "limit": limit, "offset": offset}


@router.get("/{referral_id}", summary="One referral with its document and history")
def get_referral(referral_id: str, node: NodeDep, _key: AuthDep) -> dict[str, Any]:
    try:
        return node.referral_detail(referral_id)
    except NotFound:
        raise _not_found(referral_id) from None


@router.post("/{referral_id}/status", summary="Move the referral through its lifecycle")
def change_status(referral_id: str, body: StatusRequest, node: NodeDep,
                  _key: AuthDep) -> dict[str, Any]:
    try:
        return node.change_status(referral_id, body.status, body.note, body.reason_code)
    except NotFound:
        raise _not_found(referral_id) from None


@router.post("/{referral_id}/withdraw-consent", status_code=202,
             summary="The person withdrew consent: restrict here and tell the other side")
def withdraw_consent(referral_id: str, node: NodeDep, _key: AuthDep,
                     body: Annotated[WithdrawRequest | None, Body()] = None) -> dict[str, Any]:
    try:
        return node.withdraw_consent(referral_id, body.note if body else None)
    except NotFound:
        raise _not_found(referral_id) from None
