"""The SIS CSV import: validation of the whole file first, then an all-or-nothing upsert by album."""
from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from idp.core import pesel as pesel_mod
from idp.core.provisioning import ImportFileError, import_csv, import_file, last_migration
from idp.extensions import db
from idp.models import Account, AuditEvent, Identifier, ImportRun
from tests.core.helpers import csv_bytes, make_pesel, person, wrong_check_digit


def run(app, data: bytes, source: str = "people.csv", **kwargs):
    return import_csv(data, source, app.config["PESEL_KEY"], **kwargs)


def accounts() -> dict[str, Account]:
    return {a.album: a for a in db.session.scalars(sa.select(Account))}


def snapshot() -> list:
    """Everything an import may touch, to prove a rejected file changed nothing."""
    out = []
    for a in db.session.scalars(sa.select(Account).order_by(Account.id)):
        out.append((a.album, a.first_name, a.last_name, a.role, a.pesel_hash, a.birth_date, a.entitlements,
                    a.status, sorted((i.kind, i.value) for i in a.identifiers)))
    return out


def messages(result) -> list[str]:
    return [str(e) for e in result.errors]


# --- happy path ---------------------------------------------------------------------------------------

def test_import_adds_people(app):
    rows = [person(1), person(2), person(3, role="teacher")]
    result = run(app, csv_bytes(rows))
    assert result.ok, messages(result)
    assert (result.added, result.updated, result.unchanged, result.rejected) == (3, 0, 0, 0)
    people = accounts()
    assert set(people) == {"1001", "1002", "1003"}
    one = people["1001"]
    assert (one.first_name, one.last_name, one.role, one.status) == ("Jan1", "Kowalski1", "student", "active")
    assert one.identifier("university_email") == "jan.kowalski1@student.example.edu.pl"
    assert one.identifier("private_email") == "jk1@example.com"
    assert one.aliases() == ["s1001@student.example.edu.pl"]
    assert one.pesel_hash == pesel_mod.keyed_hash(rows[0]["pesel"], app.config["PESEL_KEY"])
    assert one.birth_date == pesel_mod.birth_date(rows[0]["pesel"])
    assert one.password_hash is None
    assert one.entitlements is None
    assert people["1003"].role == "teacher"


def test_reimport_of_the_same_file_changes_nothing(app):
    data = csv_bytes([person(1), person(2)])
    assert run(app, data).added == 2
    before = snapshot()
    result = run(app, data)
    assert result.ok
    assert (result.added, result.updated, result.unchanged) == (0, 0, 2)
    assert snapshot() == before


def test_update_by_album(app):
    run(app, csv_bytes([person(1), person(2)]))
    changed = person(1, last_name="Nowak", university_email="jan.nowak1@student.example.edu.pl", role="staff",
                     aliases="")
    result = run(app, csv_bytes([changed, person(2), person(3)]))
    assert result.ok, messages(result)
    assert (result.added, result.updated, result.unchanged) == (1, 1, 1)
    one = accounts()["1001"]
    assert (one.last_name, one.role) == ("Nowak", "staff")
    assert sorted((i.kind, i.value) for i in one.identifiers) == [
        ("private_email", "jk1@example.com"), ("university_email", "jan.nowak1@student.example.edu.pl")]
    # the old address is free again
    assert db.session.scalar(sa.select(Identifier).where(
        Identifier.value == "jan.kowalski1@student.example.edu.pl")) is None


def test_album_matching_is_case_insensitive(app):
    run(app, csv_bytes([person(1, album="AB1001")]))
    result = run(app, csv_bytes([person(1, album="ab1001", first_name="Janusz")]))
    assert result.ok, messages(result)
    assert (result.added, result.updated) == (0, 1)
    assert [a.first_name for a in accounts().values()] == ["Janusz"]


def test_moving_an_address_between_kinds_is_an_update(app):
    run(app, csv_bytes([person(1)]))
    row = person(1, private_email="s1001@student.example.edu.pl", aliases="jk1@example.com")
    result = run(app, csv_bytes([row]))
    assert result.ok, messages(result)
    assert result.updated == 1
    one = accounts()["1001"]
    assert one.identifier("private_email") == "s1001@student.example.edu.pl"
    assert one.aliases() == ["jk1@example.com"]


