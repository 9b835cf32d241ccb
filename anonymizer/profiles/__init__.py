"""De-identification profiles: YAML -> validated spec -> compiled rules.

>>> from anonymizer.profiles import load_profile
>>> profile = load_profile("basic")       # a built-in name, or a path to a YAML file
"""

from anonymizer.profiles.compiler import builtin_profile_names, load_profile

__all__ = ["builtin_profile_names", "load_profile"]
