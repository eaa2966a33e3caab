"""The config: YAML read with line numbers, checked, and turned into frozen spec objects."""
