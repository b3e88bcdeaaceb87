"""The job queue and the workers' heartbeats: enqueue, claim (leases), progress, complete,
fail, release, cancel, and the workers table. Shared SQL over any backend (backend.py).

Every state change names the state it expects (`WHERE ... AND status='running' AND worker=?`),
so an operation that is run again (`retried`, after the server went away) or that races with
another on a backend without a global write lock (PostgreSQL) changes nothing twice."""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Sequence

from ptm_core.store.backend import retried
from ptm_core.store.jobs import record_for
from ptm_core.store.records import EnqueueOutcome, Job, JobEvent, JobRow, JobSpec, ResultRecord, WorkerRow
from ptm_core.store.results_table import _record


class JobQueue:
    """Jobs and workers (a mixin of `Store`, over a backend's transactions)."""

    def _copy_for(self, con: Any, spec: JobSpec) -> bool:
        """If the measurement exists under another experiment, record it for this one too."""
        row = con.execute("SELECT * FROM results WHERE key=? ORDER BY created_at LIMIT 1",
                          (spec.key,)).fetchone()
        if row is None:
            return False
        if row["experiment"] != spec.experiment:
            src = _record(row)
            rec = record_for(spec, metrics=src.metrics, counts=src.counts, wall_s=src.wall_s,
                             swap_s=src.swap_s, engine=src.engine, versions=src.versions,
                             source=src.source, created_at=src.created_at,
                             intervals=src.intervals)
            self._insert_result(con, rec, None)
        return True

    @retried
    def adopt(self, specs: Sequence[JobSpec]) -> set[str]:
        """Keys of `specs` whose result is stored for their experiment, copying measurements
        made for another experiment (same key: same measurement). One transaction."""
        with self._write("look up cached results") as con:
            return {s.key for s in specs if self._copy_for(con, s)}

    # ---- jobs ----------------------------------------------------------------------------
    @retried
    def enqueue(self, spec: JobSpec, *, priority: int = 0) -> EnqueueOutcome:
        return self.enqueue_many([spec], priority=priority)[0]

    @retried
    def enqueue_many(self, specs: Sequence[JobSpec], *, priority: int = 0) -> list[EnqueueOutcome]:
        """Queue jobs, at most one active job per (result key, experiment); no job at all when
        the result is already stored. One transaction for the whole batch."""
        out: list[EnqueueOutcome] = []
        now = self.clock()
        with self._write(f"enqueue {len(specs)} job(s)") as con:
            for spec in specs:
                if self._copy_for(con, spec):
                    out.append(EnqueueOutcome(spec.key, "cached"))
                    continue
                row = con.execute(
                    "SELECT id, priority FROM jobs WHERE key=? AND experiment=? AND status IN ('queued','running')",
                    (spec.key, spec.experiment)).fetchone()
                if row is not None:
                    if priority > row["priority"]:
                        con.execute("UPDATE jobs SET priority=?, updated_at=? WHERE id=?",
                                    (priority, now, row["id"]))
                    out.append(EnqueueOutcome(spec.key, "existing", row["id"]))
                    continue
                # DO NOTHING: where writers do not serialize (PostgreSQL), an enqueuer that
                # lost the race for this key finds the winner's job on the next pass
                row = con.execute(
                    "INSERT INTO jobs(key, experiment, suite_ref, recipe_key, label, kind, spec, status, "
                    "priority, progress_msg, created_at, updated_at) "
                    "VALUES (?,?,?,?,?,?,?,'queued',?,?,?,?) "
                    "ON CONFLICT (key, experiment) WHERE status IN ('queued','running') DO NOTHING "
                    "RETURNING id",
                    (spec.key, spec.experiment, spec.suite_ref, spec.point.recipe_key,
                     spec.point.label, spec.point.kind, spec.to_json(), priority, "queued", now,
                     now)).fetchone()
                if row is None:
                    row = con.execute(
                        "SELECT id FROM jobs WHERE key=? AND experiment=? "
                        "AND status IN ('queued','running')", (spec.key, spec.experiment)).fetchone()
                    out.append(EnqueueOutcome(spec.key, "existing", row["id"] if row else None))
                    continue
                job_id = row["id"]
                _event(con, job_id, now, "queued", None, None)
                out.append(EnqueueOutcome(spec.key, "queued", job_id))
        return out

    @retried
    def claim(self, worker_id: str, *, lease_s: float = 60.0, max_attempts: int = 3,
              prefer_recipe: str | None = None) -> Job | None:
        """Take the next queued job (highest priority, oldest first; a job with the recipe the
        worker already has applied first). Jobs whose lease expired are requeued first."""
        now = self.clock()
        with self._write("claim a job") as con:
            self._expire(con, now, max_attempts)
            while True:
                row = None
                if prefer_recipe:
                    row = con.execute("SELECT * FROM jobs WHERE status='queued' AND recipe_key=? "
                                      f"ORDER BY priority DESC, id LIMIT 1{self.sql.skip_locked}",
                                      (prefer_recipe,)).fetchone()
                    if row is not None:
                        top = con.execute("SELECT MAX(priority) FROM jobs WHERE status='queued'").fetchone()[0]
                        if top is not None and top > row["priority"]:
                            row = None
                if row is None:
                    row = con.execute("SELECT * FROM jobs WHERE status='queued' "
                                      f"ORDER BY priority DESC, id LIMIT 1{self.sql.skip_locked}"
                                      ).fetchone()
                if row is None:
                    return None
                spec = JobSpec.from_json(row["spec"])
                if self._copy_for(con, spec):  # measured meanwhile (another experiment, cached_runs)
                    con.execute("UPDATE jobs SET status='done', finished_at=?, updated_at=?, "
                                "progress_msg='result already in the store' WHERE id=?",
                                (now, now, row["id"]))
                    _event(con, row["id"], now, "done", worker_id, "result already in the store")
                    continue
                lease = now + lease_s
                con.execute(
                    "UPDATE jobs SET status='running', worker=?, attempts=attempts+1, lease_expires=?, "
                    "heartbeat_at=?, started_at=?, updated_at=?, progress_done=0, progress_total=NULL, "
                    "progress_msg='claimed', error=NULL WHERE id=?",
                    (worker_id, lease, now, now, now, row["id"]))
                _event(con, row["id"], now, "running", worker_id,
                       f"attempt {row['attempts'] + 1}")
                return Job(id=row["id"], spec=spec, worker=worker_id,
                           attempts=row["attempts"] + 1, lease_expires=lease)

    def _expire(self, con: Any, now: float, max_attempts: int) -> int:
        rows = con.execute("SELECT id, worker, attempts FROM jobs WHERE status='running' "
                           f"AND lease_expires < ?{self.sql.skip_locked}", (now,)).fetchall()
        for r in rows:
            if r["attempts"] >= max_attempts:
                msg = (f"worker {r['worker']} stopped heartbeating (lease expired) on attempt "
                       f"{r['attempts']} of {max_attempts}; giving up. The job may crash its "
                       f"worker (out of memory?)")
                con.execute("UPDATE jobs SET status='failed', error=?, finished_at=?, updated_at=?, "
                            "lease_expires=NULL WHERE id=?", (msg, now, now, r["id"]))
                _event(con, r["id"], now, "failed", r["worker"], msg)
            else:
                msg = f"lease of worker {r['worker']} expired (worker gone?); back in the queue"
                con.execute("UPDATE jobs SET status='queued', worker=NULL, lease_expires=NULL, "
                            "updated_at=?, progress_msg=? WHERE id=?", (now, msg, r["id"]))
                _event(con, r["id"], now, "queued", r["worker"], msg)
        return len(rows)

    @retried
    def requeue_expired(self, *, max_attempts: int = 3) -> int:
        """Requeue (or fail, after `max_attempts`) running jobs whose worker stopped heartbeating."""
        with self._write("requeue expired jobs") as con:
            return self._expire(con, self.clock(), max_attempts)

    @retried
    def heartbeat(self, job_id: int, worker_id: str, *, lease_s: float = 60.0) -> bool:
        """Extend the lease. False when the job is no longer this worker's (lease lost)."""
        now = self.clock()
        with self._write("heartbeat") as con:
            cur = con.execute("UPDATE jobs SET lease_expires=?, heartbeat_at=?, updated_at=? "
                              "WHERE id=? AND worker=? AND status='running'",
                              (now + lease_s, now, now, job_id, worker_id))
            con.execute("UPDATE workers SET last_seen=? WHERE id=?", (now, worker_id))
            return cur.rowcount == 1

    @retried
    def progress(self, job_id: int, worker_id: str, done: int | None, total: int | None,
                 message: str | None = None, *, lease_s: float | None = None) -> bool:
        now = self.clock()
        with self._write("record progress") as con:
            if lease_s is not None:
                cur = con.execute(
                    "UPDATE jobs SET progress_done=?, progress_total=?, progress_msg=?, heartbeat_at=?, "
                    "lease_expires=?, updated_at=? WHERE id=? AND worker=? AND status='running'",
                    (done, total, message, now, now + lease_s, now, job_id, worker_id))
            else:
                cur = con.execute(
                    "UPDATE jobs SET progress_done=?, progress_total=?, progress_msg=?, updated_at=? "
                    "WHERE id=? AND worker=? AND status='running'",
                    (done, total, message, now, job_id, worker_id))
            return cur.rowcount == 1

    @retried
    def complete(self, job: Job, record: ResultRecord, details: Sequence[dict] | None = None) -> bool:
        """Store the result and mark the job done, in one transaction. The result is kept even
        when the job was meanwhile taken over by another worker (it is the same measurement);
        returns whether this worker still owned the job."""
        record.validate()
        now = self.clock()
        with self._write(f"write the result for {record.label!r} / {record.suite}") as con:
            self._insert_result(con, record, details)
            cur = con.execute(
                "UPDATE jobs SET status='done', finished_at=?, updated_at=?, lease_expires=NULL, "
                "progress_msg='done', error=NULL WHERE id=? AND worker=? AND status='running'",
                (now, now, job.id, job.worker))
            owned = cur.rowcount == 1
            _event(con, job.id, now, "done" if owned else "result", job.worker,
                   None if owned else "result written after the lease was lost")
            # the worker's engine and count, with the result (a job it lost is not counted)
            con.execute("UPDATE workers SET engine=?, jobs_done=jobs_done+?, last_seen=? "
                        "WHERE id=?", (record.engine, int(owned), now, job.worker))
            return owned

    @retried
    def fail(self, job: Job, error: str) -> bool:
        now = self.clock()
        with self._write("record a job failure") as con:
            cur = con.execute(
                "UPDATE jobs SET status='failed', error=?, finished_at=?, updated_at=?, "
                "lease_expires=NULL, progress_msg='failed' WHERE id=? AND worker=? AND status='running'",
                (error, now, now, job.id, job.worker))
            if cur.rowcount:
                _event(con, job.id, now, "failed", job.worker, error[:2000])
                con.execute("UPDATE workers SET jobs_failed=jobs_failed+1, last_seen=? WHERE id=?",
                            (now, job.worker))
            return cur.rowcount == 1

    @retried
    def release(self, job: Job, reason: str = "worker stopped") -> bool:
        """Give a running job back to the queue at once (worker interrupted)."""
        now = self.clock()
        with self._write("release a job") as con:
            cur = con.execute(
                "UPDATE jobs SET status='queued', worker=NULL, lease_expires=NULL, updated_at=?, "
                "attempts=CASE WHEN attempts > 0 THEN attempts-1 ELSE 0 END, progress_msg=? WHERE id=? AND worker=? AND status='running'",
                (now, reason, job.id, job.worker))
            if cur.rowcount:
                _event(con, job.id, now, "queued", job.worker, reason)
            return cur.rowcount == 1

    @retried
    def cancel(self, *, job_ids: Sequence[int] | None = None, experiment: str | None = None) -> int:
        """Cancel queued jobs (running ones finish)."""
        now = self.clock()
        with self._write("cancel jobs") as con:
            q = "SELECT id FROM jobs WHERE status='queued'"
            args: list[Any] = []
            if experiment is not None:
                q += " AND experiment=?"
                args.append(experiment)
            ids = [r[0] for r in con.execute(q, args)]
            if job_ids is not None:
                ids = [i for i in ids if i in set(job_ids)]
            n = 0
            for i in ids:  # still queued: a claim may have taken it since the SELECT
                cur = con.execute("UPDATE jobs SET status='cancelled', finished_at=?, updated_at=? "
                                  "WHERE id=? AND status='queued'", (now, now, i))
                if cur.rowcount:
                    _event(con, i, now, "cancelled", None, None)
                    n += 1
            return n

    @retried
    def retry_failed(self, *, experiment: str | None = None) -> int:
        """Queue failed jobs again (a new job each; the failed ones stay in the history)."""
        with self._use() as con:
            q = "SELECT spec, priority FROM jobs WHERE status='failed'"
            rows = con.execute(q + (" AND experiment=?" if experiment else ""),
                               (experiment,) if experiment else ()).fetchall()
        outs = self.enqueue_many([JobSpec.from_json(r["spec"]) for r in rows])
        return sum(o.status == "queued" for o in outs)

    @retried
    def job(self, job_id: int) -> JobRow | None:
        with self._use() as con:
            row = con.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job_row(row, self.clock()) if row else None

    @retried
    def job_spec(self, job_id: int) -> JobSpec | None:
        with self._use() as con:
            row = con.execute("SELECT spec FROM jobs WHERE id=?", (job_id,)).fetchone()
        return JobSpec.from_json(row[0]) if row else None

    @retried
    def jobs(self, *, experiment: str | None = None, statuses: Sequence[str] | None = None,
             keys: Sequence[str] | None = None, limit: int = 500) -> list[JobRow]:
        """Newest first."""
        q, args = "SELECT * FROM jobs WHERE 1=1", []
        if experiment is not None:
            q += " AND experiment=?"
            args.append(experiment)
        if statuses:
            q += f" AND status IN ({','.join('?' * len(statuses))})"
            args += list(statuses)
        if keys is not None:
            keys = list(keys)[:900]
            q += f" AND key IN ({','.join('?' * len(keys))})" if keys else " AND 1=0"
            args += keys
        q += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        now = self.clock()
        with self._use() as con:
            return [_job_row(r, now) for r in con.execute(q, args)]

    @retried
    def job_events(self, job_id: int) -> list[JobEvent]:
        with self._use() as con:
            rows = con.execute("SELECT * FROM job_events WHERE job_id=? ORDER BY id", (job_id,)).fetchall()
        return [JobEvent(r["job_id"], r["at"], r["status"], r["worker"], r["message"]) for r in rows]

    @retried
    def queue_counts(self, experiment: str | None = None) -> dict[str, int]:
        q = "SELECT status, COUNT(*) FROM jobs"
        args: tuple = ()
        if experiment is not None:
            q += " WHERE experiment=?"
            args = (experiment,)
        with self._use() as con:
            counts = {r[0]: r[1] for r in con.execute(q + " GROUP BY status", args)}
        return {s: counts.get(s, 0) for s in ("queued", "running", "done", "failed", "cancelled")}

    # ---- workers -------------------------------------------------------------------------
    @retried
    def worker_seen(self, worker_id: str, state: str, job_id: int | None = None,
                    extra: dict | None = None) -> None:
        now = self.clock()
        with self._write("record worker state") as con:
            con.execute(
                "INSERT INTO workers(id, host, pid, started_at, last_seen, state, job_id, extra) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET last_seen=excluded.last_seen, "
                "state=excluded.state, job_id=excluded.job_id, extra=excluded.extra",
                (worker_id, socket.gethostname(), os.getpid(), now, now, state, job_id,
                 json.dumps(extra or {})))

    @retried
    def workers(self, *, seen_within_s: float | None = None) -> list[WorkerRow]:
        """Every worker the store has seen, the most recently seen first: its host and pid,
        state and job, the engine of its last result and how many jobs it finished (done,
        failed). `seen_within_s`: only those alive (not stopped, seen that recently)."""
        now = self.clock()
        with self._use() as con:
            rows = con.execute("SELECT * FROM workers ORDER BY last_seen DESC").fetchall()
        out = [WorkerRow(r["id"], r["host"], r["pid"], r["started_at"], r["last_seen"], r["state"],
                         r["job_id"], json.loads(r["extra"]), r["engine"], int(r["jobs_done"]),
                         int(r["jobs_failed"])) for r in rows]
        if seen_within_s is not None:
            out = [w for w in out if now - w.last_seen <= seen_within_s and w.state != "stopped"]
        return out


def _event(con: Any, job_id: int, at: float, status: str, worker: str | None,
           message: str | None) -> None:
    con.execute("INSERT INTO job_events(job_id, at, status, worker, message) VALUES (?,?,?,?,?)",
                (job_id, at, status, worker, message))


def _job_row(r: Any, now: float) -> JobRow:
    return JobRow(
        id=r["id"], key=r["key"], experiment=r["experiment"], label=r["label"], kind=r["kind"],
        suite_ref=r["suite_ref"], status=r["status"], priority=r["priority"], worker=r["worker"],
        attempts=r["attempts"], created_at=r["created_at"], started_at=r["started_at"],
        finished_at=r["finished_at"], heartbeat_at=r["heartbeat_at"],
        lease_expires=r["lease_expires"], progress_done=r["progress_done"],
        progress_total=r["progress_total"], progress_msg=r["progress_msg"], error=r["error"],
        stale=r["status"] == "running" and r["lease_expires"] is not None and r["lease_expires"] < now,
    )
