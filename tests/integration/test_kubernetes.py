"""deploy/k8s and the Kubernetes target, without a cluster.

The manifests are rendered with `kubectl kustomize`, validated offline with
`kubernetes-validate --strict` and checked for the security, probe and resource rules.
KubernetesTarget runs against a recording kubectl double (tests/fixtures/kubectl/) whose
state starts as the rendered gateway overlay, and the exact kubectl commands of a
rollout, a rollback and a manual rollback are checked.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FIXTURES, REPO_ROOT, assert_refused_for_another_release, system_program

from pr2prod.deploy.history import Decision, History
from pr2prod.deploy.kubernetes import HTTPROUTE, KubernetesTarget, release_annotations
from pr2prod.deploy.target import Deployed
from pr2prod.errors import Pr2prodError

pytestmark = pytest.mark.integration

K8S = REPO_ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = [
    "base",
    "overlays/stable",
    "overlays/canary",
    "overlays/gateway",
    "overlays/no-gateway",
]
DEPLOYABLE = ["overlays/gateway", "overlays/no-gateway"]  # what a cluster gets applied
KUBERNETES_VERSION = "1.32.0"  # the kubectl client here; the schemas of that release
BENTOML_UID = 1034  # the `bentoml` user of BentoML's generated Dockerfile
TRACK = "pr2prod/track"
PLACEHOLDER_IMAGE = "ghcr.io/owner/repo/pr2prod:set-me"


def tool(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: {why}")
    return path


def kubectl() -> str:
    # The Kubernetes client renders the manifests (kubectl kustomize).
    return system_program("kubectl", "install it as kubernetes.io/docs/tasks/tools/ says")


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    """`kubectl kustomize` output of every kustomization, by directory."""
    outputs = {}
    for directory in KUSTOMIZATIONS:
        result = subprocess.run(
            [kubectl(), "kustomize", str(K8S / directory)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"kubectl kustomize {directory}:\n{result.stderr}"
        outputs[directory] = result.stdout
    return outputs


def objects(text: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(text) if document]


def of_kind(text: str, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects(text) if o["kind"] == kind}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# -- (a) rendering and (b) offline schema validation -------------------------------------------


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_every_kustomization_renders(rendered: dict[str, str], directory: str) -> None:
    kinds = sorted({o["kind"] for o in objects(rendered[directory])})
    expected = {
        "base": ["Deployment", "PodDisruptionBudget", "Service"],
        "overlays/stable": ["Deployment", "PodDisruptionBudget", "Service"],
        "overlays/canary": ["Deployment", "PodDisruptionBudget", "Service"],
        "overlays/gateway": ["Deployment", "HTTPRoute", "PodDisruptionBudget", "Service"],
        "overlays/no-gateway": ["Deployment", "PodDisruptionBudget", "Service"],
    }
    assert kinds == expected[directory]


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_rendered_manifests_pass_strict_schema_validation(
    rendered: dict[str, str], directory: str, tmp_path: Path
) -> None:
    validate = tool(
        "kubernetes-validate",
        "it is a dev dependency of pr2prod (make venv installs it); "
        "or `pip install kubernetes-validate`",
    )
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(rendered[directory])
    result = subprocess.run(
        [validate, "--strict", "--kubernetes-version", KUBERNETES_VERSION, str(manifest)],
        capture_output=True,
        text=True,
        check=False,
    )
    output = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 0, "\n".join(output)
    assert not [line for line in output if line.startswith("ERROR")], "\n".join(output)
    # The only thing it may not know is the Gateway API's HTTPRoute (a CRD): a warning.
    warnings = [line for line in output if line.startswith("WARN")]
    assert all("kind HTTPRoute" in line for line in warnings), "\n".join(warnings)
    # Every core object was really checked, not skipped.
    core = [o for o in objects(rendered[directory]) if o["kind"] != "HTTPRoute"]
    passed = [line for line in output if line.startswith("INFO") and " passed " in line]
    assert len(passed) == len(core), "\n".join(output)


# -- (c) what the rendered objects must say ---------------------------------------------------


@pytest.mark.parametrize("directory", DEPLOYABLE)
def test_pods_run_locked_down(rendered: dict[str, str], directory: str) -> None:
    for name, deployment in of_kind(rendered[directory], "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == BENTOML_UID, name
        assert pod["securityContext"]["runAsGroup"] == BENTOML_UID, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["imagePullSecrets"] == [{"name": "ghcr-pull"}], "a private GHCR image pulls"
        (container,) = pod["containers"]
        assert container["name"] == "pr2prod", "KubernetesTarget sets the image of `pr2prod`"
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        assert "add" not in security["capabilities"], name

        # With a read-only root, everything BentoML writes must be an emptyDir:
        # BENTOML_HOME (stores, prometheus_multiproc_dir) and the temporary directory.
        env = {item["name"]: item["value"] for item in container["env"]}
        empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        for path in (env["BENTOML_HOME"], env["TMPDIR"], "/tmp"):
            assert mounts.get(path) in empty_dirs, f"{name}: {path} is not a writable emptyDir"
        # ... and not the image's BENTOML_HOME, the parent of the bento itself.
        assert not any(p in ("/home/bentoml", "/home/bentoml/") for p in mounts), name
        assert all(v["emptyDir"].get("sizeLimit") for v in pod["volumes"] if "emptyDir" in v)


@pytest.mark.parametrize("directory", DEPLOYABLE)
def test_probes_resources_and_draining(rendered: dict[str, str], directory: str) -> None:
    for name, deployment in of_kind(rendered[directory], "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        port = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert port == {"http": 3000}, name
        probes = {
            kind: (container[kind]["httpGet"]["path"], container[kind]["httpGet"]["port"])
            for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        assert probes == {
            "startupProbe": ("/livez", "http"),
            "livenessProbe": ("/livez", "http"),
            "readinessProbe": ("/readyz", "http"),
        }, name
        readiness = container["readinessProbe"]
        assert 0 < readiness["initialDelaySeconds"] <= 30, name
        assert 0 < readiness["periodSeconds"] <= 10, name
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, name

        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) == {"cpu", "memory"}, (name, bound)

        # preStop sleeps so the endpoint is gone before SIGTERM; the grace period covers it.
        command = container["lifecycle"]["preStop"]["exec"]["command"]
        assert command[0] == "sleep", name
        drain = int(command[1])
        assert 5 <= drain < pod["terminationGracePeriodSeconds"], name

        strategy = deployment["spec"]["strategy"]["rollingUpdate"]
        assert strategy["maxUnavailable"] == 0, name
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == "3000", name
        assert annotations["prometheus.io/path"] == "/metrics", name


@pytest.mark.parametrize("directory", DEPLOYABLE)
def test_tracks_are_labelled_and_each_service_and_budget_selects_its_own(
    rendered: dict[str, str], directory: str
) -> None:
    text = rendered[directory]
    deployments = of_kind(text, "Deployment")
    assert set(deployments) == {"pr2prod-stable", "pr2prod-canary"}
    pods = {}
    for name, deployment in deployments.items():
        track = name.removeprefix("pr2prod-")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "pr2prod"
        assert labels[TRACK] == track
        assert deployment["spec"]["selector"]["matchLabels"][TRACK] == track
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == PLACEHOLDER_IMAGE, "both tracks start from the overlay's image"
        pods[track] = labels
    assert deployments["pr2prod-canary"]["spec"]["replicas"] == 0, "no canary between rollouts"
    assert deployments["pr2prod-stable"]["spec"]["replicas"] >= 2

    services = of_kind(text, "Service")
    budgets = of_kind(text, "PodDisruptionBudget")
    for track in ("stable", "canary"):
        for selector in (
            services[f"pr2prod-{track}"]["spec"]["selector"],
            budgets[f"pr2prod-{track}"]["spec"]["selector"]["matchLabels"],
        ):
            other = "canary" if track == "stable" else "stable"
            assert selects(selector, pods[track]) and not selects(selector, pods[other])
        assert budgets[f"pr2prod-{track}"]["spec"]["maxUnavailable"] == 1


def test_gateway_route_splits_between_the_two_track_services(rendered: dict[str, str]) -> None:
    text = rendered["overlays/gateway"]
    (route,) = of_kind(text, "HTTPRoute").values()
    # No schema for the CRD offline: check the fields the controller relies on.
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["metadata"]["name"] == "pr2prod"
    assert route["spec"]["parentRefs"] and all(ref["name"] for ref in route["spec"]["parentRefs"])
    (rule,) = route["spec"]["rules"]
    services = of_kind(text, "Service")
    backends = rule["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [
        ("pr2prod-stable", 100),
        ("pr2prod-canary", 0),
    ]
    for backend in backends:
        assert set(backend) <= {"name", "port", "weight"}
        ports = [p["port"] for p in services[backend["name"]]["spec"]["ports"]]
        assert backend["port"] in ports


def test_fallback_service_selects_the_pods_of_both_tracks(rendered: dict[str, str]) -> None:
    text = rendered["overlays/no-gateway"]
    shared = of_kind(text, "Service")["pr2prod"]["spec"]["selector"]
    for name, deployment in of_kind(text, "Deployment").items():
        assert selects(shared, deployment["spec"]["template"]["metadata"]["labels"]), name
    assert TRACK not in shared


# -- (d) KubernetesTarget against a recording kubectl double ----------------------------------

NAMESPACE = "ml"
STABLE_URL = "http://pr2prod-stable.ml.svc:3000"
CANARY_URL = "http://pr2prod-canary.ml.svc:3000"
V1 = "ghcr.io/acme/model/pr2prod@sha256:" + "1" * 64
V2 = "ghcr.io/acme/model/pr2prod@sha256:" + "2" * 64
V3 = "ghcr.io/acme/model/pr2prod@sha256:" + "3" * 64


class Cluster:
    """The double's state and log, and a KubernetesTarget that uses it."""

    def __init__(self, directory: Path, rendered_gateway: str) -> None:
        self.log = directory / "kubectl.log"
        self.state = directory / "state.json"
        self.kubeconfig = directory / "kubeconfig"
        self.kubeconfig.write_text("# never read: the double ignores it\n")
        self.executable = directory / "bin" / "kubectl"
        self.executable.parent.mkdir()
        source = (FIXTURES / "kubectl" / "kubectl.py").read_text()
        self.executable.write_text(f"#!{sys.executable}\n" + source.split("\n", 1)[1])
        self.executable.chmod(0o755)
        deployments = of_kind(rendered_gateway, "Deployment")
        for deployment in deployments.values():
            deployment["spec"]["template"]["spec"]["containers"][0]["image"] = V1
        self.write_state(
            {"deployments": deployments, "httproutes": of_kind(rendered_gateway, "HTTPRoute")}
        )
        self.target = KubernetesTarget(
            NAMESPACE,
            context="prod",
            kubeconfig=self.kubeconfig,
            kubectl=self.executable,
            drain_seconds=7,
            entry_url="http://gateway.example",
            sleep=self.record_sleep,
        )

    def read_state(self) -> dict[str, Any]:
        return json.loads(self.state.read_text())

    def write_state(self, state: dict[str, Any]) -> None:
        self.state.write_text(json.dumps(state))

    def record_sleep(self, seconds: float) -> None:
        with self.log.open("a") as log:
            log.write(json.dumps({"sleep": seconds}) + "\n")

    def recording(self) -> list[list[str] | tuple[str, float]]:
        """Every call since the last one, global flags checked and removed; sleeps as tuples."""
        flags = ["--kubeconfig", str(self.kubeconfig), "--context", "prod", "--namespace", "ml"]
        calls: list[list[str] | tuple[str, float]] = []
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        for line in lines:
            entry = json.loads(line)
            if "sleep" in entry:
                calls.append(("sleep", entry["sleep"]))
                continue
            assert entry["argv"][: len(flags)] == flags, entry["argv"]
            arguments = entry["argv"][len(flags) :]
            # Only a ConfigMap written whole is sent on stdin.
            assert (entry["stdin"] != "") == (arguments[1:] == ["--filename=-"]), entry
            calls.append(arguments)
        self.log.unlink(missing_ok=True)
        return calls

    def weights(self) -> list[int]:
        route = self.read_state()["httproutes"]["pr2prod"]
        return [backend["weight"] for backend in route["spec"]["rules"][0]["backendRefs"]]

    def image_and_replicas(self, name: str) -> tuple[str, int]:
        spec = self.read_state()["deployments"][name]["spec"]
        return spec["template"]["spec"]["containers"][0]["image"], spec["replicas"]


