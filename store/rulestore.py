"""The store's Sieve-script, quota and delivery-rule methods (mixed into SqlStore).

See :mod:`store.rules` for the pipeline.  Compiled scripts are cached per account and keyed by
the account's ``rules_version``, which every change of the active script bumps in the same
transaction: a delivery never runs a stale script, and a steady stream of deliveries compiles
each script once.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

from store import errors
from store import rules as R
from store.interfaces import Quota

log = logging.getLogger("haven.rules")

#: compiled scripts kept (one per account that received mail recently)
SCRIPT_CACHE_SIZE = 4096


def _compile(text: str):
    from formats import sieve
    try:
        return sieve.compile_script(text)
    except sieve.SieveError as e:
        raise errors.InvalidInput(str(e)) from None


class RulesMixin:
    rule_settings: R.RuleSettings
    _scripts: dict  # account_id -> (rules_version, compiled script or None, addresses)

    # -- Sieve scripts ---------------------------------------------------------------------
    async def list_sieve_scripts(self, account_id):
        return await self._run("list_sieve_scripts", R.list_scripts_txn, account_id)

    async def get_sieve_script(self, account_id, name):
        return await self._run("get_sieve_script", R.get_script_txn, account_id, name)

    async def check_sieve_script(self, text):
        size = len(text.encode("utf-8"))
        if size > self.rule_settings.max_script_size:
            raise errors.TooBig(f"a script may have at most {self.rule_settings.max_script_size} octets")
        await self._cpu(_compile, text)

    async def put_sieve_script(self, account_id, name, text):
        R.check_script_name(name)
        await self.check_sieve_script(text)
        await self._run("put_sieve_script", R.put_script_txn, account_id, name, text, self.rule_settings)

    async def sieve_space(self, account_id, name, size):
        await self._run("sieve_space", R.space_txn, account_id, name, size, self.rule_settings)

    async def set_active_sieve_script(self, account_id, name):
        await self._run("set_active_sieve_script", R.set_active_txn, account_id, name or None)

    async def delete_sieve_script(self, account_id, name):
        await self._run("delete_sieve_script", R.delete_script_txn, account_id, name)

    async def rename_sieve_script(self, account_id, old, new):
        await self._run("rename_sieve_script", R.rename_script_txn, account_id, old, new)

    # -- quotas ----------------------------------------------------------------------------
    async def get_quota(self, account_id) -> Quota:
        return await self._run("get_quota", R.quota_txn, account_id, self.rule_settings)

    async def set_quota(self, account_id, warn=None, soft=None, hard=None) -> Quota:
        return await self._run("set_quota", R.set_quota_txn, account_id,
                               {"warn": warn, "soft": soft, "hard": hard}, self.rule_settings)

    # -- delivery --------------------------------------------------------------------------
    async def _compiled_script(self, account_id: int, version: int):
        """``(compiled script or None, the account's addresses)`` for ``rules_version``."""
        cached = self._scripts.get(account_id)
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        version, text, addresses = await self._run("active_script", R.active_script_txn, account_id)
        script = None
        if text is not None:
            try:
                script = await self._cpu(_compile, text)
            except errors.InvalidInput as e:
                # It compiled when it was uploaded; a newer Haven may be stricter.  Deliver to
                # the INBOX rather than fail the message.
                log.error("the active Sieve script of account %d no longer compiles (%s); "
                          "delivering to INBOX", account_id, e)
        if len(self._scripts) >= SCRIPT_CACHE_SIZE:
            self._scripts.pop(next(iter(self._scripts)))
        self._scripts[account_id] = (version, script, addresses)
        return script, addresses

    async def plan_delivery(self, raw: bytes, mail_from: str, recipients: list, states: list,
                            junk: bool):
        """A function that returns one :class:`~store.rules.Plan` per recipient (pure CPU work
        for whichever pool thread handles the message next), or None when every recipient
        simply gets one copy in the INBOX (no script, not junk)."""
        settings = self.rule_settings
        scripts = {}
        for rcpt, (version, has_script) in zip(recipients, states):
            if has_script and rcpt.account_id not in scripts:
                scripts[rcpt.account_id] = await self._compiled_script(rcpt.account_id, version)
        if not any(s[0] is not None for s in scripts.values()) and not junk:
            # the common case, without a thread hop for small messages (the scan is bounded)
            if len(raw) <= 65536:
                junk = R.is_junk(raw, settings.junk_headers)
            else:
                junk = await self._cpu(R.is_junk, raw, settings.junk_headers)
            if not junk:
                return None

        def plan_one(rcpt, is_junk, now):
            try:
                return R.make_plan(raw, mail_from, rcpt, *scripts.get(rcpt.account_id, (None, ())), is_junk,
                                   settings, self._prepare, now)
            except Exception as e:  # a message is never lost to its rules: INBOX, and a log line
                log.exception("rules of <%s> failed; delivering to INBOX", rcpt.address)
                return R.Plan(stores=[R.Copy(R.INBOX)], notes=[f"rules failed: {type(e).__name__}: {e}"])

        def plan_all():
            is_junk = junk or R.is_junk(raw, settings.junk_headers)
            now = time.time()
            return [plan_one(rcpt, is_junk, now) for rcpt in recipients]
        return plan_all
