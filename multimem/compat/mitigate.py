"""Moved to the multimem.mitigation package; these names keep the old import path working for one release."""
import multimem.mitigation  # noqa: F401  (registers the strategies)
from multimem.errors import MitigationError  # noqa: F401
from multimem.mitigation.base import REGISTRY, child_name, make_params, params_dict, same_as_parent  # noqa: F401
from multimem.mitigation.captions import CaptionParams  # noqa: F401
from multimem.mitigation.compare import compare, cost_of, utility_row  # noqa: F401
from multimem.mitigation.derive import mitigate, open_parent, plan  # noqa: F401
from multimem.mitigation.noise import NoiseParams  # noqa: F401
from multimem.mitigation.regroup import RegroupParams  # noqa: F401
from multimem.mitigation.removal import POOLS, RANKINGS, RemovalParams  # noqa: F401

STRATEGIES = tuple(REGISTRY)
PARAMS = {name: s.Params for name, s in REGISTRY.items()}
SWEPT = {name: s.swept for name, s in REGISTRY.items()}
from multimem.config import NOISE_SPACES  # noqa: F401,E402
