"""The Danish and Swedish catalogues (messages.po); `python -m powerbank.translations compile|check`."""
