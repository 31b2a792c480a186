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
