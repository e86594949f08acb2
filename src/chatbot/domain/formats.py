"""Export and import of conversations: CSV (the seed's ``is_user,text``), JSON, Markdown, OpenAI.

CSV is opened by spreadsheets, so a cell that a spreadsheet would run as a formula is
neutralised on export as OWASP advises ("CSV injection"): a text cell that starts with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return gets a single quote ``'`` in front. So that our
own import gives back the original exactly, the quote is also the marker of the scheme: a text
that itself starts with ``'`` gets a second one, and import removes one leading ``'`` from any
cell whose next character is one of those or ``'``. A cell of another program that starts with
a plain ``'`` followed by anything else is left as it is.
"""

from __future__ import annotations

import csv
import io
import json
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from chatbot.domain.jsontext import parse_json
from chatbot.domain.messages import Conversation, GenerationParams, Message, MessageStatus, Role
from chatbot.errors import InvalidRequestError

CSV_COLUMNS = ("is_user", "text")
# Characters that make a spreadsheet read a cell as a formula (OWASP's list), and the escape.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_ESCAPE = "'"
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"
    MARKDOWN = "md"
    OPENAI = "openai"

    @property
    def media_type(self) -> str:
        return {
            ExportFormat.CSV: "text/csv",
            ExportFormat.JSON: "application/json",
            ExportFormat.MARKDOWN: "text/markdown",
            ExportFormat.OPENAI: "application/json",
        }[self]

    @property
    def extension(self) -> str:
        return {ExportFormat.OPENAI: "openai.json"}.get(self, self.value)

    @classmethod
    def from_filename(cls, name: str) -> ExportFormat:
        lowered = name.lower()
        if lowered.endswith(".openai.json"):
            return cls.OPENAI
        for fmt, suffixes in (
            (cls.CSV, (".csv",)),
            (cls.JSON, (".json",)),
            (cls.MARKDOWN, (".md", ".markdown")),
        ):
            if lowered.endswith(suffixes):
                return fmt
        raise InvalidRequestError(
            f"cannot tell the format of {name!r}: use .csv, .json, .md or .openai.json",
            param="format",
        )


def export(conversation: Conversation, fmt: ExportFormat) -> str:
    match fmt:
        case ExportFormat.CSV:
            return to_csv(conversation.messages)
        case ExportFormat.JSON:
            return to_json(conversation)
        case ExportFormat.MARKDOWN:
            return to_markdown(conversation)
        case ExportFormat.OPENAI:
            return _dumps(to_openai(conversation))


def to_csv(messages: tuple[Message, ...] | list[Message]) -> str:
    """The seed's download: one row per user or assistant message, oldest first.

    Rows end with ``\\n`` like the seed's pandas download. Python's writer quotes a field
    with ``\\n`` but not one with a bare ``\\r``, which readers then take for a line end;
    such rows are written fully quoted, so every character comes back.
    """
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    quoting_writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    for message in messages:
        if message.role is Role.SYSTEM:
            continue
        text = neutralise_formula(message.content)
        row = [str(message.role is Role.USER), text]
        (quoting_writer if "\r" in text else writer).writerow(row)
    return buffer.getvalue()


def neutralise_formula(text: str) -> str:
    """``=1+1`` -> ``'=1+1``; ``'x`` -> ``''x`` (so :func:`restore_formula` is exact)."""
    if text.startswith((*FORMULA_STARTS, CSV_ESCAPE)):
        return CSV_ESCAPE + text
    return text


def restore_formula(cell: str) -> str:
    """The inverse of :func:`neutralise_formula` on cells it wrote; others are unchanged."""
    if cell.startswith(CSV_ESCAPE) and cell[1:].startswith((*FORMULA_STARTS, CSV_ESCAPE)):
        return cell[1:]
    return cell


def to_json(conversation: Conversation) -> str:
    payload = {
        "title": conversation.title,
        "system_prompt": conversation.system_prompt,
        "params": conversation.params.model_dump(mode="json"),
        "messages": [
            {"role": m.role.value, "content": m.content, "status": m.status.value}
            for m in conversation.messages
        ],
    }
    return _dumps(payload)


