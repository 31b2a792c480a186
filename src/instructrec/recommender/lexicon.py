"""Everyday words for catalogue categories, so that "something scary" finds Horror.

Keys are category names as catalogues spell them (compared case-insensitively, punctuation
ignored); a key a catalogue lacks is simply unused. The words are the plain English ones people
use for a genre or department; a category's own name (and its plural/singular) is always
recognised without being listed here. Kept as data, apart from the matching code, so a new
catalogue's words are one edit.
"""

from __future__ import annotations

SYNONYMS: dict[str, tuple[str, ...]] = {
    # MovieLens genres
    "horror": ("scary", "scare me", "frightening", "terrifying", "spooky", "creepy", "halloween", "slasher",
               "haunted", "ghost", "ghosts", "zombie", "zombies", "gore", "nightmares", "horrors"),
    "comedy": ("funny", "comedic", "hilarious", "humor", "humour", "humorous", "laugh", "laughs", "laughing",
               "light-hearted", "lighthearted", "witty", "silly", "comedies"),
    "children's": ("kids", "kid", "children", "child", "childrens", "family film", "family movie",
                   "whole family", "toddler", "toddlers", "my son", "my daughter"),
    "animation": ("animated", "cartoon", "cartoons", "anime", "pixar", "claymation"),
    "romance": ("romantic", "love story", "love stories", "date night", "romcom", "rom-com"),
    "action": ("explosions", "fight scenes", "fighting", "martial arts", "shootouts", "adrenaline", "car chases"),
    "thriller": ("thrillers", "suspense", "suspenseful", "tense", "edge of my seat", "edge-of-your-seat"),
    "sci-fi": ("science fiction", "scifi", "sci fi", "outer space", "aliens", "futuristic", "robots",
               "time travel", "spaceship", "spaceships"),
    "drama": ("dramas", "dramatic", "tearjerker", "tear-jerker", "emotional", "moving story"),
    "crime": ("gangster", "gangsters", "mob", "mafia", "heist", "heists", "criminals", "cops"),
    "mystery": ("mysteries", "whodunit", "whodunnit", "detective", "detectives", "sleuth"),
    "war": ("wartime", "soldiers", "military", "battlefield", "world war", "wwii", "ww2", "vietnam"),
    "western": ("westerns", "cowboy", "cowboys", "wild west", "gunslinger", "frontier"),
    "musical": ("musicals", "singing", "song and dance", "broadway", "sing-along"),
    "documentary": ("documentaries", "non-fiction", "nonfiction", "real events", "docs"),
    "fantasy": ("magic", "magical", "wizard", "wizards", "dragons", "fairy tale", "fairy tales", "sword and sorcery"),
    "film-noir": ("noir", "film noir", "hard-boiled", "hardboiled"),
    "adventure": ("adventures", "quest", "expedition", "treasure hunt", "swashbuckling"),
    # Amazon departments (2023 main categories; 2018 category paths)
    "video games": ("video game", "gaming", "gamer", "console", "playstation", "xbox", "nintendo", "ps5", "ps4"),
    "toys & games": ("toy", "toys", "board game", "board games", "puzzle", "puzzles", "lego"),
    "pet supplies": ("pet", "pets", "dog", "dogs", "cat", "cats", "puppy", "kitten", "aquarium"),
    "grocery": ("food", "snack", "snacks", "groceries", "coffee", "tea", "candy", "spices"),
    "automotive": ("car", "cars", "vehicle", "truck", "motorcycle"),
    "musical instruments": ("instrument", "instruments", "guitar", "piano", "drums", "ukulele", "keyboard stand"),
    "office products": ("office", "stationery", "pens", "notebook", "desk supplies", "printer paper"),
    "all beauty": ("beauty", "makeup", "cosmetics", "skincare", "skin care", "nail polish", "hair clip", "hair clips"),
    "premium beauty": ("luxury beauty", "perfume", "fragrance"),
    "health & personal care": ("health", "vitamins", "supplements", "first aid", "toothbrush", "personal care"),
    "tools & home improvement": ("tools", "tool", "drill", "hardware", "diy", "screwdriver", "home improvement"),
    "amazon home": ("kitchen", "home decor", "furniture", "bedding", "cookware", "decor"),
    "cell phones & accessories": ("phone", "phones", "phone case", "charger", "iphone", "smartphone", "cell phone"),
    "digital music": ("music", "album", "albums", "songs", "mp3", "soundtrack"),
    "movies & tv": ("movie", "movies", "film", "films", "tv show", "tv series", "dvd", "blu-ray", "bluray"),
    "buy a kindle": ("kindle", "ebook", "ebooks", "e-book", "e-reader", "novel", "novels", "book", "books"),
    "sports & outdoors": ("sports", "outdoors", "camping", "hiking", "fitness", "exercise", "workout"),
    "arts, crafts & sewing": ("craft", "crafts", "crafting", "sewing", "knitting", "yarn", "art supplies"),
    "computers": ("computer", "laptop", "pc", "keyboard", "mouse", "monitor"),
    "all electronics": ("electronics", "gadget", "gadgets", "headphones", "earbuds", "speaker"),
    "gift cards": ("gift card", "voucher"),
    "magazine subscriptions": ("magazine", "magazines"),
    "software": ("program", "antivirus"),
    "appstore for android": ("android app", "android apps", "app", "apps"),
    "amazon fashion": ("fashion", "clothes", "clothing", "shirt", "dress", "shoes", "jewelry"),
    "baby": ("infant", "newborn", "babies", "diaper", "diapers"),
    "industrial & scientific": ("lab", "laboratory", "industrial", "scientific"),
    "camera & photo": ("camera", "cameras", "photography", "lens", "tripod"),
}
"""Category (lower case) -> phrases that name it."""

