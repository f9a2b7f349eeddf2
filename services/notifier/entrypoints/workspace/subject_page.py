"""Workspace page: subject_page (being built)."""

from __future__ import annotations

from fastapi import APIRouter

from services.notifier.entrypoints.workspace.common import WorkspaceDeps


def router(deps: WorkspaceDeps) -> APIRouter:
    """The subject_page routes."""
    return APIRouter()
