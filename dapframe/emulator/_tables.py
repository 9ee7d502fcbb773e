"""Table specifications of the emulated DAP namespaces.

A :class:`TableSpec` is the single source of truth for one emulated table: it
yields the JSON Schema document served by ``GET .../schema`` (:func:`json_schema`),
the Arrow schema of the internal *records tables* (:func:`arrow_schema`, see
``docs/emulator-internals.md``) and drives the synthetic data generator in
:mod:`dapframe.emulator._data`.

Columns, types and nullability follow section 12 of the DAP reference
(``dap-query-api.md``). Enum member lists there are partial; where the reference
says so, a plausible member list is used. Every string enum ends with the
``__dap_unspecified__`` sentinel (section 6.6).

Decisions worth knowing:

- ``canvas_logs.web_logs.http_status`` is kind ``int32`` (the reference calls it
  an "integer enum"); an integer column keeps numeric comparisons working in
  every target database and needs no sentinel member.
- ``canvas_logs.web_logs.user_agent`` is ``sentinel_text`` (the reference says
  "≤255 or oversized sentinel"; the sentinel form has no ``maxLength``).
- Integer and float kinds map to ``format`` equal to the kind (``int64`` ->
  ``"int64"``), as in the section 7 example.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

import pyarrow as pa

__all__ = [
    "JSON_SCHEMA_DIALECT",
    "OVERSIZED",
    "TABLES",
    "TIMESTAMP_TYPE",
    "UNSPECIFIED",
    "Column",
    "ColumnKind",
    "TableSpec",
    "arrow_schema",
    "arrow_type",
    "bump",
    "json_schema",
]

#: Enum sentinel: the source value is not a published member (reference 6.6).
UNSPECIFIED: Final = "__dap_unspecified__"
#: Text sentinel: the value was too large to export (reference 6.6).
OVERSIZED: Final = "__dap_oversized_truncated__"

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

ColumnKind = Literal[
    "int16",
    "int32",
    "int64",
    "float32",
    "float64",
    "decimal",
    "bool",
    "string",
    "text",
    "sentinel_text",
    "timestamp",
    "date",
    "uuid",
    "ip",
    "enum",
    "enum_array",
    "struct",
]

_INT_KINDS: Final = frozenset({"int16", "int32", "int64"})
_FLOAT_KINDS: Final = frozenset({"float32", "float64"})


@dataclass(frozen=True)
class Column:
    """One column of an emulated table.

    Parameters
    ----------
    name : str
        Column name (``value.<name>`` / ``key.<name>`` in records tables).
    kind : ColumnKind
        Logical kind; see ``docs/emulator-internals.md`` for the Arrow and JSON
        Schema mapping.
    required : bool
        ``True`` when the column is never null (listed in ``value.required``).
    max_length : int or None
        Maximum length in characters for kind ``string``.
    enum : tuple of str
        Members for kinds ``enum`` and ``enum_array``, ending with
        ``__dap_unspecified__``.
    struct_fields : tuple of str
        Field names of a ``struct`` column (all string-valued).
    precision, scale : int or None
        Decimal precision and scale for kind ``decimal``.
    description : str
        Human-readable column description (JSON Schema ``description``).
    """

    name: str
    kind: ColumnKind
    required: bool = False
    max_length: int | None = None
    enum: tuple[str, ...] = ()
    struct_fields: tuple[str, ...] = ()
    precision: int | None = None
    scale: int | None = None
    description: str = ""


@dataclass(frozen=True)
class TableSpec:
    """Specification of one emulated table at one schema version.

    Parameters
    ----------
    namespace : str
        DAP namespace, e.g. ``"canvas"``.
    name : str
        Table name, e.g. ``"submissions"``.
    key : Column
        The single primary-key column.
    columns : tuple of Column
        Value columns in schema order (the key is not repeated here).
    title : str
        One-line table description (JSON Schema ``title``).
    append_only : bool
        ``True`` for log tables (``web_logs``): rows are only appended, never
        updated or deleted, and a key may repeat.
    version : int
        Schema version, starting at 1; :func:`bump` increments it.
    """

    namespace: str
    name: str
    key: Column
    columns: tuple[Column, ...]
    title: str
    append_only: bool = False
    version: int = 1

    def column(self, name: str) -> Column:
        """Return the value column called ``name``.

        Raises
        ------
        KeyError
            If the table has no such value column.
        """
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Names of the value columns in schema order."""
        return tuple(c.name for c in self.columns)


