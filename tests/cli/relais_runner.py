"""Run the real ``relais`` command (``python -m bot``) in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bot import PROJECT_ROOT

TIMEOUT_S = 180


@dataclass
class Relais:
    """``python -m bot`` with its own data folder and database."""

    env: dict[str, str]
    cwd: Path

    def __call__(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "bot", *args],
        check=False,
            env=self.env,
            cwd=self.cwd,
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=TIMEOUT_S,
        )
        if check:
            assert done.returncode == 0, f"relais {' '.join(args)} -> {done.returncode}\n{done.stderr}"
        return done


def make_relais(folder: Path, database_url: str, models_dir: Path) -> Relais:
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(
        RELAIS_DATA_DIR=str(folder / "data"),
        RELAIS_DATABASE_URL=database_url,
        RELAIS_MODELS_DIR=str(models_dir),
    )
    relais = Relais(env=env, cwd=folder)
    if database_url.startswith("postgresql"):
        relais("db", "upgrade")  # the server upgrades only SQLite by itself
    return relais
