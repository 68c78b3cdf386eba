"""Load and validate ``inboxd.toml``.

The file is edited by a support team lead, not a developer, so every problem is
reported as one sentence that names the file, the line and the key, and the
daemon refuses to start (exit code 2) rather than guess. The schema below is the
single list of settings: validation, defaults and ``config.example.toml`` all
follow it.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from inboxd.errors import ConfigError, InvalidSetting
from inboxd.resources import AGENTS_EXAMPLE, CONFIG_EXAMPLE, TEMPLATES
from inboxd.sla.businesstime import BusinessCalendar, Duration, parse_duration
from inboxd.sla.calendars import build_calendar
from inboxd.tomlfile import find_line

SUPPORTED_LANGUAGES = ("en", "zh-Hant", "zh-Hans")
TLS_MODES = ("ssl", "starttls", "none")


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    tls: str
    username: str
    password: str = field(repr=False)
    folder: str
    sent_folder: str  # empty: answers sent from the shared account are not watched
    poll_interval: float
    verify_tls: bool
    max_message_size: int
    account: str  # the key of this mailbox's checkpoints: "user@host"


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    tls: str
    username: str
    password: str = field(repr=False)
    verify_tls: bool
    timeout: float
    retry_delay: float  # seconds before the first retry; doubles each time, up to an hour


@dataclass(frozen=True)
class SupportSettings:
    address: str
    name: str
    ticket_prefix: str
    default_language: str
    timezone: str
    first_response: Duration
    calendar: BusinessCalendar
    ack_limit_per_hour: int
    extra_addresses: tuple[str, ...]  # other addresses that deliver into the same mailbox
    close_after: timedelta = timedelta(days=7)  # a resolved ticket with no reply this long becomes closed

    @property
    def own_addresses(self) -> frozenset[str]:
        return frozenset({self.address, *self.extra_addresses})


@dataclass(frozen=True)
class ClassifySettings:
    rules_dir: Path
    model: Path
    min_confidence: float
    vip: frozenset[str]  # addresses or whole domains
    retrain_after: int  # new corrections needed before a retrain is tried
    retrain_check_minutes: float


PRIORITY_NAMES = ("low", "normal", "high", "urgent")
TARGETS = ("first_response", "next_response", "resolution")
ESCALATION_ROLES = ("owner", "lead", "manager")


@dataclass(frozen=True)
class SlaPolicy:
    """Targets per priority, counted in a named calendar; a missing target promises nothing."""

    name: str
    targets: dict[str, dict[str, Duration]]  # target name -> priority -> duration
    calendar: str = "support"

    def target(self, which: str, priority: str) -> Duration | None:
        return self.targets.get(which, {}).get(priority)


@dataclass(frozen=True)
class SlaSettings:
    warn_at: tuple[float, ...]  # fractions of a target at which to warn, e.g. (0.75, 0.9)
    escalation: tuple[tuple[Duration, str], ...]  # after the breach: (business delay, "lead"/"manager"/...)
    manager: str
    webhook_url: str
    check_seconds: float


@dataclass(frozen=True)
class RoutingSettings:
    agents_file: Path
    routes_file: Path
    reply_secret: str = field(repr=False)  # empty: a secret kept in the database is used
    trusted_auth_servers: frozenset[str] = frozenset()  # authserv-ids whose Authentication-Results count


@dataclass(frozen=True)
class Settings:
    path: Path
    imap: ImapSettings
    smtp: SmtpSettings
    support: SupportSettings
    database: Path
    classify: ClassifySettings
    routing: RoutingSettings
    sla_policies: dict[str, SlaPolicy]
    default_policy: str
    sla: SlaSettings
    calendars: dict[str, BusinessCalendar]
    templates: Path | None  # None: the templates shipped with inboxd
    log_level: str
    log_format: str

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log line."""
        return tuple(s for s in (self.imap.password, self.smtp.password, self.routing.reply_secret) if s)


# --- schema ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One setting: its TOML type, default (``REQUIRED`` if none) and a checker."""

    kind: type | tuple[type, ...]
    default: Any
    check: Callable[[Any], Any] | None = None


REQUIRED = object()


