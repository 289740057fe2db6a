"""The `multimem` command line: one parser, one module per command group."""
from multimem.cli.main import build_config, main, parser  # noqa: F401
