"""A session's side of provider health: admission, outcomes and retry tokens (never per token)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from l0._session_base import _OBS, SessionBase
from l0.errors import (
    CircuitOpenError,
    RetryAfterWindowError,
    get_retry_after,
    get_status_code,
)
from l0.types import ErrorCategory

_OUTAGE = (ErrorCategory.NETWORK, ErrorCategory.TRANSIENT)
# Rate limits and conflicts mean the provider is up and answering: not an outage.
_NOT_OUTAGE_STATUS = (409, 429)


def _is_outage(error: BaseException, category: ErrorCategory) -> bool:
    return category in _OUTAGE and get_status_code(error) not in _NOT_OUTAGE_STATUS


class HealthMixin(SessionBase):
    """Admission before an attempt, its outcome after, and the retry budget."""

    __slots__ = ()

    if TYPE_CHECKING:
        # From ControlMixin, next to this mixin in Session.

        async def _sleep(self, delay: float) -> None: ...

    async def _health_admit(self, index: int, is_retry: bool) -> None:
        """Wait, or raise ``CircuitOpenError``/``RetryAfterWindowError``, before an attempt."""
        health = self._health
        assert health is not None
        health.active = None
        health.refused = False
        key = health.keys[index]
        if key is None:
            return
        service, config = health.service, health.config
        while True:
            self._parked = True  # abort() may cancel these waits
            try:
                if health.gate is None:
                    gate = await service.wait_turn(key, config)
                    if gate is not None:
                        health.gate = (key, gate)
                admission = await service.admit(key, is_retry, config)
            finally:
                self._parked = False
            if admission.half_open:
                self._obs(_OBS.CIRCUIT_HALF_OPEN, key=key)
            if admission.verdict in ("go", "probe"):
                health.active = (key, admission.verdict == "probe")
                return
            health.release()
            has_fallback = index + 1 < len(self._opts.factories)
            wait_ms = int(admission.wait * 1000)
            if admission.verdict == "open":
                action = "fallback" if has_fallback else "fail"
                self._obs(_OBS.CIRCUIT_REJECTED, key=key, retry_in_ms=wait_ms, action=action)
                raise CircuitOpenError(key, admission.wait)
            if has_fallback:
                action = "fallback"
            elif admission.wait <= self._opts.retry.max_retry_after:
                action = "wait"
            else:
                action = "fail"
            self._obs(_OBS.RETRY_AFTER_HELD, key=key, wait_ms=wait_ms, action=action)
            if action != "wait":
                raise RetryAfterWindowError(key, admission.wait)
            await self._sleep(admission.wait)

    async def _health_answered(self) -> None:
        """The first item of an attempt arrived: the provider answers.

        A probe's answer closes the circuit now, not when its stream ends (which may take
        minutes), so the sessions waiting behind it go at once.
        """
        health = self._health
        assert health is not None
        active = health.active
        if active is None:
            return
        key, probe = active
        health.service.answered(key)
        if probe:
            health.active = (key, False)
            transition = await health.service.record(key, True, False, True, health.config)
            if transition == "closed":
                self._obs(_OBS.CIRCUIT_CLOSED, key=key)
        health.release()

    async def _health_end(
        self, error: BaseException | None, category: ErrorCategory | None = None
    ) -> None:
        """Tell the store how the admitted attempt ended; emit circuit transitions."""
        health = self._health
        if health is None or health.active is None:
            return
        key, probe = health.active
        health.active = None
        service, config = health.service, health.config
        ok = error is None
        outage = not ok and category is not None and _is_outage(error, category)  # type: ignore[arg-type]
        if error is not None:
            retry_after = get_retry_after(error)
            if retry_after is not None and retry_after > 0:
                await service.note_retry_after(key, retry_after, config)
        transition = await service.record(key, ok, outage, probe, config)
        health.release()
        if transition == "opened":
            self._obs(
                _OBS.CIRCUIT_OPENED,
                key=key,
                failures=1 if probe else config.failure_threshold,
                open_ms=int(config.open_seconds * 1000),
            )
        elif transition == "closed":
            self._obs(_OBS.CIRCUIT_CLOSED, key=key)

    async def _health_retry(self, index: int, reason: str) -> tuple[bool, str]:
        """Take a retry token for the stream's key; ``(allowed, reason)``."""
        health = self._health
        assert health is not None
        key = health.keys[index]
        if key is None:
            return True, reason
        config = health.config
        allowed, retries, requests = await health.service.take_retry_token(key, config)
        if allowed:
            return True, reason
        health.refused = True
        self._obs(
            _OBS.RETRY_BUDGET_REFUSED,
            key=key,
            retries=retries,
            requests=requests,
            window_ms=int(config.budget_window * 1000),
        )
        return False, (
            f"{reason}; the retry budget of {key!r} is used up ({retries} retries for "
            f"{requests} requests in {config.budget_window:g}s; Health.retry_budget="
            f"{config.retry_budget:g}, retry_budget_min={config.retry_budget_min})"
        )
