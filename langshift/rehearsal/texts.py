"""A few sentences per language, the text every rehearsal's corpora, prompts and tokenizers are
made of (the languages of the published settings: a pinch's twelve, InsCP's zh-TW, LEP's
Russian, native alignment's Arabic and the English of non-instructional fine-tuning)."""

from __future__ import annotations

import random

SENTENCES = {
    "en": (
        "The server installs the package from the local mirror.",
        "Every user keeps a copy of the configuration in the home directory.",
        "Explain how the network service starts after a reboot.",
    ),
    "ar": (
        "يقوم الخادم بتثبيت الحزمة من المرآة المحلية.",
        "يحتفظ كل مستخدم بنسخة من الإعدادات في دليله الخاص.",
        "اشرح كيف تبدأ خدمة الشبكة بعد إعادة التشغيل.",
    ),
    "zh": (
        "服务器从本地镜像安装软件包。",
        "每个用户都在自己的主目录中保存一份配置。",
        "请解释重新启动后网络服务是如何启动的。",
    ),
    "zh-TW": (
        "伺服器從本機鏡像安裝軟體套件。",
        "每個使用者都在自己的主目錄中保存一份設定。",
        "請說明重新開機後網路服務是如何啟動的。",
    ),
    "cs": (
        "Server instaluje balíček z místního zrcadla.",
        "Každý uživatel si uchovává kopii nastavení ve svém domovském adresáři.",
        "Vysvětlete, jak se síťová služba spouští po restartu.",
    ),
    "et": (
        "Server paigaldab paketi kohalikust peeglist.",
        "Iga kasutaja hoiab seadete koopiat oma kodukataloogis.",
        "Selgita, kuidas võrguteenus pärast taaskäivitamist käivitub.",
    ),
    "fi": (
        "Palvelin asentaa paketin paikallisesta peilistä.",
        "Jokainen käyttäjä säilyttää kopion asetuksista kotihakemistossaan.",
        "Selitä, miten verkkopalvelu käynnistyy uudelleenkäynnistyksen jälkeen.",
    ),
    "he": (
        "השרת מתקין את החבילה מהמראה המקומית.",
        "כל משתמש שומר עותק של ההגדרות בתיקיית הבית שלו.",
        "הסבר כיצד שירות הרשת מתחיל לאחר אתחול מחדש.",
    ),
    "hi": (
        "सर्वर स्थानीय दर्पण से पैकेज स्थापित करता है।",
        "हर उपयोगकर्ता अपनी होम निर्देशिका में सेटिंग्स की एक प्रति रखता है।",
        "समझाइए कि दोबारा शुरू करने के बाद नेटवर्क सेवा कैसे शुरू होती है।",
    ),
    "it": (
        "Il server installa il pacchetto dal mirror locale.",
        "Ogni utente conserva una copia della configurazione nella propria cartella personale.",
        "Spiega come si avvia il servizio di rete dopo un riavvio.",
    ),
    "ru": (
        "Сервер устанавливает пакет из локального зеркала.",
        "Каждый пользователь хранит копию настроек в своём домашнем каталоге.",
        "Объясните, как запускается сетевая служба после перезагрузки.",
    ),
    "es": (
        "El servidor instala el paquete desde el espejo local.",
        "Cada usuario guarda una copia de la configuración en su directorio personal.",
        "Explica cómo se inicia el servicio de red después de reiniciar.",
    ),
    "sw": (
        "Seva inasakinisha kifurushi kutoka kwenye kioo cha ndani.",
        "Kila mtumiaji anahifadhi nakala ya mipangilio katika saraka yake ya nyumbani.",
        "Eleza jinsi huduma ya mtandao inavyoanza baada ya kuwasha upya.",
    ),
}


def paragraph(language: str, rng: random.Random, sentences: int = 3) -> str:
  """`sentences` sentences of `language`, in a random order (repeats allowed)."""
  pool = SENTENCES[language]
  return " ".join(rng.choice(pool) for _ in range(sentences))


def documents(language: str, n: int, seed: int = 0, paragraphs: int = 2) -> list[str]:
  """`n` distinct documents of `paragraphs` paragraphs each (distinct by a closing number)."""
  rng = random.Random(seed)
  return [
      "\n\n".join(paragraph(language, rng) for _ in range(paragraphs)) + f" {i}" for i in range(n)
  ]


def training_text() -> list[str]:
  """Every sentence of every language, repeated: what the tiny tokenizers are trained on."""
  return [s for pool in SENTENCES.values() for s in pool] * 4
