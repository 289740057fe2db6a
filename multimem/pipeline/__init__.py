"""A run's stages and `execute`, which runs them in order and resumes: settings (config), the data stage (data),
training f and g (training), scoring, evaluation and indexing (stages); presets of ready-made settings. Never
imports multimem.mitigation."""
from multimem.model.factory import store_size  # noqa: F401
from multimem.pipeline.config import RunConfig, same_split  # noqa: F401
from multimem.pipeline.stages import STAGES, execute  # noqa: F401
from multimem.pipeline.training import load_pair  # noqa: F401
