"""Product versions and their aliases (SPEC 11, the Remora migration seed).

A product's canonical versions live in ``product_versions``; ``version_aliases`` maps the fuzzy
strings typed by hand over the years ("4.0 Beta 1", "4.0b1 ", "16.0.1pre") to one of them, as
the seed's lookup table did. Surrounding white space never matters: it is stripped on the way
in and ignored when looking up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from twisted.internet import defer

from crashdb import model
from crashdb.base import DBConnectorComponent
from crashdb.exceptions import InvalidInputError
from crashdb.validation import columnLength, requireName, validatesInput

PRODUCT_LENGTH = columnLength(model.product_versions.c.product)
VERSION_LENGTH = columnLength(model.product_versions.c.version)
MAP_COLUMNS = ("product", "alias", "version")


def _checkVersion(value: Any, field: str, length: int | None, index: int | None = None) -> str:
    """``value`` stripped, or InvalidInputError if it is not a non-empty string of ``length``."""
    if type(value) is not str:
        raise InvalidInputError(
            f"expected a string, got {type(value).__name__}", field=field, index=index
        )
    return requireName(value.strip(), field, length, index)


def _mapRow(row: Any, index: int | None) -> tuple[str, str, str]:
    """``(product, alias, version)`` of one version-map row (a dict or a 3-sequence), checked."""
    if isinstance(row, Mapping):
        missing = [name for name in MAP_COLUMNS if name not in row]
        if missing:
            raise InvalidInputError("is required", field=missing[0], index=index)
        values = [row[name] for name in MAP_COLUMNS]
    elif isinstance(row, Sequence) and not isinstance(row, str) and len(row) == 3:
        values = list(row)
    else:
        raise InvalidInputError("expected product,alias,version", index=index)
    product = requireName(values[0], "product", PRODUCT_LENGTH, index)
    alias = _checkVersion(values[1], "alias", None, index)
    version = _checkVersion(values[2], "version", VERSION_LENGTH, index)
    return product, alias, version


class VersionsConnectorComponent(DBConnectorComponent):
    """Canonical product versions and the fuzzy strings that map to them."""

    @validatesInput
    def addProductVersion(self, product: str, version: str) -> defer.Deferred:
        """Find or create the canonical ``version`` of ``product`` (stripped); Deferred of its
        id. Race-safe."""
        requireName(product, "product", PRODUCT_LENGTH)
        version = _checkVersion(version, "version", VERSION_LENGTH)

        def thd(conn: sa.Connection) -> int:
            return self._versionId(conn, product, version)

        return self.db.pool.do(thd)

    @validatesInput
    def addVersionAlias(self, product: str, alias: str, version: str) -> defer.Deferred:
        """Map ``alias`` of ``product`` to the canonical ``version`` (created if missing);
        Deferred of the version's id. Re-mapping an alias replaces its old target."""
        product, alias, version = _mapRow((product, alias, version), None)

        def thd(conn: sa.Connection) -> int:
            return self._addAlias(conn, product, alias, version)

        return self.db.pool.do(thd)

    def canonicalVersion(self, product: str, raw: str | None) -> defer.Deferred:
        """Deferred of the canonical form of ``raw`` for ``product``, or None: an exact canonical
        match first, then an alias; surrounding white space is ignored."""
        if raw is None or product is None:
            return defer.succeed(None)
        if type(raw) is not str or type(product) is not str:
            return defer.fail(InvalidInputError("expected strings", field="raw"))
        wanted = raw.strip()
        versions = model.product_versions
        aliases = model.version_aliases

        def thd(conn: sa.Connection) -> str | None:
            exact = conn.execute(
                sa.select(versions.c.version).where(
                    versions.c.product == product, versions.c.version == wanted
                )
            ).scalar_one_or_none()
            if exact is not None:
                return exact
            return conn.execute(
                sa.select(versions.c.version)
                .select_from(aliases.join(versions, aliases.c.version_id == versions.c.id))
                .where(aliases.c.product == product, aliases.c.alias == wanted)
            ).scalar_one_or_none()

        return self.db.pool.doRead(thd)

    @validatesInput
    def loadVersionMap(self, rows: Iterable[Any]) -> defer.Deferred:
        """Load ``product,alias,version`` rows (dicts, or 3-sequences as from ``csv.reader``;
        a header row and blank rows are skipped) in one transaction; Deferred of the number of
        rows loaded. All or nothing: a bad row raises InvalidInputError naming its ``index``."""
        entries: list[tuple[int, str, str, str]] = []
        seen: dict[tuple[str, str], str] = {}
        for index, row in enumerate(rows):
            if not row or (index == 0 and _isHeader(row)):
                continue
            product, alias, version = _mapRow(row, index)
            earlier = seen.setdefault((product, alias), version)
            if earlier != version:
                raise InvalidInputError(
                    f"maps {alias!r} to {version!r}, an earlier row to {earlier!r}",
                    field="alias",
                    index=index,
                )
            entries.append((index, product, alias, version))

        def thd(conn: sa.Connection) -> int:
            for index, product, alias, version in entries:
                self._addAlias(conn, product, alias, version, index)
            return len(entries)

        return self.db.pool.do(thd)

    def getProductVersions(self, product: str | None = None) -> defer.Deferred:
        """Deferred of ``[{id, product, version}]`` ordered by product, then version."""
        versions = model.product_versions

        def thd(conn: sa.Connection) -> list[dict]:
            query = sa.select(versions).order_by(versions.c.product, versions.c.version)
            if product is not None:
                query = query.where(versions.c.product == product)
            return self.rowsToDicts(conn.execute(query))

        return self.db.pool.doRead(thd)

    def getVersionAliases(self, product: str | None = None) -> defer.Deferred:
        """Deferred of ``[{product, alias, version_id, version}]`` ordered by product, alias."""
        versions = model.product_versions
        aliases = model.version_aliases

        def thd(conn: sa.Connection) -> list[dict]:
            query = (
                sa.select(aliases, versions.c.version)
                .select_from(aliases.join(versions, aliases.c.version_id == versions.c.id))
                .order_by(aliases.c.product, aliases.c.alias)
            )
            if product is not None:
                query = query.where(aliases.c.product == product)
            return self.rowsToDicts(conn.execute(query))

        return self.db.pool.doRead(thd)

    # -- helpers (run inside a thd) ---------------------------------------------------------------

    def _versionId(self, conn: sa.Connection, product: str, version: str) -> int:
        return self.findOrCreateId(
            conn, model.product_versions, {"product": product, "version": version}
        )

    def _addAlias(
        self, conn: sa.Connection, product: str, alias: str, version: str, index: int | None = None
    ) -> int:
        versions = model.product_versions
        aliases = model.version_aliases
        version_id = self._versionId(conn, product, version)
        if alias == version:
            return version_id  # the canonical form needs no alias
        shadowing = conn.execute(
            sa.select(versions.c.id).where(
                versions.c.product == product, versions.c.version == alias
            )
        ).scalar_one_or_none()
        if shadowing is not None:
            raise InvalidInputError(
                f"{alias!r} is itself a canonical version of {product!r}; an alias would never "
                "be used",
                field="alias",
                index=index,
            )
        insert = self.db.backend.insert(aliases).values(
            product=product, alias=alias, version_id=version_id
        )
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=[aliases.c.product, aliases.c.alias],
                set_={"version_id": insert.excluded.version_id},
            )
        )
        return version_id


def _isHeader(row: Any) -> bool:
    if isinstance(row, Mapping):
        return False
    return [str(value).strip().lower() for value in row] == list(MAP_COLUMNS)
