#!/usr/bin/env bash
# Regenerates docs/sample-report/: the report that pr2prod writes for a demonstration
# pull request (two hyperparameters changed), produced by the real code on a throw-away
# clone. The README shows it as the sample PR comment. Run through `make sample-report`.
set -euo pipefail

root=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

git clone --quiet "$root" "$work/repo"
cd "$work/repo"
git config user.name "pr2prod sample"
git config user.email "sample@pr2prod.invalid"

# The clone runs in the caller's environment (already on PATH): VENV= tells make so.
make --no-print-directory data VENV= >/dev/null
make --no-print-directory repro VENV= >/dev/null
git checkout --quiet -b demo-more-trees
sed -i -e 's/n_estimators: 200/n_estimators: 400/' -e 's/min_samples_leaf: 2/min_samples_leaf: 1/' params.yaml
make --no-print-directory repro VENV= >/dev/null
git commit --quiet --all --message "More, deeper-leaved trees"
make --no-print-directory report VENV= BASE=main

rm -rf "$root/docs/sample-report"
mkdir -p "$root/docs/sample-report"
cp -r report/report.md report/plots "$root/docs/sample-report/"
echo "sample-report: wrote docs/sample-report/"
