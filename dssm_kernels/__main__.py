import sys

from dssm_kernels.cli import main

sys.exit(main())
