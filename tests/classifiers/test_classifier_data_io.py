from __future__ import annotations

from pathlib import Path

import pytest

from classifiers import Context, Example, load_seed
from classifiers.data_io import examples_sha256, read_examples, write_examples

HEADER = "text,label,language,platform,kind,parent_is_ad\n"


def test_load_seed_reads_every_seed_file(tmp_path: Path) -> None:
    (tmp_path / "seed_fr.csv").write_text(HEADER + "Colis perdu,complaint,fr,facebook,comment,0\n")
    (tmp_path / "seed_en.csv").write_text(HEADER + '"Nice ad, lol",ad_reaction,en,x,comment,1\n')
    (tmp_path / "notes.csv").write_text(HEADER + "ignored,other,en,x,post,0\n")
    examples = load_seed(tmp_path)
    assert examples == [
        Example("Nice ad, lol", "ad_reaction", "en", Context("x", "comment", True)),
        Example("Colis perdu", "complaint", "fr", Context("facebook", "comment", False)),
    ]


def test_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "seed_x.csv"
    path.write_text(HEADER + "ok,other,en,x,post,0\nhmm,complain,en,x,post,0\n")
    with pytest.raises(ValueError, match=r"seed_x.csv:3: unknown label 'complain'"):
        read_examples(path)
    path.write_text(HEADER + "ok,other,en,x,post,maybe\n")
    with pytest.raises(ValueError, match="parent_is_ad"):
        read_examples(path)


def test_no_seed_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_seed(tmp_path)


def test_write_read_round_trip_and_hash(tmp_path: Path) -> None:
    examples = [Example('Il a dit "non", puis rien', "complaint", "fr", Context("x", "mention"))]
    write_examples(tmp_path / "seed_t.csv", examples)
    assert read_examples(tmp_path / "seed_t.csv") == examples
    assert examples_sha256(examples) != examples_sha256([*examples, *examples])


def test_shipped_seed_is_bilingual(seed_examples: list[Example]) -> None:
    languages = {e.language for e in seed_examples}
    assert {"fr", "en"} <= languages
    assert {e.label for e in seed_examples} == {
        "complaint",
        "product_feedback",
        "ad_reaction",
        "other",
    }


def test_read_labelled_detects_the_acl2019_layout(tmp_path: Path) -> None:
    from classifiers.data_io import read_labelled

    path = tmp_path / "complaints.csv"
    path.write_text('123,"@Help my order, again late",1,retail\n456,nice day,0,random_tweet\n')
    examples, domains = read_labelled(path)
    assert examples == [
        Example("@Help my order, again late", "complaint", "", Context("x", "mention")),
        Example("nice day", "not_complaint", "", Context("x", "mention")),
    ]
    assert domains == ["retail", "random_tweet"]
    header = tmp_path / "eval.csv"
    header.write_text(HEADER + "Colis perdu,complaint,fr,facebook,comment,0\n")
    examples, domains = read_labelled(header)
    assert [e.label for e in examples] == ["complaint"] and domains == [""]
    broken = tmp_path / "broken.csv"
    broken.write_text('1,"ok",1,retail\n2,"missing domain",0\n')
    with pytest.raises(ValueError, match="broken.csv:2"):
        read_labelled(broken)
