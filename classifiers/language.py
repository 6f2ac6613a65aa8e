"""Light French/English language guess from stopwords, elisions, accents and regional words."""

from __future__ import annotations

import re

_FR_WORDS = frozenset(
    """le la les un une des du au aux et est sont pas je tu il elle nous vous ils elles
    mon ma mes ton ta tes son sa ses votre vos notre nos leur leurs ce cet cette ces ça ca
    qui que quoi quand comment pourquoi où ou mais donc car pour avec sans sur sous dans chez
    très trop rien jamais toujours encore aussi bien merci bonjour bonsoir salut svp stp
    oui non avoir être fait faire depuis après avant parce moi toi lui eux y en ai as avez
    avons ont était été suis es sommes êtes vraiment déjà même moins tout tous toute
    toutes beaucoup peu comme si alors voilà vous-même encore enfin génial nul nulle
    commande livraison remboursement produit magasin déçu déçue pourri premier première
    participe participer coucou mauvais mauvaise inexistant belle beau demain ouvert ouverte
    fermé êtes etes vs voila voilà année annee jveux chuis jsuis ptit""".split()
)
# Québec and Belgium: words that almost never appear in English text.
_FR_REGIONAL = frozenset(
    """pis icitte ben chu tsé pantoute astheure asteure magasiner magasinage chum blonde
    dépanneur niaiser niaiseux tabarnak tabarnac ostie câlisse calisse crisse tanné tannée
    toutte ouin placoter jaser bibitte quétaine tuque débarbouillette courriel cossin
    septante nonante gsm kot dringuelle brol endéans savoir-vivre goûter tantôt sacoche
    frette aweille envoye ouais bin""".split()
)
_EN_WORDS = frozenset(
    """the and is are was were to of in it its this that with for not no you your my i
    im i'm me we they he she them our us their have has had be been being what why how
    when where who just very so but or if at by from will would can could should please
    thanks thank hello hi hey still again never ever any anyone does did do got get
    love great awesome bad worst terrible good nice really today yesterday ordered order
    customer delivery refund store shop waiting week day time after before there here
    an than then about because which disappointed disgusting unacceptable ridiculous
    rubbish joke useless amazing happy cute sorry congrats everyone brilliant same poor need
    every free first wrong obsessed accurate pls yall""".split()
)
# Other frequent languages: enough to say "other" rather than a wrong guess.
_OTHER_WORDS = frozenset(
    """el los las del por una muy pero gracias está esto también der die das und ist nicht
    ich mit sie ein eine auf für danke het een niet ik dat van zijn voor il lo gli della
    che non sono grazie molto anche questo obrigado não uma você""".split()
)
_FR_ELISION = re.compile(r"\b(?:j|l|d|c|n|qu|s|m|t|jusqu|lorsqu|puisqu)'[a-zàâäçéèêëîïôöùûüÿœ]")
_EN_CONTRACTION = re.compile(
    r"[a-z](?:n't|'m|'re|'ve|'ll|'d)\b|\b(?:it|that|what|there|he|she)'s\b"
)
_FR_ACCENTS = re.compile(r"[àâçéèêëîïôùûüÿœæ]")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_NOISE = re.compile(r"https?://\S+|www\.\S+|[@#]\w+")


def detect_language(text: str) -> str:
    """Return "fr", "en" or "other" ("other" when unsure, for emoji-only or too little text)."""
    cleaned = _NOISE.sub(" ", text.replace("’", "'").replace("‘", "'")).lower()
    words = _WORD.findall(cleaned)
    if not words:
        return "other"
    fr = 1.5 * len(_FR_ELISION.findall(cleaned))
    en = 1.5 * len(_EN_CONTRACTION.findall(cleaned))
    other = 0.0
    for word in words:
        base = word.split("'")[-1] if "'" in word and not word.endswith("'") else word
        if word in _FR_REGIONAL or base in _FR_REGIONAL:
            fr += 2.0
        elif base in _FR_WORDS:
            fr += 1.0
        elif word in _EN_WORDS:
            en += 1.0
        elif word in _OTHER_WORDS:
            other += 1.0
        if _FR_ACCENTS.search(word):
            fr += 1.0
    best = max(fr, en, other)
    if best < 1.0 or other == best:
        return "other"
    if fr == en:
        return "other"
    return "fr" if fr > en else "en"
