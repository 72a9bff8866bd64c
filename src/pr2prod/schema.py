"""The feature schema (schema.yaml): the single description of the data.

Validation, the training columns and their preprocessing are all derived from it,
so adding, removing or retyping a column is one edit in schema.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from pr2prod.errors import Pr2prodError

FeatureType = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class Feature:
    name: str
    type: FeatureType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()

    @property
    def is_numeric(self) -> bool:
        return self.type == "numeric"


@dataclass(frozen=True)
class Target:
    """What the model predicts: a class (classification) or a number (regression)."""

    name: str
    classes: tuple[str, ...] = ()  # categorical: the classes; empty for a numeric target
    positive_class: str | None = None
    type: FeatureType = "categorical"
    min: float | None = None  # numeric: bounds every row's value must keep
    max: float | None = None
    unit: str | None = None  # numeric: what the number counts, for people reading figures

    @property
    def is_numeric(self) -> bool:
        return self.type == "numeric"

    @property
    def is_binary(self) -> bool:
        return len(self.classes) == 2

    def as_feature(self) -> Feature:
        """A numeric target's rules as a column's: no missing value, within its bounds."""
        return Feature(self.name, "numeric", nullable=False, min=self.min, max=self.max)

    def describe(self) -> str:
        """The target in words, e.g. `diagnosis (classes malignant, benign)`."""
        if self.is_numeric:
            unit = f", in {self.unit}" if self.unit else ""
            return f"{self.name} (numeric{unit})"
        positive = f", positive {self.positive_class}" if self.positive_class else ""
        return f"{self.name} (classes {', '.join(self.classes)}{positive})"


@dataclass(frozen=True)
class DatasetRules:
    """Rules about the table as a whole, not one column."""

    min_rows: int = 1
    max_duplicate_share: float = 0.0


@dataclass(frozen=True)
class FeatureSchema:
    features: tuple[Feature, ...]
    target: Target
    rules: DatasetRules

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def numeric_features(self) -> list[str]:
        return [feature.name for feature in self.features if feature.is_numeric]

    @property
    def categorical_features(self) -> list[str]:
        return [feature.name for feature in self.features if not feature.is_numeric]

    @property
    def columns(self) -> list[str]:
        """Every column the data file must have: the features, then the target."""
        return [*self.feature_names, self.target.name]


def load_schema(path: Path) -> FeatureSchema:
    """Read and check schema.yaml; every mistake in it is reported with where it is."""
    if not path.is_file():
        raise Pr2prodError(f"{path} not found", hint="run from the repository root")
    return parse_schema(path.read_text(), path)


def parse_schema(text: str, source: Path) -> FeatureSchema:
    """Parse schema text; `source` names where it came from in error messages."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise Pr2prodError(f"{source} is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise Pr2prodError(f"{source} must be a mapping with 'features' and 'target'")
    return _parse_schema(raw, source)


def _parse_schema(raw: dict[str, Any], path: Path) -> FeatureSchema:
    unknown = set(raw) - {"features", "target", "rules"}
    if unknown:
        raise Pr2prodError(f"{path}: unknown top-level keys {sorted(unknown)}")
    features_raw = raw.get("features")
    if not isinstance(features_raw, dict) or not features_raw:
        raise Pr2prodError(f"{path}: 'features' must map each feature name to its description")
    features = tuple(
        _parse_feature(str(name), spec or {}, path) for name, spec in features_raw.items()
    )
    target = _parse_target(raw.get("target"), path)
    if target.name in features_raw:
        raise Pr2prodError(f"{path}: the target '{target.name}' is also listed as a feature")
    rules_raw = raw.get("rules") or {}
    unknown = set(rules_raw) - {"min_rows", "max_duplicate_share"}
    if unknown:
        raise Pr2prodError(f"{path}: rules: unknown keys {sorted(unknown)}")
    rules = DatasetRules(
        min_rows=int(rules_raw.get("min_rows", 1)),
        max_duplicate_share=float(rules_raw.get("max_duplicate_share", 0.0)),
    )
    return FeatureSchema(features=features, target=target, rules=rules)


