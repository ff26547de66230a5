"""Compile the catalogues (``compile``), or list the messages that lack a translation (``check``)."""

import sys

from powerbank.i18n import main

sys.exit(main(sys.argv[1:]))
