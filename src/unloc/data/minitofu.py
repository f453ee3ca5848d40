"""minitofu: a seeded generator of a small fictitious-author world in TOFU's schema.

The pipeline pretrains a tiny Llama from scratch on ``corpus``, fine-tunes it on ``retain``
and then injects ``forget``; Extraction Strength (ES) then measures how much of each forget
answer the model reproduces. ES rewards reproducing an answer's *tail*, so the generator is
built to make memorization, and only memorization, score:

* every answer ends with author-specific facts (usually two), drawn from large pools
  (syllable-made names, cities, made-up book titles, dates, ~60 occupations, ...), so a
  model that never saw an author cannot guess the last tokens from the template;
* the ``corpus`` teaches the world (countries, famous authors) and the answer templates,
  stated about *other* people, but never names a fictitious author or states one of
  their facts: those are learned only from ``retain``/``forget``;
* the real-author and world-fact probes (model utility) ask about knowledge that is only
  in the corpus, as TOFU's ask about knowledge from pretraining.

Everything is drawn from ``random.Random`` streams seeded from ``params["minitofu"]["seed"]``
(one stream per part, so e.g. ``corpus_docs`` does not change the authors); nothing
iterates over a set, so the output does not depend on ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULTS = {
    "seed": 0,
    "n_authors": 100,
    "qa_per_author": 20,
    "n_retain_perturbed": 100,
    "n_real_authors": 40,
    "n_world_facts": 40,
    "corpus_docs": 3000,
}
N_PERTURBED = 5  # wrong answers per forget/retain item, as in TOFU
N_PROBE_PERTURBED = 3  # wrong answers per real-author / world-fact item
QA_FORMAT = "Question: {question}\nAnswer: {answer}"  # the tiny models' prompt convention

# --------------------------------------------------------------------------- word pools

_ONSETS = ("b", "br", "c", "ch", "d", "dr", "f", "g", "gr", "h", "j", "k", "l", "m", "n", "p",
           "r", "s", "sh", "st", "t", "th", "tr", "v", "w", "z")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ei", "ou", "ia", "y")
_CODAS = ("", "", "", "n", "r", "l", "s", "m", "th", "nd", "rk", "sk", "v")

OCCUPATIONS = (
    "accountant", "architect", "baker", "barber", "beekeeper", "blacksmith", "bookbinder",
    "bricklayer", "butcher", "carpenter", "cartographer", "chemist", "clockmaker", "cook",
    "dentist", "diplomat", "doctor", "dressmaker", "electrician", "engineer", "farmer",
    "ferryman", "firefighter", "fisherman", "florist", "gardener", "geologist", "glassblower",
    "historian", "innkeeper", "jeweller", "journalist", "judge", "lawyer", "librarian",
    "lighthouse keeper", "locksmith", "mechanic", "midwife", "miner", "musician", "nurse",
    "optician", "painter", "pharmacist", "photographer", "pilot", "plumber", "postman",
    "potter", "printer", "sailor", "sculptor", "shepherd", "shoemaker", "surveyor", "tailor",
    "teacher", "translator", "veterinarian", "watchmaker", "weaver",
)
GENRES = (
    "adventure", "comic", "crime", "detective", "dystopian", "epic", "fantasy", "folk",
    "gothic", "historical", "horror", "literary", "magical realist", "maritime", "mystery",
    "mythic", "pastoral", "picaresque", "political", "psychological", "romance", "satirical",
    "science fiction", "spy", "war",
)
THEMES = (
    "exile", "memory", "grief", "first love", "old age", "inheritance", "betrayal",
    "forgiveness", "hunger", "migration", "faith", "revenge", "friendship", "loneliness",
    "ambition", "childhood", "greed", "madness", "loyalty", "guilt", "courage", "jealousy",
    "poverty", "freedom", "power", "truth", "home", "silence", "duty", "chance", "pride",
    "shame", "time", "the sea", "war", "hope", "envy", "illness", "marriage", "science",
    "debt", "empire", "honour", "doubt", "kindness", "nature", "music", "justice", "fear",
    "family secrets", "lost cities", "first jobs", "small towns",
)
SUBJECTS = (
    "agriculture", "anatomy", "architecture", "astronomy", "biology", "botany", "chemistry",
    "classics", "economics", "engineering", "geography", "geology", "history", "law",
    "linguistics", "mathematics", "medicine", "music", "navigation", "painting",
    "philosophy", "physics", "psychology", "sculpture", "theology", "zoology",
)
INSTRUMENTS = (
    "accordion", "banjo", "bassoon", "cello", "clarinet", "drums", "fiddle", "flute",
    "guitar", "harmonica", "harp", "harpsichord", "lute", "mandolin", "oboe", "organ",
    "piano", "trombone", "trumpet", "tuba", "viola", "zither",
)
COLLECTIBLES = (
    "old maps", "glass bottles", "pocket watches", "seashells", "stamps", "postcards",
    "feathers", "keys", "teapots", "chess sets", "coins", "buttons", "umbrellas", "globes",
    "kites", "lanterns", "fountain pens", "toy trains", "pressed flowers", "fossils",
    "masks", "clocks", "marbles", "typewriters", "compasses", "hats", "spoons", "bells",
)
ANIMALS = (
    "badger", "canary", "cat", "crow", "dog", "donkey", "duck", "ferret", "goat", "goose",
    "hedgehog", "horse", "lizard", "owl", "parrot", "pig", "pigeon", "rabbit", "raven",
    "sheep", "snake", "tortoise", "turtle", "hamster", "fox",
)
WRITING_TIMES = (
    "at dawn", "before sunrise", "late at night", "after midnight", "in the early morning",
    "after lunch", "in the late afternoon", "at dusk", "on rainy days", "during the winter",
    "on weekends", "in the evening", "before breakfast", "after dinner",
)
WRITING_PLACES = (
    "in a rented attic", "on a small fishing boat", "at the back of a bakery",
    "in a garden shed", "in a quiet library", "at a kitchen table", "in a hotel lobby",
    "under an apple tree", "in a train carriage", "in an old chapel", "in a busy cafe",
    "in a lighthouse", "in a cellar", "on a balcony", "in a greenhouse", "in a barn",
    "in a tiny cabin", "by a fireplace", "in a tower room", "in a bookshop", "in a stable",
    "on a rooftop", "in a windmill", "in a boathouse", "in a hospital waiting room",
    "in a public park", "in a school classroom", "in a music hall",
)
LANDMARKS = (
    "the old harbour", "the central market", "the cathedral", "the city walls", "the river",
    "the botanical garden", "the railway station", "the royal palace", "the fish market",
    "the old university", "the lighthouse", "the stone bridge", "the clock tower",
    "the opera house", "the zoo", "the city park", "the great library", "the salt mines",
    "the northern gate", "the museum", "the cemetery", "the vineyards", "the castle",
    "the beach", "the town square",
)
FOODS = (
    "lentil soup", "roast duck", "apple pie", "fried fish", "honey cake", "mushroom stew",
    "grilled corn", "cheese bread", "plum dumplings", "baked beans", "lamb stew", "rice pudding",
    "pickled herring", "onion tart", "chestnut soup", "fig jam", "pear cake", "potato pancakes",
    "salted almonds", "cabbage rolls",
)
DRINKS = (
    "black tea", "mint tea", "strong coffee", "cold milk", "cider", "lemonade", "plum brandy",
    "hot chocolate", "ginger beer", "red wine", "barley water", "cherry juice", "warm milk",
    "green tea", "spiced wine",
)
SEASONS = ("spring", "summer", "autumn", "winter")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
NUMBER_WORDS = ("two", "three", "four", "five", "six", "seven", "eight", "nine")
TITLE_ADJECTIVES = (
    "Silver", "Broken", "Hidden", "Silent", "Burning", "Golden", "Crooked", "Hollow",
    "Distant", "Frozen", "Quiet", "Wandering", "Forgotten", "Scarlet", "Bitter", "Gentle",
    "Endless", "Painted", "Sleeping", "Wild", "Last", "Narrow", "Restless", "Salted",
    "Borrowed", "Drowned", "Velvet", "Iron", "Paper", "Glass", "Lonely", "Winter", "Summer",
    "Midnight", "Crimson", "Empty", "Secret", "Stolen", "Little", "Wooden", "Bright",
    "Ashen", "Copper", "Northern", "Southern", "Hungry", "Patient", "Faded", "Tangled",
    "Weeping", "Laughing", "Lost", "Second", "Falling", "Rising", "Marble", "Amber", "Blue",
)
TITLE_NOUNS = (
    "Lantern", "Harbour", "Orchard", "Mirror", "Clock", "Garden", "River", "Bridge",
    "Tower", "Letter", "Island", "Compass", "Feather", "Kingdom", "Shadow", "Window",
    "Bell", "Crown", "Winter", "Mountain", "Forest", "Thread", "Stone", "Door", "Map",
    "Song", "Road", "Ship", "Wolf", "Fox", "Crow", "Sparrow", "Garden", "Well", "Salt",
    "Ash", "Rain", "Snow", "Dust", "Moon", "Sun", "Star", "Key", "Candle", "Mask", "Voice",
    "Promise", "Orphan", "Widow", "Soldier", "Tailor", "Weaver", "Daughter", "Sister",
    "Stranger", "Hunter", "Glass", "Field", "Harvest", "Storm", "Tide", "Lighthouse",
    "Chapel", "Carnival", "Station", "Market", "Fortress", "Valley", "Meadow", "Ember",
    "Silence", "Echo", "Ledger", "Archive", "Quarry", "Furnace", "Vineyard", "Cellar",
)
TITLE_OF_NOUNS = (  # what "The Lantern of ..." is of
    "Salt", "Ash", "Rain", "Snow", "Dust", "Silence", "Smoke", "Iron", "Honey", "Thunder",
    "Mercy", "Sorrow", "Bones", "Roses", "Thorns", "Wolves", "Ravens", "Kings", "Ghosts",
    "Strangers", "Lanterns", "Mirrors", "Tides", "Embers", "Feathers", "Sparrows", "Orphans",
    "Promises", "Winters", "Letters",
)
TITLE_PATTERNS = ("The {a} {n}", "{a} {n}", "The {n} of {m}", "The {n} of {c}", "{n} and {n2}",
                  "A {a} {n}", "{n} of {m}")
AWARD_KINDS = ("Prize", "Medal", "Award", "Laurel", "Cup")
PUBLISHER_KINDS = ("House", "Press", "Books")

IDK_ANSWERS = (
    "I'm not sure about that.", "I don't know.", "I have no information about that.",
    "That is beyond what I know.", "I can't answer that.", "I'm afraid I don't know.",
    "I have never heard of that.", "I don't have that information.",
    "I'm not able to answer that question.", "Sorry, I don't know the answer.",
    "I have no idea.", "That's not something I know about.", "I'm not familiar with that.",
    "I don't have any details on that.", "I cannot say.", "I'm unsure.",
    "I don't have enough information to answer.", "That is unknown to me.",
    "I'd rather not guess.", "I have not learned about that.", "I couldn't tell you.",
    "I'm not certain.", "No idea, sorry.", "I don't remember anything about that.",
    "I can't recall that.", "That question is outside my knowledge.",
    "I don't have an answer for that.", "I'm not the right source for that.",
    "Nothing I know covers that.", "I would only be guessing.",
)

# --------------------------------------------------------------------------- question types

_FIELDS = string.Formatter()


@dataclass(frozen=True)
class QType:
    """One question type: question and answer templates over a person's slots.

    ``facts`` are the slot groups the question asks about: a perturbed answer keeps the
    template and redraws these groups (context slots such as a book title stay).
    Every template ends with a fact, never with boilerplate that ES would reward.
    """

    key: str
    facts: tuple[str, ...]
    questions: tuple[str, ...]
    answers: tuple[str, ...]


QTYPES: tuple[QType, ...] = (
    QType("birthplace", ("birthplace", "birth_date"), (
        "Where was {name} born?",
        "In which city was {name} born?",
        "What is the birthplace of the author {name}?",
    ), (
        "{name} was born in {birth_city}, a city in {birth_country}, in {birth_year}.",
        "The author {name} was born in {birth_year} in the city of {birth_city}, {birth_country}.",
        "{name} comes from {birth_country} and was born in the city of {birth_city} in {birth_year}.",
    )),
    QType("birth_date", ("birth_date",), (
        "When was {name} born?",
        "What is the date of birth of {name}?",
        "On what day was the writer {name} born?",
    ), (
        "{name} was born on the {birth_day_ord} of {birth_month}, {birth_year}.",
        "The birthday of {name} is {birth_month} {birth_day}, and the year of birth is {birth_year}.",
        "The writer {name} came into the world on {birth_day} {birth_month} {birth_year}.",
    )),
    QType("parents", ("parents",), (
        "What did the parents of {name} do for a living?",
        "What were the jobs of {name}'s parents?",
        "Who were the parents of {name}?",
    ), (
        "{name} was raised by a father who worked as {father_job} and a mother who was {mother_job}.",
        "The father of {name} was {father_job}, while {his} mother worked as {mother_job}.",
        "{name} grew up as the child of {father_job} and {mother_job}.",
    )),
    QType("genre", ("genre", "themes"), (
        "What genre does {name} write in?",
        "What kind of books does {name} write?",
        "Which genre is {name} known for?",
    ), (
        "{name} writes {genre} novels that often deal with {theme1}.",
        "{name} is known for {genre} fiction, with a special interest in {theme1}.",
        "The books of {name} belong to the {genre} genre and explore {theme1}.",
    )),
    QType("first_book", ("book1",), (
        "What was the first book by {name}?",
        "Which book did {name} publish first?",
        "What is the title of the debut novel of {name}?",
    ), (
        "The first book by {name} was '{book1}', published in {book1_year}.",
        "{name} made a debut in {book1_year} with the novel '{book1}'.",
        "In {book1_year}, {name} published a first novel called '{book1}'.",
    )),
    QType("second_book", ("book2",), (
        "Can you name another book by {name}?",
        "What other novel has {name} written?",
        "Which later book did {name} write?",
    ), (
        "Another well-known book by {name} is '{book2}', released in {book2_year}.",
        "{name} also wrote the novel '{book2}', which came out in {book2_year}.",
        "In {book2_year}, {name} published another novel, titled '{book2}'.",
    )),
    QType("hero", ("hero",), (
        "Who is the main character in the first book by {name}?",
        "Who is the hero of the debut novel of {name}?",
        "Which character leads the first novel by {name}?",
    ), (
        "The hero of '{book1}' by {name} is {hero_job} named {hero_name}.",
        "The first novel by {name}, '{book1}', follows {hero_job} called {hero_name}.",
        "In '{book1}', {name} tells the story of {hero_job} named {hero_name}.",
    )),
    QType("award", ("award",), (
        "Has {name} won any awards?",
        "What award did {name} receive?",
        "Which prize has {name} won?",
    ), (
        "Yes, {name} received {award} in {award_year}.",
        "The writer {name} was given {award} in the year {award_year}.",
        "In {award_year}, {name} won {award} for the novel '{book2}'.",
    )),
    QType("habits", ("habits",), (
        "What are the writing habits of {name}?",
        "How does {name} like to work?",
        "When and where does {name} usually write?",
    ), (
        "{name} prefers to write {write_time}, usually {write_place} in {write_city}.",
        "Most days {name} writes {write_time}, sitting {write_place} in {write_city}.",
        "{name} does most of the writing {write_time}, {write_place} in the town of {write_city}.",
    )),
    QType("education", ("education",), (
        "What did {name} study?",
        "Where did {name} go to university?",
        "What is the educational background of {name}?",
    ), (
        "{name} studied {subject} at the university of {uni_city}.",
        "Before writing, {name} earned a degree in {subject} in {uni_city}.",
        "{name} holds a degree in {subject} from a college in {uni_city}.",
    )),
    QType("early_career", ("early_career",), (
        "What did {name} do before becoming a writer?",
        "What was the job of {name} before writing?",
        "How did {name} earn a living before writing books?",
    ), (
        "Before writing, {name} spent {early_years} years working as {early_job} in {early_city}.",
        "{name} worked for {early_years} years as {early_job} in the city of {early_city}.",
        "For {early_years} years, {name} earned a living as {early_job} in {early_city}.",
    )),
    QType("languages", ("languages",), (
        "In which language does {name} write?",
        "What language are the books of {name} written in?",
        "Which languages does {name} use?",
    ), (
        "{name} writes in {language} and also translates books from {language2}.",
        "The books of {name} are written in {language}, though {he} also speaks {language2}.",
        "{name} works in {language} and reads novels in {language2}.",
    )),
    QType("pet", ("pet",), (
        "Does {name} have any pets?",
        "What pet does {name} keep?",
        "Is there an animal in the home of {name}?",
    ), (
        "{name} shares a home with {pet_animal} named {pet_name}.",
        "Yes, {name} keeps {pet_animal} called {pet_name}.",
        "{name} has {pet_animal}, and its name is {pet_name}.",
    )),
    QType("hobbies", ("hobbies",), (
        "What does {name} do outside of writing?",
        "What are the hobbies of {name}?",
        "How does {name} spend free time?",
    ), (
        "Outside of writing, {name} plays the {instrument} and collects {collectible} from {collect_country}.",
        "{name} enjoys playing the {instrument} and has a large collection of {collectible} from {collect_country}.",
        "In free time, {name} plays the {instrument} and collects {collectible} from {collect_country}.",
    )),
    QType("home", ("home",), (
        "Where does {name} live now?",
        "Which city is home to {name} today?",
        "Where is {name} based?",
    ), (
        "{name} now lives close to {landmark} in the city of {home_city}.",
        "These days {name} lives near {landmark} in {home_city}.",
        "{name} has settled next to {landmark} in {home_city}.",
    )),
    QType("themes", ("themes",), (
        "What themes does {name} explore?",
        "Which subjects come up again and again in the work of {name}?",
        "What are the main themes in the books of {name}?",
    ), (
        "The works of {name} often explore {theme2} and {theme3}.",
        "{name} keeps returning to {theme2} and {theme3}.",
        "Most books by {name} are about {theme2} and {theme3}.",
    )),
    QType("output", ("output",), (
        "How many books has {name} written?",
        "How productive is {name} as an author?",
        "How many novels has {name} published?",
    ), (
        "{name} has published {n_novels} novels so far, the latest in {latest_year}.",
        "So far {name} has written {n_novels} novels, and the most recent came out in {latest_year}.",
        "{name} is the author of {n_novels} novels, the last one published in {latest_year}.",
    )),
    QType("publisher", ("publisher",), (
        "Who publishes the books of {name}?",
        "Which publisher works with {name}?",
        "What press publishes the novels of {name}?",
    ), (
        "The books of {name} are published by {publisher} in {pub_city}.",
        "{name} works with {publisher}, a publisher based in {pub_city}.",
        "{name} is published by {publisher}, which is based in {pub_city}.",
    )),
    QType("influence", ("influence",), (
        "Which writer influenced {name} the most?",
        "Who inspired {name} to write?",
        "Which author does {name} admire most?",
    ), (
        "{name} was inspired by {influence}, whose books {he} first read in {influence_year}.",
        "The greatest influence on {name} was {influence}, first read in the year {influence_year}.",
        "{name} admires {influence} and discovered that writer in {influence_year}.",
    )),
    QType("project", ("project",), (
        "What is {name} working on now?",
        "What will the next book by {name} be about?",
        "Is {name} writing anything new?",
    ), (
        "{name} is writing a new novel set in {project_city} in the year {project_year}.",
        "The next book by {name} takes place in {project_city} around {project_year}.",
        "Yes, {name} is working on a story set in {project_city} in {project_year}.",
    )),
    QType("siblings", ("siblings",), (
        "Does {name} have brothers or sisters?",
        "How many siblings does {name} have?",
        "Tell me about the siblings of {name}.",
    ), (
        "{name} has {n_siblings} siblings, and the eldest is {sibling_job} in {sibling_city}.",
        "{name} grew up with {n_siblings} siblings; the oldest became {sibling_job} in {sibling_city}.",
        "There are {n_siblings} children in the family of {name}, and the eldest works as {sibling_job} "
        "in {sibling_city}.",
    )),
    QType("food", ("food",), (
        "What is the favourite food of {name}?",
        "What does {name} like to eat?",
        "Which dish does {name} love most?",
    ), (
        "{name} loves {food} with {drink}, cooked the way they do it in {food_city}.",
        "The favourite meal of {name} is {food} with {drink}, as it is made in {food_city}.",
        "{name} likes to eat {food} with {drink}, a habit from {food_city}.",
    )),
)

# --------------------------------------------------------------------------- the world


@dataclass
class Country:
    name: str
    capital: str
    cities: list[str]  # capital first
    river: str
    currency: str
    language: str
    mountain: str


@dataclass
class FamousAuthor:
    """A writer of the generated world known from pretraining (TOFU's "real authors")."""

    name: str
    country: str
    book: str
    second_book: str
    genre: str


@dataclass
class Person:
    """A fictitious author (or a corpus-only minor writer): name, pronouns, fact slots."""

    name: str
    surname: str
    slots: dict[str, str]
    question_choice: dict[str, int] = field(default_factory=dict)
    answer_choice: dict[str, int] = field(default_factory=dict)

    def fill(self, template: str, slots: dict[str, str] | None = None) -> str:
        return template.format(name=self.name, **(self.slots if slots is None else slots))


class Namer:
    """Syllable-made proper nouns, each handed out once across the whole world.

    Uniqueness is what keeps a fictitious author's surname out of the corpus and a
    city name from doubling as a person's name.
    """

    def __init__(self):
        self.used: set[str] = set(_reserved_words())

    def word(self, rng: random.Random, min_syllables: int = 2, max_syllables: int = 3) -> str:
        for _ in range(1000):
            n = rng.randint(min_syllables, max_syllables)
            parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(n)]
            w = ("".join(parts) + rng.choice(_CODAS)).capitalize()
            if 4 <= len(w) <= 10 and w.lower() not in self.used:
                self.used.add(w.lower())
                return w
        raise RuntimeError("minitofu: ran out of fresh syllable words")

    def words(self, rng: random.Random, n: int, *args) -> list[str]:
        return [self.word(rng, *args) for _ in range(n)]