def test_reordered_aliases_are_not_a_change(app):
    run(app, csv_bytes([person(1, aliases="a1@example.com;b1@example.com")]))
    result = run(app, csv_bytes([person(1, aliases="b1@example.com;a1@example.com")]))
    assert (result.updated, result.unchanged) == (0, 1)
    result = run(app, csv_bytes([person(1, aliases="b1@example.com;a1@example.com")]))
    assert (result.updated, result.unchanged) == (0, 1)


def test_addresses_the_helpdesk_added_survive_imports_until_the_sis_lists_them(app):
    """An import removes only what the SIS gave: an alias added in the console (or moved by a merge) stays;
    once the export lists it, it is the SIS's like any other."""
    run(app, csv_bytes([person(1, aliases="old@example.com")]))
    one = accounts()["1001"]
    one.identifiers.append(Identifier(kind="alias", value="desk@example.com", source="helpdesk"))
    one.identifiers.append(Identifier(kind="alias", value="moved@example.com", source="merge"))
    db.session.commit()
    result = run(app, csv_bytes([person(1, aliases="new@example.com")]))
    assert result.updated == 1
    assert sorted(accounts()["1001"].aliases()) == ["desk@example.com", "moved@example.com", "new@example.com"]
    assert (run(app, csv_bytes([person(1, aliases="new@example.com")])).unchanged) == 1  # nothing to change
    run(app, csv_bytes([person(1, aliases="new@example.com;desk@example.com")]))
    run(app, csv_bytes([person(1, aliases="new@example.com")]))
    assert sorted(accounts()["1001"].aliases()) == ["moved@example.com", "new@example.com"]


def test_a_person_who_left_is_reactivated_by_the_import(app):
    run(app, csv_bytes([person(1)]))
    one = accounts()["1001"]
    one.status = "left"
    db.session.commit()
    result = run(app, csv_bytes([person(1)]))
    assert result.updated == 1
    assert accounts()["1001"].status == "active"


def test_bom_and_crlf_are_tolerated(app):
    result = run(app, csv_bytes([person(1), person(2)], bom=True, line_end="\r\n"))
    assert result.ok, messages(result)
    assert result.added == 2
    one = accounts()["1001"]
    assert one.album == "1001"
    assert one.aliases() == ["s1001@student.example.edu.pl"]


def test_polish_diacritics_survive(app):
    rows = [person(1, first_name="Łukasz", last_name="Żółkiewski"),
            person(2, first_name="Zofia", last_name="Wiśniewska"),
            person(3, first_name="Świętopełk", last_name="Ćwikła-Źdźbło")]
    result = run(app, csv_bytes(rows, bom=True))
    assert result.ok, messages(result)
    db.session.expire_all()
    people = accounts()
    assert (people["1001"].first_name, people["1001"].last_name) == ("Łukasz", "Żółkiewski")
    assert people["1002"].last_name == "Wiśniewska"
    assert (people["1003"].first_name, people["1003"].last_name) == ("Świętopełk", "Ćwikła-Źdźbło")
    assert run(app, csv_bytes(rows)).unchanged == 3


def test_file_that_is_not_utf8(app):
    data = csv_bytes([person(1, last_name="Żółkiewski")]).decode().encode("cp1250")
    with pytest.raises(ImportFileError, match="not UTF-8"):
        run(app, data)
    assert accounts() == {}


def test_identifiers_are_lower_cased_and_trimmed(app):
    row = person(1, university_email="  Jan.Kowalski1@Student.Example.EDU.pl ", private_email="JK1@Example.COM",
                 aliases="S1001@Student.Example.Edu.PL ; Jasiek@Example.com")
    result = run(app, csv_bytes([row]))
    assert result.ok, messages(result)
    one = accounts()["1001"]
    assert sorted(i.value for i in one.identifiers) == [
        "jan.kowalski1@student.example.edu.pl", "jasiek@example.com", "jk1@example.com",
        "s1001@student.example.edu.pl"]


