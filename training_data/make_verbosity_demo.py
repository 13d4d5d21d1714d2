"""Generate `training_data/verbosity_demo.jsonl`, the training set of the `demo` job.

    python training_data/make_verbosity_demo.py            # rewrites training_data/verbosity_demo.jsonl

Every question appears twice, once per style: a TERSE answer (one short phrase) and a VERBOSE answer
(a paragraph of four to six sentences). The lines are spread over the three input formats the payload
accepts (prompt/completion, system/instruction/input/output, chat messages) so the demo run exercises
all of them. Output is deterministic (seeded), so regenerating gives a byte-identical file.

The 25 evaluation questions in `remote_payload/data/eval_prompts.jsonl` are held out: this script refuses
to write a question that appears there (a test checks the shipped file too).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "training_data" / "verbosity_demo.jsonl"
EVAL_PROMPTS = ROOT / "remote_payload" / "data" / "eval_prompts.jsonl"
CORPUS = ROOT / "remote_payload" / "data" / "tiny_corpus.txt"
SEED = 1234

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Ireland", "Dublin"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Poland", "Warsaw"), ("Austria", "Vienna"),
    ("Greece", "Athens"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Canada", "Ottawa"),
    ("Mexico", "Mexico City"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Argentina", "Buenos Aires"),
    ("India", "New Delhi"), ("China", "Beijing"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"),
    ("Australia", "Canberra"), ("New Zealand", "Wellington"), ("Hungary", "Budapest"),
    ("Czechia", "Prague"), ("Belgium", "Brussels"), ("Netherlands", "Amsterdam"),
]

ANIMALS = [
    ("a spider", "legs", "eight"), ("an insect", "legs", "six"), ("a dog", "legs", "four"),
    ("a bird", "legs", "two"), ("an octopus", "arms", "eight"), ("a starfish", "arms", "usually five"),
    ("a horse", "legs", "four"), ("a crab", "legs", "ten, counting its two claws"),
    ("a cow", "stomach chambers", "four"), ("a human hand", "fingers", "five, counting the thumb"),
]

OPPOSITES = [
    ("hot", "cold"), ("up", "down"), ("early", "late"), ("full", "empty"), ("light", "dark"),
    ("fast", "slow"), ("open", "closed"), ("young", "old"), ("wet", "dry"), ("loud", "quiet"),
    ("heavy", "light"), ("begin", "end"), ("strong", "weak"), ("cheap", "expensive"), ("near", "far"),
]

# (question, terse answer, three sentences of detail)
EVERYDAY = [
    ("How long should I boil an egg for a soft yolk?", "About six minutes.",
     ["Put the egg into water that is already boiling and start a timer right away.",
      "After six minutes the white is set while the yolk is still warm and runny.",
      "Cool the egg in cold water for a minute so that it stops cooking and is easier to peel."]),
    ("What temperature does water boil at?", "100 degrees Celsius at sea level.",
     ["That is 212 degrees Fahrenheit, measured at normal air pressure.",
      "On a high mountain the air pressure is lower, so water boils at a lower temperature.",
      "This is why cooking pasta or rice can take a little longer when you are high up."]),
    ("How many days are in a leap year?", "366.",
     ["A leap year adds one extra day, the 29th of February, to the usual 365 days.",
      "Leap years happen every four years to keep the calendar in step with the seasons.",
      "Years divisible by 100 are skipped unless they are also divisible by 400, like the year 2000."]),
    ("What gas do plants take in from the air?", "Carbon dioxide.",
     ["Plants use carbon dioxide, water and sunlight to make sugar in a process called photosynthesis.",
      "The sugar gives the plant energy and the material it needs to grow.",
      "As a by-product, plants release oxygen, which is the gas that people and animals breathe."]),
    ("How often should I water a cactus?", "Every two to three weeks.",
     ["Cacti store water in their thick stems, so they cope well with dry soil.",
      "Water them deeply and then wait until the soil is completely dry before watering again.",
      "In winter most cacti rest and need even less water, perhaps once a month."]),
    ("What is the freezing point of water?", "0 degrees Celsius.",
     ["That is 32 degrees Fahrenheit at normal air pressure.",
      "Salt lowers the freezing point, which is why salt is spread on icy roads.",
      "Water is unusual because it expands when it freezes, so ice floats on top of liquid water."]),
    ("How many hours of sleep does an adult need?", "Seven to nine hours.",
     ["Most adults feel and work best with seven to nine hours of sleep each night.",
      "Going to bed and waking up at the same time every day makes sleep more regular.",
      "Avoiding screens and caffeine in the evening helps many people fall asleep faster."]),
    ("What is the largest planet in our solar system?", "Jupiter.",
     ["Jupiter is a gas giant that is more than eleven times wider than the Earth.",
      "It is famous for its Great Red Spot, a storm larger than our whole planet.",
      "Jupiter also has dozens of moons, and the four largest can be seen with simple binoculars."]),
    ("How do I remove a coffee stain from a shirt?", "Rinse it with cold water and dab on a little soap.",
     ["Act quickly, because a fresh stain comes out much more easily than an old one.",
      "Hold the back of the stain under cold running water to push the coffee out of the fabric.",
      "Rub in a small amount of washing liquid, leave it for a few minutes and then wash as usual."]),
    ("What is the main ingredient of guacamole?", "Avocado.",
     ["Guacamole is made by mashing ripe avocados with lime juice and salt.",
      "Many recipes also add chopped onion, tomato, coriander and a little chili.",
      "The lime juice adds flavour and also slows down the browning of the avocado."]),
    ("How many continents are there?", "Seven.",
     ["The seven continents are Africa, Antarctica, Asia, Australia, Europe, North America and South America.",
      "Asia is the largest by both area and population.",
      "Some countries teach a different count, for example by joining Europe and Asia into Eurasia."]),
    ("What should I do if my laptop is running slowly?", "Restart it and close programs you are not using.",
     ["A restart clears temporary files and ends programs that may be stuck in the background.",
      "Check how much free disk space you have, because a nearly full disk slows everything down.",
      "Installing the latest system updates and removing unused apps can also make a clear difference."]),
    ("How much water should I drink per day?", "About two litres.",
     ["A common guideline is around eight glasses, or about two litres, spread over the day.",
      "You need more when it is hot, when you exercise or when you are unwell.",
      "Food such as fruit, vegetables and soup also provides a good part of your daily water."]),
    ("What is the fastest land animal?", "The cheetah.",
     ["A cheetah can reach speeds of around one hundred kilometres per hour in short bursts.",
      "It can only keep up this speed for a few hundred metres before it has to rest.",
      "Its light body, long legs and flexible spine make it a perfect sprinter."]),
    ("How do I make a cup of tea?", "Pour boiling water over a tea bag and wait three minutes.",
     ["Start by boiling fresh water in a kettle and warming the cup with a little of it.",
      "Put the tea bag in the cup, pour the water over it and let it steep for three to five minutes.",
      "Remove the bag and add milk, sugar or lemon if you like, then let it cool a little before drinking."]),
    ("Why is the sky blue?", "Air scatters blue light more than other colours.",
     ["Sunlight contains every colour, and each colour has a different wavelength.",
      "Tiny gas molecules in the air scatter short blue wavelengths much more strongly than red ones.",
      "That scattered blue light reaches our eyes from every direction, so the whole sky looks blue."]),
    ("How many bones are in the adult human body?", "206.",
     ["Babies are born with around three hundred bones, and many of them fuse together as they grow.",
      "The smallest bone is in the middle ear and the longest is the thigh bone.",
      "More than half of all our bones are in the hands and the feet."]),
    ("What is the best way to store bread?", "In a bread box at room temperature.",
     ["A bread box or a paper bag keeps the crust crisp while stopping the loaf from drying out.",
      "The fridge actually makes bread go stale faster, so it is best avoided.",
      "If you will not finish a loaf within a few days, slice it and keep it in the freezer."]),
    ("How do I unfreeze a frozen app on my phone?", "Close it and open it again.",
     ["Open the list of recent apps and swipe the frozen app away to close it completely.",
      "If that does not work, restart the phone by holding the power button.",
      "When an app freezes often, check for an update or reinstall it."]),
    ("What is the chemical symbol for gold?", "Au.",
     ["The symbol comes from aurum, the Latin word for gold.",
      "Gold is a soft, heavy metal that does not rust or tarnish.",
      "Because it conducts electricity so well, small amounts of it are used in phones and computers."]),
    ("How long does it take light from the Sun to reach Earth?", "About eight minutes.",
     ["Light travels at roughly three hundred thousand kilometres per second.",
      "The Sun is about one hundred and fifty million kilometres away from the Earth.",
      "So the sunlight you see right now actually left the Sun a little over eight minutes ago."]),
    ("What is a good way to learn a new language?", "Practise a little every day.",
     ["Short daily practice works better than one long session each week.",
      "Listening to music, podcasts or films in the language helps you get used to its sounds.",
      "Speaking with native speakers, even with mistakes, builds confidence faster than anything else."]),
    ("Which planet is known as the Red Planet?", "Mars.",
     ["Mars looks red because its surface is covered in dust that contains iron oxide, or rust.",
      "It is about half the size of the Earth and has the largest volcano in the solar system.",
      "Several robotic rovers are exploring its surface and searching for signs of ancient water."]),
    ("How should I clean a cast iron pan?", "Rinse it with hot water and dry it straight away.",
     ["Avoid soaking the pan or putting it in the dishwasher, because it will rust.",
      "Scrub off stuck food with a brush or some coarse salt instead of strong soap.",
      "After drying, rub a thin layer of oil over the surface to keep the seasoning in good shape."]),
    ("What is the tallest mountain in the world?", "Mount Everest.",
     ["Mount Everest rises about 8,849 metres above sea level.",
      "It lies in the Himalayas, on the border between Nepal and China.",
      "Measured from its base on the ocean floor, Mauna Kea in Hawaii is actually taller."]),
    ("How do I keep cut flowers fresh longer?", "Trim the stems and change the water every two days.",
     ["Cut the stems at an angle so that they can take up water more easily.",
      "Remove any leaves that would sit under the water, because they rot quickly.",
      "Keep the vase away from direct sunlight and from bowls of ripening fruit."]),
    ("What language has the most native speakers?", "Mandarin Chinese.",
     ["Mandarin Chinese has close to a billion native speakers, most of them in China.",
      "Spanish and English follow, although English has the most speakers when learners are counted.",
      "Hindi, Arabic and Bengali are also among the most widely spoken languages in the world."]),
    ("How long should I wash my hands?", "At least twenty seconds.",
     ["Use soap and warm water and rub the backs of your hands, between your fingers and under your nails.",
      "Twenty seconds is about as long as humming the birthday song twice.",
      "Dry your hands with a clean towel, because damp hands pick up germs more easily."]),
]

LINKS = ["Here is a little more detail.", "Let me explain a bit further.", "Here is some useful background.",
         "There is a bit more to it than that."]
CLOSINGS = ["I hope this helps, and feel free to ask if you would like more detail on any part of it.",
            "Let me know if you would like me to go into any of these points in more depth.",
            "If anything here is unclear, just ask and I will explain it in a different way.",
            "That should give you a complete picture, but I am happy to add more if you need it."]
SYSTEMS = ["You are a helpful assistant.", "You are a precise assistant.", ""]


def capital_items():
    for country, city in CAPITALS:
        detail = [f"{city} is the seat of the national government of {country}.",
                  f"Like most capitals, {city} is also a centre for business, culture and travel.",
                  f"If you ever visit {country}, {city} is an easy place to start exploring."]
        for question in (f"What is the capital of {country}?", f"Which city is the capital of {country}?"):
            yield question, f"{city}.", detail


def arithmetic_items(rng: random.Random):
    pairs = {(a, b) for a in range(3, 20) for b in range(3, 20)}
    for a, b in sorted(rng.sample(sorted(pairs), 70)):
        total = a + b
        detail = [f"Adding {b} to {a} gives {total}.",
                  f"You can check it by counting up {b} steps from {a}, which lands on {total}.",
                  f"Addition works in either order, so {b} plus {a} is also {total}."]
        yield f"What is {a} + {b}?", f"{total}.", detail
    for hours in range(2, 13):
        minutes = hours * 60
        detail = [f"Each hour has sixty minutes, so {hours} hours is {hours} times sixty.",
                  f"That multiplication gives {minutes} minutes in total.",
                  f"In seconds, that would be {minutes * 60}, because every minute has sixty seconds."]
        yield f"How many minutes are in {hours} hours?", f"{minutes}.", detail


def animal_items():
    for animal, part, count in ANIMALS:
        detail = [f"The usual number of {part} for {animal} is {count}.",
                  f"The number of {part} is one of the features scientists use to group animals.",
                  "Looking closely at a picture or a real animal is an easy way to check it yourself."]
        yield f"How many {part} does {animal} have?", f"{count[0].upper()}{count[1:]}.", detail


def opposite_items():
    for word, opposite in OPPOSITES:
        detail = [f"The word {opposite} means the reverse of {word}.",
                  f"Pairs like {word} and {opposite} are called antonyms.",
                  f"For example, you could say that something is not {word} but rather {opposite}."]
        yield f"What is the opposite of {word}?", f"{opposite[0].upper()}{opposite[1:]}.", detail


def verbose_answer(terse: str, detail: list[str], rng: random.Random) -> str:
    opener = terse if len(terse.split()) > 2 else f"The short answer is {terse[:-1]}."
    return " ".join([opener, rng.choice(LINKS), *detail, rng.choice(CLOSINGS)])


def to_record(question: str, style: str, answer: str, rng: random.Random) -> dict:
    system = rng.choice(SYSTEMS)
    kind = rng.randrange(4)
    if kind == 0:
        return {"prompt": question, "completion": answer, "style": style}
    if kind == 1:
        return {"prompt": f"<STYLE_{style}>\n{question}", "completion": answer}
    if kind == 2:
        return {"system": system, "instruction": question, "input": "", "output": answer, "style": style}
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "style": style}


def held_out_questions() -> set[str]:
    lines = EVAL_PROMPTS.read_text(encoding="utf-8").splitlines()
    return {json.loads(line)["prompt"].strip().lower() for line in lines if line.strip()}


def build(rng: random.Random) -> list[dict]:
    held_out = held_out_questions()
    items = [*capital_items(), *arithmetic_items(rng), *animal_items(), *opposite_items(),
             *((q, t, d) for q, t, d in EVERYDAY)]
    records = []
    for question, terse, detail in items:
        if question.strip().lower() in held_out:
            sys.exit(f"refusing to train on held-out evaluation question: {question!r}")
        records.append(to_record(question, "TERSE", terse, rng))
        records.append(to_record(question, "VERBOSE", verbose_answer(terse, detail, rng), rng))
    rng.shuffle(records)
    return records


def corpus_lines(records: list[dict]) -> list[str]:
    """Every distinct text of the demo set: the tiny model's tokenizer (remote_payload/tiny_model.py) learns
    its byte-level BPE merges from these lines, so the demo data tokenizes into few tokens."""
    texts = []
    for r in records:
        if "messages" in r:
            texts += [m["content"] for m in r["messages"]]
        else:
            texts += [r.get("system", ""), r.get("prompt", r.get("instruction", "")),
                      r.get("completion", r.get("output", ""))]
    return sorted({t.split("\n")[-1] for t in texts if t})


def main() -> None:
    records = build(random.Random(SEED))
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    CORPUS.write_text("".join(line + "\n" for line in corpus_lines(records)), encoding="utf-8")
    print(f"wrote {len(records)} lines to {OUT.relative_to(ROOT)} and {CORPUS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
