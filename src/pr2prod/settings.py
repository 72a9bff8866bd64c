"""params.yaml: every knob a user turns, read once into typed, frozen settings.

Each setting's default is written here and nowhere else. Reading checks every key: an
unknown or misspelt one is an error naming where it is and the nearest real setting, a
value of the wrong type says what was expected, and a missing required setting is named.
The sections' own rules (a split share between 0 and 1, rising canary steps...) are
checked when a section is built, so settings made in code obey them too.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from pr2prod import paths
from pr2prod.errors import Pr2prodError
from pr2prod.serving.policy import PolicyError, ServingPolicy

HINT = "fix params.yaml; every setting is listed with its default in docs/settings.md"
# Half the golden-row tolerance (pr2prod.serving.bundle.TOLERANCE), which the served answers
# must meet after rounding to six decimals; written out to keep the service out of here.
MAX_PARITY_TOLERANCE = 5e-6


class SettingError(ValueError):
    """A value that breaks its section's rule; `key` names the setting within the section."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key} {problem}")
        self.key = key
        self.problem = problem


# --- the settings, section by section --------------------------------------------------------


@dataclass(frozen=True)
class DataSettings:
    file: Path  # the CSV inside data/ (tracked by data.dvc)


@dataclass(frozen=True)
class SplitSettings:
    test_size: float  # share of rows held out for evaluation (stratified)

    def __post_init__(self) -> None:
        if not 0 < self.test_size < 1:
            raise SettingError("test_size", f"must be between 0 and 1, not {self.test_size}")


@dataclass(frozen=True)
class TrainSettings:
    estimator: str  # any scikit-learn classifier (or regressor, for a numeric target), by path
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # passed to it as they are


@dataclass(frozen=True)
class ReportSettings:
    bootstrap_resamples: int = 1000  # resamples of the test set for each delta's interval
    confidence: float = 0.95  # width of those intervals
    drift_threshold: float = 0.2  # population stability index above which a feature is flagged

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise SettingError("confidence", f"must be between 0 and 1, not {self.confidence}")


@dataclass(frozen=True)
class PrivacySettings:
    """How much of the data the pipeline's own outputs may show (docs/privacy.md).

    The defaults suit public data such as the sample; records of people want `dvc` and
    `false`.
    """

    # Where per-row results (results/predictions.csv) live: "git" commits them for review;
    # "dvc" keeps them in the DVC cache and remote only (dvc.yaml must say `cache: true`).
    per_row_files: Literal["git", "dvc"] = "git"
    # Whether validation reports, the PR comment and the console quote the data's cells.
    raw_values: bool = True


@dataclass(frozen=True)
class CompileSettings:
    """The service's model (`make bento`): the pipeline compiled to ONNX (docs/serving.md).

    The compiled model serves only if it answers every test row as scikit-learn does:
    the same class, every probability within `tolerance` (at most MAX_PARITY_TOLERANCE).
    """

    enabled: bool = True  # false: the service runs the scikit-learn pipeline as trained
    tolerance: float = 2.0e-6  # largest probability difference from scikit-learn allowed

    def __post_init__(self) -> None:
        if not 0 < self.tolerance <= MAX_PARITY_TOLERANCE:
            raise SettingError(
                "tolerance",
                f"must be above 0 and at most {MAX_PARITY_TOLERANCE:g}, not {self.tolerance}",
            )


@dataclass(frozen=True)
class GateRule:
    """The quality gate's rule for one metric (params.yaml, `gate: {metric: rule}`).

    `min` is a floor when higher is better, `max` a ceiling when lower is better;
    `max_regression` is the largest allowed worsening against the base revision.
    """

    direction: Literal["higher", "lower"]
    min: float | None = None
    max: float | None = None
    max_regression: float | None = None

    def __post_init__(self) -> None:
        wrong, right = ("max", "min") if self.higher_is_better else ("min", "max")
        if getattr(self, wrong) is not None:
            raise SettingError(
                wrong, f"does not apply when {self.direction} is better: the limit is '{right}'"
            )
        if self.max_regression is not None and self.max_regression < 0:
            raise SettingError("max_regression", f"must be zero or more, not {self.max_regression}")

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher"

    @property
    def limit(self) -> float | None:
        return self.min if self.higher_is_better else self.max


