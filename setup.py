"""Build hook (the project itself is described in pyproject.toml).

The templates, static files, migrations and alembic.ini live beside the package in a checkout. A
wheel must carry them, so they are copied into ``powerbank/_bundled`` of the build, where
``powerbank.config.RESOURCE_ROOT`` finds them once installed. An editable install reads them from
the checkout and gets no copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ("templates", "static", "migrations", "alembic.ini")


class BuildWithResources(build_py):
    """Build the package, then copy the resources next to its modules."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "powerbank" / "_bundled"
        target.mkdir(parents=True, exist_ok=True)
        for name in BUNDLED:
            source = ROOT / name
            if source.is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules")
                shutil.copytree(source, target / name, dirs_exist_ok=True, ignore=ignore)
            else:
                shutil.copy2(source, target / name)


setup(
    cmdclass={"build_py": BuildWithResources},
    package_data={
        "powerbank": ["translations/*.pot", "translations/*/LC_MESSAGES/*.po", "translations/*/LC_MESSAGES/*.mo"]
    },
)
