"""JSON logs for every service, with context (such as the correlation id) bound per message."""

from __future__ import annotations

import logging
import sys

import structlog

_FASTSTREAM_EXTRA = ("topic", "group_id", "message_id")


def configure_logging(level: str = "INFO", *, service: str) -> None:
    """Send structlog and standard-library logs to stderr as one JSON object per line."""
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared_processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    # what FastStream puts in a line's ``extra`` (where a message came from)
    foreign_chain: list[structlog.types.Processor] = [
        *shared_processors,
        structlog.stdlib.ExtraAdder(_FASTSTREAM_EXTRA),
    ]
    structlog.configure(
        processors=[
            *shared_processors,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign_chain,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    structlog.contextvars.bind_contextvars(service=service)
    # FastStream gives its logger a coloured handler of its own and stops it propagating:
    # its lines (handler errors, its consumer task's failures) belong in the JSON log
    faststream = logging.getLogger("faststream")
    faststream.handlers.clear()
    faststream.propagate = True
    faststream.setLevel(logging.NOTSET)
    # warnings and errors of the Kafka client (a broker away, a rebalance failing) are
    # wanted; its informational chatter is not
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
