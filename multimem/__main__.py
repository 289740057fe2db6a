import sys

from multimem.cli import main

sys.exit(main())
