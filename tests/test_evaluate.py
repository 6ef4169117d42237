"""The evaluation's decision rules and its targets, on hand-made parses (no model)."""

from __future__ import annotations

from faqbot.tools.evaluate import TARGETS, Evaluation, score


def parse(intent: str, *ranking: tuple[str, float]) -> dict:
    """A parse as Rasa returns it: ``intent`` on top (nlu_fallback or a real one), then the ranking."""
    items = [{"name": name, "confidence": value} for name, value in ranking]
    return {"intent": {"name": intent}, "intent_ranking": items}


def test_what_the_customer_gets_is_counted_per_outcome():
    examples = [
        ("rechnung bitte", "faq_erhalte_rechnung"),  # answered right at once
        ("karte ändern", "faq_zahlungsdaten_aendern"),  # unsure, right FAQ among the buttons
        ("login kaputt", "faq_login_problemen"),  # answered with another FAQ
        ("wetter morgen", "out_of_scope"),  # not an FAQ, answered with one
        ("hallo", "greet"),  # small talk, kept
    ]
    parses = [
        parse("faq_erhalte_rechnung", ("faq_erhalte_rechnung", 0.9)),
        parse("nlu_fallback", ("nlu_fallback", 0.6), ("faq_zahlungsdaten_aendern", 0.4), ("faq_erhalte_rechnung", 0.3)),
        parse("faq_erstelle_kundenkonto", ("faq_erstelle_kundenkonto", 0.8), ("faq_login_problemen", 0.1)),
        parse("faq_erhalte_rechnung", ("faq_erhalte_rechnung", 0.7)),
        parse("greet", ("greet", 0.95)),
    ]
    result = score(examples, parses)
    assert (result.faq_examples, result.other_examples) == (3, 2)
    assert round(result.faq_answered_right, 3) == round(result.faq_right_via_buttons, 3) == 0.333
    assert round(result.faq_wrong_answer, 3) == 0.333 and result.faq_resolved == 2 / 3
    assert result.other_got_faq_answer == 0.5
    assert result.as_dict(confusions=False)["faq_resolved"] == 2 / 3


def test_targets_are_printed_with_whether_they_are_met():
    met = Evaluation(faq_answered_right=0.95, faq_right_via_buttons=0.04, faq_wrong_answer=0.01)
    missed = Evaluation(faq_answered_right=0.94, faq_right_via_buttons=0.04, other_got_faq_answer=0.03)
    assert set(TARGETS) == {"faq_answered_right", "faq_wrong_answer", "faq_resolved", "other_got_faq_answer"}
    assert met.meets("faq_answered_right") and met.meets("faq_resolved") and met.meets("faq_wrong_answer")
    assert not missed.meets("faq_answered_right") and not missed.meets("other_got_faq_answer")
    lines = {line.split(":")[0]: line for line in missed.summary().splitlines()}
    assert lines["FAQ sofort richtig beantwortet"].endswith("Ziel ≥ 95 % ✘")
    assert lines["Nicht-FAQ mit FAQ-Antwort beantwortet"].endswith("Ziel ≤ 2 % ✘")
    assert "Ziel" not in lines["FAQ an den Support angeboten"]
    assert met.summary().splitlines()[3].endswith("Ziel ≥ 95 % ✔")


def test_out_of_scope_with_a_close_faq_counts_as_buttons_like_the_action_shows_them():
    examples = [("abo verlängert sich?", "faq_flexibel_vertraege_laufzeiten"), ("paket wo", "faq_erhalte_rechnung")]
    parses = [
        parse("out_of_scope", ("out_of_scope", 0.61), ("faq_flexibel_vertraege_laufzeiten", 0.37)),
        parse("out_of_scope", ("out_of_scope", 0.8), ("faq_erhalte_rechnung", 0.2)),  # too faint: support offered
    ]
    result = score(examples, parses)
    assert result.faq_right_via_buttons == 0.5 and result.faq_no_answer == 0.5