# --------------------------------------------------------------------------------------
# Arrow and JSON Schema mappings
# --------------------------------------------------------------------------------------

#: Arrow type of ``meta.ts`` and of every ``timestamp`` column.
TIMESTAMP_TYPE: Final = pa.timestamp("us", tz="UTC")


def arrow_type(column: Column) -> pa.DataType:
    """Return the Arrow type of a column in records tables.

    Parameters
    ----------
    column : Column
        The column.

    Returns
    -------
    pyarrow.DataType
        Per the contract: integers/floats/bool/date32/decimal128 natively,
        timestamps as ``timestamp[us, UTC]``, everything else (including
        struct and array columns, which hold compact JSON text) as ``string``.
    """
    kind = column.kind
    if kind == "int16":
        return pa.int16()
    if kind == "int32":
        return pa.int32()
    if kind == "int64":
        return pa.int64()
    if kind == "float32":
        return pa.float32()
    if kind == "float64":
        return pa.float64()
    if kind == "decimal":
        assert column.precision is not None and column.scale is not None
        return pa.decimal128(column.precision, column.scale)
    if kind == "bool":
        return pa.bool_()
    if kind == "timestamp":
        return TIMESTAMP_TYPE
    if kind == "date":
        return pa.date32()
    return pa.string()


def arrow_schema(spec: TableSpec, *, incremental: bool) -> pa.Schema:
    """Return the Arrow schema of a records table for ``spec``.

    Parameters
    ----------
    spec : TableSpec
        Table specification (its current version decides the value columns).
    incremental : bool
        Include ``meta.action`` (incremental results) or not (snapshots).

    Returns
    -------
    pyarrow.Schema
        ``meta.ts``, [``meta.action``], ``key.<pk>``, ``value.<col>``... in that
        order. Meta and key fields are non-nullable; value fields are nullable
        (``D`` rows carry nulls in every value column).
    """
    fields: list[pa.Field] = [pa.field("meta.ts", TIMESTAMP_TYPE, nullable=False)]
    if incremental:
        fields.append(pa.field("meta.action", pa.string(), nullable=False))
    fields.append(pa.field(f"key.{spec.key.name}", arrow_type(spec.key), nullable=False))
    fields.extend(pa.field(f"value.{c.name}", arrow_type(c), nullable=True) for c in spec.columns)
    return pa.schema(fields)


def _property(column: Column) -> dict[str, Any]:
    """JSON Schema property of one column (section 7 vocabulary only)."""
    kind = column.kind
    prop: dict[str, Any]
    if kind in _INT_KINDS or kind in _FLOAT_KINDS:
        prop = {"type": "integer" if kind in _INT_KINDS else "number", "format": kind}
    elif kind == "decimal":
        assert column.precision is not None and column.scale is not None
        bound = 10 ** (column.precision - column.scale)
        prop = {
            "type": "number",
            "exclusiveMinimum": -bound,
            "exclusiveMaximum": bound,
            "multipleOf": 10.0**-column.scale,
        }
    elif kind == "bool":
        prop = {"type": "boolean"}
    elif kind == "string":
        prop = {"type": "string", "maxLength": column.max_length}
    elif kind == "text":
        prop = {"type": "string"}
    elif kind == "sentinel_text":
        prop = {"oneOf": [{"type": "string", "const": OVERSIZED}, {"type": "string"}]}
    elif kind == "timestamp":
        prop = {"type": "string", "format": "date-time"}
    elif kind == "date":
        prop = {"type": "string", "format": "date"}
    elif kind == "uuid":
        prop = {"type": "string", "format": "uuid"}
    elif kind == "ip":
        prop = {
            "oneOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]
        }
    elif kind == "enum":
        prop = {"type": "string", "enum": list(column.enum)}
    elif kind == "enum_array":
        prop = {"type": "array", "items": {"type": "string", "enum": list(column.enum)}}
    elif kind == "struct":
        prop = {
            "type": "object",
            "properties": {
                f: {"type": "string", "description": f"The {f} setting."}
                for f in column.struct_fields
            },
            "additionalProperties": False,
            "title": f"Type extracted from column {column.name}",
        }
    else:  # pragma: no cover - ColumnKind is exhaustive
        raise ValueError(f"unknown column kind {kind!r}")
    prop["description"] = column.description
    return prop