@dataclass(frozen=True)
class Thresholds:
    """When a canary window fails. Relative to stable over the same window, and absolute."""

    error_rate_margin: float = 0.01  # canary 5xx share <= stable's + this
    error_rate_max: float = 0.05  # ... and never above this
    latency_p99_ratio: float = 2.0  # canary p99 <= this x stable's p99
    latency_p99_max_ms: float = 500.0  # ... and never above this
    latency_p50_ratio: float = 2.0  # canary median <= this x stable's median
    model_time_ratio: float = 3.0  # canary model time per call (median) <= this x stable's
    # Jensen-Shannon divergence (base 2) of predictions, canary vs stable on the same
    # held-out rows before traffic; live windows get what that and sampling noise allow.
    prediction_divergence_max: float = 0.1


@dataclass(frozen=True)
class CanarySettings:
    """The canary rollout (params.yaml, `canary:`)."""

    steps: tuple[int, ...] = (10, 25, 50, 100)  # canary share of traffic, percent
    window_seconds: float = 20.0  # analysis window at each step
    min_requests: int = 50  # per version and window; fewer is inconclusive
    max_failures: int = 1  # failed windows before rolling back
    max_inconclusive: int = 3  # inconclusive windows in a row before rolling back
    progress_deadline_seconds: float = 600.0  # a rollout not finished by then rolls back
    synthetic_load_rps: float = 0.0  # >0: drive load from the test set when traffic is low
    retry_on_stable: bool = True  # the local router retries a failed canary request on stable
    drain_seconds: float = 2.0  # traffic off a version before it is stopped
    readiness_timeout_seconds: float = 120.0  # a canary not ready by then is rolled back
    thresholds: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self) -> None:
        steps = self.steps
        if not steps or steps[0] <= 0 or steps[-1] != 100 or list(steps) != sorted(set(steps)):
            example = "e.g. [10, 25, 50, 100]"
            raise SettingError("steps", f"must rise and end at 100, {example}, not {list(steps)}")


# A swept parameter's values: a list, or a range `{from: A, to: B, step: S}` (B included).
RANGE_KEYS = ("from", "to", "step")


def sweep_values(name: str, declared: Any) -> tuple[Any, ...]:
    """The values a sweep tries for one parameter, in the order declared.

    Raises SettingError (keyed by the parameter's name) when `declared` is neither a
    non-empty list of distinct values nor a well-formed rising range.
    """
    if isinstance(declared, list):
        if not declared:
            raise SettingError(name, "lists no values; give at least one")
        if any(isinstance(value, dict | list) for value in declared):
            raise SettingError(name, "must list plain values (numbers, text, true/false, null)")
        if len({_shown(value) for value in declared}) != len(declared):
            raise SettingError(name, f"lists a value twice: {declared}")
        return tuple(declared)
    if isinstance(declared, dict):
        if sorted(declared) != sorted(RANGE_KEYS) or not all(
            _is_yaml_number(declared[key]) for key in RANGE_KEYS
        ):
            raise SettingError(
                name, f"as a range must be {{from: A, to: B, step: S}} with numbers, not {declared}"
            )
        start, stop, step = (declared[key] for key in RANGE_KEYS)
        if step <= 0 or stop < start:
            raise SettingError(name, f"as a range must rise by a positive step, not {declared}")
        count = int(round((stop - start) / step, 9)) + 1
        whole = all(isinstance(declared[key], int) for key in RANGE_KEYS)
        # Float steps are rounded so 0.1 + 0.2 is written as 0.3, the value the user meant.
        return tuple(
            start + index * step if whole else round(start + index * step, 10)
            for index in range(count)
        )
    raise SettingError(name, f"must be a list of values or a range, not {_shown(declared)}")


@dataclass(frozen=True)
class BestRunRule:
    """How a sweep's table marks its best run."""

    metric: str = "f1"  # the best run has the best value of this metric (its gate direction)
    require_gate: bool = True  # ... among the runs whose metrics pass the quality gate


