"""The local GitHub fake, plus the git data and pull request endpoints a re-lock uses.

Trees, commits and branches live in memory: a tree is its base tree's id and the files
written over it, a commit its tree, parents and message. Pull requests are listed with
GitHub's filters (`head=owner:branch`, `base`, `state`) and pages.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from github_fake import FakeGitHub
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def _sha(payload: Any) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class FakeGitHubRepository(FakeGitHub):
    trees: dict[str, dict[str, Any]] = field(default_factory=dict)
    commits: dict[str, dict[str, Any]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # "refs/heads/x" -> commit sha
    pulls: list[dict[str, Any]] = field(default_factory=list)

    def files_on(self, branch: str) -> dict[str, str]:
        """The files the branch's commit wrote over its base tree."""
        commit = self.commits[self.refs[f"refs/heads/{branch}"]]
        return self.trees[commit["tree"]]["files"]

    def _app(self) -> Starlette:
        app = super()._app()
        repo = "/repos/{owner}/{name}"
        app.router.routes.extend(
            [
                Route(repo + "/git/trees", self._create_tree, methods=["POST"]),
                Route(repo + "/git/commits", self._create_commit, methods=["POST"]),
                Route(repo + "/git/matching-refs/{ref:path}", self._matching_refs),
                Route(repo + "/git/refs", self._create_ref, methods=["POST"]),
                Route(repo + "/git/refs/{ref:path}", self._update_ref, methods=["PATCH"]),
                Route(repo + "/pulls", self._list_pulls, methods=["GET"]),
                Route(repo + "/pulls", self._create_pull, methods=["POST"]),
                Route(repo + "/pulls/{number:int}", self._update_pull, methods=["PATCH"]),
            ]
        )
        return app

    async def _create_tree(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        body = await request.json()
        files = {entry["path"]: entry["content"] for entry in body["tree"]}
        tree = {"base_tree": body.get("base_tree"), "files": files}
        sha = _sha(tree)
        self.trees[sha] = tree
        return JSONResponse({"sha": sha}, status_code=201)

    async def _create_commit(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        body = await request.json()
        if body["tree"] not in self.trees:
            return JSONResponse({"message": "Tree not found"}, status_code=422)
        commit = {"tree": body["tree"], "parents": body["parents"], "message": body["message"]}
        sha = _sha(commit)
        self.commits[sha] = commit
        return JSONResponse({"sha": sha, **commit}, status_code=201)

    async def _matching_refs(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        prefix = f"refs/{request.path_params['ref']}"
        found = [{"ref": ref, "object": {"sha": sha}} for ref, sha in self.refs.items()]
        return JSONResponse([ref for ref in found if ref["ref"].startswith(prefix)])

    async def _create_ref(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        body = await request.json()
        if body["ref"] in self.refs:
            return JSONResponse({"message": "Reference already exists"}, status_code=422)
        self.refs[body["ref"]] = body["sha"]
        return JSONResponse({"ref": body["ref"], "object": {"sha": body["sha"]}}, status_code=201)

    async def _update_ref(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        ref = f"refs/{request.path_params['ref']}"
        if ref not in self.refs:
            return JSONResponse({"message": "Reference does not exist"}, status_code=422)
        self.refs[ref] = (await request.json())["sha"]
        return JSONResponse({"ref": ref, "object": {"sha": self.refs[ref]}})

    async def _list_pulls(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        query = request.query_params
        owner = self.repository.split("/")[0]
        pulls = [
            pull
            for pull in self.pulls
            if query.get("state", "open") in (pull["state"], "all")
            and query.get("base", pull["base"]["ref"]) == pull["base"]["ref"]
            and query.get("head", f"{owner}:{pull['head']['ref']}")
            == f"{owner}:{pull['head']['ref']}"
        ]
        return self._page(request, pulls)

    async def _create_pull(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        body = await request.json()
        if f"refs/heads/{body['head']}" not in self.refs:
            return JSONResponse({"message": "Validation Failed"}, status_code=422)
        number = len(self.pulls) + 1
        pull = {
            "number": number,
            "state": "open",
            "title": body["title"],
            "body": body.get("body", ""),
            "head": {"ref": body["head"]},
            "base": {"ref": body["base"]},
            "html_url": f"https://github.invalid/{self.repository}/pull/{number}",
        }
        self.pulls.append(pull)
        return JSONResponse(pull, status_code=201)

    async def _update_pull(self, request: Request) -> Response:
        if refused := self._refuse(request):
            return refused
        for pull in self.pulls:
            if pull["number"] == request.path_params["number"]:
                pull.update(await request.json())
                return JSONResponse(pull)
        return JSONResponse({"message": "Not Found"}, status_code=404)