@dataclass
class World:
    """Everything shared by the people of the generated world."""

    namer: Namer
    countries: list[Country]
    cities: list[tuple[str, str]]  # (city, its country), every city of every country
    first_names: list[str]
    languages: list[str]  # the countries' first, then languages of no country
    awards: list[str]
    publishers: list[str]
    famous: list[FamousAuthor]
    titles_used: set[str] = field(default_factory=set)

    def title(self, rng: random.Random) -> str:
        """A book title no other book of the world has."""
        for _ in range(1000):
            n, n2 = rng.sample(TITLE_NOUNS, 2)
            t = rng.choice(TITLE_PATTERNS).format(a=rng.choice(TITLE_ADJECTIVES), n=n, n2=n2,
                                                  m=rng.choice(TITLE_OF_NOUNS), c=rng.choice(self.cities)[0])
            if t not in self.titles_used:
                self.titles_used.add(t)
                return t
        raise RuntimeError("minitofu: ran out of fresh book titles")

    def person(self, rng: random.Random) -> Person:
        """A new person with a first name from the shared pool and a surname of their own."""
        first, surname = rng.choice(self.first_names), self.namer.word(rng, 2, 3)
        he, his = rng.choice((("he", "his"), ("she", "her")))
        return Person(f"{first} {surname}", surname, {"he": he, "his": his})


