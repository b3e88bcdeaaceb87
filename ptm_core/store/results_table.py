"""The results tables: experiments, results and their per-item details, and the record of
which cached_runs files were imported (one transaction each). Shared SQL over any backend
(backend.py); the statements whose dialects differ come from `self.sql`."""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from ptm_core.store.backend import retried
from ptm_core.store.records import ResultRecord, utc_now_iso

_RESULT_COLUMNS = (
    "key", "experiment", "point_id", "kind", "skills", "omega", "label", "data_size",
    "train_steps", "method", "recipe_key", "recipe_yaml", "heuristic", "suite", "suite_version",
    "suite_options", "axes", "metrics", "counts", "wall_s", "swap_s", "engine", "versions",
    "sampling", "fingerprints", "source", "created_at", "intervals",
)
_JSON_COLUMNS = ("suite_options", "axes", "metrics", "counts", "versions", "sampling", "fingerprints",
                 "intervals")



class ResultsTable:
    """Experiments and results (a mixin of `Store`, over a backend's transactions)."""

    # ---- experiments ---------------------------------------------------------------------
    @retried
    def register_experiment(self, experiment: Any) -> None:
        """Remember an experiment (with absolute paths) so workers can rebuild it from the store."""
        spec = experiment.model_dump_json()
        with self._write("register the experiment") as con:
            con.execute(
                "INSERT INTO experiments(name, spec, hash, source, updated_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET spec=excluded.spec, hash=excluded.hash, "
                "source=excluded.source, updated_at=excluded.updated_at",
                (experiment.name, spec, experiment.content_hash(), experiment.source, self.clock()))

    @retried
    def get_experiment(self, name: str):
        from ptm_core.store.experiment import Experiment, ExperimentError
        with self._use() as con:
            row = con.execute("SELECT spec FROM experiments WHERE name=?", (name,)).fetchone()
        if row is None:
            raise ExperimentError(f"experiment {name!r} is not registered in store {self.path}")
        return Experiment.model_validate_json(row["spec"])

    @retried
    def experiment_names(self) -> list[str]:
        with self._use() as con:
            names = {r[0] for r in con.execute("SELECT name FROM experiments")}
            names |= {r[0] for r in con.execute("SELECT DISTINCT experiment FROM results")}
        return sorted(names)

    # ---- results -------------------------------------------------------------------------
    @retried
    def has_result(self, key: str, experiment: str | None = None) -> bool:
        with self._use() as con:
            if experiment is None:
                row = con.execute("SELECT 1 FROM results WHERE key=? LIMIT 1", (key,)).fetchone()
            else:
                row = con.execute("SELECT 1 FROM results WHERE key=? AND experiment=?",
                                  (key, experiment)).fetchone()
        return row is not None

    @retried
    def existing_keys(self, keys: Iterable[str], experiment: str | None = None) -> set[str]:
        keys = list(dict.fromkeys(keys))
        found: set[str] = set()
        with self._read() as con:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                marks = ",".join("?" * len(chunk))
                if experiment is None:
                    rows = con.execute(f"SELECT DISTINCT key FROM results WHERE key IN ({marks})", chunk)
                else:
                    rows = con.execute(f"SELECT key FROM results WHERE experiment=? AND key IN ({marks})",
                                       [experiment, *chunk])
                found.update(r[0] for r in rows)
        return found

    @retried
    def put_result(self, record: ResultRecord, details: Sequence[dict] | None = None, *,
                   replace: bool = False) -> bool:
        """Write one result in one transaction. Returns False when (key, experiment) existed
        and `replace` is False (the first measurement is kept)."""
        record.validate()
        with self._write(f"write the result for {record.label!r} / {record.suite}") as con:
            return self._insert_result(con, record, details, replace=replace)

    @retried
    def insert_results(self, records: Sequence[ResultRecord]) -> int:
        """Insert many records in one transaction (existing keys are kept). Returns how many
        were new."""
        for r in records:
            r.validate()
        with self._write(f"insert {len(records)} results") as con:
            return sum(self._insert_result(con, r, None) for r in records)

    def _insert_result(self, con: Any, r: ResultRecord,
                       details: Sequence[dict] | None, *, replace: bool = False) -> bool:
        if not r.created_at:
            r.created_at = utc_now_iso(self.clock())
        values = []
        for c in _RESULT_COLUMNS:
            v = getattr(r, c)
            if c in _JSON_COLUMNS:
                v = json.dumps(v, sort_keys=True)
            elif c == "heuristic":
                v = int(bool(v))
            values.append(v)
        cur = con.execute(self.sql.insert_result(_RESULT_COLUMNS, replace), values)
        if details is not None:
            con.execute(self.sql.insert_details, (r.key, json.dumps(list(details), default=str)))
        return cur.rowcount == 1

    @retried
    def get_result(self, key: str, experiment: str | None = None) -> ResultRecord | None:
        with self._use() as con:
            if experiment is None:
                row = con.execute("SELECT * FROM results WHERE key=? ORDER BY created_at LIMIT 1",
                                  (key,)).fetchone()
            else:
                row = con.execute("SELECT * FROM results WHERE key=? AND experiment=?",
                                  (key, experiment)).fetchone()
        return _record(row) if row else None

    @retried
    def results(self, experiment: str | None = None) -> list[ResultRecord]:
        with self._use() as con:
            if experiment is None:
                rows = con.execute("SELECT * FROM results ORDER BY experiment, point_id, suite").fetchall()
            else:
                rows = con.execute("SELECT * FROM results WHERE experiment=? ORDER BY point_id, suite",
                                   (experiment,)).fetchall()
        return [_record(r) for r in rows]

    @retried
    def results_version(self, experiment: str | None = None) -> str:
        """Changes whenever results of `experiment` are added or replaced: a cheap cache key
        for the app's frame (one indexed query)."""
        with self._use() as con:
            if experiment is None:
                row = con.execute(f"SELECT {self.sql.results_version} FROM results").fetchone()
            else:
                row = con.execute(f"SELECT {self.sql.results_version} FROM results "
                                  "WHERE experiment=?", (experiment,)).fetchone()
        return f"{row[0]}:{row[1]}:{row[2]}"

    @retried
    def result_details(self, key: str) -> list[dict]:
        with self._use() as con:
            row = con.execute("SELECT details FROM result_details WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else []

    # ---- cached_runs bookkeeping -----------------------------------------------------------
    @retried
    def import_state(self, path: str) -> str | None:
        with self._use() as con:
            row = con.execute("SELECT sha256 FROM imports WHERE path=?", (path,)).fetchone()
        return row[0] if row else None

    @retried
    def import_records(self, path: str, sha256: str, records: Sequence[ResultRecord]) -> int:
        """Insert a cached_runs file's records and remember its hash, in one transaction."""
        for r in records:
            r.validate()
        with self._write(f"import {path}") as con:
            new = sum(self._insert_result(con, r, None) for r in records)
            con.execute("INSERT INTO imports(path, sha256, records, imported_at) VALUES (?,?,?,?) "
                        "ON CONFLICT(path) DO UPDATE SET sha256=excluded.sha256, "
                        "records=excluded.records, imported_at=excluded.imported_at",
                        (path, sha256, len(records), self.clock()))
            return new



def _record(row: Any) -> ResultRecord:
    d = {c: row[c] for c in _RESULT_COLUMNS}
    for c in _JSON_COLUMNS:
        d[c] = json.loads(d[c])
    d["heuristic"] = bool(d["heuristic"])
    # records stored before intervals existed get the ones their scores determine
    return ResultRecord(**d).with_derived_intervals()