def json_schema(spec: TableSpec) -> dict[str, Any]:
    """Return the table schema document served by the schema endpoint.

    Parameters
    ----------
    spec : TableSpec
        Table specification.

    Returns
    -------
    dict
        A JSON Schema (draft 2020-12) describing one record, shaped like the
        section 7 example: ``meta``/``key``/``value`` objects, each with
        ``additionalProperties: false``, ``required`` lists and descriptions.
        Only keywords of the section 7 vocabulary are used, so the official
        client can build DDL from it.
    """
    required = [c.name for c in spec.columns if c.required]
    meta = {
        "type": "object",
        "properties": {
            "ts": {
                "type": "string",
                "format": "date-time",
                "description": "Time of the last change of this record in the data lake (UTC).",
            },
            "action": {
                "type": "string",
                "enum": ["U", "D"],
                "description": "U: insert or update (incl. soft delete); D: hard delete.",
            },
        },
        "additionalProperties": False,
        "required": ["ts"],
        "description": "Record metadata.",
    }
    key = {
        "type": "object",
        "properties": {spec.key.name: _property(spec.key)},
        "additionalProperties": False,
        "required": [spec.key.name],
        "title": spec.title,
        "description": "Primary key of the record.",
    }
    value = {
        "type": "object",
        "properties": {c.name: _property(c) for c in spec.columns},
        "additionalProperties": False,
        "required": required,
        "title": spec.title,
        "description": "Non-key columns of the record; absent for hard deletes.",
    }
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "type": "object",
        "properties": {"meta": meta, "key": key, "value": value},
        "additionalProperties": False,
        "required": ["key"],
    }


def bump(spec: TableSpec) -> TableSpec:
    """Return the next schema version of ``spec``.

    The new version adds a nullable ``string(255)`` column
    ``emulator_note_v<new version>`` and inserts the member
    ``emulator_state_v<new version>`` before ``__dap_unspecified__`` in the
    first ``enum`` column (if any). Both are additive changes, which is how DAP
    evolves schemas without breaking consumers.

    Parameters
    ----------
    spec : TableSpec
        Current version.

    Returns
    -------
    TableSpec
        The bumped copy (``version + 1``); ``spec`` is unchanged.
    """
    version = spec.version + 1
    note = Column(
        name=f"emulator_note_v{version}",
        kind="string",
        max_length=255,
        description=f"Free-form note added by emulator schema version {version}.",
    )
    columns = list(spec.columns)
    for i, col in enumerate(columns):
        if col.kind == "enum":
            members = [m for m in col.enum if m != UNSPECIFIED]
            members += [f"emulator_state_v{version}", UNSPECIFIED]
            columns[i] = dataclasses.replace(col, enum=tuple(members))
            break
    columns.append(note)
    return dataclasses.replace(spec, columns=tuple(columns), version=version)


# --------------------------------------------------------------------------------------
# Table definitions (compact notation parsed below)
# --------------------------------------------------------------------------------------