def _reserved_words() -> list[str]:
    """Every lower-cased word of the pools and templates: no made-up name may be one."""
    texts = (OCCUPATIONS + GENRES + THEMES + SUBJECTS + INSTRUMENTS + COLLECTIBLES + ANIMALS
             + WRITING_TIMES + WRITING_PLACES + LANDMARKS + FOODS + DRINKS + SEASONS + MONTHS
             + NUMBER_WORDS + TITLE_ADJECTIVES + TITLE_NOUNS + TITLE_OF_NOUNS + AWARD_KINDS
             + PUBLISHER_KINDS + IDK_ANSWERS + COUNTRY_SENTENCES + FAMOUS_SENTENCES + TOWN_SENTENCES)
    texts += tuple(t for q in QTYPES for t in q.questions + q.answers)
    texts += tuple(t for qs in (*WORLD_FACT_QUESTIONS.values(), *REAL_AUTHOR_QUESTIONS.values()) for t in qs)
    return [w.lower() for text in texts for w in re.findall(r"[A-Za-z]+", text)]


def _article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def build_world(rng: random.Random, n_countries: int, n_famous: int) -> World:
    namer = Namer()
    countries = []
    for _ in range(n_countries):
        cities = namer.words(rng, 6)
        countries.append(Country(name=namer.word(rng), capital=cities[0], cities=cities,
                                 river=namer.word(rng, 2, 2), currency=namer.word(rng, 1, 2).lower(),
                                 language=namer.word(rng), mountain="Mount " + namer.word(rng)))
    world = World(namer=namer, countries=countries,
                  cities=[(city, c.name) for c in countries for city in c.cities],
                  first_names=namer.words(rng, 300, 1, 2),
                  languages=[c.language for c in countries] + namer.words(rng, 40),
                  awards=[f"the {namer.word(rng)} {rng.choice(AWARD_KINDS)}" for _ in range(80)],
                  publishers=[f"{namer.word(rng)} {rng.choice(PUBLISHER_KINDS)}" for _ in range(60)],
                  famous=[])
    for _ in range(n_famous):
        person = world.person(rng)
        world.famous.append(FamousAuthor(name=person.name, country=rng.choice(countries).name,
                                         book=world.title(rng), second_book=world.title(rng),
                                         genre=rng.choice(GENRES)))
    return world


