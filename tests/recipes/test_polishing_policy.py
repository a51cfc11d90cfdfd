"""Polishing-policy prompts of native alignment (`recipes/native_alignment/polishing_policy.py`)."""

import pytest

from langshift.recipes.native_alignment import polishing_policy as pp

AR_DOCUMENT = (
    "## تاريخ القاهرة\n\nتأسست القاهرة عام ٩٦٩م على يد الفاطميين، وفيها الجامع الأزهر.\n"
    "المعادلة: $E = mc^{2}$ و {placeholder}\n\nاضغط هنا للاشتراك!!!"
)


@pytest.mark.parametrize("policy", pp.policy_names())
def test_every_policy_renders_with_the_document_verbatim(policy):
  system, user = pp.policy_messages(AR_DOCUMENT, policy=policy, language="ar")
  assert (system["role"], user["role"]) == ("system", "user")
  # Verbatim, braces of LaTeX and templates included, inside the delimiters.
  assert "<document>\n" + AR_DOCUMENT + "\n</document>" in user["content"]
  assert AR_DOCUMENT not in system["content"]
  instructions = system["content"]
  assert "Write in Arabic" in instructions
  assert "Output only the rewritten document" in instructions
  assert "return it exactly as it is" in instructions
  assert "{" not in instructions  # every placeholder filled


def test_policies_differ_in_what_they_ask():
  polish = pp.policy_instructions("polish", "ar")
  clean = pp.policy_instructions("clean", "ar")
  light = pp.policy_instructions("format_only", "ar")
  for text in (polish, clean, light):
    assert "Markdown" in text and "LaTeX" in text
  assert "advertisements" in polish and "Remove advertisements" in clean
  assert "Remove advertisements" not in light and "Change nothing but formatting" in light
  for phrase in ("factual errors", "neutral and respectful", "serious harm", "main positions"):
    assert phrase in polish
    assert phrase not in clean and phrase not in light
  assert pp.CULTURAL_NORMS["ar"] in polish
  assert pp.CULTURAL_NORMS["ar"] not in clean


def test_language_paragraph_is_chosen_by_normalised_tag():
  assert pp.CULTURAL_NORMS["ar"] in pp.policy_instructions("polish", "ar-EG")
  assert pp.CULTURAL_NORMS["ru"] in pp.policy_instructions("polish", "ru_RU")
  zh = pp.policy_instructions("polish", "zh-TW")
  assert pp.CULTURAL_NORMS["zh-Hant"] in zh and "Write in Traditional Chinese" in zh
  # A known language without its own paragraph gets the generic one, naming the language.
  tr = pp.policy_instructions("polish", "tr")
  assert pp.GENERIC_NORMS.format(language="Turkish") in tr
  assert pp.cultural_norms("tr").startswith("Respect the religions, customs and values of the")
  for paragraph in pp.CULTURAL_NORMS.values():
    assert paragraph not in tr


def test_instructions_are_in_english_and_the_document_keeps_its_language():
  system, user = pp.policy_messages("Привет, мир.", policy="polish", language="ru")
  assert system["content"].startswith("You are an editor preparing Russian text")
  assert "never translate it" in system["content"]
  assert user["content"].startswith("Rewrite this Russian document under the rules.")


def test_no_system_form_is_one_user_message():
  (message,) = pp.policy_messages(AR_DOCUMENT, policy="polish", language="ar", system=False)
  assert message["role"] == "user"
  instructions = pp.policy_instructions("polish", "ar")
  assert message["content"].startswith(instructions)
  assert message["content"].endswith("<document>\n" + AR_DOCUMENT + "\n</document>")
  with_system = pp.policy_messages(AR_DOCUMENT, policy="polish", language="ar")
  assert message["content"] == with_system[0]["content"] + "\n\n" + with_system[1]["content"]


def test_registry():
  assert pp.policy_names() == ("clean", "format_only", "polish")
  assert set(pp.POLICIES) == set(pp.policy_names())
  assert all(p.name == name and p.summary for name, p in pp.POLICIES.items())


@pytest.mark.parametrize(
    "kwargs,words",
    [
        ({"policy": "polite"}, ["'polite'", "'format_only'", "'polish'"]),
        ({"language": "ara"}, ["'ara'", "'ar'", "'zh-Hant'"]),
        ({"language": "klingon"}, ["'klingon'", "generic"]),
    ],
)
def test_unknown_policy_or_language_is_a_one_line_error(kwargs, words):
  with pytest.raises(ValueError) as info:
    pp.policy_messages("text", **kwargs)
  message = str(info.value)
  assert "\n" not in message
  for word in words:
    assert word in message
  with pytest.raises(ValueError, match="unknown"):
    pp.check_policy(kwargs.get("policy", "polish"), kwargs.get("language", "ar"))
  pp.check_policy("format_only", "zh-HK")  # known ones pass


GREEK_NORMS = "The readers are Greek speakers; speak of the Orthodox Church with respect {sic}."


def test_a_language_outside_the_tables_runs_with_its_name_and_norms_from_the_caller():
  system, user = pp.policy_messages(
      "Καλημέρα κόσμε.", policy="polish", language="el", language_name="Greek", norms=GREEK_NORMS
  )
  assert system["content"].startswith("You are an editor preparing Greek text")
  assert "Write in Greek, the document's language" in system["content"]
  assert "Respect the readers' cultural norms: " + GREEK_NORMS in system["content"]  # braces kept
  assert user["content"].startswith("Rewrite this Greek document under the rules.")
  (worker,) = pp.worker_messages("Καλημέρα.", policy="polish", language="el", language_name="Greek")
  assert worker["content"].startswith("Rewrite this Greek document under the polish policy.")
  # Without norms: the generic paragraph, naming the language.
  assert pp.cultural_norms("el", language_name="Greek") == pp.GENERIC_NORMS.format(language="Greek")
  # The caller's name and norms replace the built-in ones of a known language too.
  ar = pp.policy_instructions("polish", "ar", language_name="Gulf Arabic", norms="Local norms.")
  assert "Write in Gulf Arabic" in ar and "cultural norms: Local norms." in ar
  assert pp.CULTURAL_NORMS["ar"] not in ar
  # Without a name, a tag outside the tables says which config key to set.
  with pytest.raises(ValueError, match=r"^unknown language 'el' .*native_align\.language_name"):
    pp.check_policy("polish", "el")
  pp.check_policy("polish", "el", language_name="Greek")


def test_worker_prompt_is_short_names_the_policy_and_keeps_the_document():
  document = "نص {عربي} مع أقواس"
  (message,) = pp.worker_messages(document, policy="clean", language="ar-EG")
  assert message["role"] == "user"
  assert message["content"] == (
      "Rewrite this Arabic document under the clean policy.\n\n<document>\n"
      + document
      + "\n</document>"
  )
  expert = pp.policy_messages(document, policy="clean", language="ar", system=False)
  assert len(message["content"]) < len(expert[0]["content"]) / 3
  with pytest.raises(ValueError, match="nonexistent"):
    pp.worker_messages(document, policy="nonexistent")
