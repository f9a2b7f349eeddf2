"""The soak: the whole stack on real components, a long mixed stream, faults on a schedule,
and one checker that compares what was sent with what was recorded and delivered.

Run it with ``make soak`` (or ``python -m soak --help`` for the options). The modules, in
the order a run uses them:

- ``config``: sizes, rates, fault counts and the seed (a full and a short preset);
- ``workload``: the stream, generated from the seed (subjects, visits, scripted findings
  whose signals must appear, poison records), as neutral facts;
- ``messages``: those facts as JSON requests, FHIR resources and HL7 v2 messages;
- ``client``: the one place that talks to ingest (HTTP and MLLP), with a credential;
- ``stream``: senders that pace the workload and retry what was not acknowledged;
- ``stack``: PostgreSQL, the Tansu broker, the SMTP server and the three services;
- ``mailbox``: the SMTP server that keeps every message it receives, with its time;
- ``faults``: the fault schedule and the injector that carries it out;
- ``observers``: what is watched while the run goes (consumer positions, the topics);
- ``evidence``: what the database and the mailbox hold at the end;
- ``checker``: the figures (lost, duplicated, signals, e-mails, latency), with
  ``skipped`` for the records a consumer stepped over;
- ``report``: the figures as text;
- ``run``: all of the above in order.
"""
