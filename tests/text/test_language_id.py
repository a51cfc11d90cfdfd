from langshift.text.language_id import (
    detect_language,
    language_alignment,
    normalize_language_tag,
)

RU = "Пакеты Debian устанавливаются с помощью программы apt, которая сама разрешает зависимости."
AR = "يتم تثبيت حزم دبيان باستخدام برنامج apt الذي يحل الاعتماديات تلقائيًا."
EN = "Debian packages are installed with the apt program, which resolves dependencies itself."
ZH_HANT = "Debian 套件是透過 apt 程式安裝的，它會自動處理相依關係與設定檔案。"
ZH_HANS = "Debian 软件包是通过 apt 程序安装的，它会自动处理依赖关系与配置文件。"


def test_detects_languages_and_chinese_scripts():
  assert detect_language(RU) == "ru"
  assert detect_language(AR) == "ar"
  assert detect_language(EN) == "en"
  assert detect_language(ZH_HANT) == "zh-Hant"
  assert detect_language(ZH_HANS) == "zh-Hans"
  assert detect_language("   ") == "und"


def test_tags_are_normalised():
  assert normalize_language_tag("zh-TW") == "zh-Hant"
  assert normalize_language_tag("zh_CN") == "zh-Hans"
  assert normalize_language_tag("ru-RU") == "ru"
  assert normalize_language_tag("ar-MA") == "ar"


def test_language_alignment_counts_responses_in_the_prompt_language():
  responses = [RU, EN, ZH_HANS, ZH_HANT]
  expected = ["ru-RU", "ru", "zh-TW", "zh-TW"]  # second answered in English, third in Simplified
  assert language_alignment(responses, expected) == 0.5
