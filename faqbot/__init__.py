"""The FAQ bot's own code, in four parts (README, "Project layout"):

* ``faqbot.core``: what everything shares (paths, FAQ knowledge, intents, tickets and
  their outbox, delivery, support hours, masking, text helpers). Imports nothing else
  of the project.
* ``faqbot.server``: what runs inside the servers (entry points of the Rasa server and
  the action server, tracker store, review-queue broker, channels, help-centre page,
  the process runner of ``make run``). Uses the core.
* ``faqbot.cluster``: several Rasa instances on one machine as on several hosts
  (``make cluster``): PostgreSQL, Redis and nginx started on loopback, the instances behind
  nginx. Uses the core and the server part.
* ``faqbot.tools``: offline tools (trainer CLI, importer, training, evaluation, report,
  benchmark, spaCy model set-up). Use the core and, to start servers, the server part;
  never the actions.

The rasa-sdk actions live in ``actions/``, as in every Rasa project; they use the core.
"""
