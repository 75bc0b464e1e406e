"""Phase 4 of the check: is the presented secret the key's secret?

bcrypt is deliberately slow, so it runs once per key per process: after a successful bcrypt
check, the HMAC-SHA256 fingerprint of the secret under the server pepper is remembered, and every
later check — right or wrong secret — is one HMAC and one constant-time compare. Wrong secrets
already tried are remembered too (bounded), and concurrent checks of the same (key, secret) share
one bcrypt run in a bounded thread pool (single flight), so a flood cannot queue bcrypt work.

The sign-in form must not tell, by its timing, whether a key id exists: ``begin_attempt`` /
``attempt_spent`` say whether this task ran a bcrypt since, and ``spend`` runs one against a
dummy hash of the configured cost, so every refused sign-in costs one bcrypt, however it failed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar

from authz.keys import format as key_format
from authz.keys.format import ParsedKey, same_fingerprint
from authz.keys.record import KeyRecord
from authz.resilience.singleflight import SingleFlight

# Whether the current task ran a bcrypt since ``begin_attempt`` (a task's own context: concurrent
# sign-ins do not see each other's).
_SPENT: ContextVar[bool] = ContextVar("hokusai_bcrypt_spent", default=False)
_DUMMY_SECRET = "0" * 43


class SecretVerifier:
    def __init__(
        self,
        pepper: bytes,
        threads: int,
        remember: int = 200_000,
        remember_wrong: int = 10_000,
        dummy_cost: int = 4,
    ) -> None:
        self._fingerprint = key_format.Fingerprinter(pepper)
        self._dummy_cost = dummy_cost
        self._dummy_hash: str | None = None
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bcrypt")
        self._right: dict[str, tuple[str, bytes]] = {}  # key id → (bcrypt hash, fingerprint)
        self._wrong: OrderedDict[bytes, None] = OrderedDict()
        self._flights: SingleFlight[bytes, bool] = SingleFlight()
        self._remember, self._remember_wrong = remember, remember_wrong
        self.bcrypt_runs = 0

    def known(self, key: ParsedKey, record: KeyRecord) -> bool | None:
        """The answer without bcrypt, or None when bcrypt must decide (``_known``'s remembered
        right answer inline: the warm check's case)."""
        presented = self._fingerprint(key)
        right = self._right.get(record.key_id)
        if right is not None and right[0] == record.secret_hash:
            return same_fingerprint(presented, right[1])
        return self._known(presented, record)

    def _known(self, presented: bytes, record: KeyRecord) -> bool | None:
        right = self._right.get(record.key_id)
        if right is not None and right[0] == record.secret_hash:
            return same_fingerprint(presented, right[1])
        if presented in self._wrong:
            return False
        return None

    async def verify(self, key: ParsedKey, record: KeyRecord) -> bool:
        presented = self._fingerprint(key)
        answer = self._known(presented, record)
        if answer is not None:
            return answer
        return await self._flights.run(presented, lambda: self._bcrypt(key, record, presented))

    async def _bcrypt(self, key: ParsedKey, record: KeyRecord, presented: bytes) -> bool:
        self.bcrypt_runs += 1
        _SPENT.set(True)
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(
            self._pool, key_format.verify_secret, key.secret, record.secret_hash
        )
        self._learn(record, presented, ok)
        return ok

    def _learn(self, record: KeyRecord, presented: bytes, ok: bool) -> None:
        if ok:
            if len(self._right) >= self._remember:
                self._right.pop(next(iter(self._right)))
            self._right[record.key_id] = (record.secret_hash, presented)
            return
        self._wrong[presented] = None
        while len(self._wrong) > self._remember_wrong:
            self._wrong.popitem(last=False)

    @staticmethod
    def begin_attempt() -> None:
        _SPENT.set(False)

    @staticmethod
    def attempt_spent() -> bool:
        return _SPENT.get()

    async def spend(self) -> None:
        """One bcrypt verification's worth of work, against a dummy hash of the right cost."""
        loop = asyncio.get_running_loop()
        if self._dummy_hash is None:
            self._dummy_hash = await loop.run_in_executor(
                self._pool, key_format.hash_secret, _DUMMY_SECRET, self._dummy_cost
            )
        await loop.run_in_executor(
            self._pool, key_format.verify_secret, _DUMMY_SECRET + "x", self._dummy_hash
        )

    def forget(self, key_id: str) -> None:
        self._right.pop(key_id, None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
