"""Export and import round trips, with the characters that break naive writers."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot.domain import (
    Conversation,
    ExportFormat,
    GenerationParams,
    Message,
    Role,
    export,
    parse,
)
from chatbot.domain.formats import (
    FORMULA_STARTS,
    from_csv,
    neutralise_formula,
    restore_formula,
    to_csv,
)
from chatbot.errors import InvalidRequestError

TRICKY = [
    Message.user('Hello, "world"; a comma, a quote " and\na newline'),
    Message.assistant("Ünïcödé — 日本語 — emoji 🙂\r\nand a CRLF"),
    Message.user("=SUM(A1:A2) looks like a formula; 'single' quotes"),
    Message.assistant(""),
]


def _conversation() -> Conversation:
    return Conversation(
        title='Tricky, "quoted" title',
        system_prompt="Be terse.\nReally.",
        params=GenerationParams(
            max_new_tokens=64, temperature=0.5, top_p=0.9, stop=("END",), seed=3
        ),
        messages=tuple(TRICKY),
    )


def test_csv_has_the_seed_columns_oldest_first() -> None:
    text = to_csv([Message.user("hi"), Message.assistant("hello")])
    assert text.splitlines() == ["is_user,text", "True,hi", "False,hello"]


def test_csv_round_trip_keeps_every_character() -> None:
    back = from_csv(to_csv(TRICKY))
    assert [(m.role, m.content) for m in back] == [(m.role, m.content) for m in TRICKY]


def test_csv_leaves_out_the_system_prompt() -> None:
    text = export(_conversation(), ExportFormat.CSV)
    assert "Be terse" not in text


def test_csv_reads_the_seed_apps_pandas_download() -> None:
    # What the article's download_conversation() wrote with pandas.DataFrame.to_csv(index=False).
    seed_file = 'is_user,text\nTrue,"Hi, bot"\nFalse,"Hello!\nHow are you?"\n'
    back = from_csv(seed_file)
    assert [(m.role, m.content) for m in back] == [
        (Role.USER, "Hi, bot"),
        (Role.ASSISTANT, "Hello!\nHow are you?"),
    ]


def test_json_round_trip_keeps_title_prompt_params_and_messages() -> None:
    original = _conversation()
    back = parse(export(original, ExportFormat.JSON), ExportFormat.JSON)
    assert back.title == original.title
    assert back.system_prompt == original.system_prompt
    assert back.params == original.params
    assert [(m.role, m.content) for m in back.messages] == [
        (m.role, m.content) for m in original.messages
    ]


def test_openai_export_is_a_message_list_with_the_system_prompt_first() -> None:
    data = json.loads(export(_conversation(), ExportFormat.OPENAI))
    assert data[0] == {"role": "system", "content": "Be terse.\nReally."}
    assert data[1]["role"] == "user"
    back = parse(json.dumps(data), ExportFormat.OPENAI)
    assert back.system_prompt == "Be terse.\nReally."
    assert [m.content for m in back.messages] == [m.content for m in TRICKY if m.content]


def test_markdown_export_shows_every_message() -> None:
    text = export(_conversation(), ExportFormat.MARKDOWN)
    assert text.startswith('# Tricky, "quoted" title')
    for message in TRICKY:
        assert message.content in text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("text,is_user\nhi,True\n", "header"),
        ("is_user,text\nmaybe,hi\n", "row 2"),
        ("is_user,text\nTrue,a,b\n", "3 columns"),
    ],
)
def test_bad_csv_says_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        from_csv(text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ('{"messages": 3}', "messages"),
        ('[{"role": "wizard", "content": "x"}]', "role"),
        ('[{"role": "user"}]', "content"),
        ("[1]", "object"),
    ],
)
def test_bad_json_says_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        parse(text, ExportFormat.JSON)


def test_format_from_filename() -> None:
    assert ExportFormat.from_filename("a.CSV") is ExportFormat.CSV
    assert ExportFormat.from_filename("a.openai.json") is ExportFormat.OPENAI
    assert ExportFormat.from_filename("notes.md") is ExportFormat.MARKDOWN
    with pytest.raises(InvalidRequestError, match=r"\.csv"):
        ExportFormat.from_filename("a.txt")


# Text made of the characters that matter to CSV and spreadsheets, plus any other.
_CSV_TEXT = st.lists(
    st.one_of(
        st.sampled_from(["\r", "\n", "\r\n", '"', ",", "'", "=", "+", "-", "@", "\t", ";", " "]),
        st.characters(blacklist_categories=("Cs",)),  # any valid character, NUL included
    ),
    max_size=40,
).map("".join)


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(texts=st.lists(_CSV_TEXT, min_size=1, max_size=6))
def test_csv_round_trip_is_exact_for_any_text(texts: list[str]) -> None:
    messages = [
        Message(role=Role.USER if i % 2 else Role.ASSISTANT, content=t) for i, t in enumerate(texts)
    ]
    written = to_csv(messages)
    back = from_csv(written)
    assert [(m.role, m.content) for m in back] == [(m.role, m.content) for m in messages]
    cells = [row[1] for row in csv.reader(io.StringIO(written, newline=""))][1:]
    assert not any(cell.startswith(FORMULA_STARTS) for cell in cells)


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@A1", "'@A1"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("'x", "''x"),
        ("plain", "plain"),
        ("a=b", "a=b"),
    ],
)
def test_formula_cells_get_a_leading_quote(text: str, cell: str) -> None:
    assert neutralise_formula(text) == cell
    assert restore_formula(cell) == text


def test_a_foreign_cell_with_a_plain_leading_quote_is_kept() -> None:
    back = from_csv("is_user,text\nTrue,'tis so\n")
    assert back[0].content == "'tis so"


def test_csv_quotes_a_bare_cr_so_other_readers_keep_the_row() -> None:
    written = to_csv([Message.user("a\rb")])
    assert written == 'is_user,text\n"True","a\rb"\n'