# Descriptions of columns that recur across tables; table-specific ones are keyed
# "table.column". Anything else gets a description derived from the name.
_DESCRIPTIONS: Final[dict[str, str]] = {
    "id": "The unique identifier of the record.",
    "created_at": "Timestamp when the record was created.",
    "updated_at": "Timestamp when the record was last updated.",
    "deleted_at": "Timestamp when the record was deleted.",
    "workflow_state": "Life-cycle state of the record.",
    "name": "Name of the record.",
    "uuid": "Canvas-generated globally unique identifier string.",
    "integration_id": "Integration identifier assigned by the institution's SIS.",
    "sis_source_id": "Identifier of the record in the student information system.",
    "sis_batch_id": "Identifier of the SIS import batch that last touched the record.",
    "lti_context_id": "LTI context identifier used by external tools.",
    "storage_quota": "Storage quota in bytes.",
    "time_zone": "Default time zone (IANA name).",
    "locale": "Preferred locale.",
    "start_at": "Start of the record's active period.",
    "end_at": "End of the record's active period.",
    "user_id": "Foreign key to users.id.",
    "course_id": "Foreign key to courses.id.",
    "account_id": "Foreign key to accounts.id.",
    "enrollment_term_id": "Foreign key to enrollment_terms.id.",
    "course_section_id": "Foreign key to course_sections.id.",
    "assignment_id": "Foreign key to assignments.id.",
    "grading_standard_id": "Foreign key to the grading standard in use.",
    "accounts.name": "Display name of the account.",
    "accounts.parent_account_id": "Foreign key to the parent account (null for a root account).",
    "users.name": "Full display name of the user.",
    "users.sortable_name": "Name used for sorting, usually 'Last, First'.",
    "users.short_name": "Short display name of the user.",
    "users.pronouns": "Pronouns chosen by the user.",
    "pseudonyms.unique_id": "Login name used to authenticate.",
    "pseudonyms.login_count": "Number of successful logins.",
    "pseudonyms.failed_login_count": "Number of failed login attempts.",
    "courses.name": "Full name of the course.",
    "courses.course_code": "Short course code.",
    "courses.syllabus_body": "HTML body of the course syllabus.",
    "courses.settings": "Course settings flags.",
    "course_sections.name": "Name of the section.",
    "enrollments.type": "Enrollment type (role base type).",
    "enrollments.role_id": "Foreign key to the role of the enrollment.",
    "assignments.title": "Title of the assignment.",
    "assignments.description": "HTML description of the assignment.",
    "assignments.submission_types": "Allowed submission types.",
    "assignments.context_id": "Foreign key to the course the assignment belongs to.",
    "assignments.context_type": "Type of the owning context.",
    "assignments.turnitin_settings": "Turnitin plagiarism-check settings.",
    "submissions.body": "Text body of an online text entry submission.",
    "submissions.score": "Raw score given by the grader.",
    "submissions.grade": "Grade as shown to the student.",
    "submissions.points_deducted": "Points deducted by the late policy.",
    "submissions.late_policy_status": "Late-policy status set by the grader.",
    "submissions.anonymous_id": "Short identifier used for anonymous grading.",
    "web_logs.timestamp": "Time when the request was handled.",
    "web_logs.url": "Requested URL.",
    "web_logs.http_status": "HTTP status code of the response (integer).",
    "web_logs.remote_ip": "IP address of the client.",
    "web_logs.user_agent": "User-Agent header of the request.",
    "web_logs.session_id": "Session identifier.",
}

_TYPE_RE: Final = re.compile(
    r"^(?P<name>\w+) (?P<type>int16|int32|int64|float32|float64|bool|ts|date|text|stext|uuid|ip"
    r"|s\d+|decimal\(\d+,\d+\)|enum\([^)]*\)|enum_array\([^)]*\)|struct\([^)]*\))(?P<req>!?)$"
)


def _describe(table: str, name: str) -> str:
    """Description of a column: curated if known, else derived from its name."""
    if f"{table}.{name}" in _DESCRIPTIONS:
        return _DESCRIPTIONS[f"{table}.{name}"]
    if name in _DESCRIPTIONS:
        return _DESCRIPTIONS[name]
    words = name.replace("_", " ")
    if name.endswith("_at"):
        return f"Timestamp: {words[:-3]}."
    if name.endswith("_id"):
        return f"Identifier: {words[:-3]}."
    return f"{words[0].upper()}{words[1:]}."


