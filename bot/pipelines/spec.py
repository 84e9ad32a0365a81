"""A pipeline's definition and its validation (pure, apart from importing the source callable
to prove it loads — as Coze mappings are checked).

A pipeline is a source (a Python callable from an allow-listed module, or an SQL query) + a
target bitable table + a key + a schedule. `partition` (a date or text field, e.g. 日期) makes a
run for a day own the table rows whose partition value is that day: rows of that day no longer
in the source are deleted, other days are untouched. Without one the pipeline mirrors the
source: rows absent from it are deleted.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot import callables
from bot.pipelines import cadence

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
APP_TOKEN = re.compile(r"^[A-Za-z0-9]{8,64}$")
TABLE_ID = re.compile(r"^tbl[A-Za-z0-9]{4,60}$")
PROVIDER = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
CHAT_ID = re.compile(r"^oc_[A-Za-z0-9]{1,64}$")
MAX_FIELD_NAME = 100
SQL_START = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)
SQL_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
SQL_DAY = re.compile(r"(?<![:\w]):day\b")


class SpecError(ValueError):
    """A definition that cannot work, every reason at once (answered 422 by an API)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def field_name_problem(name: Any, what: str) -> str | None:
    """Field names come from users and go into requests as JSON: text without control
    characters or surrounding blanks, as bitable allows them."""
    if not isinstance(name, str) or not name or len(name) > MAX_FIELD_NAME:
        return f"{what} {name!r} is not a field name (1 to {MAX_FIELD_NAME} characters)"
    if name != name.strip() or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"{what} {name!r} has surrounding blanks or control characters"
    return None


class PythonSource(BaseModel):
    """`callable(ctx: FetchContext)` returns rows (dicts keyed by target field name) or a
    FetchResult; called once per day."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["python"]
    callable: str = Field(min_length=3, max_length=300)


class SqlSource(BaseModel):
    """One SELECT, run read-only on the bridge's database or on `url` (any SQLAlchemy URL);
    a partitioned pipeline's query takes the day as `:day`."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["sql"]
    query: str = Field(min_length=6, max_length=20_000)
    url: str | None = Field(default=None, max_length=1000)

    @field_validator("query")
    @classmethod
    def _one_select(cls, query: str) -> str:
        bare = SQL_COMMENT.sub(" ", query).strip().rstrip(";").strip()
        if not SQL_START.match(bare):
            raise ValueError("an SQL source is one SELECT (or WITH … SELECT) statement")
        if ";" in bare:
            raise ValueError("an SQL source is one statement: no ';' inside it")
        return query

    @field_validator("url")
    @classmethod
    def _sqlalchemy_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(url)
        except ArgumentError as exc:
            raise ValueError("url is not an SQLAlchemy database URL") from exc
        return url

    def uses_day(self) -> bool:
        return bool(SQL_DAY.search(SQL_COMMENT.sub(" ", self.query)))


Source = Annotated[PythonSource | SqlSource, Field(discriminator="kind")]