def _choice(*options: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in options:
            raise InvalidSetting(f"must be one of {', '.join(repr(o) for o in options)}")
        return value

    return check


def _fail(message: str) -> Any:
    raise InvalidSetting(message)


def _port(value: int) -> int:
    if not 0 < value < 65536:
        raise InvalidSetting("must be a port number between 1 and 65535")
    return value


def _positive(value: float) -> float:
    if value <= 0:
        raise InvalidSetting("must be greater than zero")
    return value


def _wall_duration(value: str) -> timedelta:
    """A plain length of time, calendar days or hours ("7d", "36h"); no business calendar involved."""
    m = re.fullmatch(r"\s*(\d+)\s*(d|h)\s*", value.lower())
    if not m or int(m.group(1)) == 0:
        raise InvalidSetting('must be a number of days or hours, e.g. "7d" or "36h"')
    return timedelta(days=int(m.group(1))) if m.group(2) == "d" else timedelta(hours=int(m.group(1)))


def _address(value: str) -> str:
    if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", value):
        raise InvalidSetting(f"{value!r} is not an email address")
    return value.lower()


def _size(value: str | int) -> int:
    """Accept 25MB / 500KB / plain bytes, as an admin would write a size."""
    if isinstance(value, int):
        return int(_positive(value))
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB)?\s*", value, re.I)
    if not match:
        raise InvalidSetting(f"{value!r} is not a size: write it like 25MB or 500KB")
    factor = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[(match.group(2) or "B").upper()]
    return int(float(match.group(1)) * factor)


def _prefix(value: str) -> str:
    if not re.fullmatch(r"[A-Z][A-Z0-9]{0,9}", value):
        raise InvalidSetting("must be 1 to 10 capital letters or digits, starting with a letter, e.g. SUP")
    return value


SCHEMA: dict[str, dict[str, Key]] = {
    "imap": {
        "host": Key(str, REQUIRED),
        "port": Key(int, 993, _port),
        "tls": Key(str, "ssl", _choice(*TLS_MODES)),
        "verify_tls": Key(bool, True),
        "username": Key(str, REQUIRED),
        "password": Key(str, ""),
        "password_env": Key(str, ""),
        "folder": Key(str, "INBOX"),
        "sent_folder": Key(str, ""),
        "poll_interval": Key((int, float), 60, _positive),
        "max_message_size": Key((str, int), "25MB", _size),
    },
    "smtp": {
        "host": Key(str, REQUIRED),
        "port": Key(int, 587, _port),
        "tls": Key(str, "starttls", _choice(*TLS_MODES)),
        "verify_tls": Key(bool, True),
        "username": Key(str, ""),
        "password": Key(str, ""),
        "password_env": Key(str, ""),
        "timeout": Key((int, float), 60, _positive),
        "retry_delay": Key((int, float), 30, _positive),
    },
    "support": {
        "address": Key(str, REQUIRED, _address),
        "name": Key(str, "Support"),
        "other_addresses": Key(list, []),
        "ticket_prefix": Key(str, "SUP", _prefix),
        "default_language": Key(str, "en", _choice(*SUPPORTED_LANGUAGES)),
        "timezone": Key(str, "UTC"),
        "first_response": Key(str, "4h"),
        "business_days": Key(list, ["mon", "tue", "wed", "thu", "fri"]),
        "business_hours": Key(list, ["09:00-18:00"]),
        "holidays": Key(list, []),
        "extra_workdays": Key(list, []),
        "ack_limit_per_hour": Key(int, 5, lambda v: int(_positive(v))),
        "close_after": Key(str, "7d", lambda v: _wall_duration(v) and v),
    },
    "storage": {
        "database": Key(str, "data/inboxd.db"),
    },
    "classify": {
        "rules_dir": Key(str, "rules"),
        "model": Key(str, "data/model.joblib"),
        "min_confidence": Key((int, float), 0.3, lambda v: v if 0 <= v <= 1 else _fail("must be between 0 and 1")),
        "vip": Key(list, []),
        "retrain_after": Key(int, 20, lambda v: int(_positive(v))),
        "retrain_check_minutes": Key((int, float), 60, _positive),
    },
    "templates": {
        "directory": Key(str, ""),
    },
    "routing": {
        "agents": Key(str, "agents.toml"),
        "reply_secret": Key(str, ""),
        "reply_secret_env": Key(str, ""),
        "trusted_auth_servers": Key(list, []),
    },
    "sla": {
        "default_policy": Key(str, "standard"),
        "policies": Key(dict, {}),
        "warn_at": Key(list, [0.75, 0.9]),
        "escalation": Key(list, [{"after": "30m", "to": "lead"}]),
        "manager": Key(str, ""),
        "webhook_url": Key(str, ""),
        "check_seconds": Key((int, float), 30, _positive),
    },
    "calendars": {},  # [calendars.NAME] tables, checked by inboxd.sla.calendars
    "logging": {
        "level": Key(str, "info", _choice("debug", "info", "warning", "error")),
        "format": Key(str, "text", _choice("text", "json")),
    },
}
REQUIRED_SECTIONS = ("imap", "smtp", "support")
SECRET_KEYS = frozenset({"password", "reply_secret"})
TYPE_NAMES = {str: "text in quotes", int: "a whole number", float: "a number", bool: "true or false",
              list: "a list in [brackets]", dict: "a [section]"}