def _parse_column(table: str, line: str) -> Column:
    """Parse one ``name type[!]`` line of the compact notation."""
    m = _TYPE_RE.match(line)
    if m is None:
        raise ValueError(f"bad column line {line!r}")
    name, typ, required = m["name"], m["type"], m["req"] == "!"
    desc = _describe(table, name)
    simple: dict[str, ColumnKind] = {
        "int16": "int16",
        "int32": "int32",
        "int64": "int64",
        "float32": "float32",
        "float64": "float64",
        "bool": "bool",
        "ts": "timestamp",
        "date": "date",
        "text": "text",
        "stext": "sentinel_text",
        "uuid": "uuid",
        "ip": "ip",
    }
    if typ in simple:
        return Column(name, simple[typ], required, description=desc)
    if re.fullmatch(r"s\d+", typ):
        return Column(name, "string", required, max_length=int(typ[1:]), description=desc)
    inner = typ[typ.index("(") + 1 : -1]
    parts = tuple(p.strip() for p in inner.split(",") if p.strip())
    if typ.startswith("decimal("):
        p, s = (int(x) for x in parts)
        return Column(name, "decimal", required, precision=p, scale=s, description=desc)
    if typ.startswith("struct("):
        return Column(name, "struct", required, struct_fields=parts, description=desc)
    kind: ColumnKind = "enum_array" if typ.startswith("enum_array(") else "enum"
    return Column(name, kind, required, enum=(*parts, UNSPECIFIED), description=desc)


def _spec(
    namespace: str, name: str, title: str, body: str, *, append_only: bool = False
) -> TableSpec:
    """Build a :class:`TableSpec` from the compact notation (first line = key)."""
    lines: list[str] = []
    pending = ""
    for raw in body.strip().splitlines():
        pending += raw.strip()
        # A member list may continue on the next line until its parenthesis closes.
        if pending and pending.count("(") == pending.count(")"):
            lines.append(pending)
            pending = ""
    if pending:
        raise ValueError(f"unbalanced column line {pending!r}")
    cols = [_parse_column(name, ln) for ln in lines]
    key = dataclasses.replace(cols[0], required=True)
    return TableSpec(namespace, name, key, tuple(cols[1:]), title, append_only=append_only)


_ACCOUNTS = _spec(
    "canvas",
    "accounts",
    "Accounts: the organisational units (institution, faculties, departments) owning courses.",
    """
    id int64!
    name s255
    deleted_at ts
    parent_account_id int64
    current_sis_batch_id int64
    storage_quota int64
    default_storage_quota int64
    default_locale s255
    default_user_storage_quota int64
    default_group_storage_quota int64
    integration_id s255
    lti_context_id s255
    consortium_parent_account_id int64
    course_template_id int64
    created_at ts!
    updated_at ts!
    workflow_state enum(active,suspended,deleted)!
    default_time_zone s255
    uuid s255
    sis_source_id s255
    """,
)

_USERS = _spec(
    "canvas",
    "users",
    "Users: people with a Canvas account (students, teachers, observers, admins).",
    """
    id int64!
    deleted_at ts
    storage_quota int64
    lti_context_id s255
    created_at ts!
    updated_at ts!
    workflow_state enum(registered,pre_registered,creation_pending,pending_approval,deleted)!
    sortable_name s255
    avatar_image_url s255
    avatar_image_source s255
    avatar_image_updated_at ts
    short_name s255
    last_logged_out ts
    pronouns text
    merged_into_user_id int64
    locale s255
    name s255
    time_zone s255
    uuid s255
    school_name s255
    school_position s255
    public bool
    """,
)

_PSEUDONYMS = _spec(
    "canvas",
    "pseudonyms",
    "Pseudonyms: login credentials of users, one user may have several.",
    """
    id int64!
    deleted_at ts
    integration_id s255
    user_id int64!
    created_at ts!
    updated_at ts!
    workflow_state enum(active,deleted,suspended)!
    account_id int64!
    sis_batch_id int64
    unique_id s255!
    login_count int32!
    failed_login_count int32!
    last_request_at ts
    last_login_at ts
    current_login_at ts
    last_login_ip s255
    current_login_ip s255
    sis_user_id s255
    authentication_provider_id int64
    position int32
    """,
)

