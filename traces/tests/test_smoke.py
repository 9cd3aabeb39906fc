from traces.tests.factories import trace_document


def test_capture_then_fetch_a_trace(api):
    created = api.post("/api/traces", trace_document(1), format="json")
    assert created.status_code == 201, created.content
    got = api.get(f"/api/traces/{created.json()['id']}")
    assert got.status_code == 200
    assert got.json()["prompt"] == "What is 1 + 1?"
