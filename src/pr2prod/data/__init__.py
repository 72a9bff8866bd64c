"""Getting the data, checking it against the schema, and reading it typed."""