def _parse_feature(name: str, spec: dict[str, Any], path: Path) -> Feature:
    where = f"{path}: features.{name}"
    unknown = set(spec) - {"type", "nullable", "min", "max", "categories", "description"}
    if unknown:
        raise Pr2prodError(f"{where}: unknown keys {sorted(unknown)}")
    kind = spec.get("type")
    if kind == "numeric":
        if "categories" in spec:
            raise Pr2prodError(f"{where}: a numeric feature takes min/max, not categories")
        low, high = spec.get("min"), spec.get("max")
        if low is not None and high is not None and float(low) > float(high):
            raise Pr2prodError(f"{where}: min ({low}) is greater than max ({high})")
        return Feature(
            name=name,
            type="numeric",
            nullable=bool(spec.get("nullable", False)),
            min=None if low is None else float(low),
            max=None if high is None else float(high),
        )
    if kind == "categorical":
        categories = spec.get("categories")
        if not isinstance(categories, list) or not categories:
            raise Pr2prodError(
                f"{where}: a categorical feature needs a non-empty 'categories' list"
            )
        return Feature(
            name=name,
            type="categorical",
            nullable=bool(spec.get("nullable", False)),
            categories=tuple(str(category) for category in categories),
        )
    raise Pr2prodError(f"{where}: type must be 'numeric' or 'categorical', not {kind!r}")


TARGET_KEYS = {"name", "type", "classes", "positive_class", "min", "max", "unit", "description"}


def _parse_target(spec: Any, path: Path) -> Target:
    if not isinstance(spec, dict) or "name" not in spec:
        raise Pr2prodError(f"{path}: 'target' needs a 'name', and its 'classes' or `type: numeric`")
    unknown = set(spec) - TARGET_KEYS
    if unknown:
        raise Pr2prodError(f"{path}: target: unknown keys {sorted(unknown)}")
    kind = spec.get("type", "categorical")
    if kind == "numeric":
        return _parse_numeric_target(spec, path)
    if kind != "categorical":
        raise Pr2prodError(f"{path}: target.type must be 'categorical' or 'numeric', not {kind!r}")
    misplaced = {"min", "max", "unit"} & set(spec)
    if misplaced:
        raise Pr2prodError(
            f"{path}: target: {sorted(misplaced)} apply to a numeric target (`type: numeric`)"
        )
    classes = spec.get("classes")
    if not isinstance(classes, list) or len(classes) < 2:
        raise Pr2prodError(f"{path}: target.classes must list at least two classes")
    classes_text = tuple(str(label) for label in classes)
    positive = spec.get("positive_class")
    if positive is not None and str(positive) not in classes_text:
        raise Pr2prodError(f"{path}: target.positive_class {positive!r} is not one of the classes")
    if positive is None and len(classes_text) == 2:
        # Binary metrics (precision, recall, ROC) need to know which class is "positive".
        raise Pr2prodError(f"{path}: a binary target needs target.positive_class")
    return Target(
        name=str(spec["name"]),
        classes=classes_text,
        positive_class=None if positive is None else str(positive),
    )


def _parse_numeric_target(spec: dict[str, Any], path: Path) -> Target:
    misplaced = {"classes", "positive_class"} & set(spec)
    if misplaced:
        raise Pr2prodError(
            f"{path}: target: {sorted(misplaced)} apply to a categorical target, "
            "not `type: numeric`"
        )
    low, high = spec.get("min"), spec.get("max")
    if low is not None and high is not None and float(low) > float(high):
        raise Pr2prodError(f"{path}: target: min ({low}) is greater than max ({high})")
    return Target(
        name=str(spec["name"]),
        type="numeric",
        min=None if low is None else float(low),
        max=None if high is None else float(high),
        unit=None if spec.get("unit") is None else str(spec["unit"]),
    )
