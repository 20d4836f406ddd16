"""Which ``CPEVENTS_*`` environment variables exist, so that a misspelt one is reported instead of
silently ignored (a typo in ``CPEVENTS_KAFKA_SASL_PASSWORD`` must not fall back to PLAINTEXT).

Settings fields are known from the ``Settings`` model; the few variables read elsewhere (typer
options with ``envvar=``, our example processor) are listed here, in one place.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping

from pydantic import ValidationError

logger = logging.getLogger(__name__)

PREFIX = "CPEVENTS_"

# Variables that are not Settings fields but are read by a command line option (grep
# ``envvar=`` in cpevents/cli/; tests/unit/test_environment.py keeps this list in step with it)
# or by one of our processors.
OTHER_VARIABLES = frozenset(
    {
        "CPEVENTS_STREAMS_WEB_PORT",
        "CPEVENTS_STREAMS_WEB_HOST",
        "CPEVENTS_STREAMS_PROCESSORS",
        "CPEVENTS_STREAMS_SESSION_TIMEOUT",
        "CPEVENTS_GATEWAY_URL",
        "CPEVENTS_TOKEN",
        "CPEVENTS_COUNTS_WINDOW_SECONDS",  # streams/processors/counts.py
    }
)

# Under these prefixes every variable must be a setting: they carry connection security, where
# an ignored variable silently means "no authentication, no encryption".
STRICT_PREFIXES = ("CPEVENTS_KAFKA_", "CPEVENTS_SCHEMA_REGISTRY_")

_warned: set[str] = set()


class UnknownSettingError(ValueError):
    """A ``CPEVENTS_KAFKA_*`` or ``CPEVENTS_SCHEMA_REGISTRY_*`` variable that is no setting."""


def setting_variables(field_names: Iterable[str]) -> set[str]:
    """The environment variable of each settings field."""
    return {PREFIX + name.upper() for name in field_names}


def check_environment(environ: Mapping[str, str], field_names: Iterable[str]) -> list[str]:
    """Unknown ``CPEVENTS_*`` variables in ``environ``.

    Raises :class:`UnknownSettingError` for one under a strict prefix (naming the nearest real
    setting); returns a warning for each other unknown one (a user's processor may read its
    own variables), which is also logged once per process.
    """
    fields = setting_variables(field_names)
    known = fields | OTHER_VARIABLES
    unknown = sorted(
        name.upper()
        for name in environ
        if name.upper().startswith(PREFIX) and name.upper() not in known
    )
    strict = [name for name in unknown if name.startswith(STRICT_PREFIXES)]
    if strict:
        raise UnknownSettingError(
            "; ".join(f"{name} is not a setting{_suggestion(name, fields)}" for name in strict)
        )
    warnings = [f"{name} is not a setting{_suggestion(name, known)}; ignored" for name in unknown]
    for name, warning in zip(unknown, warnings, strict=True):
        if name not in _warned:
            _warned.add(name)
            logger.warning("%s", warning)
    return warnings


def _suggestion(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def describe_settings_error(exc: ValidationError) -> str:
    """A ValidationError of ``Settings`` as lines naming environment variables, not fields.

    Values are never shown (``Settings`` hides inputs in errors): they may be secrets.
    """
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["loc"]:
            lines.append(f"{PREFIX}{str(error['loc'][0]).upper()}: {message}")
        else:
            lines.append(message)
    return "\n".join(lines)
