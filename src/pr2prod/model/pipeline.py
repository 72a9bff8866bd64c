"""The scikit-learn Pipeline: preprocessing derived from the schema, then the estimator."""

from __future__ import annotations

from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from pr2prod.schema import FeatureSchema


def build_pipeline(schema: FeatureSchema, estimator: BaseEstimator) -> Pipeline:
    """Numeric features: median-imputed and scaled. Categorical: mode-imputed, one-hot.

    The one-hot categories come from the schema, not from the training rows, so a
    category that happens to be absent from the training split still has its column.
    """
    transformers = []
    if schema.numeric_features:
        numeric = Pipeline(
            [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
        )
        transformers.append(("numeric", numeric, schema.numeric_features))
    categorical_features = [f for f in schema.features if not f.is_numeric]
    if categorical_features:
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent")),
                (
                    "one_hot",
                    OneHotEncoder(
                        categories=[list(f.categories) for f in categorical_features],
                        handle_unknown="ignore",
                    ),
                ),
            ]
        )
        transformers.append(("categorical", categorical, [f.name for f in categorical_features]))
    preprocess = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("preprocess", preprocess), (estimator_step(schema), estimator)])


def estimator_step(schema: FeatureSchema) -> str:
    """The estimator's step name in the pipeline: what it is to the schema's target."""
    return "regressor" if schema.target.is_numeric else "classifier"
