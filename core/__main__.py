"""`python -m loopauth`."""

from .cli import main

raise SystemExit(main())
