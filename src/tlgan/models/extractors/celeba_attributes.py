"""The 40 CelebA attributes and how the original TL-GAN notebook presented them (facts, for compatibility)."""

from __future__ import annotations

# Column order of list_attr_celeba.txt, which is also the output order of the
# original feature CNN and the column order of its direction file.
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)

# The notebook's display names; three attributes were also sign-flipped so that
# "+" reads naturally: No_Beard -> Beard, Pale_Skin -> Skin_Tone (darker), Young -> Age.
NOTEBOOK_RENAMES: dict[str, str] = {
    "5_o_Clock_Shadow": "Shadow", "Bags_Under_Eyes": "Eye_bags", "Heavy_Makeup": "Makeup",
    "Mouth_Slightly_Open": "Mouth_Open", "No_Beard": "Beard", "Pale_Skin": "Skin_Tone",
    "Receding_Hairline": "Hairline", "Wearing_Earrings": "Earrings", "Wearing_Hat": "Hat",
    "Wearing_Lipstick": "Lipstick", "Wearing_Necklace": "Necklace", "Wearing_Necktie": "Necktie", "Young": "Age",
}
NOTEBOOK_SIGN_FLIPS: frozenset[str] = frozenset({"No_Beard", "Pale_Skin", "Young"})

# The notebook's button layout (7 rows of 3): its default view of 21 knobs, as CelebA names.
NOTEBOOK_LAYOUT: tuple[tuple[str, ...], ...] = (
    ("Male", "Young", "Pale_Skin"),
    ("Bangs", "Receding_Hairline", "Bald"),
    ("Big_Nose", "Pointy_Nose", "Heavy_Makeup"),
    ("Smiling", "Mouth_Slightly_Open", "Wavy_Hair"),
    ("No_Beard", "Goatee", "Sideburns"),
    ("Blond_Hair", "Black_Hair", "Gray_Hair"),
    ("Eyeglasses", "Wearing_Earrings", "Wearing_Necktie"),
)

# Where tlgan's web app shows each attribute (tlgan.extractors.GROUPS); the rest go to "other".
ATTRIBUTE_GROUPS: dict[str, str] = {
    "Smiling": "expression", "Mouth_Slightly_Open": "expression", "High_Cheekbones": "expression",
    "Narrow_Eyes": "expression", "Pale_Skin": "lighting and colour", "Rosy_Cheeks": "lighting and colour",
    "Blurry": "lighting and colour", "Heavy_Makeup": "lighting and colour", "Wearing_Lipstick": "lighting and colour",
}


def group_of(name: str) -> str:
    return ATTRIBUTE_GROUPS.get(name, "other")
