"""Where the rules service's events say they come from."""

from __future__ import annotations

#: The CloudEvents ``source`` of the facts' judgements, supersessions and rejections the
#: rules service writes to the audit log.
SOURCE = "/vigil/safety-rules"
