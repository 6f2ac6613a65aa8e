"""Reading labelled examples from CSV (`text,label,language,platform,kind,parent_is_ad`)."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from classifiers.domain import LABELS, Context, Example

DATA_DIR = Path(__file__).parent / "data"
COLUMNS: tuple[str, ...] = ("text", "label", "language", "platform", "kind", "parent_is_ad")
_TRUE = frozenset({"1", "true", "yes", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "n", "f", ""})


def _parse_bool(value: str, where: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{where}: parent_is_ad must be 0 or 1, got {value!r}")


def read_examples(path: Path, labels: Sequence[str] | None = LABELS) -> list[Example]:
    """Read one CSV file; any row with an empty text or a label outside `labels` is an error
    naming the file and line (pass ``labels=None`` to accept any label)."""
    examples: list[Example] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"text", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected {COLUMNS}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            text = (row.get("text") or "").strip()
            label = (row.get("label") or "").strip()
            if not text:
                raise ValueError(f"{where}: empty text")
            if labels is not None and label not in labels:
                raise ValueError(f"{where}: unknown label {label!r}; expected one of {labels}")
            context = Context(
                platform=(row.get("platform") or "").strip().lower(),
                kind=(row.get("kind") or "").strip().lower(),
                parent_is_ad=_parse_bool(row.get("parent_is_ad") or "", where),
            )
            language = (row.get("language") or "").strip().lower()
            examples.append(Example(text, label, language, context))
    return examples


PAPER_DOMAINS_RANDOM = frozenset({"random_tweet", "random_reply"})


def _looks_like_paper_row(row: Sequence[str]) -> bool:
    return len(row) == 4 and row[0].strip().isdigit() and row[2].strip() in ("0", "1")


def read_labelled(path: Path, binary: str | None = None) -> tuple[list[Example], list[str]]:
    """Examples and their domains from either a CSV with a header (``text,label`` and the
    optional columns of `COLUMNS`, plus an optional ``domain``) or the complaints file of
    Preotiuc-Pietro et al. (ACL 2019): no header, ``tweet id,text,1|0,domain``, read as X
    mentions labelled `binary` (default "complaint") or ``not_<binary>``."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        first = next(csv.reader(handle), None)
    if first is None:
        raise ValueError(f"{path}: empty file")
    if not _looks_like_paper_row(first):
        examples = read_examples(path, labels=None)
        with path.open(newline="", encoding="utf-8-sig") as handle:
            domains = [(row.get("domain") or "").strip() for row in csv.DictReader(handle)]
        return examples, domains
    positive = binary or "complaint"
    examples, domains = [], []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if not _looks_like_paper_row(row) or not row[1].strip():
                raise ValueError(f"{path}:{line}: expected tweet id,text,1|0,domain")
            label = positive if row[2].strip() == "1" else f"not_{positive}"
            examples.append(Example(row[1].strip(), label, "", Context("x", "mention")))
            domains.append(row[3].strip())
    return examples, domains


def seed_files(directory: Path | None = None) -> list[Path]:
    return sorted((directory or DATA_DIR).glob("seed_*.csv"))


def load_seed(directory: Path | None = None) -> list[Example]:
    """Every example of every ``seed_*.csv`` in `directory` (default: the package's data/)."""
    files = seed_files(directory)
    if not files:
        raise FileNotFoundError(f"no seed_*.csv in {directory or DATA_DIR}")
    examples: list[Example] = []
    for path in files:
        examples.extend(read_examples(path))
    return examples


def write_examples(path: Path, examples: Iterable[Example]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for ex in examples:
            ctx = ex.context
            writer.writerow(
                [ex.text, ex.label, ex.language, ctx.platform, ctx.kind, int(ctx.parent_is_ad)]
            )


def examples_sha256(examples: Iterable[Example]) -> str:
    """Order-sensitive digest of the training data (text, label, language and context)."""
    digest = hashlib.sha256()
    for ex in examples:
        ctx = ex.context
        record = [ex.text, ex.label, ex.language, ctx.platform, ctx.kind, ctx.parent_is_ad]
        digest.update(json.dumps(record, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