_COURSES = _spec(
    "canvas",
    "courses",
    "Courses: the central unit of teaching in Canvas.",
    """
    id int64!
    storage_quota int64
    integration_id s255
    lti_context_id s255
    sis_batch_id int64
    created_at ts!
    updated_at ts!
    workflow_state enum(created,claimed,available,completed,deleted)!
    account_id int64!
    grading_standard_id int64
    start_at ts
    sis_source_id s255
    group_weighting_scheme s255
    conclude_at ts
    is_public bool
    allow_student_wiki_edits bool
    syllabus_body stext
    default_wiki_editing_roles s255
    wiki_id int64
    allow_student_organized_groups bool!
    course_code s255
    default_view s255
    abstract_course_id int64
    enrollment_term_id int64!
    open_enrollment bool
    tab_configuration text
    turnitin_comments stext
    self_enrollment bool
    license s255
    indexed bool
    restrict_enrollments_to_course_dates bool
    template_course_id int64
    replacement_course_id int64
    public_description stext
    self_enrollment_code s255
    self_enrollment_limit int32
    turnitin_id int64
    show_announcements_on_home_page bool
    home_page_announcement_limit int32
    latest_outcome_import_id int64
    grade_passback_setting s255
    template bool!
    homeroom_course bool!
    sync_enrollments_from_homeroom bool!
    homeroom_course_id int64
    locale s255
    name s255
    time_zone s255
    uuid s255
    settings struct(hide_final_grade,hide_distribution_graphs,restrict_student_past_view,
        restrict_student_future_view,course_format,allow_student_discussion_topics,
        lock_all_announcements)
    """,
)

_COURSE_SECTIONS = _spec(
    "canvas",
    "course_sections",
    "Course sections: groups of enrollments within a course.",
    """
    id int64!
    name s255!
    course_id int64!
    integration_id s255
    created_at ts!
    updated_at ts!
    workflow_state enum(active,deleted)!
    sis_batch_id int64
    start_at ts
    end_at ts
    sis_source_id s255
    default_section bool
    accepting_enrollments bool
    restrict_enrollments_to_section_dates bool
    nonxlist_course_id int64
    enrollment_term_id int64
    """,
)

_ENROLLMENT_TERMS = _spec(
    "canvas",
    "enrollment_terms",
    "Enrollment terms: the academic periods courses belong to.",
    """
    id int64!
    name s255
    integration_id s255
    created_at ts!
    updated_at ts!
    workflow_state enum(active,deleted)!
    sis_batch_id int64
    start_at ts
    end_at ts
    sis_source_id s255
    term_code s255
    grading_period_group_id int64
    """,
)

_ENROLLMENTS = _spec(
    "canvas",
    "enrollments",
    "Enrollments: a user's membership in a course section with a role.",
    """
    id int64!
    sis_batch_id int64
    user_id int64!
    created_at ts!
    updated_at ts!
    workflow_state enum(active,invited,creation_pending,deleted,rejected,completed,inactive)!
    role_id int64!
    start_at ts
    end_at ts
    course_id int64!
    completed_at ts
    course_section_id int64!
    grade_publishing_status s255!
    associated_user_id int64
    self_enrolled bool
    limit_privileges_to_course_section bool!
    last_activity_at ts
    total_activity_time int32
    sis_pseudonym_id int64
    last_attended_at ts
    type enum(StudentEnrollment,TeacherEnrollment,TaEnrollment,DesignerEnrollment,
        ObserverEnrollment,StudentViewEnrollment)!
    """,
)

