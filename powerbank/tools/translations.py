"""Compile the Danish and Swedish catalogues (``compile``), or list the messages that lack a translation (``check``).

``python -m powerbank.tools.translations compile|check``; `make translations-compile` and
`make translations-extract` run it.
"""

import sys

from powerbank.i18n import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
