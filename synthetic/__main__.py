import sys

from synthetic.reviews import main

sys.exit(main())
