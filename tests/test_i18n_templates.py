"""Every text a template shows is translatable: wrapped in ``_()``/``ngettext()``.

The template is read as HTML with each Jinja tag replaced by a marker: text between elements and the
attributes people read (``aria-label``, ``title``, ``placeholder``, ``alt``) may hold only markers,
punctuation, digits and symbols, not words. Inside ``{{ … }}`` a string constant that is shown (not
an argument of ``url_for`` and the like) must be wrapped too; so must the label and hint given to
the form macros. Text inside ``<code>``, ``<pre>``, ``<script>`` and ``<style>`` is not prose.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from jinja2 import Environment, nodes

from powerbank.config import PROJECT_ROOT

TEMPLATES = PROJECT_ROOT / "templates"
TRANSLATING = {"_", "gettext", "ngettext"}
# Calls whose string arguments are not shown to people (addresses, formats, ids, CSS classes).
NOT_SHOWN_ARGUMENTS = {"url_for", "csrf_token", "public_url", "charge_point_time_zone", "time", "csrf", "format"}
# The form macros of macros.html: the positions and keywords of their shown arguments.
MACRO_TEXT_ARGUMENTS = {"field": (1, {"label", "hint"}), "select": (1, {"label", "blank"}), "sort_link": (1, {"label"})}
READ_ATTRIBUTES = {"aria-label", "title", "placeholder", "alt"}
NOT_PROSE = {"code", "pre", "script", "style", "kbd", "samp"}
JINJA = re.compile(r"{{.*?}}|{%.*?%}|{#.*?#}", re.S)
MARKER = "\x00{}\x00"
MARKED = re.compile(r"\x00(\d+)\x00")
# A word: two letters in a row (any alphabet). "kW", "s" on their own are units beside numbers.
WORD = re.compile(r"[^\W\d_]{2,}")
UNITS = {"kW", "KiB", "ms", "UTC"}

ENV = Environment(extensions=["jinja2.ext.i18n"])


def _words(text: str) -> list[str]:
    return [word for word in WORD.findall(text) if word not in UNITS]


def _shown_constants(expression: str) -> list[str]:
    """String constants of a ``{{ … }}`` expression that reach the page without translation."""
    try:
        tree = ENV.parse("{{" + expression + "}}")
    except Exception:  # a fragment of a larger statement; the statement itself is checked where it is
        return []
    found: list[str] = []

    def visit(node: nodes.Node) -> None:
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name):
            name = node.node.name
            if name in TRANSLATING or name in NOT_SHOWN_ARGUMENTS:
                return
            if name in MACRO_TEXT_ARGUMENTS:
                position, keywords = MACRO_TEXT_ARGUMENTS[name]
                shown = node.args[position : position + 1] + [kw.value for kw in node.kwargs if kw.key in keywords]
                if name == "select" and len(node.args) > 2 and isinstance(node.args[2], nodes.List):
                    # A literal list of (value, text) options: the texts are shown.
                    shown += [item.items[1] for item in node.args[2].items if isinstance(item, nodes.Tuple)]
                for argument in shown:
                    visit(argument)
                return
            for argument in node.args + [kw.value for kw in node.kwargs]:
                visit(argument)
            return
        if isinstance(node, nodes.Call | nodes.Filter | nodes.Test | nodes.Getattr | nodes.Getitem):
            # Method calls, filters and tests take formats, separators and keys; what they apply to is visited.
            inner = node.node
            if inner is not None:
                visit(inner)
            return
        if isinstance(node, nodes.Compare):
            return
        if isinstance(node, nodes.Pair):
            # A mapping's keys are looked up, its values shown.
            visit(node.value)
            return
        if isinstance(node, nodes.Const) and isinstance(node.value, str) and _words(node.value):
            found.append(node.value)
            return
        for child in node.iter_child_nodes():
            visit(child)

    visit(tree)
    return found


class _ProseFinder(HTMLParser):
    def __init__(self, expressions: list[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.expressions = expressions
        self.not_prose = 0
        self.problems: list[str] = []

    def _check(self, text: str, where: str) -> None:
        for index in MARKED.findall(text):
            self.problems += [f"{where}: {constant!r}" for constant in _shown_constants(self.expressions[int(index)])]
        bare = MARKED.sub(" ", text)
        if _words(bare):
            self.problems.append(f"{where}: {' '.join(bare.split())!r}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in NOT_PROSE:
            self.not_prose += 1
        for name, value in attrs:
            if name in READ_ATTRIBUTES and value:
                self._check(value, f"<{tag} {name}>")
            elif value:
                # A marker in another attribute may still be a macro call that shows text (never in practice).
                continue

    def handle_endtag(self, tag: str) -> None:
        if tag in NOT_PROSE and self.not_prose:
            self.not_prose -= 1

    def handle_data(self, data: str) -> None:
        if not self.not_prose:
            self._check(data, "text")


def untranslated_texts(source: str) -> list[str]:
    """Return the texts of a template that a reader sees and that are not translatable."""
    expressions: list[str] = []

    def mark(match: re.Match[str]) -> str:
        tag = match.group(0)
        if tag.startswith("{{"):
            expressions.append(tag[2:-2].strip().strip("-").strip())
            return MARKER.format(len(expressions) - 1)
        if tag.startswith("{%"):
            # Statements' own strings (set, if, macro defaults) are judged where they are shown.
            return " "
        return ""

    finder = _ProseFinder(expressions)
    finder.feed(JINJA.sub(mark, source))
    finder.close()
    return finder.problems


def _templates() -> list[Path]:
    return sorted(TEMPLATES.rglob("*.html"))


@pytest.mark.parametrize("path", _templates(), ids=lambda path: str(path.relative_to(TEMPLATES)))
def test_every_shown_text_of_a_template_is_translatable(path: Path) -> None:
    problems = untranslated_texts(path.read_text(encoding="utf-8"))
    assert not problems, f"{path.relative_to(PROJECT_ROOT)} shows text not wrapped in _():\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("<p>Sign up</p>", "Sign up"),
        ('<a title="Your account" href="/">x</a>', "Your account"),
        ('<p>{{ name or "Missing" }}</p>', "Missing"),
        ('{{ field("email", "Email", values, errors) }}', "Email"),
        ('{{ field("email", _("Email"), values, errors, hint="At least 10") }}', "At least 10"),
        ('<dd>{{ "Whole charger" if n == 0 else n }}</dd>', "Whole charger"),
        ('<td>{{ {"alive": "Alive"}[node.state] }}</td>', "Alive"),
        ('{{ field("n", _("N"), v, e, hint="Only for " ~ kind ~ " here.") }}', "Only for"),
        ('{{ select("a", _("A"), [("pause", "Pause charging")], v, e) }}', "Pause charging"),
    ],
)
def test_untranslated_text_is_found(source: str, problem: str) -> None:
    assert any(problem in found for found in untranslated_texts(source))


@pytest.mark.parametrize(
    "source",
    [
        '<p>{{ _("Sign up") }} · {{ cp.name }} › 42 — ▲</p>',
        '<a href="{{ url_for(\'home.index\', q="x y") }}" class="status {{ "is on" if on }}">{{ _("Home") }}</a>',
        "<code>STO-001;735999100000000010</code><pre>GET /api/v1</pre>",
        '{{ field("email", _("Email"), values, errors, type="email", autocomplete="username") }}',
        '<p>{{ ngettext("%(num)s change", "%(num)s changes", n) }} 5 kW</p>',
        '{% set label = "not shown" %}<p>{{ value|default("—") }}</p>',
    ],
)
def test_translated_or_wordless_text_passes(source: str) -> None:
    assert untranslated_texts(source) == []