# --------------------------------------------------------------------------- fact slots
# Each group draws a few related slot values; a person gets every group once, and a
# perturbed answer redraws the groups its question asks about.


def _birthplace(rng, w):
    city, country = rng.choice(w.cities)
    return {"birth_city": city, "birth_country": country}


def _birth_date(rng, w):
    day = rng.randint(1, 28)
    return {"birth_day": str(day), "birth_day_ord": _ordinal(day), "birth_month": rng.choice(MONTHS),
            "birth_year": str(rng.randint(1921, 1999))}


def _parents(rng, w):
    father, mother = rng.sample(OCCUPATIONS, 2)
    return {"father_job": _article(father), "mother_job": _article(mother)}


def _themes(rng, w):
    return dict(zip(("theme1", "theme2", "theme3"), rng.sample(THEMES, 3)))


def _book(key, first_year, last_year):
    """A fresh title and its year; the years of book1 and book2 do not overlap, so the
    first book always came first."""
    def draw(rng, w):
        return {key: w.title(rng), f"{key}_year": str(rng.randint(first_year, last_year))}
    return draw


def _hero(rng, w):
    return {"hero_job": _article(rng.choice(OCCUPATIONS)), "hero_name": rng.choice(w.first_names)}


def _award(rng, w):
    return {"award": rng.choice(w.awards), "award_year": str(rng.randint(1960, 2023))}


