"""`python -m bot …` is `releasebot …`."""

from bot.cli import main

raise SystemExit(main())
