"""A small client for GitHub's REST API: the calls pr2prod's subcommands make from CI.

httpx does the HTTP; this adds what every call needs: the repository's path, the token,
the API version header, pages followed through `Link` headers, and errors that say which
permission the workflow's token is probably missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from pr2prod import environment
from pr2prod.errors import Pr2prodError

API_VERSION = "2022-11-28"
# GitHub's largest page: fewer round trips on a PR with hundreds of comments.
PAGE_SIZE = 100
TIMEOUT_SECONDS = 30.0


class GitHub:
    """Calls on one repository; paths are relative to /repos/{owner}/{name}/."""

    def __init__(
        self,
        repository: str,
        token: str | None,
        api_url: str = environment.GITHUB_API_URL.default,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if repository.count("/") != 1:
            raise Pr2prodError(
                f"{repository!r} is not a repository name",
                hint="set GITHUB_REPOSITORY to owner/name (GitHub Actions sets it)",
            )
        self.repository = repository
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            base_url=f"{api_url.rstrip('/')}/repos/{repository}/",
            headers=headers,
            timeout=TIMEOUT_SECONDS,
            follow_redirects=True,
            transport=transport,
        )

    @classmethod
    def from_environment(cls) -> GitHub:
        """The repository, token and API that GitHub Actions describes in the environment."""
        repository = environment.GITHUB_REPOSITORY.value()
        if not repository:
            raise Pr2prodError(
                "GITHUB_REPOSITORY is not set",
                hint="run this in GitHub Actions, or set GITHUB_REPOSITORY=owner/name and "
                "GITHUB_TOKEN",
            )
        return cls(repository, environment.GITHUB_TOKEN.value(), environment.GITHUB_API_URL.value())

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> GitHub:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params=params).json()

    def post(self, path: str, json: dict[str, Any]) -> Any:
        return self._send("POST", path, json=json).json()

    def patch(self, path: str, json: dict[str, Any]) -> Any:
        return self._send("PATCH", path, json=json).json()

    def paginate(self, path: str, key: str | None = None, **params: Any) -> Iterator[Any]:
        """Every item of a listing, page after page (`key`: the list inside a wrapper object,
        such as "workflow_runs" or "artifacts")."""
        response = self._send("GET", path, params={"per_page": PAGE_SIZE, **params})
        while True:
            body = response.json()
            yield from body[key] if key else body
            following = response.links.get("next", {}).get("url")
            if not following:
                return
            # The next page's address is absolute and carries its own query.
            response = self._send("GET", following)

    def download(self, path: str, destination: Path) -> Path:
        """Save what `path` answers (artifact archives answer with a redirect) to a file."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        with self._client.stream("GET", path) as response:
            self._check(response, "GET", path)
            with destination.open("wb") as file:
                for chunk in response.iter_bytes():
                    file.write(chunk)
        return destination

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise Pr2prodError(
                f"GitHub's API did not answer {method} {path}: {error}",
                hint="check the network and GITHUB_API_URL",
            ) from error
        self._check(response, method, path)
        return response

    def _check(self, response: httpx.Response, method: str, path: str) -> None:
        if response.is_success:
            return
        response.read()  # a streamed response's body, for the message below
        hint = {
            401: "the token is missing or expired: pass GITHUB_TOKEN",
            403: "the token lacks a permission this call needs (see the workflow's "
            "`permissions:` and docs/github-setup.md)",
            404: "the repository, pull request or run does not exist, or the token cannot see it",
        }.get(response.status_code, "")
        raise Pr2prodError(
            f"GitHub answered {response.status_code} to {method} {path}: {_message(response)}",
            hint=hint,
        )


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", response.text[:200]))
    except ValueError:
        return response.text[:200]
