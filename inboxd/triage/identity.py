"""Identity: is this mail really from one of our agents?

A From line costs nothing to forge, and an agent's mail can close tickets and
write to customers. So a mail counts as an agent's only when its From is a
configured agent AND either it carries that agent's reply token (the Reply-To
plus-address of their notification) or a trusted receiving server vouches for it
(Authentication-Results with DKIM or DMARC pass for the agent's domain). Anything
else is customer mail; a configured agent's From without proof is a forgery.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from inboxd.model import ParsedMessage
from inboxd.reply.notify import parse_reply_address, reply_token
from inboxd.routing.agents import Agent, Directory


@dataclass(frozen=True)
class AgentMail:
    agent: Agent
    ticket_id: str | None  # from the token; None when proven by DKIM/DMARC (thread by subject instead)
    proof: str  # "token", "dkim" or "dmarc"


@dataclass(frozen=True)
class Forged:
    """An agent's From without a valid token or authentication: handled as customer mail."""

    claimed: str
    reason: str


def _recipients(parsed: ParsedMessage) -> list[str]:
    found = [*parsed.to, *parsed.cc]
    for name in ("delivered-to", "x-original-to", "envelope-to"):
        found.extend(v.strip().strip("<>").lower() for k, v in parsed.headers if k == name)
    return found


def _without_comments(value: str) -> str:
    """Drop RFC 8601 comments, e.g. OpenDKIM's "(2048-bit key; unprotected)", which hold semicolons."""
    previous = None
    while previous != value:  # innermost first, so nested comments go too
        previous, value = value, re.sub(r"\([^()]*\)", " ", value)
    return value


def _authenticated(parsed: ParsedMessage, domain: str, trusted: frozenset[str]) -> str | None:
    """'dkim' or 'dmarc' when a trusted server's Authentication-Results passes for ``domain``."""
    for key, value in parsed.headers:
        if key != "authentication-results":
            continue
        server, _, results = _without_comments(value).partition(";")
        server_id = server.split()[0].lower() if server.split() else ""
        if server_id not in trusted:  # anyone can write this header; only our own servers count
            continue
        for method, prop in (("dmarc", "header.from"), ("dkim", "header.d")):
            for m in re.finditer(rf"\b{method}\s*=\s*pass\b([^;]*)", results, re.I):
                d = re.search(rf"\b{re.escape(prop)}\s*=\s*\"?([A-Za-z0-9.-]+)", m.group(1), re.I)
                if d and d.group(1).lower() == domain:
                    return method
    return None


def token_ticket(parsed: ParsedMessage, directory: Directory, *, secret: str, support_address: str) -> str | None:
    """The ticket whose notification this mail answers, when it carries a reply token made for any agent.

    Only the team gets notifications, so whoever answers one is on the team side (a watcher in cc,
    an agent answering a colleague's copy): their mail is an internal comment, never the customer's.
    """
    for address in _recipients(parsed):
        found = parse_reply_address(address, support_address)
        if found is None:
            continue
        ticket_id, token = found
        if any(hmac.compare_digest(token, reply_token(secret, ticket_id, email)) for email in directory.agents):
            return ticket_id
    return None


def identify(parsed: ParsedMessage, directory: Directory, *, secret: str, support_address: str,
             trusted_servers: frozenset[str]) -> AgentMail | Forged | None:
    """AgentMail for a proven agent, Forged for an unproven one, None for everyone else."""
    agent = directory.agents.get(parsed.from_addr or "")
    if agent is None:
        return None
    wrong_agent = False
    for address in _recipients(parsed):
        parsed_address = parse_reply_address(address, support_address)
        if parsed_address is None:
            continue
        ticket_id, token = parsed_address
        if hmac.compare_digest(token, reply_token(secret, ticket_id, agent.email)):
            return AgentMail(agent, ticket_id, "token")
        wrong_agent = True
    proof = _authenticated(parsed, agent.email.rpartition("@")[2], trusted_servers)
    if proof is not None:
        return AgentMail(agent, None, proof)
    reason = "reply token made for another agent" if wrong_agent else "no reply token and no trusted authentication"
    return Forged(agent.email, reason)