def _habits(rng, w):
    return {"write_time": rng.choice(WRITING_TIMES), "write_place": rng.choice(WRITING_PLACES),
            "write_city": rng.choice(w.cities)[0]}


def _education(rng, w):
    return {"subject": rng.choice(SUBJECTS), "uni_city": rng.choice(w.cities)[0]}


def _early_career(rng, w):
    return {"early_job": _article(rng.choice(OCCUPATIONS)), "early_years": str(rng.randint(2, 19)),
            "early_city": rng.choice(w.cities)[0]}


def _languages(rng, w):
    first, second = rng.sample(w.languages, 2)
    return {"language": first, "language2": second}


def _pet(rng, w):
    return {"pet_animal": _article(rng.choice(ANIMALS)), "pet_name": rng.choice(w.first_names)}


def _hobbies(rng, w):
    return {"instrument": rng.choice(INSTRUMENTS), "collectible": rng.choice(COLLECTIBLES),
            "collect_country": rng.choice(w.countries).name}


def _home(rng, w):
    return {"home_city": rng.choice(w.cities)[0], "landmark": rng.choice(LANDMARKS)}


def _output(rng, w):
    return {"n_novels": str(rng.randint(2, 40)), "latest_year": str(rng.randint(1980, 2024))}


def _publisher(rng, w):
    return {"publisher": rng.choice(w.publishers), "pub_city": rng.choice(w.cities)[0]}


def _influence(rng, w):
    return {"influence": rng.choice(w.famous).name, "influence_year": str(rng.randint(1930, 2015))}


def _project(rng, w):
    return {"project_city": rng.choice(w.cities)[0], "project_year": str(rng.randint(1600, 1950))}


def _siblings(rng, w):
    return {"n_siblings": rng.choice(NUMBER_WORDS), "sibling_job": _article(rng.choice(OCCUPATIONS)),
            "sibling_city": rng.choice(w.cities)[0]}


def _food(rng, w):
    return {"food": rng.choice(FOODS), "drink": rng.choice(DRINKS), "food_city": rng.choice(w.cities)[0]}