@dataclass(frozen=True)
class SweepSettings:
    """A parameter sweep run as DVC experiments (params.yaml, `sweep:`; docs/experiments.md)."""

    # Dotted parameter name -> its values (a list or a range); the sweep runs every combination.
    params: dict[str, Any] = field(default_factory=dict)
    best: BestRunRule = field(default_factory=BestRunRule)
    workers: int = 0  # experiments run at once; 0: one per CPU core

    def __post_init__(self) -> None:
        for name, declared in self.params.items():
            section = name.split(".", 1)[0]
            if section == "sweep" or section not in _SWEEPABLE_SECTIONS:
                raise SettingError(
                    f"params.{name}",
                    "is not a setting a sweep can change; sweep the pipeline's params: "
                    f"{', '.join(_SWEEPABLE_SECTIONS)}",
                )
            sweep_values(f"params.{name}", declared)
        if self.workers < 0:
            raise SettingError("workers", f"must be 0 (one per core) or more, not {self.workers}")

    def values(self) -> dict[str, tuple[Any, ...]]:
        """Each swept parameter's values, in the order params.yaml declares them."""
        return {name: sweep_values(name, declared) for name, declared in self.params.items()}


# The settings the DVC stages read: the only ones an experiment changes.
_SWEEPABLE_SECTIONS = ("seed", "data", "split", "train")


@dataclass(frozen=True)
class MonitorSettings:
    """Drift monitoring (params.yaml, `monitor:`): how sure an alarm must be, and of what."""

    alpha: float = 0.01  # chance that a run on unshifted traffic alarms (all tests together)
    min_rows: int = 200  # live records per model version below which a run is inconclusive

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise SettingError("alpha", f"must be between 0 and 1, not {self.alpha}")
        if self.min_rows < 1:
            raise SettingError("min_rows", f"must be at least 1, not {self.min_rows}")


