"""The `multimem` command line: the parser and entry point (main), one module per command group (commands,
mitigation, scale), shared options (options) and what the commands print (output)."""
from multimem.cli.main import main, parser  # noqa: F401
from multimem.cli.options import build_config  # noqa: F401
