"""GitHub's REST API, for the few things a workflow asks of it: PR comments, earlier runs."""