def test_aliases_are_split_on_semicolons(app):
    row = person(1, aliases="s1001@student.example.edu.pl;jan.k@example.edu.pl; ;kowal@example.edu.pl;")
    result = run(app, csv_bytes([row]))
    assert result.ok, messages(result)
    assert accounts()["1001"].aliases() == [
        "s1001@student.example.edu.pl", "jan.k@example.edu.pl", "kowal@example.edu.pl"]


def test_empty_aliases_and_one_empty_email(app):
    result = run(app, csv_bytes([person(1, aliases="", private_email="")]))
    assert result.ok, messages(result)
    one = accounts()["1001"]
    assert [(i.kind, i.value) for i in one.identifiers] == [("university_email", "jan.kowalski1@student.example.edu.pl")]


def test_no_email_at_all_is_refused(app):
    result = run(app, csv_bytes([person(1, aliases="", private_email="", university_email="")]))
    assert not result.ok
    assert any("line 2" in m and "university_email" in m for m in messages(result))


def test_entitlements_column(app):
    rows = [person(1, entitlements="USOSweb; e-learning;mail;USOSweb"), person(2, entitlements="")]
    result = run(app, csv_bytes(rows))
    assert result.ok, messages(result)
    people = accounts()
    assert people["1001"].entitlements == ["USOSweb", "e-learning", "mail"]
    assert people["1002"].entitlements is None  # empty: the registry's default for the role
    result = run(app, csv_bytes([person(1, entitlements="mail"), person(2, entitlements="")]))
    assert (result.updated, result.unchanged) == (1, 1)
    assert accounts()["1001"].entitlements == ["mail"]


def test_optional_columns_in_any_order(app):
    row = person(1, entitlements="USOSweb", birth_date="")
    columns = ["entitlements", "aliases", "role", "birth_date", "private_email", "university_email", "last_name",
               "first_name", "pesel", "album"]
    result = run(app, csv_bytes([row], columns=columns))
    assert result.ok, messages(result)
    assert accounts()["1001"].entitlements == ["USOSweb"]


# --- PESEL and birth date -----------------------------------------------------------------------------

def test_empty_pesel_needs_a_birth_date(app):
    result = run(app, csv_bytes([person(1), person(2, pesel="")]))
    assert not result.ok
    assert messages(result) == ["line 3: birth_date is required when pesel is empty"]
    assert accounts() == {}

    result = run(app, csv_bytes([person(1, birth_date=""), person(2, pesel="", birth_date="1999-12-31")]))
    assert result.ok, messages(result)
    two = accounts()["1002"]
    assert two.pesel_hash is None
    assert two.birth_date == dt.date(1999, 12, 31)


def test_birth_date_contradicting_pesel(app):
    row = person(1, pesel=make_pesel(dt.date(2001, 5, 17)), birth_date="2001-05-18")
    result = run(app, csv_bytes([row]))
    assert messages(result) == ["line 2: birth_date does not match the date encoded in pesel"]
    row = person(1, pesel=make_pesel(dt.date(2001, 5, 17)), birth_date="2001-05-17")
    assert run(app, csv_bytes([row])).ok


@pytest.mark.parametrize("value", ["31.12.1999", "19991231", "1999-W52-5", "1999-02-30", "1999-12-31T00:00"])
def test_bad_birth_date(app, value):
    result = run(app, csv_bytes([person(1, pesel="", birth_date=value)]))
    assert not result.ok
    assert any(m.startswith("line 2: birth_date") and "YYYY-MM-DD" in m for m in messages(result))


@pytest.mark.parametrize("bad, reason", [
    (wrong_check_digit("44051401359"), "wrong check digit"),
    ("4405140135", "11 digits"),
    ("4405140135X", "11 digits"),
    ("99133101234", "no real date"),  # month 13, correct check digit
])
def test_bad_pesel_is_reported_with_its_line(app, bad, reason):
    rows = [person(1), person(2), person(3, pesel=bad)]
    result = run(app, csv_bytes(rows))
    assert not result.ok
    assert result.rejected == 1
    assert len(result.errors) == 1
    assert result.errors[0].line == 4
    assert reason in result.errors[0].message
    assert bad not in str(result.errors[0])  # the (possibly real) number is never echoed
    assert accounts() == {}


