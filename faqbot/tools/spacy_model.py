"""Install and report the German spaCy model ``de_core_news_sm`` that config.yml names.

    python -m faqbot.tools.spacy_model ensure   # install if missing, then report
    python -m faqbot.tools.spacy_model status   # report only (exit 1 if missing)

The official model is tried first (``python -m spacy download``). Only when it cannot be
downloaded (no route to its host) an OFFLINE STAND-IN is built: spaCy's German tokenizer
plus the lookup lemmatizer from spacy-lookups-data, packaged under the same name with
version ``0.0.0+offline``. It has no tagger, parser or vectors; figures measured with it
are labelled as such.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from faqbot.core.spacy_model import (
    MODEL,
    STANDIN_VERSION,
    describe,
    installed_version,
    is_standin,
    warning_banner,
)

OFFICIAL_VERSION = "3.4.0"  # the release built for spaCy 3.4.x
STANDIN_DESCRIPTION = (
    "OFFLINE STAND-IN, NOT the official de_core_news_sm: spaCy's German tokenizer plus the "
    "lookup lemmatizer from spacy-lookups-data, built because the official model could not "
    "be downloaded. No tagger, parser, NER or vectors."
)
DOWNLOAD_TIMEOUT_S = 180


def download_official() -> bool:
    print(f"Lade das offizielle Modell {MODEL}-{OFFICIAL_VERSION} ...", flush=True)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "spacy", "download", f"{MODEL}-{OFFICIAL_VERSION}", "--direct"],
            timeout=DOWNLOAD_TIMEOUT_S,
            capture_output=True,
            text=True,
        )
    except subprocess.TimeoutExpired:
        print("  Download: Zeitüberschreitung.")
        return False
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["?"]
        print(f"  Download fehlgeschlagen: {last[0][:200]}")
        return False
    return installed_version() is not None and not is_standin()


def build_standin() -> None:
    import spacy
    from spacy.cli.package import package

    print(f"Baue den OFFLINE-ERSATZ für {MODEL} (Tokenizer + Lookup-Lemmatizer) ...", flush=True)
    nlp = spacy.blank("de")
    nlp.add_pipe("lemmatizer", config={"mode": "lookup"})  # tables from spacy-lookups-data
    nlp.initialize()
    nlp.meta.update(
        {
            "name": "core_news_sm",
            "version": STANDIN_VERSION,
            "description": STANDIN_DESCRIPTION,
            "author": "faq-bot-de (offline)",
            "license": "MIT",
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, out_dir = Path(tmp, "model"), Path(tmp, "out")
        out_dir.mkdir()
        nlp.to_disk(model_dir)
        package(
            model_dir, out_dir, name="core_news_sm", version=STANDIN_VERSION, create_sdist=True, force=True, silent=True
        )
        sdist = next(out_dir.glob("*/dist/*.tar.gz"))
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", str(sdist)],
            check=True,
        )


def ensure(official_only: bool = False) -> int:
    version = installed_version()
    if version is None or (official_only and is_standin(version)):
        if not download_official():
            if official_only:
                print("Das offizielle Modell ist nicht erreichbar.")
                return 1
            build_standin()
    print(describe())
    if is_standin():
        print(warning_banner())
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m faqbot.tools.spacy_model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["ensure", "official", "status"])
    args = parser.parse_args()
    if args.command == "status":
        print(describe())
        if is_standin():
            print(warning_banner())
        return 0 if installed_version() else 1
    return ensure(official_only=args.command == "official")


if __name__ == "__main__":
    sys.exit(main())
