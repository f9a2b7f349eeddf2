"""Workspace page: data_quality (being built)."""

from __future__ import annotations

from fastapi import APIRouter

from services.notifier.entrypoints.workspace.common import WorkspaceDeps


def router(deps: WorkspaceDeps) -> APIRouter:
    """The data_quality routes."""
    return APIRouter()