@pytest.fixture
def cluster(tmp_path: Path, rendered: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Cluster:
    cluster = Cluster(tmp_path, rendered["overlays/gateway"])
    monkeypatch.setenv("KUBECTL_DOUBLE_LOG", str(cluster.log))
    monkeypatch.setenv("KUBECTL_DOUBLE_STATE", str(cluster.state))
    return cluster


def weights(stable: int, canary: int) -> list[str]:
    patch = [
        {"op": "test", "path": "/spec/rules/0/backendRefs/0/name", "value": "pr2prod-stable"},
        {"op": "test", "path": "/spec/rules/0/backendRefs/1/name", "value": "pr2prod-canary"},
        {"op": "add", "path": "/spec/rules/0/backendRefs/0/weight", "value": stable},
        {"op": "add", "path": "/spec/rules/0/backendRefs/1/weight", "value": canary},
    ]
    return [
        "patch",
        f"{HTTPROUTE}/pr2prod",
        "--type=json",
        "--patch=" + json.dumps(patch, separators=(",", ":")),
    ]


GET = ["get", "deployments", "pr2prod-stable", "pr2prod-canary", "--output=json"]


def rollout(name: str) -> list[str]:
    return ["rollout", "status", f"deployment/{name}", "--timeout=600s"]


def annotate(deployment: str, image: str) -> list[str]:
    digest = image.split("@", 1)[1]
    return [
        "annotate",
        f"deployment/{deployment}",
        "--overwrite",
        f"pr2prod/release={image}",
        f"pr2prod/image-digest={digest}",
        "pr2prod/release-tag-",
    ]


def start(image: str) -> list[list[str] | tuple[str, float]]:
    return [
        weights(100, 0),
        ["set", "image", "deployment/pr2prod-canary", f"pr2prod={image}"],
        annotate("pr2prod-canary", image),
        ["scale", "deployment/pr2prod-canary", "--replicas=1"],
        rollout("pr2prod-canary"),
    ]


def promotion(image: str) -> list[list[str] | tuple[str, float]]:
    return [
        GET,
        ["set", "image", "deployment/pr2prod-stable", f"pr2prod={image}"],
        annotate("pr2prod-stable", image),
        rollout("pr2prod-stable"),
        weights(100, 0),
        ("sleep", 7),
        ["scale", "deployment/pr2prod-canary", "--replicas=0"],
    ]


def test_a_rollout_is_exactly_these_kubectl_commands(cluster: Cluster) -> None:
    target = cluster.target
    assert target.running() == {"stable": Deployed(V1, STABLE_URL)}
    assert cluster.recording() == [GET]

    assert target.start_canary(V2) == Deployed(V2, CANARY_URL)
    assert cluster.recording() == start(V2)
    assert target.running() == {
        "stable": Deployed(V1, STABLE_URL),
        "canary": Deployed(V2, CANARY_URL),
    }
    cluster.recording()

    for step in (10, 25, 50, 100):
        target.set_canary_weight(step, V2)
        # The canary is checked to be the rollout's own before its weight changes.
        assert cluster.recording() == [GET, weights(100 - step, step)]
        assert cluster.weights() == [100 - step, step]

    target.promote(V2)
    # The stable Deployment is on the new image and rolled out before the canary loses
    # its traffic; the canary is scaled down only after its weight is 0 and the drain.
    assert cluster.recording() == promotion(V2)
    assert cluster.weights() == [100, 0]
    assert cluster.image_and_replicas("pr2prod-stable") == (V2, 2)
    assert cluster.image_and_replicas("pr2prod-canary") == (V2, 0)
    assert target.running() == {"stable": Deployed(V2, STABLE_URL)}


def test_the_recorded_commands_are_ones_the_real_kubectl_accepts(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Replayed against the real client and no server: each gets as far as connecting."""
    target = cluster.target
    target.start_canary(V2)
    target.set_canary_weight(10, V2)
    target.promote(V2)
    commands = [call for call in cluster.recording() if isinstance(call, list)]
    with socket.socket() as probe:  # a local port with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        server = f"http://127.0.0.1:{probe.getsockname()[1]}"
    empty = tmp_path / "empty-kubeconfig"
    empty.write_text("")
    for command in {tuple(c) for c in commands}:
        result = subprocess.run(
            [kubectl(), "--kubeconfig", str(empty), "--server", server, "-n", "ml", *command],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode != 0
        assert "connection" in result.stderr and "refused" in result.stderr, (
            f"{command}: {result.stderr}"
        )


def test_a_rollback_takes_the_canary_weight_to_zero_before_scaling_it_down(
    cluster: Cluster,
) -> None:
    target = cluster.target
    target.start_canary(V3)
    target.set_canary_weight(10, V3)
    target.set_canary_weight(25, V3)
    cluster.recording()

    target.abort_canary(V3)
    assert cluster.recording() == [
        GET,
        weights(100, 0),
        ("sleep", 7),
        ["scale", "deployment/pr2prod-canary", "--replicas=0"],
    ]
    assert cluster.weights() == [100, 0]
    assert cluster.image_and_replicas("pr2prod-stable") == (V1, 2), "stable is untouched"
    assert target.running() == {"stable": Deployed(V1, STABLE_URL)}


def test_a_manual_rollback_is_a_canary_of_the_earlier_image_then_a_promotion(
    cluster: Cluster,
) -> None:
    target = cluster.target
    target.start_canary(V2)
    for step in (10, 25, 50, 100):
        target.set_canary_weight(step, V2)
    target.promote(V2)
    assert target.running()["stable"].release == V2
    cluster.recording()

    target.start_canary(V1)  # the earlier release, as a canary like any other
    target.set_canary_weight(100, V1)
    target.promote(V1)
    assert cluster.recording() == [*start(V1), GET, weights(0, 100), *promotion(V1)]
    assert target.running() == {"stable": Deployed(V1, STABLE_URL)}


def test_a_failed_rollout_raises_with_the_command_and_kubectls_message(cluster: Cluster) -> None:
    state = cluster.read_state()
    message = 'error: deployment "pr2prod-canary" exceeded its progress deadline'
    state["fail"] = {"rollout deployment/pr2prod-canary": message}
    cluster.write_state(state)

    with pytest.raises(Pr2prodError) as raised:
        cluster.target.start_canary(V2)
    assert "rollout status deployment/pr2prod-canary --timeout=600s" in str(raised.value)
    assert message in str(raised.value)
    assert cluster.weights() == [100, 0], "the canary never got traffic"

    cluster.recording()
    cluster.target.abort_canary(V2)
    assert cluster.image_and_replicas("pr2prod-canary") == (V2, 0)


def test_a_reordered_route_is_refused_not_patched_with_the_wrong_weights(
    cluster: Cluster,
) -> None:
    cluster.target.start_canary(V2)
    state = cluster.read_state()
    backends = state["httproutes"]["pr2prod"]["spec"]["rules"][0]["backendRefs"]
    backends.reverse()
    cluster.write_state(state)
    with pytest.raises(Pr2prodError, match="testing value"):
        cluster.target.set_canary_weight(10, V2)
    assert cluster.weights() == [0, 100], "unchanged: canary's 0 and stable's 100, reversed"


def test_calls_meant_for_another_release_leave_the_canary_alone(cluster: Cluster) -> None:
    """One rollout's canary (V2) at 25 %: another rollout's calls, naming V3, are refused."""
    target = cluster.target
    target.start_canary(V2)
    target.set_canary_weight(25, V2)
    cluster.recording()
    assert_refused_for_another_release(target, V2, V3)
    assert cluster.recording() == [GET, GET, GET], "nothing but reads"
    assert cluster.weights() == [75, 25]
    assert cluster.image_and_replicas("pr2prod-stable") == (V1, 2)
    assert cluster.image_and_replicas("pr2prod-canary") == (V2, 1)


def test_bad_input_and_a_missing_setup_are_clear_errors(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for percent in (-1, 101, 12.5, True):
        with pytest.raises(Pr2prodError, match="whole percent"):
            cluster.target.set_canary_weight(percent, V2)  # type: ignore[arg-type]
    with pytest.raises(Pr2prodError, match="no canary to promote"):
        cluster.target.promote(V2)
    assert cluster.recording() == [GET], "nothing changed"

    cluster.write_state({"deployments": {}, "httproutes": {}})
    with pytest.raises(Pr2prodError, match="NotFound") as raised:
        cluster.target.running()
    assert "overlays/gateway" in raised.value.hint

    missing = KubernetesTarget(NAMESPACE, kubectl=tmp_path / "no-such-kubectl")
    with pytest.raises(Pr2prodError, match="kubectl not found"):
        missing.running()
    with pytest.raises(Pr2prodError, match="entry URL"):
        missing.entry_url()
    assert cluster.target.entry_url() == "http://gateway.example"


# -- (e) the cluster as the record: annotations, history, rollout and lock in a ConfigMap ------


def test_each_deployment_names_the_release_it_runs(cluster: Cluster) -> None:
    tagged = "ghcr.io/acme/model/pr2prod:5f00d@sha256:" + "2" * 64
    cluster.target.start_canary(tagged)
    cluster.target.set_canary_weight(100, tagged)
    cluster.target.promote(tagged)
    for name in ("pr2prod-canary", "pr2prod-stable"):
        annotations = cluster.read_state()["deployments"][name]["metadata"]["annotations"]
        assert annotations["pr2prod/release"] == tagged
        assert annotations["pr2prod/image-digest"] == "sha256:" + "2" * 64
        assert annotations["pr2prod/release-tag"] == "5f00d"
    assert release_annotations("registry.example:5000/pr2prod:v1")["pr2prod/release-tag"] == "v1"
    assert release_annotations("registry.example:5000/pr2prod:v1")["pr2prod/image-digest"] is None


def test_the_history_lives_in_a_configmap_with_no_file_and_no_artifact(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    history = History(cluster.target.record("history.jsonl"))
    assert history.decisions() == []
    history.append(Decision(V1, "first-deploy", "first", None, target="kubernetes", time=1.0))
    history.append(Decision(V2, "promoted", "passed", V1, target="kubernetes", time=2.0))

    # A later run (a new target, nothing on disk) reads it back from the cluster.
    again = KubernetesTarget(
        NAMESPACE, context="prod", kubeconfig=cluster.kubeconfig, kubectl=cluster.executable
    )
    assert History(again.record("history.jsonl")).good_releases() == [V1, V2]
    configmap = cluster.read_state()["configmaps"]["pr2prod-deploy"]
    assert configmap["metadata"]["resourceVersion"] == "2"
    assert len(configmap["data"]["history.jsonl"].splitlines()) == 2
    assert not (tmp_path / ".deploy").exists()

    rollout = again.record("rollout.json")
    rollout.write('{"release": "x"}')
    assert rollout.read() == '{"release": "x"}'
    rollout.delete()
    assert rollout.read() is None
    assert History(again.record("history.jsonl")).good_releases() == [V1, V2], "untouched"


def test_a_concurrent_write_is_retried_on_the_newer_version_not_lost(cluster: Cluster) -> None:
    target = cluster.target
    history = History(target.record("history.jsonl"))
    history.append(Decision(V1, "first-deploy", "first", None, time=1.0))
    read_state = target.read_state
    interfered = []

    def read_then_someone_writes() -> dict[str, Any] | None:
        seen = read_state()
        if not interfered:  # another run's write lands between our read and our write
            interfered.append(True)
            state = cluster.read_state()
            state["configmaps"]["pr2prod-deploy"]["data"]["rollout.json"] = "{}"
            version = state["configmaps"]["pr2prod-deploy"]["metadata"]["resourceVersion"]
            state["configmaps"]["pr2prod-deploy"]["metadata"]["resourceVersion"] = str(
                int(version) + 1
            )
            cluster.write_state(state)
        return seen

    target.read_state = read_then_someone_writes  # type: ignore[method-assign]
    history.append(Decision(V2, "promoted", "passed", V1, time=2.0))
    data = cluster.read_state()["configmaps"]["pr2prod-deploy"]["data"]
    assert data["rollout.json"] == "{}", "the other write is kept"
    assert len(data["history.jsonl"].splitlines()) == 2, "and ours is made on top of it"
    replaces = [c for c in cluster.recording() if isinstance(c, list) and c[0] == "replace"]
    assert len(replaces) == 2, "the first replace was refused (Conflict), the second took"


def test_the_history_keeps_its_newest_decisions_within_a_configmaps_size(
    cluster: Cluster,
) -> None:
    record = cluster.target.record("history.jsonl")
    record.max_chars = 1000
    history = History(record)
    for number in range(20):
        history.append(Decision(f"{V1[:-2]}{number:02d}", "promoted", "x" * 50, None))
    kept = history.decisions()
    assert 1 < len(kept) < 20
    assert kept[-1].release.endswith("19")
    assert len(record.read() or "") <= 1000


def test_the_lock_makes_a_second_deployer_wait_and_is_released(cluster: Cluster) -> None:
    target = cluster.target
    other = KubernetesTarget(
        NAMESPACE, context="prod", kubeconfig=cluster.kubeconfig, kubectl=cluster.executable,
        sleep=cluster.record_sleep,
    )  # fmt: skip
    with target.locked("run 1"):
        annotations = cluster.read_state()["configmaps"]["pr2prod-deploy"]["metadata"]
        assert json.loads(annotations["annotations"]["pr2prod/lock"])["holder"] == "run 1"
        with (
            pytest.raises(Pr2prodError, match="locked by run 1 since") as raised,
            other.locked("run 2", wait_seconds=0, poll_seconds=3),
        ):
            pytest.fail("two holders at once")
        assert "pr2prod/lock-" in raised.value.hint
    cluster.recording()
    with other.locked("run 2", wait_seconds=0):
        pass
    lock = cluster.read_state()["configmaps"]["pr2prod-deploy"]["metadata"]["annotations"]
    assert "pr2prod/lock" not in lock


def test_a_lock_whose_holder_died_is_taken_over(cluster: Cluster) -> None:
    long_ago = json.dumps({"holder": "run 0", "since": 1.0})
    cluster.target.change_state(
        lambda state: state["metadata"]["annotations"].update({"pr2prod/lock": long_ago})
    )
    with cluster.target.locked("run 1", wait_seconds=0):
        state = cluster.read_state()["configmaps"]["pr2prod-deploy"]
        assert "run 1" in state["metadata"]["annotations"]["pr2prod/lock"]


def test_the_configmap_commands_are_ones_the_real_kubectl_accepts(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Each ConfigMap read and write, replayed with its stdin against the real client and
    no server, gets as far as connecting: the flags and the object sent are well-formed."""
    history = History(cluster.target.record("history.jsonl"))
    history.append(Decision(V1, "first-deploy", "first", None, time=1.0))
    history.append(Decision(V2, "promoted", "passed", V1, time=2.0))
    with cluster.target.locked("run 1"):
        pass
    entries = [json.loads(line) for line in cluster.log.read_text().splitlines()]
    flags = 6  # --kubeconfig, --context, --namespace and their values
    verbs = {entry["argv"][flags] for entry in entries}
    assert verbs == {"get", "create", "replace"}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        server = f"http://127.0.0.1:{probe.getsockname()[1]}"
    empty = tmp_path / "empty-kubeconfig"
    empty.write_text("")
    for entry in entries:
        result = subprocess.run(
            [kubectl(), "--kubeconfig", str(empty), "--server", server, "-n", "ml",
             *entry["argv"][flags:]],
            input=entry["stdin"], capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode != 0
        assert "connection" in result.stderr and "refused" in result.stderr, (
            f"{entry['argv'][flags:]}: {result.stderr}"
        )


def test_a_ci_run_gets_back_into_the_lock_its_killed_rollout_left(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pr2prod.deploy.assembly import deployment_lock

    monkeypatch.setenv("GITHUB_RUN_ID", "77")
    left = json.dumps({"holder": "CI run 77", "since": 4e9})  # fresh, and not released
    cluster.target.change_state(
        lambda state: state["metadata"]["annotations"].update({"pr2prod/lock": left})
    )
    with deployment_lock(cluster.target):  # the run's `pr2prod abort`: no wait
        pass
    annotations = cluster.read_state()["configmaps"]["pr2prod-deploy"]["metadata"]["annotations"]
    assert "pr2prod/lock" not in annotations
    monkeypatch.setenv("GITHUB_RUN_ID", "78")
    cluster.target.change_state(
        lambda state: state["metadata"]["annotations"].update({"pr2prod/lock": left})
    )
    with pytest.raises(Pr2prodError, match="locked by CI run 77"):
        cluster.target.locked("CI run 78", wait_seconds=0).__enter__()


def test_two_runs_taking_the_lock_at_once_do_not_both_get_it(cluster: Cluster) -> None:
    """Run 2 reads a free lock, but run 1 takes it before run 2 writes: run 2's write is
    refused (Conflict), and its retry sees run 1 holding the lock."""
    target = cluster.target
    target.change_state(lambda state: None)  # the ConfigMap exists, unlocked
    read_state = target.read_state
    raced = []

    def run_1_gets_in_first() -> dict[str, Any] | None:
        seen = read_state()
        if not raced:
            raced.append(True)
            state = cluster.read_state()
            configmap = state["configmaps"]["pr2prod-deploy"]
            lock = json.dumps({"holder": "run 1", "since": 4e9})
            configmap["metadata"].setdefault("annotations", {})["pr2prod/lock"] = lock
            configmap["metadata"]["resourceVersion"] = "99"
            cluster.write_state(state)
        return seen

    target.read_state = run_1_gets_in_first  # type: ignore[method-assign]
    with pytest.raises(Pr2prodError, match="locked by run 1"):
        target.locked("run 2", wait_seconds=0).__enter__()
    holder = cluster.read_state()["configmaps"]["pr2prod-deploy"]["metadata"]["annotations"]
    assert json.loads(holder["pr2prod/lock"])["holder"] == "run 1"
