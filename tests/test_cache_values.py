"""values.py: every field type keeps one shape in the cache, whichever endpoint a record came
from (pure; no I/O)."""

from __future__ import annotations

from bot.caches.values import field_types, normalise_fields, normalise_records, plain_text, unknown_fields

TYPES = {"编号": 1, "邮箱": 1, "工时": 2, "标签": 4, "负责人": 11, "链接": 15, "评分": 20, "关联": 19}


def test_text_segments_become_the_list_endpoints_plain_string():
    assert plain_text([{"text": "BUG-0001", "type": "text"}]) == "BUG-0001"
    mention = [{"text": "请 ", "type": "text"},
               {"text": "@张伟", "type": "mention", "mentionType": "User", "token": "ou_1", "name": "张伟"},
               {"text": " 看看", "type": "url", "link": "https://x"}]
    assert plain_text(mention) == "请 @张伟 看看"
    assert plain_text("already plain") == "already plain"
    assert plain_text(["前端", "后端"]) == ["前端", "后端"]  # not segments: untouched


def test_only_text_fields_change_shape_and_the_same_record_normalises_alike():
    from_list = {"编号": "BUG-1", "邮箱": "a@b.c", "工时": 2.5, "标签": ["前端"],
                 "负责人": [{"id": "ou_1", "name": "张伟"}], "链接": {"link": "https://x", "text": "X"},
                 "评分": [{"text": "致命-2.5", "type": "text"}], "关联": [{"text": "t", "type": "text"}]}
    from_batch_get = {**from_list, "编号": [{"text": "BUG-1", "type": "text"}],
                      "邮箱": [{"text": "a@b.c", "type": "url", "link": "mailto:a@b.c"}]}
    assert normalise_fields(from_list, TYPES) == normalise_fields(from_batch_get, TYPES) == from_list
    assert normalise_fields({"新字段": [{"text": "x", "type": "text"}]}, TYPES) == {
        "新字段": [{"text": "x", "type": "text"}]}  # unknown type: left alone


def test_records_are_copied_not_changed_and_unknown_fields_are_named():
    records = [{"record_id": "rec1", "fields": {"编号": [{"text": "A", "type": "text"}], "新": 1},
                "last_modified_time": 5}]
    out = normalise_records(records, TYPES)
    assert out == [{"record_id": "rec1", "fields": {"编号": "A", "新": 1}, "last_modified_time": 5}]
    assert records[0]["fields"]["编号"] == [{"text": "A", "type": "text"}]
    assert unknown_fields(records, TYPES) == {"新"}
    assert field_types([{"field_name": "编号", "type": 1}, {"field_name": "工时", "type": 2}]) == {
        "编号": 1, "工时": 2}
