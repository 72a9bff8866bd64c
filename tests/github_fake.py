"""A local stand-in for the few GitHub REST endpoints pr2prod calls, served over real HTTP.

It keeps PR comments, pull requests' heads, workflow runs and their artifacts in memory,
pages listings the way GitHub does (`per_page`, default 30, and a `Link: <...>; rel="next"`
header) and answers an artifact's archive with a redirect, as GitHub does. Tests seed it,
point the code at `.url` (GITHUB_API_URL) and read back what was posted.
"""

from __future__ import annotations

import io
import itertools
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from pr2prod.ports import free_port

DEFAULT_PAGE_SIZE = 30
MAX_PAGE_SIZE = 100


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]


@dataclass
class FakeGitHub:
    """Use as a context manager: the server runs while the block does."""

    repository: str = "octo/pr2prod"
    token: str = "test-token"
    bot_login: str = "github-actions[bot]"
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    artifacts: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # name -> head commit
    # The default branch's history, oldest first: what `compare` answers from.
    main_commits: list[str] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    url: str = ""
    _archives: dict[int, bytes] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1001))

    # Seeding -------------------------------------------------------------------------

    def add_comment(self, pr: int, body: str, author: str = "someone") -> dict[str, Any]:
        comment_id = next(self._ids)
        comment = {
            "id": comment_id,
            "body": body,
            "user": {"login": author, "type": "Bot" if author.endswith("[bot]") else "User"},
            "html_url": f"https://github.invalid/{self.repository}/pull/{pr}#issuecomment-"
            f"{comment_id}",
        }
        self.comments.setdefault(pr, []).append(comment)
        return comment

    def add_pull(self, number: int, head_sha: str) -> dict[str, Any]:
        """An open pull request whose branch is at `head_sha`."""
        self.pulls[number] = {"number": number, "state": "open", "head": {"sha": head_sha}}
        return self.pulls[number]

    def add_run(
        self,
        workflow: str,
        *,
        branch: str = "main",
        event: str = "push",
        conclusion: str = "success",
        head_sha: str | None = None,
        artifacts: dict[str, Path] | None = None,
        expired: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """A completed run of `workflow` (its file name), newest first in listings, with
        artifacts zipped from the given directories."""
        run_id = next(self._ids)
        if head_sha is None:  # a new commit: on main's history when the run is main's
            head_sha = f"{run_id:040x}"
            if branch == "main":
                self.main_commits.append(head_sha)
        run = {
            "id": run_id,
            "path": f".github/workflows/{workflow}",
            "head_branch": branch,
            "head_sha": head_sha,
            "event": event,
            "status": "completed",
            "conclusion": conclusion,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.runs.insert(0, run)
        for name, directory in (artifacts or {}).items():
            artifact_id = next(self._ids)
            self._archives[artifact_id] = _zip(directory)
            self.artifacts.setdefault(run_id, []).append(
                {
                    "id": artifact_id,
                    "name": name,
                    "expired": name in expired,
                    "size_in_bytes": len(self._archives[artifact_id]),
                    "archive_download_url": f"{self.url}/repos/{self.repository}/actions/"
                    f"artifacts/{artifact_id}/zip",
                    "workflow_run": {"id": run_id, "head_branch": branch, "head_sha": head_sha},
                }
            )
        return run

    def posted(self, pr: int, author: str | None = None) -> list[dict[str, Any]]:
        """The PR's comments, by one author when given."""
        return [c for c in self.comments.get(pr, []) if author in (None, c["user"]["login"])]

    # Serving -------------------------------------------------------------------------

    def __enter__(self) -> FakeGitHub:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(self._app(), host="127.0.0.1", port=port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake GitHub API did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def _app(self) -> Starlette:
        repo = "/repos/{owner}/{name}"
        return Starlette(
            routes=[
                Route(repo + "/issues/{pr:int}/comments", self._list_comments, methods=["GET"]),
                Route(repo + "/issues/{pr:int}/comments", self._create_comment, methods=["POST"]),
                Route(repo + "/issues/comments/{id:int}", self._update_comment, methods=["PATCH"]),
                Route(repo + "/pulls/{pr:int}", self._get_pull),
                Route(repo + "/actions/workflows/{workflow}/runs", self._list_runs),
                Route(repo + "/actions/runs/{id:int}/artifacts", self._list_artifacts),
                Route(repo + "/actions/artifacts/{id:int}/zip", self._artifact_zip),
                Route(repo + "/branches/{branch}", self._branch),
                Route(repo + "/compare/{base}...{head}", self._compare),
                Route("/blobs/{id:int}", self._blob),
            ]
        )

    def _refuse(self, request: Request) -> Response | None:
        self.calls.append(Call(request.method, request.url.path, dict(request.query_params)))
        owner, name = request.path_params.get("owner"), request.path_params.get("name")
        if owner is not None and f"{owner}/{name}" != self.repository:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        return None

    def _page(self, request: Request, items: list[Any], wrap: str | None = None) -> Response:
        size = min(int(request.query_params.get("per_page", DEFAULT_PAGE_SIZE)), MAX_PAGE_SIZE)
        page = int(request.query_params.get("page", 1))
        chunk = items[(page - 1) * size : page * size]
        headers = {}
        if page * size < len(items):
            query = {**request.query_params, "per_page": str(size), "page": str(page + 1)}
            following = request.url.replace_query_params(**query)
            headers["Link"] = f'<{following}>; rel="next"'
        body: Any = {"total_count": len(items), wrap: chunk} if wrap else chunk
        return JSONResponse(body, headers=headers)

    async def _list_comments(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        return self._page(request, self.comments.get(request.path_params["pr"], []))

    async def _create_comment(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        body = (await request.json())["body"]
        comment = self.add_comment(request.path_params["pr"], body, author=self.bot_login)
        return JSONResponse(comment, status_code=201)

    async def _update_comment(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        for comment in itertools.chain.from_iterable(self.comments.values()):
            if comment["id"] == request.path_params["id"]:
                comment["body"] = (await request.json())["body"]
                return JSONResponse(comment)
        return JSONResponse({"message": "Not Found"}, status_code=404)

    async def _get_pull(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        pull = self.pulls.get(request.path_params["pr"])
        return JSONResponse(pull) if pull else JSONResponse({"message": "Not Found"}, 404)

    async def _list_runs(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        workflow, query = request.path_params["workflow"], request.query_params
        runs = [
            run
            for run in self.runs
            if run["path"].endswith(f"/{workflow}")
            and query.get("branch", run["head_branch"]) == run["head_branch"]
            and query.get("event", run["event"]) == run["event"]
            and query.get("status", run["conclusion"]) in (run["conclusion"], run["status"])
        ]
        return self._page(request, runs, wrap="workflow_runs")

    async def _list_artifacts(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        return self._page(request, self.artifacts.get(request.path_params["id"], []), "artifacts")

    async def _artifact_zip(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        artifact_id = request.path_params["id"]
        if artifact_id not in self._archives:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        # GitHub answers with a short-lived address elsewhere, which needs no token.
        return RedirectResponse(f"{self.url}/blobs/{artifact_id}", status_code=302)

    async def _branch(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        name = request.path_params["branch"]
        if name not in self.branches:
            return JSONResponse({"message": "Branch not found"}, status_code=404)
        return JSONResponse({"name": name, "commit": {"sha": self.branches[name]}})

    async def _compare(self, request: Request) -> Response:
        """Where `head` stands relative to `base` (only commits of main are known)."""
        if refused := self._refuse(request):
            return refused
        base, head = request.path_params["base"], request.path_params["head"]
        known = {sha: index for index, sha in enumerate(self.main_commits)}
        if base not in known or head not in known:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        order = (known[head] > known[base]) - (known[head] < known[base])
        status = {1: "ahead", 0: "identical", -1: "behind"}[order]
        return JSONResponse({"status": status, "ahead_by": max(known[head] - known[base], 0)})

    async def _blob(self, request: Request) -> Response:
        self.calls.append(Call(request.method, request.url.path, {}))
        return Response(self._archives[request.path_params["id"]], media_type="application/zip")


def _zip(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in sorted(directory.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(directory).as_posix())
    return buffer.getvalue()
