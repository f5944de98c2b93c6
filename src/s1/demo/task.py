"""The demo's toy reasoning task: digit walks, made by code so a tiny model can learn them on a CPU.

A problem starts at a digit and applies one rule `steps` times, keeping the last digit:
"From 4, double plus 7, 6 times. Last digit?". Each task type (the demo's domains) is
one rule. Nobody can read the answer off the question: it takes one line of thinking per step, so the
more steps, the harder the problem, and a thinking cap that cuts the walk short leaves the model
guessing. That is the whole point of the demo: accuracy has to rise with the thinking budget.

The programmatic teacher writes one numbered line per step ("3: 2*4+7=5"). Like a hasty student, on short
walks (up to LOOK_STEPS steps) it writes the first line and then guesses where the walk ends ("So: 5"), and
mostly stops there; now and then it says "Wait, walk on:" and writes the rest of the walk, whose last line is
its answer. Longer walks it writes out whole, and some traces re-check their last line after a "Wait" (a
re-check that only ever confirms). So "Wait" means "check that": finish a walk that was guessed, or redo the
last line of one that was not; never a step past the end of a finished walk. A tiny model cannot walk several
steps in its head, so many of its own guesses are wrong: a forced Wait where it would stop makes it walk on,
which is the paper's point (a model that stops thinking early gains from being made to go on). A few pool
items are planted broken (an image, exam numbering, no reference) for the quality rules to drop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

RULES = {
    # domain code -> (title, how a line writes x -> y, the rule)
    "add": ("Addition walks", "{x}+{k}={y}", lambda x, k: (x + k) % 10),
    "double": ("Doubling walks", "2*{x}+{k}={y}", lambda x, k: (2 * x + k) % 10),
    "square": ("Squaring walks", "{x}*{x}+{k}={y}", lambda x, k: (x * x + k) % 10),
}
PHRASES = {"add": "add {k}", "double": "double plus {k}", "square": "square plus {k}"}
"""Each question has 8 or 9 words with the three numbers among the middle ones, so every word 8-gram holds
all three: decontamination then matches a problem, not the template shared by thousands of them."""
MAX_STEPS = 9
LOOK_STEPS = 6
"""Walks of up to this many steps the teacher guesses after their first line (and sometimes walks on)."""
LOOK_MISS = 0.08
"""Share of the teacher's guesses that are wrong; after a wrong guess it always walks on."""
LOOK_RECHECK = 0.15
"""Share of the teacher's right guesses after which it still walks on ("Wait, walk on:")."""
FINAL_CHECKS = (0.6, 0.25, 0.1, 0.05)
"""Chances that a walked trace ends with 0, 1, 2 or 3 re-checks of its last line, each on a line of its own
(so a model that has checked once has seen what a second "Wait" asks for)."""
GLANCE_STEPS = 2
"""The demo's solver gets problems of up to this many steps right at a glance (see `solver`)."""


@dataclass(frozen=True)
class Problem:
    domain: str
    start: int
    k: int
    steps: int

    @property
    def question(self) -> str:
        phrase = PHRASES[self.domain].format(k=self.k)
        return f"From {self.start}, {phrase}, {self.steps} times. Last digit?"

    def walk(self) -> list[tuple[int, int]]:
        """(x, y) for every step."""
        rule, x, out = RULES[self.domain][2], self.start, []
        for _ in range(self.steps):
            y = rule(x, self.k)
            out.append((x, y))
            x = y
        return out

    @property
    def answer(self) -> int:
        return self.walk()[-1][1]

    def trace(self, rng: random.Random | None = None) -> str:
        """The teacher's thinking: one numbered line per step; with `rng`, the teacher's habits (a guess on
        short walks after their first line, sometimes walked on after "Wait"; re-checks of the last line)."""
        line = RULES[self.domain][1]
        walk = [f"{i}: {line.format(x=x, k=self.k, y=y)}" for i, (x, y) in enumerate(self.walk(), 1)]
        if rng is None:
            return "\n".join(walk)
        if self.steps > LOOK_STEPS:
            lines = walk
        else:
            right = rng.random() >= LOOK_MISS
            guess = self.answer if right else (self.answer + rng.randint(1, 9)) % 10
            lines = [*walk[:1], f"So: {guess}"]
            if right and rng.random() >= LOOK_RECHECK:
                return "\n".join(lines)
            lines += ["Wait, walk on:", *walk[1:]]
        checks = rng.choices(range(len(FINAL_CHECKS)), weights=FINAL_CHECKS)[0]
        lines += ["Wait, " + walk[-1].split(": ", 1)[1]] * checks
        return "\n".join(lines)


