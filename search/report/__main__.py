import sys

from search.report import main

sys.exit(main())
