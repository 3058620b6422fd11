import sys

from mc_pipeline.cli import main

sys.exit(main())
