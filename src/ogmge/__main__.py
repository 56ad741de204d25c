import sys

from ogmge.interfaces.cli import main

sys.exit(main())
