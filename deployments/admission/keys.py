"""API keys: the accepted keys with their ``key_id`` (team) and role, checked in constant time;
used by REST (``Authorization: Bearer``) and realtime (setup frame) alike."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from deployments.admission.config import AdmissionConfig, ApiKey


def key_id(key: str) -> str:
    """A key's public identifier (``key_`` + 12 hex of its SHA-256): logs, quotas, admin view."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class KeyCheck:
    """Result of :meth:`ApiKeys.check`. ``reason``: ``"missing"`` / ``"invalid"`` when not ok;
    ``role``: ``"user"`` or ``"admin"`` when ok (``"admin"`` for everyone with auth off)."""

    ok: bool
    key_id: str | None = None
    reason: str | None = None
    role: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.ok and self.role == "admin"


class ApiKeys:
    """The accepted API keys (optional: with none configured every request passes).

    Keys come from ``AdmissionConfig.api_keys``, the environment variables ``api_keys_env``
    (default ``OMNISERVE_API_KEYS``, comma or whitespace separated; users) and
    ``admin_keys_env`` (default ``OMNISERVE_ADMIN_KEYS``; admins), and ``api_keys_file``
    (one key a line, optionally followed by its ``key_id`` and role). Each key has a ``key_id``
    (its team's name, or one derived from its hash) and a role (``user`` or ``admin``). Only
    SHA-256 digests are kept; comparison is constant-time.

    Args:
        keys: the accepted keys, plain (a user) or :class:`ApiKey`.
        quotas: ``{key or key_id: max concurrent realtime sessions}``.
        default_quota: quota of keys absent from ``quotas`` (``None``: unlimited).
    """

    def __init__(
        self,
        keys: Iterable[str | ApiKey] = (),
        quotas: Mapping[str, int] | None = None,
        default_quota: int | None = None,
    ):
        entries = [k if isinstance(k, ApiKey) else ApiKey(key=k) for k in keys if k]
        self._digests = {hashlib.sha256(e.key.encode()).digest(): (e.key_id or key_id(e.key), e.role) for e in entries}
        named = {kid for kid, _ in self._digests.values()}
        self._quotas: dict[str, int] = {}
        for k, q in (quotas or {}).items():
            self._quotas[k if k in named or (k.startswith("key_") and len(k) == 16) else key_id(k)] = int(q)
        self.default_quota = default_quota

    @classmethod
    def from_config(cls, config: AdmissionConfig, environ: Mapping[str, str] | None = None) -> ApiKeys:
        """Collect keys from the configuration, its environment variable and its secret file.

        Raises:
            ValueError: ``api_keys_file`` is set but cannot be read.
        """
        environ = os.environ if environ is None else environ
        keys = list(config.api_keys)
        if config.api_keys_env and environ.get(config.api_keys_env):
            keys += environ[config.api_keys_env].replace(",", " ").split()
        if config.admin_keys_env and environ.get(config.admin_keys_env):
            keys += [ApiKey(key=k, role="admin") for k in environ[config.admin_keys_env].replace(",", " ").split()]
        if config.api_keys_file:
            try:
                text = Path(config.api_keys_file).read_text()
            except OSError as exc:
                raise ValueError(f"api_keys_file {config.api_keys_file!r}: {exc}") from exc
            for line in text.splitlines():
                fields = line.split()
                if not fields or fields[0].startswith("#"):
                    continue
                entry = {"key": fields[0], "key_id": fields[1] if len(fields) > 1 else None}
                if len(fields) > 2:
                    entry["role"] = fields[2]
                try:
                    keys.append(ApiKey(**entry))
                except ValidationError as exc:
                    raise ValueError(
                        f"api_keys_file {config.api_keys_file!r}: a bad line ({exc.errors()[0]['msg']})"
                    ) from None
        return cls(keys, config.key_quotas, config.default_key_quota)

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured (auth is required)."""
        return bool(self._digests)

    def check(self, key: str | None) -> KeyCheck:
        """Check a presented key (setup.apiKey, ``Authorization: Bearer``...).

        With auth off, a presented key is still identified (its key_id) so quotas can apply.
        """
        if not self.enabled:
            return KeyCheck(True, key_id(key) if key else None, role="admin")
        if not key:
            return KeyCheck(False, reason="missing")
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for d, owner in self._digests.items():  # no early exit: constant time in the key set
            if hmac.compare_digest(d, digest):
                found = owner
        return KeyCheck(True, found[0], role=found[1]) if found else KeyCheck(False, reason="invalid")

    def quota(self, kid: str | None) -> int | None:
        """Max concurrent realtime sessions of a key (``None``: unlimited)."""
        if kid is None:
            return None
        return self._quotas.get(kid, self.default_quota)
