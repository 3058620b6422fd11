"""Alerts raised once and delivered once: ``$MC_DATA_DIR/alerts.jsonl`` plus a small delivery state file.

- ``record_alerts`` appends every alert whose ``alert_id`` is not yet in ``alerts.jsonl`` (one line per
  rule and period, however many runs raise it). The log is the record of what was raised; lines are
  appended with a single ``write`` on an ``O_APPEND`` descriptor and ``fsync``ed.
- ``deliver_pending`` sends each logged alert to every target once: the log (a callable) and each webhook
  (JSON with a Slack-compatible ``text``), with retries and timeouts. Per alert and target the state file
  ``alert_state.json`` (written atomically) says delivered or pending; a target that fails stays pending
  and is tried again on the next call: never lost, never sent twice. Targets are fixed when an alert is
  first seen for delivery, so a webhook added later does not receive the whole history.
- A lock file (``.alerts.lock``, ours, in the data dir) keeps the asset and the sensors, which may run in
  different processes, from interleaving: recording waits for it, delivery skips a tick when it is busy.

No Dagster here: the Dagster layer (``defs/alert_assets.py``) calls these functions.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlsplit

import polars as pl

from mc_pipeline.tables import storage

ALERTS_FILE = "alerts.jsonl"
STATE_FILE = "alert_state.json"
LOCK_FILE = ".alerts.lock"
LOG_TARGET = "log"

Poster = Callable[[str, dict, float], None]


# -- the raised-alerts log -------------------------------------------------------------------------------
@contextmanager
def _locked(data_dir: Path, blocking: bool = True) -> Iterator[bool]:
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def alert_dicts(alerts: pl.DataFrame | Iterable[Mapping]) -> list[dict]:
    rows = alerts.to_dicts() if isinstance(alerts, pl.DataFrame) else [dict(a) for a in alerts]
    return [{k: _jsonable(v) for k, v in row.items()} for row in rows]


def read_alert_log(data_dir: Path) -> list[dict]:
    """Every alert in ``alerts.jsonl``, oldest first. A line that is not an alert (torn, edited) is
    skipped."""
    path = Path(data_dir) / ALERTS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("alert_id"), str):
            out.append(doc)
    return out


def record_alerts(alerts: pl.DataFrame | Iterable[Mapping], data_dir: Path) -> list[dict]:
    """Append the alerts not yet in ``alerts.jsonl``; return them (the newly raised ones)."""
    data_dir = Path(data_dir)
    rows = alert_dicts(alerts)
    if not rows:
        return []
    with _locked(data_dir):
        known = {a["alert_id"] for a in read_alert_log(data_dir)}
        new = []
        for row in rows:
            if row["alert_id"] not in known:
                known.add(row["alert_id"])
                new.append(row)
        if new:
            path = data_dir / ALERTS_FILE
            prefix = b""
            if path.exists() and path.stat().st_size > 0:
                with path.open("rb") as f:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        prefix = b"\n"  # a torn last line stays on its own line (and is skipped)
            data = prefix + b"".join(
                (json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8") for r in new
            )
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
    return new


# -- delivery --------------------------------------------------------------------------------------------
def webhook_key(url: str) -> str:
    """A target name for a webhook that does not store its URL (webhook URLs are secrets)."""
    return "webhook:" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{':' + str(parts.port) if parts.port else ''}/…"


def parse_webhooks(value: str) -> list[str]:
    urls = [u.strip() for u in (value or "").split(",") if u.strip()]
    for url in urls:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"MC_ALERT_WEBHOOKS: {redact_url(url)} is not an http(s) URL")
    return list(dict.fromkeys(urls))


def alert_text(alert: Mapping) -> str:
    icon = ":rotating_light:" if alert.get("severity") == "critical" else ":warning:"
    return f"{icon} [{alert.get('severity', '?')}] {alert.get('message', alert.get('alert_id'))}"


def webhook_payload(alert: Mapping) -> dict:
    return {"text": alert_text(alert), "source": "mc_pipeline", "alert": dict(alert)}


def post_json(url: str, payload: dict, timeout: float) -> None:
    """POST ``payload`` as JSON; raise unless the answer is 2xx."""
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    req = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "mc_pipeline"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - user-configured URL
        if not 200 <= resp.status < 300:
            raise urllib.error.HTTPError(url, resp.status, "not 2xx", resp.headers, None)
        resp.read()


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return f"unreachable ({exc.reason})"
    return f"{type(exc).__name__}: {exc}"[:200]


@dataclass
class DeliveryReport:
    delivered: list[tuple[str, str]] = field(default_factory=list)  # (alert_id, target)
    pending: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    actions: list[tuple[str, int | None]] = field(
        default_factory=list
    )  # (alert_id, exit code) of actions run
    busy: bool = False  # another process was delivering: nothing done this time

    def summary(self) -> str:
        if self.busy:
            return "another delivery is in progress"
        return f"{len(self.delivered)} delivered, {len(self.pending)} pending" + (
            f" ({'; '.join(self.errors)})" if self.errors else ""
        )


#: Bytes of an action's output kept in the alert state.
ACTION_OUTPUT_BYTES = 2000


def run_action(
    record: dict, alert: Mapping, command: list[str], timeout_s: float, save: Callable[[], None]
) -> None:
    """Run the configured command once for a critical alert: the alert as JSON on stdin, with a timeout.

    ``started_at`` is saved before the command starts, so a crash while it runs can never run it twice;
    its exit status (``null`` when it timed out or could not start) and the end of its output follow.
    Nothing here writes to the OpenClaw home; what the command does is the user's choice."""
    import subprocess

    record["started_at"] = _now_iso()
    save()
    if not command:  # configured when the alert was first seen, removed since: not run
        record.update(finished_at=_now_iso(), exit_code=None, error="no action configured any more; not run")
        return
    try:
        proc = subprocess.run(
            command,
            input=json.dumps(alert_dicts([alert])[0]),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        record.update(exit_code=proc.returncode, output=(proc.stdout + proc.stderr)[-ACTION_OUTPUT_BYTES:])
        if proc.returncode:
            record["error"] = f"exited with status {proc.returncode}"
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") + (exc.stderr or b"")
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        record.update(
            exit_code=None, error=f"timed out after {timeout_s:g} s", output=out[-ACTION_OUTPUT_BYTES:]
        )
    except OSError as exc:
        record.update(exit_code=None, error=f"could not start: {exc.strerror or exc}")
    record["finished_at"] = _now_iso()


def read_state(data_dir: Path) -> dict:
    try:
        doc = json.loads((Path(data_dir) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"version": 1, "alerts": {}}
    if not isinstance(doc, dict) or not isinstance(doc.get("alerts"), dict):
        return {"version": 1, "alerts": {}}
    return doc


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def deliver_pending(
    data_dir: Path,
    webhooks: list[str],
    *,
    log: Callable[[str], None],
    post: Poster = post_json,
    retries: int = 3,
    timeout: float = 5.0,
    backoff: float = 0.5,
    deadline_s: float = 40.0,
    action: list[str] | None = None,
    action_timeout_s: float = 30.0,
) -> DeliveryReport:
    """Deliver every alert of ``alerts.jsonl`` not yet delivered to all its targets.

    Each webhook gets up to ``retries`` attempts per call (``timeout`` seconds each, ``backoff`` doubling in
    between); a webhook that fails is not tried again for other alerts in the same call. No new attempt
    starts after ``deadline_s`` (Dagster sensors are stopped at 60 s); what is left stays pending.
    """
    data_dir = Path(data_dir)
    report = DeliveryReport()
    attempts = _Attempts(post, retries, timeout, backoff, deadline_s, started=time.monotonic())
    by_key = {webhook_key(u): u for u in webhooks}
    with _locked(data_dir, blocking=False) as got:
        if not got:
            report.busy = True
            return report
        state = read_state(data_dir)
        seen: dict = state["alerts"]
        down: set[str] = set()

        def save() -> None:
            storage.write_json(state, data_dir / STATE_FILE)

        for alert in read_alert_log(data_dir):
            aid = alert["alert_id"]
            entry = _state_entry(seen, alert, by_key, action)
            if entry.get("action") and "started_at" not in entry["action"]:
                run_action(entry["action"], alert, action or [], action_timeout_s, save)
                report.actions.append((aid, entry["action"].get("exit_code")))
                save()
            targets: dict = entry["targets"]
            if all(t.get("delivered_at") or t.get("dropped") for t in targets.values()):
                continue
            if _deliver_to_targets(alert, targets, by_key, down, attempts, log, report):
                save()
    return report


@dataclass(frozen=True)
class _Attempts:
    """How webhooks are tried in one call of :func:`deliver_pending`."""

    post: Poster
    retries: int
    timeout: float
    backoff: float
    deadline_s: float
    started: float  # time.monotonic() when the call started

    def past_deadline(self) -> bool:
        """Whether the call's deadline has passed (no new attempt starts)."""
        return time.monotonic() - self.started > self.deadline_s


def _state_entry(seen: dict, alert: Mapping, by_key: Mapping[str, str], action: list[str] | None) -> dict:
    """The alert's delivery state; when first seen, its targets (and whether it has an action) are fixed."""
    aid = alert["alert_id"]
    entry = seen.get(aid)
    if entry is None:
        entry = seen[aid] = {"targets": {LOG_TARGET: {}, **{k: {} for k in by_key}}}
        if action and alert.get("severity") == "critical":  # decided once, when the alert is first seen
            entry["action"] = {"command": action[0]}
    return entry


def _deliver_to_targets(
    alert: Mapping,
    targets: dict,
    by_key: Mapping[str, str],
    down: set[str],
    attempts: _Attempts,
    log: Callable[[str], None],
    report: DeliveryReport,
) -> bool:
    """Deliver one alert to each of its targets not yet done; whether its state changed."""
    aid = alert["alert_id"]
    changed = False
    for key, t in targets.items():
        if t.get("delivered_at") or t.get("dropped"):
            continue
        if key == LOG_TARGET:
            log(alert_text(alert))
            t["delivered_at"] = _now_iso()
            report.delivered.append((aid, key))
            changed = True
            continue
        url = by_key.get(key)
        if url is None:
            t["dropped"] = "webhook no longer in MC_ALERT_WEBHOOKS"
            changed = True
            continue
        if key in down or attempts.past_deadline():
            report.pending.append((aid, key))
            continue
        tries, error = _post_with_retries(url, alert, attempts)
        t["attempts"] = t.get("attempts", 0) + tries
        changed = True
        if error is None:
            t["delivered_at"] = _now_iso()
            t.pop("last_error", None)
            report.delivered.append((aid, key))
        else:
            t["last_error"] = error
            down.add(key)
            report.pending.append((aid, key))
            report.errors.append(f"{redact_url(url)}: {error}")
    return changed


def _post_with_retries(url: str, alert: Mapping, attempts: _Attempts) -> tuple[int, str | None]:
    """Post the alert to one webhook, retrying with backoff: (attempts made, the last error or None)."""
    error = None
    for attempt in range(max(1, attempts.retries)):
        if attempt:
            time.sleep(attempts.backoff * 2 ** (attempt - 1))
        try:
            attempts.post(url, webhook_payload(alert), attempts.timeout)
            error = None
            break
        except Exception as exc:  # noqa: BLE001 - any failure leaves the alert pending
            error = _error_text(exc)
        if attempts.past_deadline():
            break
    return attempt + 1, error
