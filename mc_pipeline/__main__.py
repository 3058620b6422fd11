import sys

from mc_pipeline.runtime.cli import main

sys.exit(main())
