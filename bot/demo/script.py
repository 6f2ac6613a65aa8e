"""What happens on the simulated Page and X account during the demo.

A bakery chain, Boulangerie Dorée, publishes a post and a promotion; customers
comment in French and English, and mention the brand on X. The same scenes
repeat with other authors when the demo runs long.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Brand posts published before the stream starts: (key, text, promoted)
BRAND_POSTS = [
    ("gateau", "Nouveau ce mois-ci : notre Forêt-Noire maison, dans toutes nos boutiques 🍒🍫", False),
    ("promo", "PROMO ! -20 % sur tous les croissants ce week-end, avec notre boulanger qui danse 🥐💃 #BoulangerieDorée", True),
]


@dataclass(frozen=True)
class Scene:
    platform: str  # "facebook" comment on a brand post, "facebook_post" visitor post, or "x"
    author: str
    text: str
    on: str | None = None  # key of the brand post commented on
    answer: bool = True  # does the scripted expert answer it?


SCENES = [
    Scene("facebook", "Julie Bouchard", "J'ai acheté la Forêt-Noire hier à la succursale de Laval pour l'anniversaire de ma fille et le gâteau était sec et rassis 😡 45 $ pour ça, vraiment pas correct. On m'a dit d'appeler la boutique mais personne ne répond.", on="gateau"),
    Scene("facebook", "Marc Gagnon", "Haha la pub avec le boulanger qui danse 😂😂 c'est quoi la chanson?", on="promo"),
    Scene("x", "lea_martin", "vous devriez faire une version sans gluten de vos croissants, je serais cliente tous les jours ! 🙏"),
    Scene("facebook", "Emma Wilson", "Does the 20% off apply to the birthday cakes too? Tagging @Sam 🎂", on="promo"),
    Scene("x", "tom_harris", "Ordered a cake for my son's birthday, delivery was 2 hours late and nobody picked up the phone. Not great."),
    Scene("facebook_post", "Sophie Lambert", "Ce serait super d'avoir des options véganes au comptoir, surtout pour les viennoiseries 🌱"),
    Scene("facebook", "Nadia Benali", "Bravo pour le pain aux olives, un délice 😍 merci à l'équipe de Québec", on="gateau", answer=False),
    Scene("facebook", "Kevin Roy", "Encore cette pub 🙄 je la vois 10 fois par jour", on="promo"),
    Scene("x", "claire_dubois", "Mon croissant avait un cheveu dedans ce matin... franchement dégueu, je ne reviendrai pas", answer=False),
    Scene("facebook", "Liam Chen", "Could you bring back the lemon tart? It was the best thing on the menu", on="gateau"),
]

ALT_AUTHORS = ["Camille", "Olivier", "Chantal", "Noah", "Amélie", "Ethan", "Zoé", "Jacob"]