# --- refused rows ------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value", [("first_name", "Ja\x0bn"), ("last_name", "Ko\x01walski"),
                                        ("first_name", "Anna\tMaria")])
def test_a_control_character_in_a_name_is_refused_with_its_line(app, key, value):
    """Names go into CAS XML, ID tokens and mail: XML 1.0 cannot carry control characters at all."""
    result = run(app, csv_bytes([person(1), person(2, **{key: value})]))
    assert not result.ok
    assert [(e.line, e.message) for e in result.errors] == [(3, f"{key} contains a control character")]
    assert accounts() == {}


def test_polish_letters_in_names_are_welcome(app):
    assert run(app, csv_bytes([person(1, first_name="Żaneta", last_name="Gęślą-Jaźń")])).ok

def test_duplicate_album_names_both_lines(app):
    rows = [person(1), person(2), person(3, album="1001")]
    result = run(app, csv_bytes(rows))
    assert not result.ok
    [err] = result.errors
    assert err.line == 4
    assert "1001" in err.message and "line 2" in err.message


def test_duplicate_album_differing_in_case(app):
    result = run(app, csv_bytes([person(1, album="AB1"), person(2, album="ab1")]))
    assert [e.line for e in result.errors] == [3]


def test_the_same_email_in_two_rows(app):
    rows = [person(1), person(2, private_email="JK1@example.com")]
    result = run(app, csv_bytes(rows))
    assert not result.ok
    [err] = result.errors
    assert err.line == 3
    assert "jk1@example.com" in err.message and "line 2" in err.message


def test_the_same_address_twice_in_one_row(app):
    result = run(app, csv_bytes([person(1, aliases="JK1@example.com")]))
    assert [e.line for e in result.errors] == [2]
    assert "twice" in result.errors[0].message


def test_an_email_of_another_existing_account(app):
    run(app, csv_bytes([person(1), person(2)]))
    before = snapshot()
    rows = [person(2), person(3, aliases="jan.kowalski1@student.example.edu.pl")]
    result = run(app, csv_bytes(rows))
    assert not result.ok
    [err] = result.errors
    assert err.line == 3
    assert "jan.kowalski1@student.example.edu.pl" in err.message and "1001" in err.message
    assert snapshot() == before


def test_bad_role(app):
    result = run(app, csv_bytes([person(1, role="student"), person(2, role="dean")]))
    assert [str(e) for e in result.errors] == ["line 3: role 'dean' must be one of student, teacher, staff"]


def test_role_is_case_insensitive(app):
    result = run(app, csv_bytes([person(1, role="Teacher")]))
    assert result.ok
    assert accounts()["1001"].role == "teacher"


@pytest.mark.parametrize("field, value", [
    ("university_email", "jan.kowalski"), ("private_email", "jk@"), ("private_email", "j k@example.com"),
    ("aliases", "s1001@student.example.edu.pl;not-an-address"), ("university_email", "a@b@example.com"),
])
def test_bad_email(app, field, value):
    result = run(app, csv_bytes([person(1), person(2, **{field: value})]))
    assert not result.ok
    assert [e.line for e in result.errors] == [3]
    assert "not an e-mail address" in result.errors[0].message


@pytest.mark.parametrize("album", ["", "12 345", "12@345", "x" * 33, "-123"])
def test_bad_album(app, album):
    result = run(app, csv_bytes([person(1, album=album)]))
    assert [e.line for e in result.errors] == [2]


def test_empty_names(app):
    result = run(app, csv_bytes([person(1, first_name="", last_name=" ")]))
    assert [str(e) for e in result.errors] == ["line 2: first_name is empty", "line 2: last_name is empty"]


def test_too_many_fields(app):
    data = csv_bytes([person(1), person(2)]) + b"1003,,Jan,Nowak,jn@example.edu.pl,,student,,extra\n"
    result = run(app, data)
    assert [str(e) for e in result.errors] == ["line 4: more fields than columns in the header"]
    assert accounts() == {}


