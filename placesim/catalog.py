"""What kinds of businesses the emulated world holds, and the words that find them.

Categories use Places Table A types (docs/places.md, Coverage). Weights approximate the
mix of storefront businesses in a US town (restaurants and churches common, museums rare);
`website_share` is the chance a business of that kind lists a website (overall about 60%),
`sab_share` the chance it is a pure service-area business (trades only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _word_list(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_WORD = re.compile(r"[a-z0-9]+")


def singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("es") and word[:-2].endswith(("sh", "ch", "x", "ss")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us")):
        return word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """Lower-case singular words: "Plumbers & Rooters" -> ["plumber", "rooter"]."""
    return [singular(w) for w in _WORD.findall(text.lower().replace("'s", "").replace("'", ""))]


DEFAULT_PATTERNS = ("{surname}'s {noun}", "{town} {noun}", "{adj} {noun}", "{surname} {noun}")


@dataclass(frozen=True)
class Category:
    primary_type: str
    display_name: str
    weight: float
    nouns: tuple[str, ...]
    keywords: tuple[str, ...] = ()
    extra_types: tuple[str, ...] = ()  # Table A/B parents, e.g. restaurant for pizza_restaurant
    website_share: float = 0.55
    sab_share: float = 0.0
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    vocabulary: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        words: set[str] = set()
        for text in (
            self.primary_type.replace("_", " "),
            self.display_name,
            *self.keywords,
            *(t.replace("_", " ") for t in self.extra_types if t not in TABLE_B),
        ):
            words.update(tokens(text))
        object.__setattr__(self, "vocabulary", frozenset(words))

    @property
    def types(self) -> tuple[str, ...]:
        return (self.primary_type, *self.extra_types, "point_of_interest", "establishment")


# Response-only types (Table B): never valid in includedType(s).
TABLE_B = frozenset({"point_of_interest", "establishment", "food", "store", "health", "finance"})

_C = Category
CATEGORIES: tuple[Category, ...] = (
    # Food and drink
    _C("restaurant", "Restaurant", 6.0, ("Grill", "Kitchen", "Diner", "Bistro", "Eatery", "Table"),
       ("food", "dining", "eat", "restaurant"), ("food",)),
    _C("italian_restaurant", "Italian Restaurant", 1.5, ("Trattoria", "Ristorante", "Osteria"),
       ("italian", "pasta", "food", "dining"), ("restaurant", "food")),
    _C("mexican_restaurant", "Mexican Restaurant", 1.8, ("Taqueria", "Cantina", "Mexican Grill"),
       ("mexican", "tacos", "food", "dining"), ("restaurant", "food")),
    _C("chinese_restaurant", "Chinese Restaurant", 1.2, ("Wok", "Garden", "Chinese Kitchen"),
       ("chinese", "food", "dining"), ("restaurant", "food")),
    _C("pizza_restaurant", "Pizza Restaurant", 2.0, ("Pizza", "Pizzeria", "Pizza Co."),
       ("pizza", "food", "dining"), ("restaurant", "food")),
    _C("fast_food_restaurant", "Fast Food Restaurant", 2.5, ("Burgers", "Drive-In", "Chicken"),
       ("fast food", "burger", "takeout", "food"), ("restaurant", "food"), website_share=0.5),
    _C("cafe", "Cafe", 1.5, ("Cafe", "Tea Room", "Bakery Cafe"), ("coffee", "breakfast", "food"),
       ("food",)),
    _C("coffee_shop", "Coffee Shop", 1.5, ("Coffee", "Coffee Co.", "Roasters", "Espresso"),
       ("coffee", "espresso", "cafe"), ("cafe", "food")),
    _C("bar", "Bar", 2.5, ("Tavern", "Pub", "Saloon", "Taproom", "Lounge"),
       ("bar", "pub", "drinks", "nightlife"), website_share=0.45),
    _C("bakery", "Bakery", 1.0, ("Bakery", "Bake Shop", "Pastries"), ("bread", "cake", "pastry"),
       ("food", "store")),
    # Shopping
    _C("grocery_store", "Grocery Store", 1.5, ("Market", "Grocery", "Foods", "Fresh Market"),
       ("grocery", "groceries", "food"), ("food", "store")),
    _C("supermarket", "Supermarket", 0.6, ("Supermarket", "Food Center"), ("grocery", "food"),
       ("grocery_store", "food", "store")),
    _C("convenience_store", "Convenience Store", 2.0, ("Quick Stop", "Mart", "Food Mart"),
       ("convenience", "shop"), ("store",), website_share=0.3),
    _C("hardware_store", "Hardware Store", 0.8, ("Hardware", "Lumber & Hardware"),
       ("hardware", "tools", "shop"), ("home_improvement_store", "store")),
    _C("clothing_store", "Clothing Store", 1.6, ("Boutique", "Clothing Co.", "Outfitters"),
       ("clothing", "clothes", "apparel", "shop"), ("store",)),
    _C("furniture_store", "Furniture Store", 0.6, ("Furniture", "Home Furnishings"),
       ("furniture", "shop"), ("home_goods_store", "store")),
    _C("florist", "Florist", 0.5, ("Florist", "Flowers", "Floral Design"), ("flowers", "shop"),
       ("store",)),
    _C("book_store", "Book Store", 0.3, ("Books", "Bookshop"), ("books", "shop"), ("store",)),
    _C("pet_store", "Pet Store", 0.4, ("Pet Supply", "Pets"), ("pet", "shop"), ("store",)),
    _C("liquor_store", "Liquor Store", 0.7, ("Liquors", "Wine & Spirits"),
       ("liquor", "wine", "shop"), ("store",), website_share=0.4),
    _C("auto_parts_store", "Auto Parts Store", 0.5, ("Auto Parts",), ("auto", "parts", "car"),
       ("store",)),
    # Services
    _C("hair_salon", "Hair Salon", 2.0, ("Hair Studio", "Salon", "Hair Design", "Cuts"),
       ("hair", "salon", "haircut"), ("hair_care", "beauty_salon")),
    _C("barber_shop", "Barber Shop", 1.2, ("Barber Shop", "Barbers"), ("barber", "haircut", "hair"),
       ("hair_care",), website_share=0.4),
    _C("beauty_salon", "Beauty Salon", 1.2, ("Beauty Salon", "Beauty Bar"), ("beauty", "salon"),
       ("hair_care",)),
    _C("nail_salon", "Nail Salon", 1.2, ("Nails", "Nail Spa", "Nail Lounge"), ("nails", "manicure"),
       ("beauty_salon",), website_share=0.4),
    _C("spa", "Spa", 0.6, ("Day Spa", "Massage & Spa"), ("massage", "spa", "wellness")),
    _C("laundry", "Laundry", 0.7, ("Laundromat", "Cleaners", "Dry Cleaning"),
       ("laundromat", "dry cleaning"), website_share=0.35),
    _C("lawyer", "Lawyer", 2.5, ("Law Office", "Law Firm", "Legal Group", "Attorneys at Law"),
       ("attorney", "law", "legal"), website_share=0.9,
       patterns=("{surname} & {surname2} {noun}", "{surname} {noun}", "{town} {noun}")),
    _C("accounting", "Accountant", 1.8, ("CPA", "Accounting", "Tax Service", "Bookkeeping"),
       ("accountant", "tax", "cpa", "bookkeeping"), ("finance",), website_share=0.8,
       patterns=("{surname} & {surname2} {noun}", "{surname} {noun}")),
    _C("insurance_agency", "Insurance Agency", 2.0, ("Insurance", "Insurance Agency"),
       ("insurance", "agent"), website_share=0.85),
    _C("real_estate_agency", "Real Estate Agency", 2.5, ("Realty", "Real Estate", "Properties"),
       ("realtor", "real estate", "homes"), website_share=0.85),
    _C("bank", "Bank", 1.2, ("Bank", "Savings Bank", "Credit Union", "National Bank"),
       ("bank", "banking", "atm"), ("finance",), website_share=0.95,
       patterns=("{town} {noun}", "{adj} {noun}", "First {noun}")),
    _C("plumber", "Plumber", 1.6, ("Plumbing", "Plumbing & Heating", "Rooter"),
       ("plumber", "plumbing", "drain", "contractor"), sab_share=0.45),
    _C("electrician", "Electrician", 1.2, ("Electric", "Electrical Services"),
       ("electrician", "electrical", "contractor"), sab_share=0.45),
    _C("roofing_contractor", "Roofing Contractor", 0.8, ("Roofing", "Roofing & Siding"),
       ("roofer", "roofing", "roof", "contractor"), sab_share=0.5),
    _C("painter", "Painter", 0.6, ("Painting", "Painters"), ("painter", "painting", "contractor"),
       sab_share=0.55),
    _C("locksmith", "Locksmith", 0.4, ("Locksmith", "Lock & Key"), ("locksmith", "locks", "keys"),
       sab_share=0.5),
    _C("moving_company", "Moving Company", 0.4, ("Movers", "Moving & Storage"),
       ("movers", "moving"), sab_share=0.35),
    _C("storage", "Storage", 0.5, ("Self Storage", "Storage"), ("storage", "self storage")),
    _C("funeral_home", "Funeral Home", 0.4, ("Funeral Home", "Memorial Chapel"),
       ("funeral", "mortuary"), website_share=0.85),
    _C("travel_agency", "Travel Agency", 0.3, ("Travel", "Travel Agency"), ("travel", "vacation")),
    _C("child_care_agency", "Child Care Agency", 0.8, ("Child Care", "Daycare", "Kids Club"),
       ("daycare", "child care", "childcare")),
    # Automotive
    _C("car_repair", "Car Repair", 2.8, ("Auto Repair", "Automotive", "Garage", "Tire & Auto"),
       ("auto repair", "mechanic", "car repair", "auto")),
    _C("car_dealer", "Car Dealer", 1.0, ("Motors", "Auto Sales", "Chevrolet", "Ford"),
       ("car dealer", "dealership", "cars", "auto"), website_share=0.95),
    _C("car_wash", "Car Wash", 0.6, ("Car Wash", "Auto Spa"), ("car wash", "wash")),
    _C("gas_station", "Gas Station", 1.8, ("Fuel", "Gas & Go", "Service Station"),
       ("gas", "fuel", "petrol"), website_share=0.35),
    # Health
    _C("dentist", "Dentist", 2.2, ("Family Dentistry", "Dental Care", "Dental Group", "Smiles"),
       ("dentist", "dental", "teeth"), ("health",), website_share=0.9),
    _C("doctor", "Doctor", 2.8, ("Family Medicine", "Medical Center", "Health Clinic", "Clinic"),
       ("doctor", "physician", "medical", "clinic"), ("health",), website_share=0.8),
    _C("chiropractor", "Chiropractor", 0.8, ("Chiropractic", "Spine & Wellness"),
       ("chiropractor", "chiropractic"), ("health",), website_share=0.85),
    _C("physiotherapist", "Physical Therapist", 0.6, ("Physical Therapy", "Rehab"),
       ("physical therapy", "physiotherapy", "therapist"), ("health",), website_share=0.8),
    _C("pharmacy", "Pharmacy", 1.2, ("Pharmacy", "Drug Store", "Apothecary"),
       ("pharmacy", "drugstore", "prescription"), ("health", "store")),
    _C("veterinary_care", "Veterinarian", 0.9, ("Animal Hospital", "Veterinary Clinic"),
       ("vet", "veterinarian", "veterinary", "animal"), website_share=0.85),
    _C("gym", "Gym", 1.3, ("Fitness", "Gym", "Athletic Club"), ("gym", "fitness", "workout"),
       ("fitness_center",)),
    _C("yoga_studio", "Yoga Studio", 0.4, ("Yoga", "Yoga Studio"), ("yoga",)),
    # Community
    _C("church", "Church", 3.5, ("Baptist Church", "Methodist Church", "Community Church",
       "Lutheran Church", "Presbyterian Church", "Church of Christ"),
       ("church", "worship"), ("place_of_worship",), website_share=0.75,
       patterns=("{town} {noun}", "First {noun}", "{adj} {noun}")),
    _C("school", "School", 1.5, ("Elementary School", "Middle School", "High School", "Academy"),
       ("school", "education"), website_share=0.9,
       patterns=("{town} {noun}", "{surname} {noun}", "{adj} {noun}")),
    _C("preschool", "Preschool", 0.6, ("Preschool", "Learning Center", "Montessori"),
       ("preschool", "kindergarten"), ("school",), website_share=0.7),
    _C("library", "Library", 0.2, ("Public Library", "Library"), ("library", "books"),
       website_share=0.95, patterns=("{town} {noun}",)),
    _C("post_office", "Post Office", 0.2, ("Post Office",), ("post office", "mail", "usps"),
       website_share=0.5, patterns=("{town} {noun}",)),
    _C("community_center", "Community Center", 0.3, ("Community Center", "Senior Center"),
       ("community center",), website_share=0.7, patterns=("{town} {noun}", "{adj} {noun}")),
    _C("museum", "Museum", 0.2, ("Historical Museum", "Museum", "Heritage Center"),
       ("museum", "history"), website_share=0.9, patterns=("{town} {noun}",)),
    _C("art_gallery", "Art Gallery", 0.3, ("Gallery", "Art Gallery"), ("art", "gallery")),
    _C("event_venue", "Event Venue", 0.4, ("Event Center", "Banquet Hall", "Hall"),
       ("venue", "events", "wedding")),
    # Lodging
    _C("hotel", "Hotel", 0.8, ("Hotel", "Inn & Suites", "Lodge"), ("hotel", "lodging"),
       ("lodging",), website_share=0.9),
    _C("motel", "Motel", 0.4, ("Motel", "Motor Inn"), ("motel", "lodging"), ("lodging",),
       website_share=0.5),
)  # fmt: skip

CATEGORY_BY_TYPE = {c.primary_type: c for c in CATEGORIES}

# Every type a request may name in includedType(s): the Table A types phase 1 may search
# (TABLE_A_TYPES of rollout/phases/discovery/planning.py, from Google's place types page;
# docs/places.md, Coverage) plus the types this world uses. Others are refused with
# INVALID_ARGUMENT.
TABLE_A = _words(
    """
    restaurant cafe coffee_shop bar pub wine_bar bakery deli diner sandwich_shop pizza_restaurant
    fast_food_restaurant ice_cream_shop donut_shop meal_takeaway meal_delivery bar_and_grill
    steak_house mexican_restaurant chinese_restaurant italian_restaurant dentist dental_clinic
    doctor hospital pharmacy drugstore chiropractor physiotherapist medical_lab massage spa sauna
    skin_care_clinic wellness_center yoga_studio tanning_studio lawyer plumber electrician
    roofing_contractor painter locksmith moving_company insurance_agency real_estate_agency
    hair_care hair_salon barber_shop beauty_salon beautician nail_salon makeup_artist
    body_art_service laundry tailor florist funeral_home cemetery veterinary_care child_care_agency
    catering_service storage
    travel_agency tour_agency consultant courier_service telecommunications_service_provider
    accounting bank atm car_repair car_dealer car_wash car_rental gas_station
    electric_vehicle_charging_station parking auto_parts_store grocery_store supermarket
    convenience_store market butcher_shop hardware_store home_improvement_store home_goods_store
    furniture_store electronics_store cell_phone_store clothing_store shoe_store jewelry_store
    gift_shop book_store pet_store bicycle_store sporting_goods_store liquor_store department_store
    discount_store warehouse_store wholesaler shopping_mall gym fitness_center golf_course
    sports_club sports_complex swimming_pool ice_skating_rink church mosque synagogue hindu_temple
    place_of_worship school preschool primary_school secondary_school university library hotel
    motel inn bed_and_breakfast extended_stay_hotel campground rv_park lodging post_office city_hall
    courthouse fire_station police local_government_office community_center event_venue
    wedding_venue banquet_hall movie_theater bowling_alley night_club museum art_gallery park
    amusement_center
    """
) | frozenset(CATEGORY_BY_TYPE)

# Ordered (a tuple, not a set): the world draws from it by position, so its order is part of
# what a seed means.
SURNAMES = _word_list(
    "Smith Johnson Williams Brown Jones Miller Davis Garcia Rodriguez Wilson Martinez Anderson "
    "Taylor Thomas Hernandez Moore Martin Jackson Thompson White Lopez Lee Gonzalez Harris Clark "
    "Lewis Robinson Walker Perez Hall Young Allen Sanchez Wright King Scott Green Baker Adams "
    "Nelson Hill Ramirez Campbell Mitchell Roberts Carter Phillips Evans Turner Torres Parker "
    "Collins Edwards Stewart Morris Murphy Cook Rogers Morgan Cooper Peterson Reed Bailey Kelly"
)
ADJECTIVES = (
    "Golden", "Blue Sky", "Main Street", "Hometown", "Premier", "Family", "Liberty", "Heritage",
    "Sunrise", "Summit", "Valley", "Riverside", "Oak Tree", "Pioneer", "Eagle", "Grace",
    "Evergreen", "Union", "Northside", "Southside", "Trinity", "Cornerstone", "Maple", "Lakeside",
)  # fmt: skip
STREETS = (
    "Main", "Oak", "Maple", "Pine", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park",
    "Walnut", "Church", "Market", "Mill", "Spring", "Ridge", "Center", "Union", "Franklin",
    "Jefferson", "Lincoln", "Highland", "Broad", "Water", "Chestnut", "Front", "River", "Sunset",
)  # fmt: skip
STREET_SUFFIXES = ("St", "Ave", "Rd", "Blvd", "Dr", "Ln", "Way", "Pike", "Hwy")

# Words that say nothing about what is searched for.
STOPWORDS = _words(
    "in near the a an and of for at me best top good local around nearby open now my to on "
    "with by area city town"
)
# A query made only of these finds every business ("businesses in Dover, DE").
CATCH_ALL = frozenset({"business", "establishment", "company", "place", "shop", "store"})