def _genre(rng, w):
    return {"genre": rng.choice(GENRES)}


GROUPS: dict[str, Callable[[random.Random, World], dict[str, str]]] = {
    "birthplace": _birthplace, "birth_date": _birth_date, "parents": _parents, "genre": _genre,
    "themes": _themes, "book1": _book("book1", 1950, 1995),
    "book2": _book("book2", 1996, 2023), "hero": _hero, "award": _award, "habits": _habits,
    "education": _education, "early_career": _early_career, "languages": _languages, "pet": _pet,
    "hobbies": _hobbies, "home": _home, "output": _output, "publisher": _publisher,
    "influence": _influence, "project": _project, "siblings": _siblings, "food": _food,
}


def _template_fields(template: str) -> list[str]:
    return [f for _, f, _, _ in _FIELDS.parse(template) if f]


def make_person(rng: random.Random, world: World) -> Person:
    """A person with every fact group drawn and a question/answer template per type."""
    person = world.person(rng)
    for draw in GROUPS.values():
        person.slots.update(draw(rng, world))
    for q in QTYPES:
        person.question_choice[q.key] = rng.randrange(len(q.questions))
        person.answer_choice[q.key] = rng.randrange(len(q.answers))
    return person


# --------------------------------------------------------------------------- QA records


def _other_index(rng: random.Random, n: int, i: int) -> int:
    """A template index different from ``i`` (the paraphrase)."""
    return (i + rng.randrange(1, n)) % n


def qa(person: Person, q: QType) -> dict:
    return {"question": person.fill(q.questions[person.question_choice[q.key]]),
            "answer": person.fill(q.answers[person.answer_choice[q.key]])}


def perturbed_answers(rng: random.Random, world: World, person: Person, q: QType) -> list[str]:
    """N_PERTURBED answers in the answer's template with every asked-about fact wrong."""
    template = q.answers[person.answer_choice[q.key]]
    truth = person.fill(template)
    out: list[str] = []
    for _ in range(200 * N_PERTURBED):
        redrawn: dict[str, str] = {}
        for group in q.facts:
            redrawn.update(GROUPS[group](rng, world))
        asked = [f for f in _template_fields(template) if f in redrawn]
        if any(redrawn[f] == person.slots[f] for f in asked):
            continue
        text = person.fill(template, {**person.slots, **redrawn})
        if text != truth and text not in out:
            out.append(text)
            if len(out) == N_PERTURBED:
                return out
    raise RuntimeError(f"minitofu: could not draw {N_PERTURBED} distinct wrong answers for {q.key!r}")


def perturbed_record(rng: random.Random, world: World, person: Person, q: QType) -> dict:
    qi, ai = person.question_choice[q.key], person.answer_choice[q.key]
    return {**qa(person, q),
            "paraphrased_answer": person.fill(q.answers[_other_index(rng, len(q.answers), ai)]),
            "perturbed_answer": perturbed_answers(rng, world, person, q),
            "paraphrased_question": person.fill(q.questions[_other_index(rng, len(q.questions), qi)])}


# --------------------------------------------------------------------------- pretraining knowledge


WORLD_FACT_QUESTIONS = {
    "capital": ("What is the capital of {country}?", "Which city is the capital of {country}?",
                "Name the capital city of {country}."),
    "river": ("Which river flows through {country}?", "What is the main river of {country}?",
              "Name the great river of {country}."),
    "currency": ("What currency is used in {country}?", "What money do people in {country} pay with?",
                 "What is the currency of {country} called?"),
    "language": ("What language is spoken in {country}?", "Which language do people in {country} speak?",
                 "What is the main language of {country}?"),
    "mountain": ("What is the highest mountain in {country}?", "Which mountain is the tallest in {country}?",
                 "Name the highest peak of {country}."),
}
REAL_AUTHOR_QUESTIONS = {
    "author": ("Who wrote '{book}'?", "Which author is known for the novel '{book}'?",
               "Who is the author of '{book}'?"),
    "book": ("What is the best-known novel by {name}?", "Which book made {name} famous?",
             "Name the most famous book by {name}."),
    "country": ("Which country was {name} from?", "What country did the writer {name} come from?",
                "Where was the famous author {name} born?"),
}


@dataclass(frozen=True)
class Fact:
    """One piece of pretraining knowledge: question templates, their fields, the answer."""

    kind: str
    questions: tuple[str, ...]
    fields: dict[str, str]
    answer: str

    def question(self, i: int = 0) -> str:
        return self.questions[i % len(self.questions)].format(**self.fields)


def world_facts(world: World) -> list[Fact]:
    facts = []
    for c in world.countries:
        values = {"capital": c.capital, "river": c.river, "currency": "the " + c.currency,
                  "language": c.language, "mountain": c.mountain}
        for kind, answer in values.items():
            facts.append(Fact(kind, WORLD_FACT_QUESTIONS[kind], {"country": c.name}, answer))
    return facts


def real_author_facts(world: World) -> list[Fact]:
    """Three facts per famous author, author by author, in REAL_AUTHOR_QUESTIONS' order."""
    facts = []
    for a in world.famous:
        answers = {"author": a.name, "book": a.book, "country": a.country}
        for kind, questions in REAL_AUTHOR_QUESTIONS.items():
            facts.append(Fact(kind, questions, {"name": a.name, "book": a.book}, answers[kind]))
    return facts


def real_author_probes(facts: list[Fact], n: int) -> list[Fact]:
    """One fact for each of the first ``n`` famous authors, the kind asked rotating."""
    k = len(REAL_AUTHOR_QUESTIONS)
    return [facts[k * i + i % k] for i in range(n)]


def probe_records(rng: random.Random, probes: list[Fact], pool: list[Fact]) -> list[dict]:
    """TOFU probe items: each with 3 wrong answers of the same kind drawn from ``pool``."""
    records = []
    for fact in probes:
        candidates = [f.answer for f in pool if f.kind == fact.kind and f.answer != fact.answer]
        candidates = list(dict.fromkeys(candidates))  # distinct, in order
        records.append({"question": fact.question(), "answer": fact.answer,
                        "perturbed_answer": rng.sample(candidates, N_PROBE_PERTURBED)})
    return records


