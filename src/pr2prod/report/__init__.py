"""The pull-request report: how the workspace compares with a base revision, and the gate."""
