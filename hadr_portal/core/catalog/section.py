"""`CatalogSection`: one section of the catalog file, declared once, read, saved, pruned and exported by core.

A section is `[[name]]` tables, one per row of `model`, matched to rows by name. An app declares each of its
sections as a subclass with class attributes (the keys and their types, the enumerations, the rows it names
in other sections, its children, what pruning keeps) and registers an instance in its `AppConfig.ready()`
(`core.registry.catalog_sections`). What a declaration cannot say goes into the hooks, in the owning app.

Reading a table, in this order (the order its problems are reported in): its keys and their TOML types
(`keys`), enumerations (`choices`), `values_check`, the name (unique in the list), JSON tables (`Key.optional`),
the rows it names (`references`), `row_read`, its token, the model's fields and validators, `row_filled`, its
children.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models

from .rows import ImportContext, Row
from .tables import Key, choose, json_storable, read_table, sorted_json, unique, where


@dataclass(frozen=True)
class Reference:
    """A key naming a row of another section (`section`), e.g. a backup policy's `cluster`; stored as the
    foreign key of the same name. The name must be in the file or (without prune) in the database. `what`
    names that row in messages ("No storage target 'nas' in the file or the database."). `optional`: the key
    may be left out or empty ("", as an export writes none): no row (a null foreign key)."""

    section: str
    what: str
    optional: bool = False


@dataclass(frozen=True)
class Keep:
    """A reason why pruning keeps a row the file no longer has: `count` (an aggregate, e.g. `Count("backups")`)
    is not zero. With `held` it is a problem ("... but it {held(count)}: keep it in the file{advice}."); without,
    the row is kept silently (another section reports the table that still names it)."""

    count: models.Aggregate
    held: Callable[[int], str] | None = None
    advice: str = ""


class CatalogSection:
    """One section of the catalog file, or (as a section's `children`) the tables nested in each of its tables."""

    name: ClassVar[str]  # the TOML key: "clusters"; a child's key in its parent's table: "nodes"
    kind: ClassVar[str]  # the word for one row in the report and in messages: "cluster"
    model: ClassVar[type[models.Model]]
    keys: ClassVar[Mapping[str, Key]]  # every key a table may have, in the order the file has them
    order: ClassVar[int] = 0  # the section's place in the file
    import_order: ClassVar[int] = 0  # read and saved after the sections it names
    prune_order: ClassVar[int] = 0  # pruned after the sections whose rows keep its rows
    # Saved before the other sections are checked (they may be checked against its rows), saving the rows that
    # validated, and pruned then, so that what its pruning refuses is among the problems reported. The other
    # sections are saved, and pruned, only once the whole file is valid.
    saved_early: ClassVar[bool] = False
    choices: ClassVar[Mapping[str, Sequence[Any]]] = {}  # key: the values it may have
    references: ClassVar[Mapping[str, Reference]] = {}
    set_apart: ClassVar[tuple[str, ...]] = ()  # keys the hooks store, rather than the model field of that name
    children: ClassVar[CatalogSection | None] = None
    parent_field: ClassVar[str] = ""  # a child's foreign key to its parent's row
    kept: ClassVar[tuple[Keep, ...]] = ()
    prefetch: ClassVar[tuple[str, ...]] = ()  # what exporting a row reads besides its children and references
    counted: ClassVar[str | None] = None  # "clusters" in "Catalog exported to FILE: 2 clusters, ..."

    def __repr__(self) -> str:
        return f"<catalog section {self.name}>"

    @property
    def fields(self) -> tuple[str, ...]:
        """The model fields a table sets as they are (absent: the field's default; the file is the whole truth)."""
        apart = {"name", "token", *self.references, *self.set_apart, *((self.children.name,) if self.children else ())}
        return tuple(key for key in self.keys if key not in apart)

    # --- Export -------------------------------------------------------------------------------------------

    def export(self, *, include_tokens: bool) -> list[dict[str, Any]]:
        """Every row as a table of the file, ordered by name."""
        rows = self.model._default_manager.order_by("name").prefetch_related(*self._related())
        if self.references:
            rows = rows.select_related(*self.references)
        return [self.entry_export(instance, include_tokens=include_tokens) for instance in rows]

    def _related(self) -> tuple[str, ...]:
        child = self.children
        if child is None:
            return self.prefetch
        nested = (f"{child.name}__{name}" for name in (*child.references, *child.prefetch))
        return (child.name, *nested, *self.prefetch)

    def entry_export(self, instance: Any, *, include_tokens: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {}
        for key, spec in self.keys.items():
            if self.children is not None and key == self.children.name:
                children = sorted(getattr(instance, key).all(), key=lambda child: child.name)
                entry[key] = [self.children.entry_export(child, include_tokens=include_tokens) for child in children]
            elif key == "token":
                if include_tokens and self.token_exported(instance):
                    entry[key] = instance.token
            else:
                value = self.value_export(instance, key)
                if spec.optional and not value:
                    continue  # absent means empty
                entry[key] = sorted_json(value) if spec.sort or spec.optional else value
        return entry

    def value_export(self, instance: Any, key: str) -> Any:
        """One key's value in the file: a row it points at by that row's name ("" for none), any other the
        field's value."""
        if self.model._meta.get_field(key).is_relation:
            related = getattr(instance, key)
            return "" if related is None else related.name
        return getattr(instance, key)

    def token_exported(self, instance: Any) -> bool:
        """Whether an export asked to include tokens writes this row's (only tokens somebody uses are)."""
        return True

    def summary(self, entries: list[dict[str, Any]]) -> str | None:
        """How an export names what it wrote of this section, or None to leave it unsaid."""
        return None if self.counted is None else f"{len(entries)} {self.counted}"

    # --- Import: reading ----------------------------------------------------------------------------------

    def read(self, tables: Sequence[tuple[str, Any]], context: ImportContext) -> list[Row]:
        """Each table (with its path) matched to its row, updated in memory; nothing is saved yet."""
        existing: models.QuerySet[Any] = self.model._default_manager.prefetch_related(
            *((self.children.name,) if self.children else ())
        )
        if self.references:
            existing = existing.select_related(*self.references)
        by_name = {instance.name: instance for instance in existing}
        seen: dict[str, str] = {}
        return [self.table_read(path, raw, by_name, seen, context) for path, raw in tables]

    def table_read(
        self,
        path: str,
        raw: Any,
        existing: Mapping[str, Any],
        seen: dict[str, str],
        context: ImportContext,
        parent: Row | None = None,
    ) -> Row:
        problems = context.problems
        nested = self.children.name if self.children else None
        values, bad = read_table(raw, path, self.keys, problems, nested=nested)
        for key, choices in self.choices.items():
            choose(values, bad, key, choices, path, problems)
        self.values_check(values, bad, path, context)
        name = values.get("name", "")
        if not unique(name, path, seen, problems):
            bad.add("name")  # reported; matching it would mix two tables into one row
            name = ""
        for key, spec in self.keys.items():
            if spec.optional and key in values and not json_storable(values[key], f"{path}.{key}", problems):
                bad.add(key)
        if parent is None:
            row = Row(self.kind, name, existing.get(name) or self.model(name=name), path)
        else:
            # the parent may not be saved yet; the (parent, name) pair is unique by construction
            instance = existing.get(name) or self.model(**{self.parent_field: parent.instance, "name": name})
            row = Row(self.kind, f"{parent.name}/{name}", instance, path)
        self._references_read(row, values, bad, context)
        self.row_read(row, values, bad, context)
        if "token" in values:
            if unique(values["token"], path, context.tokens.setdefault(self.name, {}), problems, what="token"):
                row.take("token", values["token"])
            else:
                bad.add("token")
        self._fill(row, values, bad, problems)
        self.row_filled(row, values, bad, context)
        if self.children is not None:
            row.children = self.children.children_read(row, values.get(self.children.name, []), context)
        return row

    def children_read(self, parent: Row, tables: list[Any], context: ImportContext) -> list[Row]:
        """This child section's tables in one parent's table (a cluster's nodes)."""
        related = getattr(parent.instance, self.name)
        existing = {child.name: child for child in related.all()} if parent.instance.pk else {}
        seen: dict[str, str] = {}
        return [
            self.table_read(where(f"{parent.path}.{self.name}", index, raw), raw, existing, seen, context, parent)
            for index, raw in enumerate(tables)
        ]

    def _references_read(self, row: Row, values: Mapping[str, Any], bad: set[str], context: ImportContext) -> None:
        """The rows it names: in this file (then it is saved only if they are) or in the database. With prune,
        only this file counts: the others are about to be deleted."""
        for key, reference in self.references.items():
            named = values.get(key)
            if reference.optional and not named and key not in bad:
                row.take(key, None)  # absent or empty: none
                continue
            if named is None:
                continue  # missing or mistyped: reported
            in_file = context.sound_names(reference.section)
            if named in in_file:
                row.valid = row.valid and in_file[named]
            elif not self._related_model(key)._default_manager.filter(name=named).exists():
                context.problems.append(f"{row.path}.{key}: No {reference.what} {named!r} in the file or the database.")
                bad.add(key)
                continue
            elif context.prune:
                context.problems.append(
                    f"{row.path}.{key}: No {reference.what} {named!r} in the file, and --prune deletes the one in "
                    "the database."
                )
                bad.add(key)
                continue
            row.names[key] = named
            if row.instance.pk is not None and self.value_export(row.instance, key) != named:
                row.changed.add(key)

    def _related_model(self, key: str) -> type[models.Model]:
        model = self.model._meta.get_field(key).related_model
        assert isinstance(model, type) and issubclass(model, models.Model)
        return model

    def _fill(self, row: Row, values: Mapping[str, Any], bad: set[str], problems: list[str]) -> None:
        """Set the row's fields from the file (an absent key means the model's default), note whether anything
        differs from the database, and run the model's own validators."""
        instance = row.instance
        for name in self.fields:
            model_field = instance._meta.get_field(name)
            row.take(name, model_field.to_python(values[name]) if name in values else model_field.get_default())
        # the rows it names and its parent may not be saved yet (their names were checked), and the keys set
        # apart are the hooks' to check
        exclude = [*bad, *self.references, *self.set_apart, *((self.parent_field,) if self.parent_field else ())]
        try:
            instance.full_clean(exclude=exclude)
        except ValidationError as exc:
            row.valid = False
            for name, messages in exc.message_dict.items():
                place = row.path if name == NON_FIELD_ERRORS else f"{row.path}.{self.field_key(name)}"
                problems.append(f"{place}: {' '.join(messages)}")
        if bad:
            row.valid = False

    def values_check(self, values: dict[str, Any], bad: set[str], path: str, context: ImportContext) -> None:
        """Hook: more checks of the table's values, before its name is looked at (a contact's roles)."""

    def row_read(self, row: Row, values: dict[str, Any], bad: set[str], context: ImportContext) -> None:
        """Hook: what the section stores apart (`set_apart`), before the model's fields are set and validated."""

    def row_filled(self, row: Row, values: dict[str, Any], bad: set[str], context: ImportContext) -> None:
        """Hook: after the model's fields are set and validated."""

    def field_key(self, field: str) -> str:
        """Hook: the file's key for a model field, in a message about it (where `row_read` stores a key set apart
        in a field of another name)."""
        return field

    def rows_check(self, rows: list[Row], context: ImportContext) -> None:
        """Hook: checks that need the early sections' rows saved (a check's config names a node)."""

    # --- Import: saving and pruning -----------------------------------------------------------------------

    def save(self, rows: list[Row], context: ImportContext) -> None:
        """Save the rows that validated with their children (the rows they name are saved by now); with prune,
        delete the children their tables no longer have."""
        related = {key: self._related_model(key)._default_manager.in_bulk(field_name="name") for key in self.references}
        for row in rows:
            if not row.sound:
                continue
            self.row_save(row, context, **{key: related[key][named] for key, named in row.names.items()})
            child = self.children
            if child is None:
                continue
            for child_row in row.children:
                child.row_save(child_row, context, **{child.parent_field: row.instance})
            if context.prune:
                kept = [child_row.instance.name for child_row in row.children]
                for stale in getattr(row.instance, child.name).exclude(name__in=kept).order_by("name"):
                    row.pruned.append(child.instance_delete(stale, context))
        self.rows_saved(rows, context)

    def row_save(self, row: Row, context: ImportContext, **relation: models.Model) -> None:
        """Save the row if it is new or differs, and say so in the report."""
        self.row_saving(row, context)
        outcome = row.outcome
        for name, related in relation.items():
            setattr(row.instance, name, related)  # it may have been created moments ago
        if outcome == "created":
            row.instance.save()
        elif outcome == "updated":
            # only what the file sets: the check engine may be writing states and results right now
            row.instance.save(update_fields=sorted(row.changed))
        row.saved = outcome
        getattr(context.report, outcome).append(row.label)

    def row_saving(self, row: Row, context: ImportContext) -> None:
        """Hook: just before a row is saved (what it changed may call for more, e.g. running it soon)."""

    def rows_saved(self, rows: list[Row], context: ImportContext) -> None:
        """Hook: once the section's rows are saved."""

    def prune(self, rows: list[Row], context: ImportContext) -> None:
        """Delete the rows the file does not have, except those a `kept` rule keeps."""
        stale: models.QuerySet[Any] = self.model._default_manager.exclude(name__in=[row.name for row in rows])
        if self.kept:
            stale = stale.annotate(**{f"kept_{index}": keep.count for index, keep in enumerate(self.kept)})
        for instance in stale.order_by("name"):
            counts = [(keep, getattr(instance, f"kept_{index}")) for index, keep in enumerate(self.kept)]
            keep, count = next(((keep, count) for keep, count in counts if count), (None, 0))
            if keep is None:
                self.instance_delete(instance, context)
            elif keep.held is not None:
                context.problems.append(
                    f"{self.name}: {self.kind} {instance.name} is not in the file, but it {keep.held(count)}: "
                    f"keep it in the file{keep.advice}."
                )

    def instance_delete(self, instance: Any, context: ImportContext) -> str:
        """Delete a row the file no longer has; what goes with it (nodes, checks) is reported too."""
        label = f"{self.kind} {instance}"
        child = self.children
        cascaded = (
            [] if child is None else [f"{child.kind} {row}" for row in getattr(instance, child.name).order_by("name")]
        )
        context.report.deleted.extend([label, *cascaded])
        instance.delete()
        return label