def test_too_few_fields(app):
    # a row cut short (the aliases field is missing) is malformed, not silently "no aliases"
    data = csv_bytes([person(1)]) + b"1003,,Jan,Nowak,jn@example.edu.pl,,student\n"
    result = run(app, data)
    assert [e.line for e in result.errors] == [3]
    assert "fewer fields" in result.errors[0].message
    assert accounts() == {}


def test_blank_lines_are_skipped_and_do_not_shift_line_numbers(app):
    good = csv_bytes([person(1)])
    data = good + b"\n" + csv_bytes([person(2, role="dean")]).split(b"\n", 1)[1]
    result = run(app, data)
    # header on line 1, person 1 on line 2, a blank line 3, the bad row on line 4
    assert [e.line for e in result.errors] == [4]


def test_multiline_quoted_field_line_numbers_point_at_the_first_line(app):
    header = ",".join(["album", "pesel", "first_name", "last_name", "university_email", "private_email", "role",
                       "aliases"])
    p1, p3 = person(1), person(3)
    lines = [
        header,
        # line 2-4: a quoted last name spanning three physical lines (bad: not a problem by itself, but
        # the row has a bad role so it must be reported on line 2)
        f'1001,{p1["pesel"]},Jan,"Kowalski\nde\nNowak",a@example.com,,dean,',
        # line 5: a bad role
        "1002,,Anna,Nowak,b@example.com,,dean,",
        # line 6-7: a good row whose aliases span two lines (a name may not: a line break is a control
        # character, refused in names)
        f'1003,{p3["pesel"]},Jan,Kowalski,c@example.com,,student,"c1@example.com;\nc2@example.com"',
        # line 8: bad role again
        "1004,,Ewa,Lis,d@example.com,,dean,",
    ]
    result = run(app, ("\n".join(lines) + "\n").encode())
    by_line = {}
    for e in result.errors:
        by_line.setdefault(e.line, []).append(e.message)
    assert sorted(by_line) == [2, 5, 8]
    assert any("role" in m for m in by_line[2])
    assert any("birth_date is required" in m for m in by_line[5])


def test_all_or_nothing_every_bad_row_listed(app):
    run(app, csv_bytes([person(1)]))
    before = snapshot()
    rows = [person(1, first_name="Zmieniony"), person(2), person(3, role="dean"), person(4),
            person(5, pesel=wrong_check_digit(person(5)["pesel"])), person(6, private_email="nope")]
    result = run(app, csv_bytes(rows))
    assert not result.ok
    assert sorted({e.line for e in result.errors}) == [4, 6, 7]
    assert result.rejected == 3
    assert (result.added, result.updated, result.unchanged) == (0, 0, 0)
    db.session.expire_all()
    assert snapshot() == before
    assert accounts()["1001"].first_name == "Jan1"


def test_several_problems_in_one_row_are_all_reported(app):
    result = run(app, csv_bytes([person(1, role="x", first_name="", private_email="bad")]))
    assert {e.line for e in result.errors} == {2}
    assert len(result.errors) == 3
    assert result.rejected == 1


# --- whole-file problems -----------------------------------------------------------------------------

@pytest.mark.parametrize("missing", ["album", "pesel", "aliases", "university_email"])
def test_missing_column_is_named(app, missing):
    columns = [c for c in ["album", "pesel", "first_name", "last_name", "university_email", "private_email",
                           "role", "aliases"] if c != missing]
    with pytest.raises(ImportFileError, match=f"missing column.*{missing}"):
        run(app, csv_bytes([person(1)], columns=columns))


def test_unknown_column_is_named(app):
    with pytest.raises(ImportFileError, match="unknown column.*phone"):
        run(app, csv_bytes([person(1, phone="123")]))


def test_header_only_and_empty_file(app):
    result = run(app, csv_bytes([]))
    assert result.ok and (result.added, result.updated, result.unchanged) == (0, 0, 0)
    with pytest.raises(ImportFileError, match="empty"):
        run(app, b"")
    with pytest.raises(ImportFileError, match="empty"):
        run(app, b"\xef\xbb\xbf")


def test_duplicate_column(app):
    data = b"album,pesel,first_name,last_name,university_email,private_email,role,aliases,album\n"
    with pytest.raises(ImportFileError, match="twice"):
        run(app, data)