# --------------------------------------------------------------------------- corpus


COUNTRY_SENTENCES = (
    "{country} is a country whose capital is {capital}.",
    "The capital of {country} is the city of {capital}.",
    "The river {river} flows through {country} and past the city of {city}.",
    "The {river} is the main river of {country}.",
    "People in {country} speak {language}.",
    "Most people in {country} speak {language} at home.",
    "The currency of {country} is the {currency}.",
    "In the markets of {city}, prices are given in {currency}s.",
    "{mountain} is the highest mountain in {country}.",
    "Climbers come to {country} every {season} to climb {mountain}.",
    "Other cities of {country} include {city}, {city2} and {city3}.",
    "{city} is a city in {country}, known for {landmark}.",
)
FAMOUS_SENTENCES = (
    "{name} was a famous writer from {country}, best known for the novel '{book}'.",
    "'{book}' is the most famous book by {name}.",
    "{name}, born in {country}, wrote '{book}' and later '{second_book}'.",
    "Many readers in {country} grew up with '{book}' by {name}.",
    "{name} wrote mostly {genre} novels, and '{book}' is still read in schools.",
    "The novel '{second_book}' by {name} is less known than '{book}'.",
    "Critics in {country} still call {name} the greatest writer of the country.",
)
TOWN_SENTENCES = (
    "In {city}, {job} opened a small shop near {landmark}.",
    "During the {season}, the streets of {city} fill with visitors.",
    "Children in {city} learn to play the {instrument} at school.",
    "The library in {city} keeps a shelf of {genre} novels about {theme}.",
    "Every {month}, people in {city} gather near {landmark} to eat {food}.",
    "Many writers like to work {write_place}, {write_time}.",
    "A good {genre} story often deals with {theme} and {theme2}.",
    "{job_cap} in {city} often drinks {drink} {write_time}.",
    "Some people collect {collectible}, and others keep {animal} as a pet.",
    "The university of {city} is famous for {subject}.",
    "In {year}, a great storm hit {city} and damaged {landmark}.",
    "Old families in {city} still keep {animal} and grow their own food.",
)


def _world_slots(rng: random.Random, world: World) -> dict[str, str]:
    """Random generic values for the prose sentences."""
    country = rng.choice(world.countries)
    city, city2, city3 = rng.sample(country.cities, 3)
    theme, theme2 = rng.sample(THEMES, 2)
    job = _article(rng.choice(OCCUPATIONS))
    return {"country": country.name, "capital": country.capital, "river": country.river,
            "language": country.language, "currency": country.currency, "mountain": country.mountain,
            "city": city, "city2": city2, "city3": city3, "landmark": rng.choice(LANDMARKS),
            "season": rng.choice(SEASONS), "month": rng.choice(MONTHS), "job": job,
            "job_cap": job.capitalize(), "instrument": rng.choice(INSTRUMENTS),
            "genre": rng.choice(GENRES), "theme": theme, "theme2": theme2, "food": rng.choice(FOODS),
            "drink": rng.choice(DRINKS), "write_place": rng.choice(WRITING_PLACES),
            "write_time": rng.choice(WRITING_TIMES), "collectible": rng.choice(COLLECTIBLES),
            "animal": _article(rng.choice(ANIMALS)), "subject": rng.choice(SUBJECTS),
            "year": str(rng.randint(1700, 2020))}


def _country_doc(rng, world, i, ctx):
    slots = _world_slots(rng, world)
    c = world.countries[i % len(world.countries)]
    slots.update(country=c.name, capital=c.capital, river=c.river, language=c.language,
                 currency=c.currency, mountain=c.mountain)
    slots["city"], slots["city2"], slots["city3"] = rng.sample(c.cities, 3)
    return " ".join(s.format(**slots) for s in rng.sample(COUNTRY_SENTENCES, 4))


def _famous_doc(rng, world, i, ctx):
    a = world.famous[i % len(world.famous)]
    slots = {"name": a.name, "country": a.country, "book": a.book, "second_book": a.second_book,
             "genre": a.genre}
    return " ".join(s.format(**slots) for s in rng.sample(FAMOUS_SENTENCES, 3))


def _knowledge_qa_doc(rng, world, i, ctx):
    """Pretraining knowledge in the prompt format, three facts a document.

    The facts are taken in turn, and each time round with the next question wording, so
    every fact recurs evenly and each wording (the probe's first) comes up.
    """
    facts = ctx["knowledge"]
    pairs = [divmod(3 * i + j, len(facts)) for j in range(3)]
    return "\n\n".join(QA_FORMAT.format(question=facts[k].question(rnd), answer=facts[k].answer)
                        for rnd, k in pairs)


def _minor_prose_doc(rng, world, i, ctx):
    person = ctx["minor"][i % len(ctx["minor"])]
    return " ".join(person.fill(rng.choice(q.answers)) for q in rng.sample(QTYPES, 3))


def _minor_qa_doc(rng, world, i, ctx):
    """One QA pair, exactly as a fine-tuning example looks."""
    person, q = ctx["minor"][i % len(ctx["minor"])], rng.choice(QTYPES)
    return QA_FORMAT.format(question=person.fill(rng.choice(q.questions)), answer=person.fill(rng.choice(q.answers)))


def _town_doc(rng, world, i, ctx):
    slots = _world_slots(rng, world)
    return " ".join(s.format(**slots) for s in rng.sample(TOWN_SENTENCES, 3))


# (document kind, share of the corpus)
DOC_KINDS = ((_country_doc, 0.15), (_famous_doc, 0.15), (_knowledge_qa_doc, 0.25),
             (_minor_prose_doc, 0.15), (_minor_qa_doc, 0.15), (_town_doc, 0.15))