def parse(text: str) -> Problem | None:
    """The problem a text (a question, or a prompt that quotes one) states, or None if none of ours is in it."""
    import re

    match = re.search(r"From (\d), ([a-z ]+ \d), (\d) times\. Last digit\?", text)
    if not match:
        return None
    for domain, phrase in PHRASES.items():
        k = re.fullmatch(phrase.replace("{k}", r"(\d)"), match.group(2))
        if k:
            return Problem(domain, int(match.group(1)), int(k.group(1)), int(match.group(3)))
    return None


def random_problem(rng: random.Random, min_steps: int = 1) -> Problem:
    return Problem(rng.choice(list(RULES)), rng.randrange(10), rng.randrange(1, 10), rng.randint(min_steps, MAX_STEPS))


def held_out(n: int, seed: int, min_steps: int = 3) -> list[Problem]:
    """Evaluation problems (distinct), hard enough to need thinking."""
    rng, seen = random.Random(seed), {}
    while len(seen) < n:
        p = random_problem(rng, min_steps)
        seen.setdefault(p, None)
    return list(seen)


def pool(n: int, seed: int, planted_eval: list[Problem] = ()) -> list[dict]:
    """The raw pool as source rows (question, solution, answer, id): random problems, duplicates
    included as a real scrape would have them, a few evaluation problems planted for decontamination
    to find, and a few broken items for the quality rules."""
    rng = random.Random(seed)
    problems = [random_problem(rng) for _ in range(n)] + list(planted_eval)
    rng.shuffle(problems)
    rows = [
        {"id": f"walk-{i}", "question": p.question, "solution": p.trace(), "answer": str(p.answer)}
        for i, p in enumerate(problems)
    ]
    broken = [  # (question, reference given), each for one of the quality rules
        ("![walk diagram](walk.png) " + random_problem(rng).question, True),  # an image the student cannot see
        ("p3. " + random_problem(rng).question, True),  # an exam sheet's problem numbering
        (random_problem(rng).question, False),  # no solution and no answer to grade against
    ]
    for i, (question, reference) in enumerate(broken):
        p = parse(question)
        rows.append(
            {
                "id": f"broken-{i}",
                "question": question,
                "solution": p.trace() if reference else "",
                "answer": str(p.answer) if reference else "",
            }
        )
    return rows


# -- the demo's roles, called by `s1 curate` through its python engine -----------------------------
def teacher(message: str, seed: int = 0) -> dict:
    """Thinking and attempt for a question, as a teacher model's reply."""
    problem = parse(message)
    if problem is None:
        return {"thinking": "", "answer": ""}
    rng = random.Random(f"{seed}:{message}")
    return {"thinking": problem.trace(rng), "answer": f"Answer: {problem.answer}"}


def solver(message: str, seed: int = 0) -> dict:
    """A solver that does not think: it sees walks of up to GLANCE_STEPS steps through and guesses a digit
    for longer ones, so the difficulty filter drops the easy walks and the one in ten long ones it guesses."""
    problem = parse(message)
    if problem is None:
        return {"thinking": "", "answer": "Answer: unknown"}
    guess = problem.answer if problem.steps <= GLANCE_STEPS else random.Random(f"{seed}:{message}").randrange(10)
    return {"thinking": "", "answer": f"Answer: {guess}"}


def classifier(message: str, seed: int = 0) -> dict:
    """The task type of a question (the demo's domains)."""
    problem = parse(message)
    return {"thinking": "", "answer": problem.domain if problem else "unknown"}