NEGATIONS: tuple[str, ...] = ("not", "no", "without", "avoid", "except", "nothing", "none", "never", "but not",
                              "anything but", "don't want", "dont want", "no more", "hate", "skip", "exclude",
                              "isn't", "aren't", "less")
"""Words that, just before an attribute, turn it into an exclusion ("no horror", "nothing scary")."""

PLATFORMS: dict[str, tuple[str, ...]] = {
    # Specific consoles and devices first; a family ("PlayStation") is any of its members.
    "PlayStation 5": ("ps5", "playstation 5", "playstation5"),
    "PlayStation 4": ("ps4", "playstation 4", "playstation4"),
    "PlayStation 3": ("ps3", "playstation 3", "playstation3"),
    "PlayStation 2": ("ps2", "playstation 2", "playstation2"),
    "PlayStation Vita": ("ps vita", "playstation vita", "psvita", "psp"),
    "PlayStation": ("playstation", "ps5", "ps4", "ps3", "ps2", "ps1", "psp", "ps vita", "psvr", "dualshock",
                    "dualsense"),
    "Xbox Series X|S": ("xbox series x", "xbox series s", "xbox series"),
    "Xbox One": ("xbox one",),
    "Xbox 360": ("xbox 360",),
    "Xbox": ("xbox",),
    "Nintendo Switch": ("nintendo switch", "switch lite", "switch oled", "joy-con", "joy con", "joycon"),
    "Nintendo 3DS": ("nintendo 3ds", "3ds", "2ds"),
    "Wii U": ("wii u",),
    "Wii": (r"wii(?!\s+u\b)",),
    "Nintendo": ("nintendo", "switch lite", "joy-con", "3ds", "2ds", "wii", "gamecube", "game boy", "gameboy"),
    "PC": ("pc", "windows 10", "windows 11", "windows pc", "steam"),
    "Mac": ("mac", "macbook", "macos", "imac"),
    "iPhone": ("iphone",),
    "iPad": ("ipad",),
    "Android": ("android",),
    "Kindle": ("kindle",),
}
"""Platform -> regular expressions (lower case, matched on word boundaries) that name it in a
request and in an item's title/categories/description. Checked as filters: "a game for PS4" keeps
items whose text names the PS4. A regular expression, not a plain phrase, where a shorter name is
part of a longer one ("wii" in "wii u")."""

PLATFORM_REQUEST_ONLY: dict[str, tuple[str, ...]] = {
    "Nintendo Switch": (r"(?:for|on|with) (?:the |my |a )?switch",),
}
"""Phrases that name a platform in a request only: "switch" alone is too common a word in titles
("light switch"), but "for my switch" in a request means the console."""

_EXCLUDE_STOPWORDS = ("a an the any anything something too so very more much many really sure that this it its for "
                      "with from of my your our to be is are was were one ones kind sort type thing things stuff "
                      "items item fancy at all in on again else other others than such as")
EXCLUDE_STOPWORDS: frozenset[str] = frozenset(_EXCLUDE_STOPWORDS.split())
"""Words after a negation that do not name what to leave out ("not too ...", "nothing else")."""
