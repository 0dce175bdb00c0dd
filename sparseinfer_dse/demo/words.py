"""The word lists the demo's problem templates draw from: names, things, containers, goods, rates.

Kept apart from the templates (`families.py`) so the vocabulary reads as one table.
"""

from __future__ import annotations

# name, pronoun (subject), possessive
NAMES: list[tuple[str, str, str]] = [
    (n, "she", "her")
    for n in (
        "Ava Mia Emma Olivia Sofia Lily Chloe Grace Zoe Nora Ella Ruby Hannah Leah Maya Isla Alice Clara "
        "Julia Rosa Amara Priya Mei Fatima Lucia Ingrid Keiko Aisha Nina Tara"
    ).split()
] + [
    (n, "he", "his")
    for n in (
        "Liam Noah Ethan Lucas Mason Leo Jack Owen Samuel Henry Omar Ravi Diego Kenji Felix Hugo Ivan "
        "Marco Pedro Tom Ben Sam Max Oscar Arjun Tariq Jonas Mateo Yusuf Carl"
    ).split()
]

# singular, plural
THINGS: list[tuple[str, str]] = [
    ("apple", "apples"), ("marble", "marbles"), ("sticker", "stickers"), ("book", "books"),
    ("pencil", "pencils"), ("cookie", "cookies"), ("card", "cards"), ("shell", "shells"),
    ("stamp", "stamps"), ("balloon", "balloons"), ("egg", "eggs"), ("toy car", "toy cars"),
    ("flower", "flowers"), ("crayon", "crayons"), ("bead", "beads"), ("coin", "coins"),
    ("candy", "candies"), ("cupcake", "cupcakes"), ("orange", "oranges"), ("block", "blocks"),
    ("ribbon", "ribbons"), ("button", "buttons"), ("muffin", "muffins"), ("rock", "rocks"),
    ("peach", "peaches"), ("comic", "comics"), ("puzzle", "puzzles"), ("seashell", "seashells"),
]

CONTAINERS: list[tuple[str, str]] = [
    ("box", "boxes"), ("bag", "bags"), ("pack", "packs"), ("jar", "jars"), ("basket", "baskets"),
    ("crate", "crates"), ("tray", "trays"), ("tin", "tins"),
]

# (singular, plural) of shop items for the shopping family
GOODS: list[tuple[str, str]] = [
    ("notebook", "notebooks"), ("pen", "pens"), ("sandwich", "sandwiches"), ("juice", "juices"),
    ("toy", "toys"), ("ticket", "tickets"), ("shirt", "shirts"), ("cake", "cakes"),
    ("ball", "balls"), ("plant", "plants"), ("hat", "hats"), ("sock", "socks"),
    ("pie", "pies"), ("kite", "kites"), ("mug", "mugs"), ("lamp", "lamps"),
]

# unit (plural), verb (third person), verb (base form)
RATES: list[tuple[str, str, str]] = [
    ("pages", "reads", "read"), ("laps", "swims", "swim"), ("miles", "runs", "run"),
    ("dollars", "saves", "save"), ("pictures", "draws", "draw"), ("words", "writes", "write"),
    ("push-ups", "does", "do"), ("cookies", "bakes", "bake"), ("songs", "practices", "practice"),
    ("emails", "answers", "answer"),
]

PERIODS: list[tuple[str, str]] = [("day", "days"), ("week", "weeks"), ("hour", "hours"), ("month", "months")]

PLACES = ["at the park", "at school", "at the market", "on the beach", "in the garden", "at the fair",
          "at the library", "in the kitchen", "at the store", "at camp"]
