import sys

from wirekit.cli.main import main

sys.exit(main())