def _dumps(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, indent=2)


def to_markdown(conversation: Conversation) -> str:
    lines = [f"# {conversation.title}", ""]
    if conversation.system_prompt:
        lines += ["> **System:** " + conversation.system_prompt.replace("\n", "\n> "), ""]
    for message in conversation.messages:
        speaker = "You" if message.role is Role.USER else "Assistant"
        suffix = "" if message.status is MessageStatus.COMPLETE else f" _({message.status.value})_"
        lines += [f"**{speaker}:**{suffix}", "", message.content, ""]
    return "\n".join(lines)


def to_openai(conversation: Conversation) -> list[dict[str, str]]:
    return [{"role": m.role.value, "content": m.content} for m in conversation.prompt_messages()]


def parse(text: str, fmt: ExportFormat) -> Conversation:
    """Read a file written by :func:`export` (or by the seed app's CSV download)."""
    match fmt:
        case ExportFormat.CSV:
            return Conversation(messages=tuple(from_csv(text)))
        case ExportFormat.JSON | ExportFormat.OPENAI:
            return from_json(text)
        case ExportFormat.MARKDOWN:
            raise InvalidRequestError(
                "Markdown is export-only; import a .csv or .json file", param="format"
            )


def from_csv(text: str) -> list[Message]:
    """Rows of ``is_user,text``; any malformed CSV (a field past the csv module's size limit,
    a bare line break outside quotes, a NUL) is an InvalidRequestError naming the row."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        return _csv_messages(reader)
    except csv.Error as exc:
        raise InvalidRequestError(
            f"CSV row {reader.line_num} cannot be read: {exc} (fields may hold at most "
            f"{csv.field_size_limit()} characters; quote fields that contain line breaks)",
            param="file",
            code="invalid_csv",
        ) from None


def _csv_messages(reader: Any) -> list[Message]:
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != CSV_COLUMNS:
        raise InvalidRequestError(
            f"CSV must start with the header {','.join(CSV_COLUMNS)}", param="file"
        )
    messages = []
    for row_number, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != 2:
            raise InvalidRequestError(
                f"CSV row {row_number} has {len(row)} columns, expected 2", param="file"
            )
        flag = row[0].strip().lower()
        if flag not in _TRUE | _FALSE:
            raise InvalidRequestError(
                f"CSV row {row_number}: is_user must be True or False, got {row[0]!r}",
                param="file",
            )
        role = Role.USER if flag in _TRUE else Role.ASSISTANT
        messages.append(Message(role=role, content=restore_formula(row[1])))
    return messages


def from_json(text: str) -> Conversation:
    data: Any = parse_json(text, what="the file", param="file")
    raw_messages = (
        data if isinstance(data, list) else data.get("messages") if isinstance(data, dict) else None
    )
    if not isinstance(raw_messages, list):
        raise InvalidRequestError(
            "JSON must be a list of messages or an object with a 'messages' list", param="file"
        )
    try:
        messages = [Message.model_validate(_message_fields(item)) for item in raw_messages]
        header: dict[str, Any] = data if isinstance(data, dict) else {}
        system_prompt = header.get("system_prompt")
        systems = [m for m in messages if m.role is Role.SYSTEM]
        if systems and system_prompt is None:
            system_prompt = systems[0].content
        fields: dict[str, Any] = {
            "messages": tuple(m for m in messages if m.role is not Role.SYSTEM),
            "system_prompt": system_prompt,
        }
        if isinstance(header.get("title"), str) and header["title"].strip():
            fields["title"] = header["title"]
        if isinstance(header.get("params"), dict):
            fields["params"] = GenerationParams.model_validate(header["params"])
        return Conversation.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequestError(
            f"invalid conversation file: {where}: {first['msg']}", param="file"
        ) from None


def _message_fields(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise InvalidRequestError(
            "each message must be an object with role and content", param="file"
        )
    return {k: item[k] for k in ("role", "content", "status") if k in item}