def parse_bitable_url(url: str) -> tuple[str, str]:
    """(app_token, table_id) of `https://x.feishu.cn/base/<app_token>?table=<table_id>`."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not a link")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) >= 2 and segments[0] == "wiki":
        raise ValueError("a wiki link names a page, not a base: open the base and copy its /base/ link")
    if len(segments) < 2 or segments[0] != "base":
        raise ValueError(f"{url!r} is not a bitable link (https://…/base/<app_token>?table=<table_id>)")
    tables = parse_qs(parts.query).get("table") or []
    if not tables:
        raise ValueError(f"{url!r} names no table: open the table and copy the link (it has ?table=tbl…)")
    return segments[1], tables[0]


class Target(BaseModel):
    """The bitable table written to: `app_token` + `table_id`, or a bitable link."""

    model_config = ConfigDict(extra="forbid")

    app_token: str
    table_id: str

    @model_validator(mode="before")
    @classmethod
    def _from_link(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = {"url": value}
        if isinstance(value, dict) and "url" in value:
            rest = {k: v for k, v in value.items() if k != "url"}
            if rest:
                raise ValueError("give either url or app_token and table_id")
            app_token, table_id = parse_bitable_url(str(value["url"]))
            return {"app_token": app_token, "table_id": table_id}
        return value

    @field_validator("app_token")
    @classmethod
    def _app_token(cls, value: str) -> str:
        if not APP_TOKEN.match(value):
            raise ValueError(f"app_token {value!r} is not a bitable app token")
        return value

    @field_validator("table_id")
    @classmethod
    def _table_id(cls, value: str) -> str:
        if not TABLE_ID.match(value):
            raise ValueError(f"table_id {value!r} is not a table id (tbl…)")
        return value


class PipelineSpec(BaseModel):
    """What `pipeline add` takes (JSON or YAML) and the `pipelines.spec` column stores."""

    model_config = ConfigDict(extra="forbid")

    name: str
    source: Source
    target: Target
    key: list[str] = Field(min_length=1, max_length=10)
    partition: str | None = None
    schedule: str | None = None  # None: runs only when started by hand
    lag_days: int = Field(default=1, ge=0, le=31)  # a scheduled run covers today − lag_days
    provider: str | None = None  # the OAuth provider whose token the source needs
    group_by: str | None = None  # the summary counts rows per value of this field (账户ID)
    group_label: str | None = Field(default=None, max_length=20)  # 账户; default: from group_by
    expected_groups: list[str] = Field(default_factory=list, max_length=1000)
    sum_fields: list[str] = Field(default_factory=list, max_length=20)
    chat_id: str | None = None  # where the result card goes
    # Rows of the run's days (all rows, for a mirror) that the source no longer gives are deleted;
    # false: upsert only — what lets several pipelines share a table without deleting each other's.
    delete_missing: bool = True
    # A day the source gives no rows for at all (an empty mirror) keeps its rows — an outage that
    # answers "nothing" must not empty the table — unless this is true.
    delete_when_empty: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"name {value!r}: lowercase letters, digits, - and _, starting with a letter")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is None:
            return None
        cadence.parse_schedule(value)
        return " ".join(value.strip().lower().split())

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str | None) -> str | None:
        if value is not None and not PROVIDER.match(value):
            raise ValueError(f"provider {value!r} is not a provider name")
        return value

    @field_validator("chat_id")
    @classmethod
    def _chat(cls, value: str | None) -> str | None:
        if value is not None and not CHAT_ID.match(value):
            raise ValueError(f"chat_id {value!r} is not a chat id (oc_…)")
        return value

    @model_validator(mode="after")
    def _fields(self) -> PipelineSpec:
        problems = [p for name in self.key if (p := field_name_problem(name, "key field"))]
        for what, name in (("partition", self.partition), ("group_by", self.group_by)):
            if name is not None and (p := field_name_problem(name, what)):
                problems.append(p)
        problems += [p for name in self.sum_fields if (p := field_name_problem(name, "sum field"))]
        if len(set(self.key)) != len(self.key):
            problems.append("key names a field twice")
        if self.partition and self.partition not in self.key:  # else a key could match another day's row
            problems.append(f"the partition field {self.partition} must be one of the key fields")
        if len(set(self.sum_fields)) != len(self.sum_fields):
            problems.append("sum_fields names a field twice")
        if isinstance(self.source, SqlSource) and self.partition and not self.source.uses_day():
            problems.append("a partitioned SQL source selects one day's rows: use :day in the query")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def label(self) -> str:
        """What a group is called in the summary: `group_label`, else group_by without a
        trailing ID (账户ID → 账户), else 分组."""
        if self.group_label:
            return self.group_label
        if self.group_by:
            trimmed = re.sub(r"\s*(ID|Id|id|编号)$", "", self.group_by)
            return trimmed or self.group_by
        return "分组"

    def fields_read(self) -> list[str]:
        """The fields a run reads back besides those it writes."""
        names = [*self.key, *([self.partition] if self.partition else []),
                 *([self.group_by] if self.group_by else []), *self.sum_fields]
        return list(dict.fromkeys(names))


def parse(document: dict[str, Any] | str) -> PipelineSpec:
    """A definition from JSON text or a dict; SpecError naming every problem."""
    from pydantic import ValidationError

    try:
        if isinstance(document, str):
            return PipelineSpec.model_validate_json(document)
        return PipelineSpec.model_validate(document)
    except ValidationError as exc:
        raise SpecError([_problem(e) for e in exc.errors()]) from None


def _problem(error: Any) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def check(spec: PipelineSpec, modules: list[str]) -> None:
    """What the model cannot know alone: a Python source must come from PIPELINE_MODULES and
    import. SpecError otherwise."""
    if isinstance(spec.source, PythonSource):
        why = callables.problem(spec.source.callable, modules, "PIPELINE_MODULES")
        if why:
            raise SpecError([f"source.callable: {why}"])
