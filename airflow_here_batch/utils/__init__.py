"""Pure helpers shared by the hooks, operators and example DAGs."""
