from __future__ import annotations

import pytest

from classifiers import detect_language


@pytest.mark.parametrize(
    "text",
    [
        "Bonjour, ma commande n'est toujours pas arrivée",
        "C'est pas bon du tout",
        "Merci!",
        "Déçue.",
        "Chu tanné, pis mon char marche pantoute",  # Québec
        "Ben là, j'ai magasiné toute la journée icitte",  # Québec
        "Septante euros pour ça, une fois!",  # Belgium
        "Mon GSM ne capte plus depuis nonante minutes",  # Belgium
        "@Bell_Aide ma facture est erronée https://t.co/abc",
    ],
)
def test_french(text: str) -> None:
    assert detect_language(text) == "fr"


@pytest.mark.parametrize(
    "text",
    [
        "My order still hasn't arrived",
        "This is not great",
        "thanks!!",
        "Disappointed.",
        "@BrightHelp why have I been charged twice?",
        "the café was closed again",
    ],
)
def test_english(text: str) -> None:
    assert detect_language(text) == "en"


@pytest.mark.parametrize(
    "text",
    ["", "   ", "😡😡😡", "👍", "ok", "lol", "!!!", "12345", "https://t.co/x", "Das ist nicht gut"],
)
def test_other_when_unsure_or_foreign(text: str) -> None:
    assert detect_language(text) == "other"
