"""How each command the documentation shows is tested: the one table to extend.

Every command in a ```console, ```bash or ```sh block of README.md or docs/*.md must be
in exactly one of these, or test_doc_commands.py fails:

- QUICK: cheap commands test_doc_commands.py runs in a fresh copy of the project;
- commands addressed to SERVED_ADDRESS: run by test_served_examples.py against a served bento;
- RECIPES: whole blocks, each run in order by the test of that name in test_recipes.py;
- ELSEWHERE: run by another test (the `make` targets call the `pr2prod` subcommand the
  test runs, see the Makefile);
- NOT_HERE: cannot run in a test, with the reason.
"""

from __future__ import annotations

# Command -> a text its output must contain ("" when the exit status says it all).
QUICK: dict[str, str] = {
    "make help": "test-fast",
    "make lint": "All checks passed!",
    "dvc dag": "evaluate",
    "dvc metrics diff main": "",  # nothing differs from main in a fresh copy
    "dvc plots show": "dvc_plots/index.html",
    "git grep -n -i pr2prod": "src/pr2prod/cli.py",
}

# Where the documentation serves the bento (`make serve`'s default port).
SERVED_ADDRESS = "http://127.0.0.1:3000"

# Test in test_recipes.py -> the blocks it runs, each named by (page, its first command).
RECIPES: dict[str, list[tuple[str, str]]] = {
    "test_adapting_to_your_data": [("README.md", "dvc add data")],
    "test_filling_an_empty_remote": [("docs/dvc-remotes.md", "make data")],
    "test_s3_remote_and_local_credentials": [
        ("docs/dvc-remotes.md", "dvc remote add -d store s3://my-bucket/pr2prod"),
        ("docs/dvc-remotes.md", "dvc remote modify --local store access_key_id '<key id>'"),
    ],
    "test_renaming_everything_at_once": [("docs/renaming.md", "git mv src/pr2prod src/churn")],
    "test_switching_to_the_regression_sample_then_make_run": [
        ("docs/regression.md", "git switch -c predict-progression")
    ],
    "test_keeping_per_row_files_out_of_git": [
        (
            "docs/privacy.md",
            "sed -i 's/per_row_files: git/per_row_files: dvc/; "
            "s/raw_values: true/raw_values: false/' params.yaml",
        )
    ],
}

_PIPELINE = "tests/integration/test_pipeline.py"
_REPORT = "tests/integration/test_report.py"
_BENTO = "tests/integration/test_bento.py"
_IMAGE = "tests/integration/test_image.py"
_SMOKE_IMAGE = "test_make_smoke_image_passes_on_the_built_image"
_ROLLOUTS = "tests/integration/test_canary_rollouts.py"
_SERVED = "tests/docs/test_served_examples.py"
_MONITOR = "tests/integration/test_monitor.py"
_SWEEP = (
    "tests/integration/test_sweep.py::"
    "test_a_sweep_gives_a_repeatable_table_and_its_best_run_is_promoted"
)

