"""python -m emulators.gitlab: serve the seeded demo data until killed."""

from emulators.gitlab.control import main

main()