_ASSIGNMENTS = _spec(
    "canvas",
    "assignments",
    "Assignments: gradable work items of a course.",
    """
    id int64!
    integration_id s255
    lti_context_id text
    created_at ts
    updated_at ts
    workflow_state enum(published,unpublished,deleted,duplicating,fail_to_import,
        failed_to_duplicate,failed_to_import,failed_to_migrate,outcome_alignment_cloning,
        failed_to_clone_outcome_alignment)!
    due_at ts
    unlock_at ts
    lock_at ts
    points_possible float64
    grading_type enum(pass_fail,percent,letter_grade,gpa_scale,points,not_graded)
    submission_types enum_array(online_quiz,online_text_entry,online_url,online_upload,
        media_recording,discussion_topic,external_tool,not_graded,student_annotation,
        default_external_tool)!
    assignment_group_id int64
    grading_standard_id int64
    submissions_downloads int32!
    peer_review_count int32!
    peer_reviews_due_at ts
    peer_reviews_assigned bool!
    peer_reviews bool!
    context_id int64!
    context_type enum(Course)!
    automatic_peer_reviews bool!
    all_day bool!
    all_day_date date
    could_be_locked bool!
    migration_id s255
    grade_group_students_individually bool!
    anonymous_peer_reviews bool!
    turnitin_enabled bool!
    allowed_extensions s255
    group_category_id int64
    freeze_on_copy bool!
    only_visible_to_overrides bool!
    post_to_sis bool!
    moderated_grading bool!
    grades_published_at ts
    omit_from_final_grade bool!
    intra_group_peer_reviews bool!
    vericite_enabled bool!
    anonymous_instructor_annotations bool!
    duplicate_of_id int64
    anonymous_grading bool!
    graders_anonymous_to_graders bool!
    grader_count int32!
    grader_comments_visible_to_graders bool!
    grader_section_id int64
    final_grader_id int64
    grader_names_visible_to_final_grader bool!
    allowed_attempts int32
    sis_source_id text
    annotatable_attachment_id int64
    important_dates bool!
    description text
    position int32
    title s255
    turnitin_settings struct(originality_report_visibility,s_paper_check,internet_check,
        journal_check,exclude_biblio,exclude_quoted,exclude_small_matches_type,
        exclude_small_matches_value,submit_papers_to)
    parent_assignment_id int64
    type enum(Assignment,SubAssignment)
    has_sub_assignments bool
    """,
)

_SUBMISSIONS = _spec(
    "canvas",
    "submissions",
    "Submissions: a student's work (or its absence) for an assignment, with its grade.",
    """
    id int64!
    attachment_id int64
    course_id int64!
    user_id int64!
    created_at ts
    updated_at ts
    workflow_state enum(submitted,unsubmitted,graded,pending_review,deleted)!
    assignment_id int64!
    media_comment_id s255
    media_comment_type enum(audio/mp4,audio/mpeg,audio/webm,video/mp4,video/webm,video/quicktime)
    attachment_ids text
    posted_at ts
    group_id int64
    score float64
    attempt int32
    submitted_at ts
    quiz_submission_id int64
    extra_attempts int32
    grading_period_id int64
    grade s255
    submission_type enum(online_text_entry,online_url,online_upload,online_quiz,media_recording,
        discussion_topic,external_tool,basic_lti_launch,online_file_upload,student_annotation)
    processed bool
    grade_matches_current_submission bool
    published_score float64
    published_grade s255
    graded_at ts
    student_entered_score float64
    grader_id int64
    submission_comments_count int32
    media_object_id int64
    turnitin_data text
    cached_due_date ts
    excused bool
    graded_anonymously bool
    late_policy_status s16
    points_deducted decimal(6,2)
    seconds_late_override int64
    lti_user_id text
    anonymous_id s5
    last_comment_at ts
    cached_quiz_lti bool!
    cached_tardiness s16
    resource_link_lookup_uuid uuid
    redo_request bool!
    body text
    url s255
    """,
)

_WEB_LOGS = _spec(
    "canvas_logs",
    "web_logs",
    "Web logs: one row per HTTP request handled by Canvas (30-day retention).",
    """
    id uuid!
    timestamp ts!
    user_id int64
    real_user_id int64
    course_id int64
    quiz_id int64
    discussion_id int64
    conversation_id int64
    assignment_id int64
    url text
    http_method enum(GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS)
    http_status int32
    http_version enum(HTTP/1.0,HTTP/1.1,HTTP/2.0)
    remote_ip ip
    interaction_micros int32
    web_application_controller s255
    web_application_action s255
    web_application_context_type enum(Course,Account,User,Group,CourseSection)
    web_application_context_id int64
    session_id uuid
    developer_key_id int64
    participated bool
    user_agent stext
    """,
    append_only=True,
)

#: Registry of every emulated table at schema version 1, keyed by (namespace, table).
TABLES: Final[dict[tuple[str, str], TableSpec]] = {
    (s.namespace, s.name): s
    for s in (
        _ACCOUNTS,
        _USERS,
        _PSEUDONYMS,
        _COURSES,
        _COURSE_SECTIONS,
        _ENROLLMENT_TERMS,
        _ENROLLMENTS,
        _ASSIGNMENTS,
        _SUBMISSIONS,
        _WEB_LOGS,
    )
}
