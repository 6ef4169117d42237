# The bot's two images (docker-compose.yml builds both; README, "Mehrere Instanzen"):
#   docker build --target rasa -t faqbot-rasa .        Rasa server with its trained model, also the NLU server
#   docker build --target actions -t faqbot-actions .  the action server
# Installed as `make install` does it; the servers run as the unprivileged user faqbot.

# Rasa 3.6 runs on Python 3.8-3.10 only (pyproject.toml); the patch release follows the image.
FROM python:3.10-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    TF_CPP_MIN_LOG_LEVEL=2 \
    RASA_TELEMETRY_ENABLED=false
WORKDIR /app
RUN pip install --upgrade 'pip==24.0' 'setuptools==70.3.0' 'wheel==0.45.1'
# The dependencies in a layer of their own, so a change of the code does not download them
# again: installed first against empty folders of pyproject.toml's packages (the test checks
# the list), then the project once more with its code. Editable, as in the Makefile: the
# servers read domain.yml, data/ and support.yml next to the package (faqbot/core/paths.py).
COPY pyproject.toml requirements.lock ./
RUN mkdir -p actions rasa_sdk_plugins faqbot/core faqbot/server/channels faqbot/tools faqbot/cluster faqbot/nlu \
    && touch README.md \
    && pip install -c requirements.lock -e .
COPY . .
# The code stays root's; var/ is the servers' (secrets a container is not given are made there).
RUN pip install --no-deps -c requirements.lock -e . \
    && useradd --create-home --uid 10001 faqbot \
    && mkdir -p var && chown faqbot:faqbot var


FROM base AS actions
# Every interface of its own container (faqbot/server/action_server.py defaults to 127.0.0.1);
# docker-compose.yml does not publish the port.
ENV SANIC_HOST=0.0.0.0
USER faqbot
EXPOSE 5055
CMD ["python", "-m", "faqbot.server.action_server", "--port", "5055"]


FROM base AS rasa
# The official spaCy model, or the offline stand-in when it cannot be downloaded (the build log says which).
RUN python -m faqbot.tools.spacy_model ensure
# Trained here, so every instance started from this image has the same model (models/ holds
# just this one). Rasa's training cache is not needed at run time. The NLU server's
# endpoints and credentials: none (as faqbot.server.serve writes them for `make run`).
RUN python -m faqbot.tools.train \
    && rm -rf .rasa \
    && printf '# The NLU server (docker-compose.yml): no channels, stores or actions.\n{}\n' > nlu-server.yml
USER faqbot
EXPOSE 5005
# Through sh for the origins in FAQBOT_CORS (several, separated by spaces, as Rasa's --cors
# takes them); set -f: no file name expansion; exec: Rasa gets the stop signal.
CMD ["sh", "-c", "set -f; exec python -m faqbot.server.rasa_server run --model models --endpoints endpoints.production.yml --credentials credentials.yml --port 5005 --cors $FAQBOT_CORS"]