# --- line lookup ----------------------------------------------------------------------

# --- loading --------------------------------------------------------------------------


def _describe(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(TYPE_NAMES.get(k, k.__name__) for k in kinds)


def _validate(path: Path, text: str, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    values: dict[str, dict[str, Any]] = {}
    for section in data:
        if section not in SCHEMA:
            raise ConfigError(path, find_line(text, section),
                              f"unknown section [{section}]; known sections: "
                              + ", ".join(f"[{s}]" for s in SCHEMA))
        if not isinstance(data[section], dict):
            raise ConfigError(path, find_line(text, section), f"{section} must be a [section]")
    for section in REQUIRED_SECTIONS:
        if section not in data:
            raise ConfigError(path, 0, f"the [{section}] section is missing")
    for section, keys in SCHEMA.items():
        if not keys:  # a family of named tables, validated by its own module
            values[section] = data.get(section, {})
            continue
        given = data.get(section, {})
        for key in given:
            if key not in keys:
                raise ConfigError(path, find_line(text, section, key),
                                  f"unknown setting '{key}' in [{section}]; known settings: "
                                  + ", ".join(keys))
        values[section] = {}
        for key, spec in keys.items():
            line = find_line(text, section, key)
            if key not in given:
                if spec.default is REQUIRED:
                    raise ConfigError(path, find_line(text, section),
                                      f"[{section}] {key} is required but missing")
                value = spec.default
            else:
                value = given[key]
                kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
                if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
                    shown = "" if key in SECRET_KEYS else f", not {value!r}"  # never echo a password
                    raise ConfigError(path, line, f"[{section}] {key} must be {_describe(spec.kind)}{shown}")
            if spec.check is not None:
                try:
                    value = spec.check(value)
                except ValueError as exc:
                    raise ConfigError(path, line, f"[{section}] {key} {exc}") from None
            values[section][key] = value
    return values


def _secret(path: Path, text: str, section: str, values: dict[str, Any], key: str = "password", *,
            required: bool = True) -> str:
    """A secret given inline or, better, through an environment variable (``<key>_env``).

    Only commands that connect need it (``required``); the others work without the variable.
    """
    name = values[f"{key}_env"]
    if name:
        if name not in os.environ:
            if not required:
                return ""
            raise ConfigError(path, find_line(text, section, f"{key}_env"),
                              f"[{section}] {key}_env names the environment variable {name}, which is not set")
        return os.environ[name]
    return str(values[key])


def _calendar(path: Path, text: str, s: dict[str, Any]) -> BusinessCalendar:
    """Build the team calendar; map a bad value back to the setting's line."""
    for key in ("business_days", "business_hours", "holidays", "extra_workdays", "other_addresses"):
        if not all(isinstance(v, str) for v in s[key]):
            raise ConfigError(path, find_line(text, "support", key),
                              f"[support] {key} must be a list of texts in quotes")
    attempts: tuple[tuple[str, dict[str, Any]], ...] = (
        ("timezone", {}),
        ("business_days", {"days": s["business_days"]}),
        ("business_hours", {"hours": s["business_hours"]}),
        ("holidays", {"holidays": s["holidays"]}),
        ("extra_workdays", {"extra_workdays": s["extra_workdays"]}),
    )
    for key, kwargs in attempts:  # check one key at a time so the error points at its line
        try:
            BusinessCalendar.simple(s["timezone"], **{"days": ["mon"], "hours": ["00:00-24:00"], **kwargs})
        except ValueError as exc:
            raise ConfigError(path, find_line(text, "support", key), f"[support] {key}: {exc}") from None
    try:
        return BusinessCalendar.simple(s["timezone"], days=s["business_days"], hours=s["business_hours"],
                                       holidays=s["holidays"], extra_workdays=s["extra_workdays"])
    except ValueError as exc:
        raise ConfigError(path, find_line(text, "support"), f"[support] {exc}") from None


def _sla(path: Path, text: str, values: dict[str, Any], fallback: Duration,
         calendars: dict[str, BusinessCalendar]) -> dict[str, SlaPolicy]:
    """``[sla.policies.NAME]`` tables: each target a duration, or a table of durations per priority."""
    policies: dict[str, SlaPolicy] = {}
    for name, spec in values["policies"].items():
        section = f"sla.policies.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(path, find_line(text, "sla", "policies"), f"[{section}] must be a table")
        targets: dict[str, dict[str, Duration]] = {}
        for key, value in spec.items():
            line = find_line(text, section, key)
            if key == "calendar":
                if not isinstance(value, str) or value not in calendars:
                    raise ConfigError(path, line, f"[{section}] calendar {value!r} is not defined; calendars: "
                                                  + ", ".join(calendars))
                continue
            if key not in TARGETS:
                raise ConfigError(path, line, f"unknown setting '{key}' in [{section}]; known: calendar, "
                                              + ", ".join(TARGETS))
            per = value if isinstance(value, dict) else {p: value for p in PRIORITY_NAMES}
            targets[key] = {}
            for priority, duration in per.items():
                if priority not in PRIORITY_NAMES or not isinstance(duration, str):
                    raise ConfigError(path, line, f"[{section}] {key} takes a duration like \"4h\", or one per "
                                                  f"priority: {{ urgent = \"1h\", high = \"4h\", normal = \"1d\" }}")
                try:
                    targets[key][priority] = parse_duration(duration)
                except ValueError as exc:
                    raise ConfigError(path, line, f"[{section}] {key}: {exc}") from None
        policies[name] = SlaPolicy(name, targets, str(spec.get("calendar", "support")))
    if not policies:  # no policies written: the [support] first_response target for every priority
        policies[values["default_policy"]] = SlaPolicy(values["default_policy"], {
            "first_response": {p: fallback for p in PRIORITY_NAMES}})
    if values["default_policy"] not in policies:
        raise ConfigError(path, find_line(text, "sla", "default_policy"),
                          f"[sla] default_policy '{values['default_policy']}' is not one of the policies: "
                          + ", ".join(policies))
    return policies



def _calendar_error(path: Path, text: str, section: str, key: str, message: str) -> ConfigError:
    return ConfigError(path, find_line(text, section, key), message)

def _calendars(path: Path, text: str, tables: dict[str, Any], support: BusinessCalendar) -> dict[str, BusinessCalendar]:
    calendars = {"support": support}
    for name, spec in tables.items():
        section = f"calendars.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(path, find_line(text, "calendars", name), f"[{section}] must be a table")
        calendars[name] = build_calendar(name, spec, path.resolve().parent,
                                         partial(_calendar_error, path, text, section))
    return calendars


def _sla_settings(path: Path, text: str, v: dict[str, Any]) -> SlaSettings:
    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(path, find_line(text, "sla", key), f"[sla] {key} {message}")

    warn = v["warn_at"]
    if not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < 1 for f in warn):
        raise fail("warn_at", "must be a list of fractions between 0 and 1, e.g. [0.75, 0.9]")
    if len({round(f * 100) for f in warn}) != len(warn):
        raise fail("warn_at", "lists the same percentage twice")
    steps = []
    for step in v["escalation"]:
        if not isinstance(step, dict) or set(step) != {"after", "to"} or step["to"] not in ESCALATION_ROLES:
            raise fail("escalation", "steps look like { after = \"30m\", to = \"lead\" }; to is "
                                     + ", ".join(ESCALATION_ROLES))
        try:
            steps.append((parse_duration(str(step["after"])), str(step["to"])))
        except ValueError as exc:
            raise fail("escalation", str(exc)) from None
    if v["manager"] and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", v["manager"]):
        raise fail("manager", "must be an email address")
    if any(role == "manager" for _, role in steps) and not v["manager"]:
        raise fail("escalation", "escalates to the manager, but [sla] manager is not set")
    if v["webhook_url"] and not re.match(r"https?://", v["webhook_url"]):
        raise fail("webhook_url", "must start with http:// or https://")
    return SlaSettings(tuple(sorted(float(f) for f in warn)), tuple(steps), v["manager"].lower(),
                       v["webhook_url"], float(v["check_seconds"]))


def _templates(path: Path, text: str, directory: str) -> Path | None:
    """The admin's templates folder, checked against the shipped set now rather than when a customer writes."""
    if not directory:
        return None
    folder = path.resolve().parent / directory
    line = find_line(text, "templates", "directory")
    if not folder.is_dir():
        raise ConfigError(path, line, f"[templates] directory: the folder {folder} does not exist; leave the setting "
                                      f"empty to use the shipped templates, or start from a copy of {TEMPLATES}")
    missing = [f"{language.name}/{template.name}" for language in sorted(TEMPLATES.iterdir()) if language.is_dir()
               for template in sorted(language.glob("*.j2")) if not (folder / language.name / template.name).is_file()]
    if missing:
        raise ConfigError(path, line, f"[templates] directory: {folder} lacks {', '.join(missing)}; every language "
                                      f"folder needs the same files as the shipped templates in {TEMPLATES}")
    return folder


OFFLINE_DEFAULTS = """\
[imap]
host = "not-configured.invalid"
username = "support"
[smtp]
host = "not-configured.invalid"
[support]
address = "support@example.com"
"""


def offline_settings(directory: Path) -> Settings:
    """Defaults for commands that need no mail server (rules, classify) when there is no config file."""
    return settings_from_text(directory / "inboxd.toml", OFFLINE_DEFAULTS)


def load_settings(path: Path | str, *, secrets: bool = True) -> Settings:
    """Read, validate and resolve the configuration file at ``path``.

    ``secrets=False`` for commands that only read the database: a password variable that is not
    set is then no error (its setting is left empty), so a lead can list tickets without it.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, 0, f"configuration file not found; start from a copy of {CONFIG_EXAMPLE} "
                                   f"(and of {AGENTS_EXAMPLE} for agents.toml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, 0, f"cannot read the configuration file: {exc}") from None
    return settings_from_text(path, text, secrets=secrets)


def settings_from_text(path: Path, text: str, *, secrets: bool = True) -> Settings:
    """Validate configuration ``text``; relative paths in it are relative to ``path``'s folder."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"at line (\d+)", str(exc))
        raise ConfigError(path, int(m.group(1)) if m else 0, f"not valid TOML: {exc}") from None
    v = _validate(path, text, data)
    s = v["support"]
    try:
        first_response = parse_duration(s["first_response"])
    except ValueError as exc:
        raise ConfigError(path, find_line(text, "support", "first_response"),
                          f"[support] first_response: {exc}") from None
    calendar = _calendar(path, text, s)
    calendars = _calendars(path, text, v["calendars"], calendar)
    imap, smtp = v["imap"], v["smtp"]
    here = path.resolve().parent
    c = v["classify"]
    if not all(isinstance(a, str) for a in c["vip"]):
        raise ConfigError(path, find_line(text, "classify", "vip"), "[classify] vip must be a list of texts")
    return Settings(
        path=path,
        imap=ImapSettings(
            host=imap["host"], port=imap["port"], tls=imap["tls"], username=imap["username"],
            password=_secret(path, text, "imap", imap, required=secrets), folder=imap["folder"],
            sent_folder=imap["sent_folder"],
            poll_interval=float(imap["poll_interval"]), verify_tls=imap["verify_tls"],
            max_message_size=imap["max_message_size"], account=f"{imap['username']}@{imap['host']}",
        ),
        smtp=SmtpSettings(
            host=smtp["host"], port=smtp["port"], tls=smtp["tls"], username=smtp["username"],
            password=_secret(path, text, "smtp", smtp, required=secrets), verify_tls=smtp["verify_tls"],
            timeout=float(smtp["timeout"]), retry_delay=float(smtp["retry_delay"]),
        ),
        support=SupportSettings(
            address=s["address"], name=s["name"], ticket_prefix=s["ticket_prefix"],
            default_language=s["default_language"], timezone=s["timezone"],
            first_response=first_response, calendar=calendar,
            ack_limit_per_hour=s["ack_limit_per_hour"], close_after=_wall_duration(s["close_after"]),
            extra_addresses=tuple(a.lower() for a in s["other_addresses"]),
        ),
        database=here / v["storage"]["database"],
        routing=RoutingSettings(
            agents_file=here / v["routing"]["agents"], routes_file=here / c["rules_dir"] / "routing.toml",
            reply_secret=_secret(path, text, "routing", v["routing"], "reply_secret", required=secrets),
            trusted_auth_servers=frozenset(str(s).lower() for s in v["routing"]["trusted_auth_servers"]),
        ),
        sla_policies=_sla(path, text, v["sla"], first_response, calendars),
        default_policy=v["sla"]["default_policy"],
        sla=_sla_settings(path, text, v["sla"]),
        calendars=calendars,
        classify=ClassifySettings(
            rules_dir=here / c["rules_dir"], model=here / c["model"], min_confidence=float(c["min_confidence"]),
            vip=frozenset(a.lower().lstrip("@") for a in c["vip"]), retrain_after=c["retrain_after"],
            retrain_check_minutes=float(c["retrain_check_minutes"]),
        ),
        templates=_templates(path, text, v["templates"]["directory"]),
        log_level=v["logging"]["level"],
        log_format=v["logging"]["format"],
    )
