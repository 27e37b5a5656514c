import pytest

from xaimesh_labeling.errors import LabelParseError
from xaimesh_labeling.examples import ConceptExample, ContextToken
from xaimesh_labeling.prompts import (
    DEFAULT_SYSTEM_PROMPT,
    activation_score,
    build_label_messages,
    clean_label,
    example_text,
    instructions_of,
    render_prompt,
    render_tokens,
)


def ex(tokens, hi, norm=1.0, act=None):
    ctx = tuple(ContextToken(t, i in hi) for i, t in enumerate(tokens))
    return ConceptExample(text="".join(tokens[i] for i in sorted(hi)).strip(), activation=act if act is not None else norm,
                          normalized_activation=norm, context=ctx)


@pytest.mark.parametrize("norm,score", [(1.0, 10), (0.0, 0), (0.04, 0), (0.05, 1), (0.25, 3), (0.349, 3),
                                        (0.35, 4), (0.999, 10), (1.7, 10), (-0.2, 0), (float("nan"), 0)])
def test_activation_scale_0_to_10(norm, score):
    assert activation_score(ConceptExample("x", activation=1.0, normalized_activation=norm)) == score


def test_activation_falls_back_to_max_activation():
    assert activation_score(ConceptExample("x", activation=2.0, normalized_activation=0.0), max_activation=4.0) == 5


def test_highlight_runs_and_whitespace():
    tokens = ["The", " big", " black", " cat", " sat", "."]
    assert render_tokens([ContextToken(t, i in (2, 3)) for i, t in enumerate(tokens)]) == "The big <<black cat>> sat."
    assert render_tokens([ContextToken(t, i == 5) for i, t in enumerate(tokens)]) == "The big black cat sat<<.>>"
    assert render_tokens([ContextToken(t, i in (0, 4)) for i, t in enumerate(tokens)]) == "<<The>> big black cat <<sat>>."
    assert render_tokens([ContextToken(t, True) for t in tokens], highlight=False) == "The big black cat sat."


def test_example_text_without_context_uses_row_text_and_flattens_newlines():
    assert example_text(ConceptExample(" cat\nand dog ", 1.0, 1.0)) == "cat\\nand dog"


def test_label_prompt_shows_scale_highlights_and_context():
    examples = [ex(["The", " cat", " sat"], {1}, 1.0), ex(["A", " dog", " ran", " home"], {1}, 0.42)]
    messages = build_label_messages(examples)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == DEFAULT_SYSTEM_PROMPT
    user = messages[1]["content"]
    assert "1. [10] The <<cat>> sat" in user
    assert "2. [4] A <<dog>> ran home" in user
    assert "<< >>" in user and "1 to 5 words" in user
    prompt = render_prompt(messages)
    assert prompt.startswith("[system]\n") and "\n\n[user]\n" in prompt


def test_label_prompt_without_context_and_custom_system_prompt():
    examples = [ConceptExample(" cat", 3.0, 1.0), ConceptExample(" dog", 1.5, 0.5)]
    messages = build_label_messages(examples, system_prompt="Name the pattern.")
    assert messages[0]["content"] == "Name the pattern."
    user = messages[1]["content"]
    assert "1. [10] cat" in user and "2. [5] dog" in user and "<<" not in user.split("\n\n")[1]
    with pytest.raises(ValueError):
        build_label_messages([])


@pytest.mark.parametrize("raw,label", [
    ("Animals", "Animals"),
    ("Label: Animals.", "Animals"),
    ('**Label:** "Farm animals"', "Farm animals"),
    ("The label is: pet names!", "pet names"),
    ("The label is Farm animals", "Farm animals"),
    ("Sure! Here is a concise label:\n\n`Past tense verbs`\n\nThese excerpts...", "Past tense verbs"),
    ("<think>they are all animals</think>\nAnimal words", "Animal words"),
    ("- Numbers in dates;", "Numbers in dates"),
    ("1. Colour adjectives", "Colour adjectives"),
    ("«Colours»", "Colours"),
    ("“Closing brackets”.", "Closing brackets"),
    ("Words about animals, pets, farm creatures, and wildlife", "Words about animals, pets, farm"),
    ("Animals (pets and wild farm creatures)", "Animals"),
    ("## Topic: Sports teams", "Sports teams"),
    ("Time: hours and minutes", "Time: hours and minutes"),
    ("Feature-rich text", "Feature-rich text"),
    ("<<cat>> words", "cat words"),
])
def test_clean_label(raw, label):
    assert clean_label(raw) == label


@pytest.mark.parametrize("raw", ["", "   \n ", "Label:", '""', "...", "<think>only thinking"])
def test_clean_label_empty_is_an_error(raw):
    with pytest.raises(LabelParseError) as err:
        clean_label(raw)
    assert err.value.code.name == "INTERNAL"


def test_clean_label_drops_an_echoed_activation_score():
    from xaimesh_labeling.prompts import clean_label

    assert clean_label("[10] application") == "application"
    assert clean_label("1. [7] **Label:** happy feelings.") == "happy feelings"


def test_a_label_that_repeats_the_instructions_is_not_a_label():
    examples = [ConceptExample(text=" day", activation=3.0, normalized_activation=1.0),
                ConceptExample(text=" morning", activation=2.0, normalized_activation=0.7)]
    instructions = instructions_of(build_label_messages(examples))
    assert "day" not in instructions.split()  # the excerpts are left out
    # what SmolLM2-135M answered for two concepts of the seed demo
    for raw in ("active, each with its activation", "active, and it responds to"):
        with pytest.raises(LabelParseError, match="repeated the instructions"):
            clean_label(raw, instructions=instructions)
    # a later line that names a pattern is taken; short labels made of instruction words stay
    assert clean_label("active, each with its activation\nTimes of day", instructions=instructions) == "Times of day"
    assert clean_label("grammatical role", instructions=instructions) == "grammatical role"
    assert clean_label("days of the week", instructions=instructions) == "days of the week"
    assert clean_label("active, each with its activation") == "active, each with its activation"  # no instructions given


def test_a_chat_for_a_model_without_chat_template_is_a_plain_transcript():
    from xaimesh_labeling.prompts import plain_chat_prompt

    text = plain_chat_prompt([{"role": "system", "content": "Name the pattern. "},
                              {"role": "user", "content": "Examples: cat, dog"}])
    assert text == "System: Name the pattern.\n\nUser: Examples: cat, dog\n\nAssistant:"