# Command -> "path::function" of the test (or fixture) that runs it.
ELSEWHERE: dict[str, str] = {
    "make sweep": _SWEEP,
    "make sweep-report": _SWEEP,
    "make promote EXP=sweep-1": _SWEEP,
    "make report BASE=main": _SWEEP,
    "make run": f"{_PIPELINE}::test_make_run_on_a_fresh_clone_goes_from_data_to_a_promoted_canary",
    "make validate": f"{_REPORT}::test_failed_validation_still_gives_a_report_that_fails",
    "make report": f"{_REPORT}::test_a_hyperparameter_change_gives_every_section_and_passes",
    "make gate": f"{_REPORT}::test_a_hyperparameter_change_gives_every_section_and_passes",
    "make serve": f"{_SERVED}::test_make_serve_serves_the_bento",
    # The `built_image` fixture runs `make image`; the smoke test runs `make smoke-image`.
    "make image": f"{_IMAGE}::built_image",
    "make image IMAGE=pr2prod:dev": f"{_IMAGE}::built_image",
    "make smoke-image IMAGE=pr2prod:dev": f"{_IMAGE}::{_SMOKE_IMAGE}",
    "IMAGE_BASE=localhost/debian-python:bookworm IMAGE_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt"
    " make image IMAGE=pr2prod:dev": f"{_IMAGE}::built_image",
    # The `debian_base` fixture runs these when the base image is not there yet.
    "mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "
    "base.tar": f"{_IMAGE}::debian_base",
    "podman import --change 'CMD [\"/usr/bin/python3\"]' base.tar "
    "localhost/debian-python:bookworm": f"{_IMAGE}::debian_base",
    # The `deployment` fixture runs `pr2prod up` before the rollouts and `pr2prod down` after.
    "make up": f"{_ROLLOUTS}::deployment",
    "make down": f"{_ROLLOUTS}::deployment",
    "make deploy": f"{_ROLLOUTS}::test_a_good_canary_is_promoted_with_no_client_errors",
    "make deploy-status": f"{_ROLLOUTS}::test_manual_rollback_returns_to_an_earlier_good_release",
    "make rollback": f"{_ROLLOUTS}::test_manual_rollback_returns_to_an_earlier_good_release",
    # `make monitor` runs `pr2prod monitor --prometheus ... --since ... --selector ...`.
    "PROMETHEUS_URL=http://prometheus.monitoring:9090 make monitor SINCE=6h "
    "SELECTOR='job=\"pr2prod\"'": f"{_MONITOR}::"
    "test_clean_traffic_then_a_shift_read_from_the_service_and_from_prometheus",
    "make monitor-demo": f"{_MONITOR}::"
    "test_the_demo_alarms_only_on_the_shifted_feature_and_stops_its_service",
    # `make alert-rules` runs `pr2prod alert-rules --selector ... --window ...`.
    "make alert-rules SELECTOR='job=\"pr2prod\"' WINDOW=1h": f"{_MONITOR}::"
    "test_alert_rules_for_the_built_model_pass_promtool",
    "make retrain-pr LABELLED=labelled.csv": "tests/integration/test_retrain_pr.py::"
    "test_labelled_rows_become_one_retraining_pull_request",
}

_CLUSTER = "needs a Kubernetes cluster; tests/integration/test_kubernetes.py renders the manifests"
_GITHUB = "changes a repository on GitHub"

_FIXED_PORT = (
    "takes the fixed port 3000 and a fixed container name, which a test cannot count on; "
    "`make smoke-image`, which tests/integration/test_image.py runs, does the same on a free port"
)

# Command -> why no test runs it.
NOT_HERE: dict[str, str] = {
    "podman run --detach --name pr2prod --publish 127.0.0.1:3000:3000 pr2prod:dev": _FIXED_PORT,
    "podman rm --force pr2prod": _FIXED_PORT,
    "make test": "the whole suite, this test included; CI runs it (.ci/run)",
    ".venv/bin/pytest -m integration -k remotes": "runs tests of this suite",
    "kubectl apply -k deploy/k8s/overlays/gateway -n pr2prod": _CLUSTER,
    "kubectl create secret docker-registry ghcr-pull -n pr2prod --docker-server=ghcr.io "
    "--docker-username=<github user> --docker-password=<token>": _CLUSTER,
    "DEPLOY_TARGET=kubernetes PROMETHEUS_URL=http://prometheus.monitoring:9090 make deploy "
    "RELEASE=ghcr.io/<owner>/<repo>/pr2prod@sha256:<digest>": _CLUSTER
    + " and checks the kubectl target's commands against a recording kubectl",
    "gh variable set PROMETHEUS_URL --body http://prometheus.monitoring:9090": _GITHUB,
    "gh variable set PRODUCTION_URL --body https://model.example.com": _GITHUB,
    "gh secret set KUBE_CONFIG --env production < kubeconfig.yaml": _GITHUB,
    "gh variable set DEPLOY_TARGET --body kubernetes": _GITHUB,
    "gh workflow run rollback.yml --ref main "
    "-f version=ghcr.io/<owner>/<repo>/pr2prod@sha256:<digest>": _GITHUB,
    "gh release download v0.20.6 --repo iterative/cml --pattern cml-linux-x64 "
    "--output cml-linux-x64": "downloads a release from GitHub, which is not reachable here",
    "gh variable set PR2PROD_CML_SHA256 --body \"$(sha256sum cml-linux-x64 | cut -d ' ' -f 1)\"": (
        _GITHUB
    ),
}
