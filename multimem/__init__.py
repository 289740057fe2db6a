__version__ = "0.1.0"

from multimem import compat as _compat

_compat.install()  # old module paths (multimem.runs, multimem.mitigate, ...) import their new homes