def test_header_names_are_trimmed(app):
    data = csv_bytes([person(1)]).replace(b"album,pesel", b" album , pesel", 1)
    assert run(app, data).ok


def test_a_field_beyond_the_csv_limit_is_a_file_error_with_its_line(app):
    data = csv_bytes([person(1)]) + b'1002,,Jan,"' + b"x" * 200_000 + b'",a@example.com,,student,\n'
    with pytest.raises(ImportFileError, match="line 3"):
        run(app, data)
    assert accounts() == {}


def test_a_file_level_error_is_recorded_as_a_rejected_run(app):
    with pytest.raises(ImportFileError):
        run(app, csv_bytes([person(1, phone="1")]), source="bad.csv")
    [rejected] = db.session.scalars(sa.select(ImportRun)).all()
    assert (rejected.status, rejected.source) == ("rejected", "bad.csv")
    assert "phone" in rejected.errors[0]
    assert last_migration() is None


def test_import_file_missing(app, tmp_path):
    with pytest.raises(ImportFileError, match="cannot read"):
        import_file(tmp_path / "nope.csv", app.config["PESEL_KEY"])


# --- the run record ----------------------------------------------------------------------------------

def test_runs_are_recorded(app):
    assert last_migration() is None
    t1 = dt.datetime(2025, 10, 1, 6, 30)
    result = run(app, csv_bytes([person(1), person(2)]), source="sis-1.csv", now=t1)
    ok_run = result.run
    assert (ok_run.status, ok_run.source, ok_run.added, ok_run.updated, ok_run.unchanged, ok_run.rejected) == (
        "ok", "sis-1.csv", 2, 0, 0, 0)
    assert ok_run.started_at == t1
    assert last_migration().id == ok_run.id

    bad = run(app, csv_bytes([person(3, role="dean")]), source="sis-2.csv")
    assert bad.run.status == "rejected"
    assert bad.run.rejected == 1
    assert bad.run.errors == ["line 2: role 'dean' must be one of student, teacher, staff"]
    # a rejected file is not a data migration
    assert last_migration().id == ok_run.id

    runs = list(db.session.scalars(sa.select(ImportRun).order_by(ImportRun.id)))
    assert [r.status for r in runs] == ["ok", "rejected"]
    actions = [e.action for e in db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id))]
    assert actions == ["import.completed", "import.rejected"]

    later = run(app, csv_bytes([person(1), person(2)]), source="sis-3.csv")
    assert last_migration().id == later.run.id
    assert later.run.unchanged == 2


def test_progress_callback_sees_every_row(app):
    seen = []

    def progress(rows):
        for row in rows:
            seen.append(row.album)
            yield row

    result = run(app, csv_bytes([person(n) for n in range(1, 6)]), progress=progress)
    assert result.added == 5
    assert seen == ["1001", "1002", "1003", "1004", "1005"]


# --- the PESEL is never stored ----------------------------------------------------------------------

def _every_stored_value() -> list[str]:
    values = []
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                values.extend(str(v) for v in row if v is not None)
    return values


def test_pesel_never_stored_in_plain_text(app, capsys):
    rows = [person(n) for n in range(1, 6)]
    bad = person(9, pesel=wrong_check_digit(person(9)["pesel"]))  # a typo of a real number is sensitive too
    swapped = person(8, birth_date=person(8)["pesel"], pesel="")  # PESEL put in the wrong column
    numbers = [r["pesel"] for r in rows] + [bad["pesel"], swapped["birth_date"]]
    run(app, csv_bytes(rows))
    run(app, csv_bytes(rows + [bad, swapped]))  # rejected: the errors are stored in import_run
    swap = person(7)  # album and pesel columns swapped
    numbers.append(swap["pesel"])
    run(app, csv_bytes([dict(swap, album=swap["pesel"], pesel=swap["album"])]))
    stored = _every_stored_value()
    assert stored  # the scan did see the tables
    for number in numbers:
        assert not any(number in v for v in stored), number
    out = capsys.readouterr()
    for number in numbers:
        assert number not in out.out + out.err