@dataclass(frozen=True)
class Settings:
    """Everything in params.yaml. seed, data.file, split.test_size and train.estimator are
    required; every other setting has a default."""

    seed: int  # one seed for the split and the estimator
    data: DataSettings
    split: SplitSettings
    train: TrainSettings
    report: ReportSettings = field(default_factory=ReportSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    gate: dict[str, GateRule] = field(default_factory=dict)  # metric -> rule; none: no gate
    serving: ServingPolicy = field(default_factory=ServingPolicy)
    compile: CompileSettings = field(default_factory=CompileSettings)
    canary: CanarySettings = field(default_factory=CanarySettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    sweep: SweepSettings = field(default_factory=SweepSettings)


# --- reading ---------------------------------------------------------------------------------


def load_settings(path: Path = paths.PARAMS) -> Settings:
    """The settings in the params file at `path` (params.yaml in the working directory)."""
    if not path.is_file():
        raise Pr2prodError(f"{path} not found", hint="run from the repository root")
    return parse_settings(path.read_text(), where=str(path))


def parse_settings(text: str, where: str) -> Settings:
    """The settings in params.yaml text; `where` says in errors whose text it is."""
    return _checked(Settings, _parse_yaml(text, where), where)


Parsed = TypeVar("Parsed")


def parse_section(text: str, kind: type[Parsed], where: str) -> Parsed:
    """One section of params.yaml text (e.g. DataSettings: `data:`), checked alone.

    For a params.yaml written for other code, such as a base revision's: its other
    sections may hold settings this version no longer has.
    """
    name = next(name for name, hint in typing.get_type_hints(Settings).items() if hint is kind)
    return _checked(kind, _parse_yaml(text, where).get(name), where, key=name)


def rewrite_params(path: Path, changes: Mapping[str, Any]) -> Settings:
    """Change settings (dotted names: `seed`, `canary.window_seconds`) in the file at `path`.

    The changed settings are checked before anything is written, so the file stays valid.
    YAML rewrites the whole file and drops its comments: meant for scratch copies.
    """
    raw = _parse_yaml(path.read_text(), str(path))
    for dotted, value in changes.items():
        *sections, name = dotted.split(".")
        node = raw
        for section in sections:
            inner = dict(node.get(section) or {})
            node[section] = inner
            node = inner
        node[name] = value
    settings = _checked(Settings, raw, str(path))
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return settings


class _Invalid(Exception):
    """What is wrong with one setting, named by its dotted path."""


def _parse_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise Pr2prodError(f"{where} is not valid YAML: {error}", hint=HINT) from error
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise Pr2prodError(f"{where} must be a mapping of settings, not {_shown(raw)}", hint=HINT)
    return raw


def _checked(kind: type[Parsed], raw: Any, where: str, key: str = "") -> Parsed:
    try:
        return _read(kind, raw, key)
    except _Invalid as problem:
        raise Pr2prodError(f"{where}: {problem}", hint=HINT) from None


def _read(kind: Any, raw: Any, key: str) -> Any:
    """`raw` as YAML parsed it, checked against `kind` and converted; `key` is its path."""
    if dataclasses.is_dataclass(kind):
        return _read_section(kind, raw, key)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):  # `X | None`: null leaves the setting unset
        (inner,) = [arg for arg in args if arg is not type(None)]
        return None if raw is None else _read(inner, raw, key)
    if origin is Literal:
        if isinstance(raw, str) and raw in args:
            return raw
        raise _Invalid(f"{key} must be {' or '.join(map(repr, args))}, not {_shown(raw)}")
    if origin is tuple:
        if not isinstance(raw, list):
            raise _Invalid(f"{key} must be a list, not {_shown(raw)}")
        return tuple(_read(args[0], item, f"{key}[{index}]") for index, item in enumerate(raw))
    if origin is dict:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise _Invalid(f"{key} must be a mapping, not {_shown(raw)}")
        return {str(name): _read(args[1], value, f"{key}.{name}") for name, value in raw.items()}
    if kind is Any:
        return raw
    return _read_scalar(kind, raw, key)


def _read_section(kind: Any, raw: Any, key: str) -> Any:
    if raw is None:  # an empty or absent section: its defaults
        raw = {}
    if not isinstance(raw, dict):
        raise _Invalid(f"{key} must be a mapping of settings, not {_shown(raw)}")
    fields = dataclasses.fields(kind)
    known = [setting.name for setting in fields]
    for name in map(str, raw):
        if name not in known:
            raise _Invalid(_not_a_setting(key, name, known))
    hints = typing.get_type_hints(kind)
    values = {}
    for setting in fields:
        path = _join(key, setting.name)
        if setting.name in raw or dataclasses.is_dataclass(hints[setting.name]):
            # An absent section is read as empty: its defaults, or its missing setting named.
            values[setting.name] = _read(hints[setting.name], raw.get(setting.name), path)
        elif setting.default is dataclasses.MISSING and (
            setting.default_factory is dataclasses.MISSING
        ):
            raise _Invalid(f"{path} is missing (it has no default)")
    try:
        return kind(**values)
    except (SettingError, PolicyError) as error:
        raise _Invalid(f"{_join(key, error.key)} {error.problem}") from None


def _is_yaml_number(value: Any) -> bool:
    # bool is an int to Python, but `true` is no number in params.yaml.
    return isinstance(value, int | float) and not isinstance(value, bool)


# What each scalar type is called in errors, and which YAML values it accepts.
_SCALARS: dict[type, tuple[str, Callable[[Any], bool]]] = {
    bool: ("true or false", lambda value: isinstance(value, bool)),
    int: ("a whole number", lambda value: isinstance(value, int) and _is_yaml_number(value)),
    float: ("a number", _is_yaml_number),
    str: ("text", lambda value: isinstance(value, str)),
    Path: ("a path", lambda value: isinstance(value, str)),
}


def _read_scalar(kind: type, raw: Any, key: str) -> Any:
    expected, accepts = _SCALARS[kind]
    if accepts(raw):
        return kind(raw)
    problem = f"{key} must be {expected}, not {_shown(raw)}"
    if kind in (int, float) and isinstance(raw, str) and _reads_as_number(raw):
        # YAML reads a quoted number, or 1e-3 (no decimal point), as text.
        problem += " (YAML reads it as text: write it unquoted, e.g. 1.0e-3 rather than 1e-3)"
    raise _Invalid(problem)


def _reads_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _not_a_setting(key: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"{_join(key, name)} is not a setting; did you mean {_join(key, close[0])}?"
    place = f"under {key}" if key else "at the top level"
    return f"{_join(key, name)} is not a setting; the settings {place} are {', '.join(known)}"


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _shown(value: Any) -> str:
    """A value as the user wrote it in YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value)
