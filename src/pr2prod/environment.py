"""Every environment variable pr2prod reads: its name, its default and what it does.

This is the one module that reads os.environ by name (child processes are still handed
the whole environment). An unset or empty variable takes its default; an empty default
means "not set: the feature is off". Standard library only: the model service imports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    purpose: str

    def value(self) -> str:
        """The variable's value, or its default when it is unset or empty."""
        # Empty counts as unset: CI passes unset repository variables as empty strings.
        return os.environ.get(self.name) or self.default


# Deployment
DEPLOY_TARGET = Variable(
    "DEPLOY_TARGET",
    "local",
    "where `deploy`, `rollback`, `abort` and `deploy-status` act: `local` (processes on "
    "this machine behind a local router) or `kubernetes`",
)
KUBE_NAMESPACE = Variable(
    "KUBE_NAMESPACE", "pr2prod", "the Kubernetes namespace of the deployment (kubernetes target)"
)
KUBE_CONTEXT = Variable(
    "KUBE_CONTEXT", "", "the kubectl context to use (kubernetes target); unset: kubectl's current"
)
PR2PROD_ENTRY_URL = Variable(
    "PR2PROD_ENTRY_URL",
    "",
    "the address clients reach the service at, the Gateway serving the HTTPRoute (kubernetes "
    "target); synthetic load is sent there",
)
PROMETHEUS_URL = Variable(
    "PROMETHEUS_URL",
    "",
    "read the canary analysis's metrics from this Prometheus instead of each version's "
    "/metrics; the kubernetes target needs it",
)
PR2PROD_ROUTER_TOKEN = Variable(
    "PR2PROD_ROUTER_TOKEN",
    "",
    "the local router's admin API token; `make up` makes a new one for each router it starts "
    "and keeps it in the local state file, readable by its owner only",
)
BENTOML_HOME = Variable(
    "BENTOML_HOME",
    "~/bentoml",
    "BentoML's own store of models and bentos; the local target takes bentos from it",
)

# The pull-request report and the image (GitHub Actions sets the GITHUB_ ones)
GITHUB_BASE_REF = Variable(
    "GITHUB_BASE_REF", "", "a pull request's base branch: the report compares with it"
)
PR2PROD_HEAD_SHA = Variable(
    "PR2PROD_HEAD_SHA",
    "",
    "the commit the report names as the pull request's (CI checks out a merge commit); unset: HEAD",
)
GITHUB_SERVER_URL = Variable(
    "GITHUB_SERVER_URL",
    "https://github.com",
    "the GitHub server, for the report's link to its CI run and the image's source label",
)
GITHUB_REPOSITORY = Variable(
    "GITHUB_REPOSITORY",
    "",
    "owner/name of the repository: the report links to its CI run, the image is labelled "
    "with its source; unset: neither",
)
GITHUB_RUN_ID = Variable("GITHUB_RUN_ID", "", "the CI run the report links to")
GITHUB_API_URL = Variable(
    "GITHUB_API_URL",
    "https://api.github.com",
    "GitHub's REST API, for the subcommands that post the PR comment or read earlier runs",
)
GITHUB_TOKEN = Variable(
    "GITHUB_TOKEN",
    "",
    "the token those subcommands call GitHub's REST API with; CI passes the job's token",
)

# The image
IMAGE_BUILDER = Variable(
    "IMAGE_BUILDER",
    "auto",
    "what builds `make image`: `docker`, `podman`, or `auto` (Docker if its daemon answers, "
    "else Podman)",
)
IMAGE_BASE = Variable(
    "IMAGE_BASE",
    "",
    "the base image of `make image`; unset: the bentofile's `docker.base_image`, else the "
    "slim Python image of its `docker.python_version`",
)
IMAGE_CA_BUNDLE = Variable(
    "IMAGE_CA_BUNDLE",
    "",
    "a CA bundle (PEM) that `make image` trusts while it installs the requirements, for a "
    "TLS-intercepting proxy; a build secret, never in the image",
)

# Serving
PR2PROD_MODEL_TAG = Variable(
    "PR2PROD_MODEL_TAG",
    "",
    "the model to serve when the service runs from source without `--arg model_tag=...` "
    "(a built bento records its model itself)",
)
PR2PROD_FEEDBACK_LOG = Variable(
    "PR2PROD_FEEDBACK_LOG",
    "",
    "a folder where the service appends the true labels POST /feedback accepts, as JSON "
    "lines synced to disk before it answers; unset: labels are only counted",
)

VARIABLES = (
    DEPLOY_TARGET,
    KUBE_NAMESPACE,
    KUBE_CONTEXT,
    PR2PROD_ENTRY_URL,
    PROMETHEUS_URL,
    PR2PROD_ROUTER_TOKEN,
    BENTOML_HOME,
    GITHUB_BASE_REF,
    PR2PROD_HEAD_SHA,
    GITHUB_SERVER_URL,
    GITHUB_REPOSITORY,
    GITHUB_RUN_ID,
    GITHUB_API_URL,
    GITHUB_TOKEN,
    IMAGE_BUILDER,
    IMAGE_BASE,
    IMAGE_CA_BUNDLE,
    PR2PROD_MODEL_TAG,
    PR2PROD_FEEDBACK_LOG,
)


def markdown_table() -> str:
    """The variables as a markdown table, for the documentation."""
    rows = [
        f"| `{variable.name}` | {f'`{variable.default}`' if variable.default else '(unset)'} "
        f"| {variable.purpose} |"
        for variable in VARIABLES
    ]
    return "\n".join(["| variable | default | what it does |", "|---|---|---|", *rows]) + "\n"
