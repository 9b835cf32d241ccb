"""Built-in de-identification profiles (YAML), installed as ``anonymizer.builtin_profiles``."""
