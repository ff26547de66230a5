"""Every translatable message has a Danish and a Swedish translation, with the same placeholders.

The messages are extracted from the sources as they are now (as `make translations-extract` does),
so a new ``_()`` without a translation fails here, naming it; `make translations-extract` then adds it
to the catalogues and lists what to translate.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from powerbank import i18n
from powerbank.config import PROJECT_ROOT

KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
SOURCES = [("powerbank", [("**.py", "python")]), ("templates", [("**.html", "jinja2")])]
LOCALES = [locale for locale in i18n.LANGUAGES if locale != i18n.DEFAULT_LOCALE]


def _extracted() -> dict[str | tuple[str, ...], list[str]]:
    """Every message in the sources, and where it is used."""
    found: dict[str | tuple[str, ...], list[str]] = {}
    for folder, method_map in SOURCES:
        for filename, lineno, message, _comments, _context in extract_from_dir(
            PROJECT_ROOT / folder, method_map, keywords=KEYWORDS
        ):
            key = message if isinstance(message, str) else tuple(message)
            found.setdefault(key, []).append(f"{folder}/{filename}:{lineno}")
    return found


MESSAGES = _extracted()


def _catalogue(locale: str):  # type: ignore[no-untyped-def]
    po_path, _mo_path = i18n.catalogue_paths(locale)
    with Path(po_path).open("rb") as po_file:
        return read_po(po_file, locale=locale)


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_has_a_translation_with_the_same_placeholders(locale: str) -> None:
    catalogue = _catalogue(locale)
    missing, mismatched = [], []
    for key, places in sorted(MESSAGES.items(), key=lambda item: item[1][0]):
        ids = [key] if isinstance(key, str) else list(key)
        message = catalogue.get(ids[0] if isinstance(key, str) else tuple(ids))
        strings = [] if message is None else ([message.string] if isinstance(key, str) else list(message.string))
        if message is None or message.fuzzy or not strings or not all(strings):
            missing.append(f"{places[0]}: {ids[0]!r}")
            continue
        wanted = [p for p in i18n.placeholders(ids[-1]) if "num" not in p]
        for string in strings:
            got = [p for p in i18n.placeholders(string) if "num" not in p]
            if got != wanted:
                mismatched.append(f"{places[0]}: {ids[0]!r} → {string!r} ({wanted} != {got})")
    assert not mismatched, f"{locale}: placeholders differ from the English:\n" + "\n".join(mismatched)
    assert not missing, (
        f"{len(missing)} message(s) lack a {i18n.LANGUAGES[locale]} translation "
        f"(run `make translations-extract`, then translate them in powerbank/translations/{locale}/LC_MESSAGES/"
        "messages.po):\n" + "\n".join(missing)
    )


def test_the_placeholder_check_sees_a_difference() -> None:
    assert i18n.placeholders("%(name)s stops, %(count)d left, 50 %%") == ["%%", "%(count)d", "%(name)s"]
    assert i18n.placeholders("%(navn)s stopper") != i18n.placeholders("%(name)s stopper")


@pytest.mark.parametrize(
    ("locale", "english", "translated"),
    [
        ("da", "Sign up for PowerBank", "Tilmeld til PowerBank"),
        ("sv", "Sign up for PowerBank", "Anmäl till PowerBank"),
        ("sv", "Facility ID", "Anläggnings-ID"),
        ("en", "Sign up for PowerBank", "Sign up for PowerBank"),
        ("en", "Charge point functionalities", "Charge point functionalities"),
    ],
)
def test_a_message_reads_in_the_chosen_language(locale: str, english: str, translated: str) -> None:
    with i18n.use_locale(locale):
        assert i18n.gettext(english) == translated


def test_plural_forms_and_placeholders_are_filled() -> None:
    with i18n.use_locale("sv"):
        assert i18n.ngettext("%(num)s charge point", "%(num)s charge points", 1) == "1 laddpunkt"
        assert i18n.ngettext("%(num)s charge point", "%(num)s charge points", 3) == "3 laddpunkter"
        assert i18n.gettext("Not available in %(country)s", country="Norge") == "Inte tillgänglig i Norge"
    assert i18n.current_locale() == "en"


def test_a_stale_catalogue_is_compiled_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "da" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    po = folder / "messages.po"
    po.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\nmsgid "Yes"\nmsgstr "Ja"\n')
    monkeypatch.setattr(i18n, "TRANSLATIONS_DIR", tmp_path)
    compiled = i18n.compiled_catalogue("da")
    assert compiled is not None and (folder / "messages.mo").read_bytes() == compiled
    po.write_text(po.read_text().replace('"Ja"', '"Jo"'))
    mo = folder / "messages.mo"
    # The .po is newer than the .mo now (a checkout, an edit): it is compiled again.
    os.utime(mo, (po.stat().st_mtime - 10, po.stat().st_mtime - 10))
    assert b"Jo" in (i18n.compiled_catalogue("da") or b"")