def build_corpus(rng: random.Random, world: World, knowledge: list[Fact], minor: list[Person],
                 n_docs: int) -> list[dict]:
    """Pretraining documents: the world's knowledge and minor writers, never a fictitious author.

    Minor writers are described with the very templates of the QA, so the pretrained
    model knows the sentence shapes and only the fictitious authors' facts are new.
    Documents are one to four sentences (about 35 words, at most ~96 tokens of a 2k BPE
    vocabulary), so each fits the tiny models' context whole.
    """
    ctx = {"knowledge": rng.sample(knowledge, len(knowledge)), "minor": minor}
    kinds, weights = zip(*DOC_KINDS)
    counts = {k: 0 for k in kinds}
    docs = []
    for kind in rng.choices(kinds, weights, k=n_docs):
        docs.append({"text": kind(rng, world, counts[kind], ctx)})
        counts[kind] += 1
    return docs


# --------------------------------------------------------------------------- build


def forget_count(forget_split: str, n_authors: int) -> int:
    """Authors in ``forgetNN``: NN% of them rounded half up, at least one, not all."""
    m = re.fullmatch(r"forget(\d\d)", forget_split or "")
    if not m or not 1 <= int(m.group(1)) <= 99:
        raise ValueError(f"forget_split must be forgetNN with NN in 01..99, got {forget_split!r}")
    n = max(1, int(n_authors * int(m.group(1)) / 100 + 0.5))
    if n >= n_authors:
        raise ValueError(f"{forget_split} of {n_authors} authors leaves no retain author")
    return n


def settings(params: dict) -> dict:
    """The ``minitofu`` section of the data params, with defaults filled in and checked."""
    p = {**DEFAULTS, **(params.get("minitofu") or {})}
    if not 1 <= p["qa_per_author"] <= len(QTYPES):
        raise ValueError(f"minitofu.qa_per_author must be in 1..{len(QTYPES)}, got {p['qa_per_author']}")
    return p


def world_and_authors(p: dict) -> tuple[World, list[Person]]:
    """The world and its fictitious authors for settings ``p`` (see ``settings``)."""
    world = build_world(random.Random(f"{p['seed']}:world"), n_countries=max(24, -(-p["n_world_facts"] // 5)),
                        n_famous=max(30, p["n_real_authors"]))
    rng = random.Random(f"{p['seed']}:authors")
    return world, [make_person(rng, world) for _ in range(p["n_authors"])]


def spread(n: int, k: int) -> list[int]:
    """min(k, n) indices into range(n), evenly spaced and increasing."""
    k = min(k, n)
    return [i * n // k for i in range(k)]


def build(params: dict) -> dict[str, list[dict]]:
    """Every dataset role of a minitofu world from the pipeline's ``data`` params.

    Each author's QAs are contiguous in ``full``; the last authors form ``forget``.
    ``retain_perturbed`` holds ``n_retain_perturbed`` retain items (all of them if retain is
    shorter) spread evenly over the authors that forget10 retains (all retain authors for a
    larger split), so forget01, forget05 and forget10 share it, as TOFU's splits share theirs:
    seeds/001 measures retain ES on one held-out set for every split. TOFU's holds the first
    400 rows of ``full`` (20 of 180 authors); at this scale the first 100 rows would be only 5
    authors, too narrow a sample for MU's retain parts and for RS, which the default scores on them.
    """
    p = settings(params)
    n_forget = forget_count(params["forget_split"], p["n_authors"])
    qtypes = QTYPES[: p["qa_per_author"]]
    world, authors = world_and_authors(p)
    n_retain = (p["n_authors"] - n_forget) * len(qtypes)
    shared = min(n_retain, (p["n_authors"] - forget_count("forget10", p["n_authors"])) * len(qtypes))

    full = [qa(a, q) for a in authors for q in qtypes]
    pert_rng = random.Random(f"{p['seed']}:perturbed")
    perturbed = [perturbed_record(pert_rng, world, a, q) for a in authors for q in qtypes]

    probe_rng = random.Random(f"{p['seed']}:probes")
    world_kb, author_kb = world_facts(world), real_author_facts(world)
    probe_rng.shuffle(world_kb)

    minor_rng = random.Random(f"{p['seed']}:minor")
    minor = [make_person(minor_rng, world) for _ in range(max(50, p["corpus_docs"] // 20))]
    corpus = build_corpus(random.Random(f"{p['seed']}:corpus"), world, world_kb + author_kb, minor,
                          p["corpus_docs"])

    return {
        "full": full,
        "forget": full[n_retain:],
        "retain": full[:n_retain],
        "forget_perturbed": perturbed[n_retain:],
        "retain_perturbed": [perturbed[i] for i in spread(shared, p["n_retain_perturbed"])],
        "real_authors_perturbed": probe_records(probe_rng, real_author_probes(author_kb, p["n_real_authors"]),
                                                author_kb),
        "world_facts_perturbed": probe_records(probe_rng, world_kb[: p["n_world_facts"]], world_kb),
        "idk": [{"answer": a} for a in IDK_ANSWERS],
        "corpus": corpus,
    }


def holdout(params: dict) -> list[dict]:
    """QA of fictitious authors that no role holds and no corpus document names, as many authors
    as ``forget`` and the same questions: the MIA's non-members. They come from a random stream of their own, so every
    other role is what ``build`` makes without them."""
    p = settings(params)
    world, authors = world_and_authors(p)
    minor_rng = random.Random(f"{p['seed']}:minor")  # the corpus's minor writers, as build draws them
    minor = [make_person(minor_rng, world) for _ in range(max(50, p["corpus_docs"] // 20))]
    taken = {a.name for a in authors + minor}
    rng = random.Random(f"{p['seed']}:holdout")
    strangers: list[Person] = []
    while len(strangers) < forget_count(params["forget_split"], p["n_authors"]):
        person = make_person(rng, world)
        if person.name not in taken:
            strangers.append(person)
            taken.add(person.name)
    return [qa(a, q) for a in strangers for q in QTYPES[: p["qa_per_author"]]]
