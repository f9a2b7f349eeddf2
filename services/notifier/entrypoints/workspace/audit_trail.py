"""Workspace page: audit_trail (being built)."""

from __future__ import annotations

from fastapi import APIRouter

from services.notifier.entrypoints.workspace.common import WorkspaceDeps


def router(deps: WorkspaceDeps) -> APIRouter:
    """The audit_trail routes."""
    return APIRouter()
