"""The service's request and response models, generated from the feature schema.

A new column in schema.yaml becomes a new request field with no edit here, and the
target's type picks the answer: a class with its probabilities, or a number. Each record
is validated strictly: every feature present, no extra fields, numbers must be finite
JSON numbers, categories must be text. Out-of-range numbers and unseen categories are
rejected or only counted, as the serving policy (params.yaml, `serving:`) says.
"""

from __future__ import annotations

import keyword
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    create_model,
    model_validator,
)
from pydantic_core import InitErrorDetails

from pr2prod.schema import Feature, FeatureSchema
from pr2prod.serving.policy import ServingPolicy


class Prediction(BaseModel):
    predicted: str = Field(description="the most probable class")
    probabilities: dict[str, float] = Field(description="probability of every class")
    model_version: str = Field(description="version of the model that answered")
    prediction_id: str = Field(
        description="this prediction's id: send it back with the true label to POST /feedback"
    )


class ValuePrediction(BaseModel):
    """A regressor's answer (a numeric target in schema.yaml)."""

    predicted: float = Field(description="the predicted value, in the target's unit")
    model_version: str = Field(description="version of the model that answered")
    prediction_id: str = Field(
        description="this prediction's id: send it back with the true value to POST /feedback"
    )


def answer_model(schema: FeatureSchema) -> type[Prediction] | type[ValuePrediction]:
    """What /predict answers per record: a class, or a number for a numeric target."""
    return ValuePrediction if schema.target.is_numeric else Prediction


def field_name(column: str) -> str:
    """A Python identifier for a column name ("mean radius" -> "mean_radius")."""
    name = re.sub(r"\W", "_", column)
    if not name or name[0].isdigit() or keyword.iskeyword(name):
        name = f"f_{name}"
    return name


# Longest client-supplied name quoted back in an error (the 400 answer and the log).
MAX_QUOTED_NAME = 64


def quoted_name(name: str, limit: int = MAX_QUOTED_NAME) -> str:
    """A client-supplied name made safe to print: control characters escaped, long ones cut.

    Key names come from whoever sends the request: verbatim, a newline in one forges a log
    line and a megabyte-long one makes a megabyte-long line and answer.
    """
    shown = repr(name[:limit])[1:-1]  # backslash escapes, without repr's outer quotes
    return shown if len(name) <= limit else f"{shown}... ({len(name)} characters)"


class _RecordBase(BaseModel):
    """What every generated record model shares: strictness and safe unknown-field errors."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)

    @model_validator(mode="wrap")
    @classmethod
    def _name_unknown_fields_safely(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # pydantic's own extra-field error quotes the key verbatim in its `loc`: check the
        # known fields as usual, then report each unknown key by its quoted name instead.
        if not isinstance(data, dict):
            return handler(data)
        known = {info.alias or name for name, info in cls.model_fields.items()}
        unknown = [key for key in data if key not in known]
        if not unknown:
            return handler(data)
        problems: list[InitErrorDetails] = []
        try:
            handler({key: value for key, value in data.items() if key in known})
        except ValidationError as error:
            problems.extend(
                InitErrorDetails(
                    type=e["type"], loc=e["loc"], input=e["input"], ctx=e.get("ctx", {})
                )
                for e in error.errors()
            )
        problems.extend(
            InitErrorDetails(type="extra_forbidden", loc=(quoted_name(str(key)),), input=None)
            for key in unknown
        )
        raise ValidationError.from_exception_data(cls.__name__, problems)


def record_model(schema: FeatureSchema, policy: ServingPolicy) -> type[BaseModel]:
    """One pydantic model for a record: one field per feature, named as in the data."""
    fields: dict[str, Any] = {
        field_name(feature.name): _field(feature, policy) for feature in schema.features
    }
    return create_model("Record", __base__=_RecordBase, **fields)


def _field(feature: Feature, policy: ServingPolicy) -> tuple[Any, Any]:
    alias = feature.name if field_name(feature.name) != feature.name else None
    if feature.is_numeric:
        bounds = {}
        if policy.out_of_range == "reject":
            bounds = {"ge": feature.min, "le": feature.max}
        annotation: Any = float
        constraints = Field(alias=alias, allow_inf_nan=False, **bounds)
    else:
        annotation = Literal[feature.categories] if policy.unseen_category == "reject" else str
        constraints = Field(alias=alias, min_length=1)
    if feature.nullable:
        annotation = annotation | None  # the field is still required: null, not absent
    return annotation, constraints


def policy_warnings(
    record: dict[str, Any], schema: FeatureSchema, quote_values: bool = True
) -> list[str]:
    """What a 'warn' policy lets through: out-of-range numbers, unseen categories.

    Without `quote_values`, each names the field and the rule but not the value: what the
    service logs, since a request's values are somebody's data.
    """
    problems = []
    for feature in schema.features:
        value = record.get(feature.name)
        if value is None:
            continue
        if feature.is_numeric:
            if (feature.min is not None and value < feature.min) or (
                feature.max is not None and value > feature.max
            ):
                shown = f"{value} is outside" if quote_values else "outside"
                problems.append(f"{feature.name}: {shown} [{feature.min}, {feature.max}]")
        elif value not in feature.categories:
            # The value is the client's: quoted, a long one cut, wherever it is shown.
            shown = f" '{quoted_name(value)}'" if quote_values else ""
            problems.append(f"{feature.name}: unseen category{shown}")
    return problems
