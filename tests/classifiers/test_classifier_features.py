from __future__ import annotations

from classifiers import Context
from classifiers.features import cue_tokens, fold_accents, negation_tokens, normalise


def test_normalise_placeholders_and_contractions() -> None:
    text = "@Bell_Aide Commande 1234567 NUUUUL, can't log in https://x.co/a"
    assert normalise(text) == "__user__ commande __num__ nuul, can not log in __url__"


def test_fold_accents() -> None:
    assert fold_accents("problème à l'hôtel, cœur") == "probleme a l'hotel, coeur"


def test_negation_scope_skips_fillers_and_stops_at_punctuation() -> None:
    assert negation_tokens(normalise("C'est pas très bon, merci")) == ["neg_bon"]
    assert negation_tokens(normalise("This isn't great")) == ["neg_great"]
    assert negation_tokens(normalise("je ne veux plus de vos produits")) == [
        "neg_veux",
        "neg_produits",
    ]
    assert negation_tokens(normalise("Je n'aime pas")) == ["neg_aime"]


def test_context_and_emoji_cues() -> None:
    cues = cue_tokens("Trop drôle 😂", Context(platform="x", kind="comment", parent_is_ad=True))
    assert {"__platform_x__", "__kind_comment__", "__parent_ad__", "__ad_comment__"} <= set(cues)
    assert {"emoji:😂", "__emoji_laugh__", "__lang_fr__"} <= set(cues)
    assert "__parent_ad__" not in cue_tokens("Trop drôle", Context(kind="comment"))
