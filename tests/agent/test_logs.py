import io
import json

from pybpfguard.agent.logs import Logger, Tracer


def test_json_log_lines_carry_string_fields_and_never_a_top_level_type():
    out = io.StringIO()
    Logger("info", "json", out).info("hello", type="x", count=3, ok=True)
    record = json.loads(out.getvalue())
    assert record["message"] == "hello" and record["level"] == "INFO"
    assert record["log_type"] == "x" and record["count"] == "3" and record["ok"] == "true"
    assert "type" not in record


def test_level_filter_drops_debug_but_text_lines_have_fields_in_braces():
    out = io.StringIO()
    log = Logger("info", "text", out)
    log.debug("hidden")
    log.warn("shown", a=1)
    assert "hidden" not in out.getvalue()
    assert out.getvalue().rstrip().endswith("[WARN] shown {a=1}")


def test_child_spans_share_the_trace_and_name_their_parent():
    out = io.StringIO()
    tracer = Tracer(Logger("info", "json", out), enabled=True)
    with tracer.span("daemon.run"), tracer.span("daemon.load_bpf"):
        pass
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["message"] for r in records] == ["otel_span_start"] * 2 + ["otel_span_end"] * 2
    root, child = records[0], records[1]
    assert child["trace_id"] == root["trace_id"] and len(root["trace_id"]) == 32
    assert child["parent_span_id"] == root["span_id"] and "parent_span_id" not in root
    assert records[2]["status"] == "ok" and "." in records[2]["duration_ms"]
