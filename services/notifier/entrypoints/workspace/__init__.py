"""The investigators' workspace: signed-in, site-scoped pages over the notifier's
projections and the audit log (never the broker).

Each page is its own module with a ``router(deps)``; this module puts them together under
``/workspace`` with the static files and the sign-in redirect.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from services.notifier.entrypoints.workspace import (
    account,
    assessment,
    audit_trail,
    data_quality,
    edish,
    inbox,
    signal_page,
    subject_page,
)
from services.notifier.entrypoints.workspace.common import (
    PREFIX,
    NotInScope,
    SignInRequired,
    WorkspaceDeps,
    not_found_page,
    sign_in_url,
)

PAGES = (account, inbox, signal_page, subject_page, edish, assessment, data_quality, audit_trail)


def install_workspace(app: FastAPI, deps: WorkspaceDeps) -> None:
    """Every workspace route, its static files, and the redirect to sign in."""
    router = APIRouter(prefix=PREFIX)
    for page in PAGES:
        router.include_router(page.router(deps))
    app.include_router(router)
    static = resources.files("services.notifier").joinpath("static")
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(static)), name="workspace-static")

    @app.exception_handler(NotInScope)
    async def _not_found(request: Request, error: NotInScope) -> Response:
        return not_found_page(error.session)

    @app.exception_handler(SignInRequired)
    async def _sign_in_first(request: Request, error: SignInRequired) -> Response:
        return RedirectResponse(sign_in_url(error.next_url), status_code=303)
